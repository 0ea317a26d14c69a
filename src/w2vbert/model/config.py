"""`Wav2Vec2BertConfig`: every hyper-parameter of the model family, read from and written to `config.json`.

The field names, defaults and JSON layout are those of the Hugging Face config of the same name, so a
`config.json` written by either library loads in the other. Keys this class does not know are kept in
`extra` and written back unchanged.

In order: the config dataclass (whose field annotations give each field's type, model/field_kinds.py the values
each type admits), then `FIELD_KINDS` and `PRETRAINING_FIELDS`. `validate()` checks the values against the rules
of model/config_rules.py (too large a model is refused before anything is built), and raises one `ValueError`
with one message per bad field.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2vbert.loading.hub import HubOptions, resolve_file
from w2vbert.model.config_rules import (  # noqa: F401  (the choices, imported from here)
    ACTIVATIONS,
    CTC_REDUCTIONS,
    MAX_LABELS,
    POSITION_EMBEDDING_TYPES,
    build_problems,
)
from w2vbert.model.field_kinds import field_kinds
from w2vbert.utils.files import atomic_write_text, read_json_object

CONFIG_NAME = "config.json"
MODEL_TYPE = "wav2vec2-bert"
# fields transformers' config does not have, written only when on (or set)
EXTENSION_FLAGS = ("add_encoder_layer_norm", "add_inner_layer_norm", "verification_threshold")
PRETRAINING_CLASS = "Wav2Vec2BertForPreTraining"  # whose config.json carries the pre-training fields
DEFAULT_NUM_LABELS = 2  # transformers' PretrainedConfig default: LABEL_0, LABEL_1


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
    max_source_positions: int = 5000  # transformers' sinusoid table length; unused here (sinusoids fit each clip)
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
    verification_threshold: float | None = None  # x-vector, w2vbert's: cosine score from which two clips are one
    # speaker (`w2vbert verify`); training keeps the equal-error threshold of the last evaluation here
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
    # --- pre-training (Wav2Vec2BertForPreTraining): w2vbert fields, written to config.json by a pre-training
    # model or where set. Names follow transformers' Wav2Vec2Config where it has one; the defaults are
    # conformer_shaw's (seamless_communication's builder, a fairseq2 v0.2 wav2vec 2.0 config, whose shapes
    # conformer_shaw.pt holds) and, for the masked-prediction part, fairseq2 v0.2's w2vbert 600m arch.
    num_codevector_groups: int = 2  # codebooks of the Gumbel quantizer (fairseq2: num_codebooks)
    num_codevectors_per_group: int = 320  # entries per codebook (num_codebook_entries)
    codevector_dim: int = 768  # a quantized vector: one entry per codebook, concatenated (quantized_dim)
    proj_codevector_dim: int = 768  # the contrastive space of project_hid and project_q (final_dim)
    max_gumbel_temperature: float = 2.0  # Gumbel softmax temperature: max(max * decay^n, min) after n training
    min_gumbel_temperature: float = 0.1  # forward passes (codebook_sampling_temperature = (2.0, 0.1, 0.999995));
    gumbel_temperature_decay: float = 0.999995  # the floor is reached after ~600k passes
    contrastive_logits_temperature: float = 0.1  # cosine similarities are divided by this (logit_temp)
    num_negatives: int = 100  # distractors per masked frame, from the other masked frames of its clip
    diversity_loss_weight: float = 0.2  # conformer_shaw's v0.2 value (the paper and fairseq2 >= 0.3: 0.1)
    pretraining_mask_prob: float = 0.65  # masked spans of mask_time_length start at this rate (fine-tuning's
    # SpecAugment keeps mask_time_prob); fairseq2's max_temporal_mask_prob
    num_masked_prediction_layers: int | None = None  # the blocks after the contrastive loss's tap (fairseq2:
    # num_bert_encoder_layers, 16 of 24 in its 600m arch); None: two thirds of num_hidden_layers
    num_target_codebooks: int = 2  # codebooks whose indices the masked prediction learns (public configs are
    # silent for conformer_shaw, whose release drops this head: all of them)
    masked_prediction_loss_weight: float = 1.0  # bert_loss_weight
    contrastive_loss_weight: float = 1.0  # w2v2_loss_weight: of the contrastive + diversity loss
    # --- bookkeeping kept for the Hugging Face layout
    architectures: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # unknown config.json keys, kept verbatim

    def __post_init__(self) -> None:
        self.validate()
        # The checked values in their canonical form: float fields as floats (JSON 1 means 1.0), TDNN sizes as
        # tuples, id2label keys as integers (JSON object keys are strings; the model wants class ids).
        for name, kind in FIELD_KINDS.items():
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, kind.canonical(value))
        self.output_hidden_size = self.output_hidden_size or self.hidden_size
        self._sync_labels()

    def _label_count(self) -> int:
        if self.id2label is not None:
            return len(self.id2label)
        return DEFAULT_NUM_LABELS if self.num_labels is None else self.num_labels

    def _sync_labels(self) -> None:
        if self.id2label is None:
            self.id2label = {i: f"LABEL_{i}" for i in range(self._label_count())}
        self.num_labels = len(self.id2label)
        if self.label2id is None or set(self.label2id.values()) != set(self.id2label):
            self.label2id = {label: i for i, label in self.id2label.items()}

    def validate(self) -> None:
        """Raise `ValueError` for values that cannot build a model, naming each bad field and its rule
        (model/config_rules.py: each field's type and rules in field order, the rules between fields, then the
        model's size)."""
        problems = build_problems(self, FIELD_KINDS)
        if problems:
            raise ValueError("invalid Wav2Vec2BertConfig: " + "; ".join(problems))

    # ----------------------------------------------------------------------------------------------- derived
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def contrastive_layer(self) -> int:
        """The block whose output the contrastive loss reads (`hidden_states` index): the blocks before the
        masked-prediction ones (8 of 24 for W2v-BERT 2.0)."""
        masked = self.num_masked_prediction_layers
        return self.num_hidden_layers - (2 * self.num_hidden_layers // 3 if masked is None else masked)

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
        extra = {k: v for k, v in values.items() if k not in known}
        if isinstance(extra.get("extra"), dict):  # `dataclasses.asdict(config)` nests the unknown keys here
            nested = extra.pop("extra")
            extra = nested | extra
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The `config.json` dictionary, in the Hugging Face layout (sorted keys, label ids as strings)."""
        out: dict[str, Any] = dict(self.extra)
        pretraining = PRETRAINING_CLASS in (self.architectures or ())
        for f in dataclasses.fields(self):
            if f.name in ("extra", "num_labels", "id2label", "label2id"):
                continue
            value = getattr(self, f.name)
            if f.name in EXTENSION_FLAGS and (value is None or value is False):
                continue  # keep transformers' layout exactly for every model that does not use them
            if f.name in PRETRAINING_FIELDS and not pretraining and value == f.default:
                continue  # likewise: only a pre-training model, or a changed value, writes them
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
        """`from_dict` of a config.json; its errors name the file."""
        values = read_json_object(path)
        try:
            return cls.from_dict(values, **overrides)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

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


FIELD_KINDS = field_kinds(Wav2Vec2BertConfig)
# The pre-training fields (the dataclass's "pre-training" section).
PRETRAINING_FIELDS = tuple(
    f.name for f in dataclasses.fields(Wav2Vec2BertConfig)
    if f.name in ("num_codevector_groups", "num_codevectors_per_group", "codevector_dim", "proj_codevector_dim",
                  "max_gumbel_temperature", "min_gumbel_temperature", "gumbel_temperature_decay",
                  "contrastive_logits_temperature", "num_negatives", "diversity_loss_weight", "pretraining_mask_prob",
                  "num_masked_prediction_layers", "num_target_codebooks", "masked_prediction_loss_weight",
                  "contrastive_loss_weight")
)
