"""`Wav2Vec2BertConfig`: every hyper-parameter of the model family, read from and written to `config.json`.

The field names, defaults and JSON layout are those of the Hugging Face config of the same name, so a
`config.json` written by either library loads in the other. Keys this class does not know are kept in
`extra` and written back unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import atomic_write_text, read_json_object
from .hub import HubOptions, resolve_file

CONFIG_NAME = "config.json"
MODEL_TYPE = "wav2vec2-bert"
POSITION_EMBEDDING_TYPES = (None, "relative_key", "relative", "rotary")
ACTIVATIONS = ("relu", "gelu", "gelu_new", "swish", "silu", "selu", "tanh", "sigmoid")
CTC_REDUCTIONS = ("sum", "mean", "none")
EXTENSION_FLAGS = ("add_encoder_layer_norm", "add_inner_layer_norm")  # fields transformers' config does not have


@dataclass
class Wav2Vec2BertConfig:
    # --- encoder size; the defaults are W2v-BERT 2.0 (facebook/w2v-bert-2.0, 580,493,120 parameters)
    hidden_size: int = 1024  # model width of every Conformer block
    num_hidden_layers: int = 24  # Conformer blocks
    num_attention_heads: int = 16  # head dim = hidden_size // num_attention_heads
    intermediate_size: int = 4096  # inner width of the feed-forward modules
    feature_projection_input_dim: int = 160  # two stacked 80-bin fbank frames per 20 ms step
    hidden_act: str = "swish"  # activation of the feed-forward and convolution modules
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02  # std of the normal init of linear layers
    # --- dropouts (all off at inference)
    hidden_dropout: float = 0.0  # after each feed-forward output and on the encoder input
    activation_dropout: float = 0.0  # inside the feed-forward modules
    attention_dropout: float = 0.0  # on the attention probabilities and after self-attention
    feat_proj_dropout: float = 0.0  # after the feature projection
    final_dropout: float = 0.1  # before the CTC head
    layerdrop: float = 0.1  # probability of skipping a whole block in training
    conformer_conv_dropout: float = 0.1  # after the convolution module (and in the adapter)
    # --- position information in self-attention
    position_embeddings_type: str | None = "relative_key"  # None, "relative_key" (Shaw), "relative", "rotary"
    rotary_embedding_base: int = 10000  # "rotary": base of the frequencies
    max_source_positions: int = 5000  # "relative": length of the sinusoid table (grown when needed)
    left_max_position_embeddings: int = 64  # "relative_key": distances clamped to [-left, +right]
    right_max_position_embeddings: int = 8
    conv_depthwise_kernel_size: int = 31  # causal depthwise convolution; must be odd
    # --- SpecAugment, applied in training only
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05  # fraction of time steps that start a masked span (upper bound)
    mask_time_length: int = 10  # length of a masked time span, in 20 ms steps
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0  # same along the hidden dimension
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    # --- CTC head
    vocab_size: int | None = None  # None in the base checkpoint: set it from the tokenizer when fine-tuning
    ctc_loss_reduction: str = "sum"  # "sum", "mean" (per target length, then batch) or "none"
    ctc_zero_infinity: bool = False  # zero the loss of clips too short for their transcript
    pad_token_id: int | None = 0  # also the CTC blank
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    # --- classification heads
    use_weighted_layer_sum: bool = False  # softmax-weighted sum of all hidden states instead of the last
    classifier_proj_size: int = 768  # projection before mean pooling (sequence classification)
    tdnn_dim: tuple[int, ...] = (512, 512, 512, 512, 1500)  # x-vector TDNN channels per layer
    tdnn_kernel: tuple[int, ...] = (5, 3, 3, 1, 1)
    tdnn_dilation: tuple[int, ...] = (1, 2, 3, 1, 1)
    xvector_output_dim: int = 512
    id2label: dict[int, str] | None = None  # None means the Hugging Face default LABEL_0, LABEL_1
    label2id: dict[str, int] | None = None
    num_labels: int | None = None  # derived from id2label when left None
    # --- Conformer adapter on top of the encoder (subsamples time by adapter_stride per layer)
    add_adapter: bool = False
    adapter_kernel_size: int = 3
    adapter_stride: int = 2
    num_adapter_layers: int = 1
    adapter_act: str = "relu"
    use_intermediate_ffn_before_adapter: bool = False
    output_hidden_size: int | None = None  # adapter width; None means hidden_size
    # --- SeamlessM4T v2's speech encoder has two LayerNorms Wav2Vec2-BERT lacks (a w2vbert extension: written to
    # config.json only when on; transformers' Wav2Vec2BertModel would ignore them and their weights)
    add_encoder_layer_norm: bool = False  # `encoder.layer_norm` after the last Conformer block
    add_inner_layer_norm: bool = False  # `inner_layer_norm` on the model output, after the adapter
    # --- bookkeeping kept for the Hugging Face layout
    architectures: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # unknown config.json keys, kept verbatim

    def __post_init__(self) -> None:
        self.output_hidden_size = self.output_hidden_size or self.hidden_size
        self.tdnn_dim, self.tdnn_kernel, self.tdnn_dilation = (
            tuple(int(v) for v in values) for values in (self.tdnn_dim, self.tdnn_kernel, self.tdnn_dilation)
        )
        self._sync_labels()
        self.validate()

    def _sync_labels(self) -> None:
        if self.id2label is not None:
            # JSON object keys are strings; the model wants integer class ids.
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            if self.num_labels is not None and self.num_labels != len(self.id2label):
                raise ValueError(
                    f"num_labels={self.num_labels} contradicts id2label with {len(self.id2label)} entries; "
                    "pass one of them, or both consistently"
                )
        else:
            count = 2 if self.num_labels is None else self.num_labels
            self.id2label = {i: f"LABEL_{i}" for i in range(count)}
        self.num_labels = len(self.id2label)
        if self.label2id is None or set(self.label2id.values()) != set(self.id2label):
            self.label2id = {label: i for i, label in self.id2label.items()}
        else:
            self.label2id = {str(k): int(v) for k, v in self.label2id.items()}

    def validate(self) -> None:
        """Raise `ValueError` for values that cannot build a model, naming the field and the rule."""
        problems = []
        if self.hidden_size % self.num_attention_heads:
            problems.append(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        if self.output_hidden_size % self.num_attention_heads:
            problems.append(
                f"output_hidden_size={self.output_hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads} (the adapter's attention uses the same heads)"
            )
        if self.conv_depthwise_kernel_size % 2 == 0:
            problems.append(f"conv_depthwise_kernel_size must be odd, got {self.conv_depthwise_kernel_size}")
        if self.position_embeddings_type not in POSITION_EMBEDDING_TYPES:
            problems.append(
                f"position_embeddings_type must be one of {POSITION_EMBEDDING_TYPES}, "
                f"got {self.position_embeddings_type!r}"
            )
        if self.position_embeddings_type == "rotary" and (self.hidden_size // self.num_attention_heads) % 2:
            problems.append("rotary position embeddings need an even head dimension")
        for name in ("hidden_act", "adapter_act"):
            if getattr(self, name) not in ACTIVATIONS:
                problems.append(f"{name} must be one of {ACTIVATIONS}, got {getattr(self, name)!r}")
        if self.ctc_loss_reduction not in CTC_REDUCTIONS:
            problems.append(f"ctc_loss_reduction must be one of {CTC_REDUCTIONS}, got {self.ctc_loss_reduction!r}")
        if self.use_intermediate_ffn_before_adapter and not self.add_adapter:
            problems.append("use_intermediate_ffn_before_adapter=True needs add_adapter=True")
        if not (len(self.tdnn_dim) == len(self.tdnn_kernel) == len(self.tdnn_dilation)):
            problems.append(
                f"tdnn_dim, tdnn_kernel and tdnn_dilation must have one entry per TDNN layer, got lengths "
                f"{len(self.tdnn_dim)}, {len(self.tdnn_kernel)}, {len(self.tdnn_dilation)}"
            )
        if self.vocab_size is not None and self.vocab_size < 1:
            problems.append(f"vocab_size must be positive, got {self.vocab_size}")
        if self.left_max_position_embeddings < 0 or self.right_max_position_embeddings < 0:
            problems.append("left/right_max_position_embeddings must be >= 0")
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "feature_projection_input_dim", "adapter_kernel_size", "adapter_stride", "num_adapter_layers"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("hidden_dropout", "activation_dropout", "attention_dropout", "feat_proj_dropout",
                     "final_dropout", "layerdrop", "conformer_conv_dropout", "mask_time_prob", "mask_feature_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if problems:
            raise ValueError("invalid Wav2Vec2BertConfig: " + "; ".join(problems))

    # ----------------------------------------------------------------------------------------------- derived
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Input samples per output frame, as transformers defines it: 2 x input dim, times adapter strides."""
        ratio = self.feature_projection_input_dim * 2
        if self.add_adapter:
            ratio *= self.adapter_stride**self.num_adapter_layers
        return ratio

    model_type = MODEL_TYPE  # class attribute, as in Hugging Face configs

    # -------------------------------------------------------------------------------------- dict and JSON
    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> Wav2Vec2BertConfig:
        """Build from a `config.json` dictionary; `overrides` win over the file (unknown overrides fail)."""
        values = dict(values)
        model_type = values.pop("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(
                f"this is a config for model_type {model_type!r}, expected {MODEL_TYPE!r}: "
                "w2vbert loads Wav2Vec2-BERT / W2v-BERT 2.0 checkpoints only"
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown_overrides = set(overrides) - known
        if unknown_overrides:
            raise TypeError(f"unknown Wav2Vec2BertConfig field(s): {sorted(unknown_overrides)}")
        if "num_labels" in overrides and "id2label" not in overrides:
            values.pop("id2label", None)  # a new label count replaces the stored labels, as in transformers
            values.pop("label2id", None)
        values.update(overrides)
        kwargs = {k: v for k, v in values.items() if k in known}
        extra = dict(values.get("extra") or {}) | {k: v for k, v in values.items() if k not in known | {"extra"}}
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The `config.json` dictionary, in the Hugging Face layout (sorted keys, label ids as strings)."""
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name in ("extra", "num_labels", "id2label", "label2id"):
                continue
            value = getattr(self, f.name)
            if f.name in EXTENSION_FLAGS and not value:
                continue  # keep transformers' layout exactly for every model that does not use them
            out[f.name] = list(value) if isinstance(value, tuple) else value
        if self.architectures is None:
            out.pop("architectures")
        default_labels = {i: f"LABEL_{i}" for i in range(2)}
        if self.id2label != default_labels:
            out["id2label"] = {str(k): v for k, v in self.id2label.items()}
            out["label2id"] = dict(self.label2id)
        out["model_type"] = MODEL_TYPE
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / CONFIG_NAME, self.to_json_string())

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> Wav2Vec2BertConfig:
        return cls.from_dict(read_json_object(path), **overrides)

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        subfolder: str = "",
        **overrides: Any,
    ) -> Wav2Vec2BertConfig:
        """Read `config.json` from a directory or a hub repo id; keyword overrides replace stored values."""
        hub = HubOptions(revision, cache_dir, local_files_only, token, subfolder)
        return cls.from_hub(path_or_repo_id, hub, **overrides)

    @classmethod
    def from_hub(cls, path_or_repo_id: str | os.PathLike, hub: HubOptions, **overrides: Any) -> Wav2Vec2BertConfig:
        """`from_pretrained` with the hub options already gathered (what the model's loading calls)."""
        return cls.from_json_file(resolve_file(path_or_repo_id, CONFIG_NAME, hub), **overrides)
