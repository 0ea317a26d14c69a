"""`Wav2Vec2BertConfig`: every hyper-parameter of the model family, read from and written to `config.json`.

The field names, defaults and JSON layout are those of the Hugging Face config of the same name, so a
`config.json` written by either library loads in the other. Keys this class does not know are kept in
`extra` and written back unchanged.

In order: the value rules (choices and ranges), the config dataclass (whose field annotations give each field's
type), the parameter count of the model a config describes (too large a model is refused before anything is
built), then the kinds of value the annotations admit. `validate()` checks every field's type, then its range,
then the rules between fields, then the model's size, and raises one `ValueError` with one message per bad field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
import reprlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2vbert.loading.hub import HubOptions, resolve_file
from w2vbert.utils.files import atomic_write_text, read_json_object

CONFIG_NAME = "config.json"
MODEL_TYPE = "wav2vec2-bert"
POSITION_EMBEDDING_TYPES = (None, "relative_key", "relative", "rotary")
ACTIVATIONS = ("relu", "gelu", "gelu_new", "swish", "silu", "selu", "tanh", "sigmoid")
CTC_REDUCTIONS = ("sum", "mean", "none")
# fields transformers' config does not have, written only when on (or set)
EXTENSION_FLAGS = ("add_encoder_layer_norm", "add_inner_layer_norm", "verification_threshold")
PRETRAINING_CLASS = "Wav2Vec2BertForPreTraining"  # whose config.json carries the pre-training fields
DEFAULT_NUM_LABELS = 2  # transformers' PretrainedConfig default: LABEL_0, LABEL_1
# A label count with no id2label makes the names LABEL_0 ... up front: a million take 0.4 s and ~100 MB, and no
# audio classification task comes near (MMS language ID has 4,017 classes, VoxCeleb2 speaker ID 5,994).
MAX_LABELS = 1_000_000

# The range of each number, checked once its type is right and before any arithmetic on it (a head count of 0
# used to escape as ZeroDivisionError from the divisibility rule). Each entry: (test, what the message says).
AT_LEAST_1 = (lambda v: v >= 1, "must be >= 1")
AT_LEAST_0 = (lambda v: v >= 0, "must be >= 0")
PROBABILITY = (lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")
TDNN_LAYERS = (lambda v: len(v) >= 1 and min(v) >= 1, "must list one or more values >= 1 (one per TDNN layer)")
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **dict.fromkeys(
        ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
         "feature_projection_input_dim", "rotary_embedding_base", "max_source_positions",
         "conv_depthwise_kernel_size", "mask_time_length", "mask_feature_length", "classifier_proj_size",
         "xvector_output_dim", "adapter_kernel_size", "adapter_stride", "num_adapter_layers", "output_hidden_size"),
        AT_LEAST_1,
    ),
    **dict.fromkeys(
        ("initializer_range", "left_max_position_embeddings", "right_max_position_embeddings",
         "mask_time_min_masks", "mask_feature_min_masks"),
        AT_LEAST_0,
    ),
    **dict.fromkeys(
        ("hidden_dropout", "activation_dropout", "attention_dropout", "feat_proj_dropout", "final_dropout",
         "layerdrop", "conformer_conv_dropout", "mask_time_prob", "mask_feature_prob"),
        PROBABILITY,
    ),
    **dict.fromkeys(("tdnn_dim", "tdnn_kernel", "tdnn_dilation"), TDNN_LAYERS),
    **dict.fromkeys(
        ("num_codevector_groups", "num_codevectors_per_group", "codevector_dim", "proj_codevector_dim",
         "num_negatives", "num_target_codebooks"),
        AT_LEAST_1,
    ),
    **dict.fromkeys(
        ("max_gumbel_temperature", "min_gumbel_temperature", "contrastive_logits_temperature"),
        (lambda v: v > 0, "must be a positive number"),
    ),
    **dict.fromkeys(
        ("diversity_loss_weight", "masked_prediction_loss_weight", "contrastive_loss_weight",
         "num_masked_prediction_layers"),
        AT_LEAST_0,
    ),
    "gumbel_temperature_decay": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "pretraining_mask_prob": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "layer_norm_eps": (lambda v: v > 0, "must be a positive number"),
    "vocab_size": (lambda v: v >= 1, "must be positive"),
    "num_labels": (lambda v: 0 <= v <= MAX_LABELS, f"must be in [0, {MAX_LABELS:,}]"),
}


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
        """Raise `ValueError` for values that cannot build a model, naming each bad field and its rule.

        Types come first (from the field annotations), then ranges, then the rules between fields; a rule is
        skipped when one of its fields is already reported, so each bad field gets one message.
        """
        problems = []
        bad = set()
        for name, kind in FIELD_KINDS.items():
            value = getattr(self, name)
            problem = None if value is None and kind.optional else kind.problem(value)
            if problem is None and value is not None and name in RANGES:
                in_range, words = RANGES[name]
                problem = None if in_range(value) else f"{words}, got {value}"
            if problem is not None:
                problems.append(f"{name} {problem}")
                bad.add(name)

        def ok(*names: str) -> bool:
            return bad.isdisjoint(names)

        if ok("hidden_size", "num_attention_heads") and self.hidden_size % self.num_attention_heads:
            problems.append(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        if (
            ok("output_hidden_size", "hidden_size", "num_attention_heads")
            and self.output_hidden_size not in (None, self.hidden_size)  # None means hidden_size, checked above
            and self.output_hidden_size % self.num_attention_heads
        ):
            problems.append(
                f"output_hidden_size={self.output_hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads} (the adapter's attention uses the same heads)"
            )
        if ok("conv_depthwise_kernel_size") and self.conv_depthwise_kernel_size % 2 == 0:
            problems.append(f"conv_depthwise_kernel_size must be odd, got {self.conv_depthwise_kernel_size}")
        if ok("position_embeddings_type") and self.position_embeddings_type not in POSITION_EMBEDDING_TYPES:
            problems.append(
                f"position_embeddings_type must be one of {POSITION_EMBEDDING_TYPES}, "
                f"got {self.position_embeddings_type!r}"
            )
        elif (
            ok("position_embeddings_type", "hidden_size", "num_attention_heads")
            and self.position_embeddings_type == "rotary"
            and (self.hidden_size // self.num_attention_heads) % 2
        ):
            problems.append("rotary position embeddings need an even head dimension")
        for name in ("hidden_act", "adapter_act"):
            if ok(name) and getattr(self, name) not in ACTIVATIONS:
                problems.append(f"{name} must be one of {ACTIVATIONS}, got {getattr(self, name)!r}")
        if ok("ctc_loss_reduction") and self.ctc_loss_reduction not in CTC_REDUCTIONS:
            problems.append(f"ctc_loss_reduction must be one of {CTC_REDUCTIONS}, got {self.ctc_loss_reduction!r}")
        if (
            ok("use_intermediate_ffn_before_adapter", "add_adapter")
            and self.use_intermediate_ffn_before_adapter
            and not self.add_adapter
        ):
            problems.append("use_intermediate_ffn_before_adapter=True needs add_adapter=True")
        tdnn = (self.tdnn_dim, self.tdnn_kernel, self.tdnn_dilation)
        if ok("tdnn_dim", "tdnn_kernel", "tdnn_dilation") and len({len(values) for values in tdnn}) > 1:
            problems.append(
                f"tdnn_dim, tdnn_kernel and tdnn_dilation must have one entry per TDNN layer, got lengths "
                f"{len(self.tdnn_dim)}, {len(self.tdnn_kernel)}, {len(self.tdnn_dilation)}"
            )
        if (
            ok("num_labels", "id2label")
            and None not in (self.num_labels, self.id2label)
            and self.num_labels != len(self.id2label)
        ):
            problems.append(
                f"num_labels={self.num_labels} contradicts id2label with {len(self.id2label)} entries; "
                "pass one of them, or both consistently"
            )
        if (
            ok("codevector_dim", "num_codevector_groups")
            and self.codevector_dim % self.num_codevector_groups
        ):
            problems.append(
                f"codevector_dim={self.codevector_dim} is not divisible by "
                f"num_codevector_groups={self.num_codevector_groups} (each codebook holds an equal slice)"
            )
        if (
            ok("num_target_codebooks", "num_codevector_groups")
            and self.num_target_codebooks > self.num_codevector_groups
        ):
            problems.append(
                f"num_target_codebooks={self.num_target_codebooks} exceeds num_codevector_groups="
                f"{self.num_codevector_groups}"
            )
        if (
            ok("num_masked_prediction_layers", "num_hidden_layers")
            and self.num_masked_prediction_layers is not None
            and self.num_masked_prediction_layers >= self.num_hidden_layers
        ):
            problems.append(
                f"num_masked_prediction_layers={self.num_masked_prediction_layers} leaves no block before the "
                f"contrastive loss's tap (num_hidden_layers={self.num_hidden_layers})"
            )
        if (
            ok("min_gumbel_temperature", "max_gumbel_temperature")
            and self.min_gumbel_temperature > self.max_gumbel_temperature
        ):
            problems.append(
                f"min_gumbel_temperature={self.min_gumbel_temperature} is above "
                f"max_gumbel_temperature={self.max_gumbel_temperature}"
            )
        if not problems:  # the count reads most fields: it needs a config that passed every check above
            total = estimated_parameters(self)
            if total > MAX_PARAMETERS:
                biggest = max(model_parameter_parts(self) + head_parameter_parts(self), key=lambda p: p.parameters)
                sizes = ", ".join(f"{name}={reprlib.repr(getattr(self, name))}" for name in biggest.fields)
                limit = f"{MAX_PARAMETERS:.0e} ({4 * MAX_PARAMETERS / 1e9:,.0f} GB in float32, W2v-BERT 2.0 has 5.8e8)"
                problems.append(
                    f"these sizes make a model of about {_about(total)} parameters, over the limit of {limit}: "
                    f"lower {sizes} (they size the {biggest.name}, the largest part)"
                )
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


# ---------------------------------------------------------------------------------------- parameter count
# A config whose model would be larger is refused before anything is built (num_hidden_layers=1e9 used to hang
# while the memory grew): 1e11 parameters are 400 GB in float32, and W2v-BERT 2.0, the largest, has 5.8e8.
MAX_PARAMETERS = 10**11


class ParameterPart(typing.NamedTuple):
    name: str  # "encoder", "adapter", ..., or a head's class name
    fields: tuple[str, ...]  # the fields that set its size (the error names them when the model is too big)
    parameters: int


def _linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _layer_norm(width: int) -> int:
    return 2 * width  # weight and bias


def _feed_forward(width: int, inner: int) -> int:
    return _linear(width, inner) + _linear(inner, width)


def _attention(width: int) -> int:
    return 4 * _linear(width, width)  # q, k, v, out


def model_parameter_parts(config: Wav2Vec2BertConfig) -> list[ParameterPart]:
    """The parameters of each part of `Wav2Vec2BertModel(config)`, counted from the sizes (nothing is built).

    Mirrors the modules of model/encoder.py; tests compare it with built models of many configs, and the defaults
    give W2v-BERT 2.0's 580,493,120. Reads the values as given (before `__post_init__` makes them canonical).
    """
    hidden, inner, heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    width = config.output_hidden_size or hidden  # the adapter's (None means hidden_size)
    head_dim = hidden // heads
    position_fields: tuple[str, ...] = ()
    position = 0
    if config.position_embeddings_type == "relative":  # Transformer-XL: linear_pos, pos_bias_u, pos_bias_v
        position = _linear(hidden, hidden, bias=False) + 2 * heads * head_dim
    elif config.position_embeddings_type == "relative_key":  # Shaw: one embedding per clamped distance
        position = (config.left_max_position_embeddings + config.right_max_position_embeddings + 1) * head_dim
        position_fields = ("left_max_position_embeddings", "right_max_position_embeddings")
    convolution = (
        _layer_norm(hidden)
        + _linear(hidden, 2 * hidden, bias=False)  # pointwise_conv1 (kernel 1) before the GLU
        + hidden * config.conv_depthwise_kernel_size  # depthwise: one kernel per channel, no bias
        + _layer_norm(hidden)
        + _linear(hidden, hidden, bias=False)  # pointwise_conv2
    )
    block = (  # ffn1, self-attention, convolution, ffn2, final LayerNorm
        2 * (_layer_norm(hidden) + _feed_forward(hidden, inner))
        + _layer_norm(hidden) + _attention(hidden) + position
        + convolution
        + _layer_norm(hidden)
    )
    encoder = config.num_hidden_layers * block + (_layer_norm(hidden) if config.add_encoder_layer_norm else 0)
    projection_input = config.feature_projection_input_dim
    parts = [
        ParameterPart(
            "feature projection", ("feature_projection_input_dim", "hidden_size"),
            _layer_norm(projection_input) + _linear(projection_input, hidden),
        ),
        ParameterPart(
            "encoder", ("num_hidden_layers", "hidden_size", "intermediate_size", "conv_depthwise_kernel_size",
                        *position_fields), encoder,
        ),
    ]
    if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0:
        parts.append(ParameterPart("SpecAugment mask embedding", ("hidden_size",), hidden))
    if config.use_intermediate_ffn_before_adapter:
        parts.append(ParameterPart("intermediate feed-forward", ("hidden_size", "intermediate_size"),
                                   _feed_forward(hidden, inner)))
    if config.add_adapter:
        strided_conv = _linear(width * config.adapter_kernel_size, 2 * width)  # residual_conv, self_attn_conv
        layer = 3 * _layer_norm(width) + 2 * strided_conv + _attention(width) + _feed_forward(width, inner)
        projection = _linear(hidden, width) + _layer_norm(width) if width != hidden else 0
        parts.append(ParameterPart(
            "adapter", ("num_adapter_layers", "output_hidden_size", "adapter_kernel_size", "intermediate_size"),
            projection + config.num_adapter_layers * layer,
        ))
    if config.add_inner_layer_norm:
        parts.append(ParameterPart("inner layer norm", ("output_hidden_size",), _layer_norm(width)))
    return parts


def head_parameter_parts(config: Wav2Vec2BertConfig) -> list[ParameterPart]:
    """What each head class adds to the bare model, named by the class and counted as `model_parameter_parts`."""
    hidden, labels = config.hidden_size, config._label_count()
    output = config.output_hidden_size or hidden
    layer_weights = config.num_hidden_layers + 1 if config.use_weighted_layer_sum else 0
    ctc_width = ("output_hidden_size", output) if config.add_adapter else ("hidden_size", hidden)
    projection, tdnn, kernels = config.classifier_proj_size, config.tdnn_dim, config.tdnn_kernel
    xvector = config.xvector_output_dim
    codes = config.num_codevector_groups * config.num_codevectors_per_group
    xvector_input = output if config.add_adapter and not config.use_weighted_layer_sum else hidden
    tdnn_layers = sum(
        _linear(n_in * kernel, n_out) for n_in, kernel, n_out in zip((tdnn[0], *tdnn[:-1]), kernels, tdnn, strict=True)
    )
    return [
        ParameterPart(
            "Wav2Vec2BertForCTC", ("vocab_size", ctc_width[0]),
            _linear(ctc_width[1], config.vocab_size) if config.vocab_size is not None else 0,
        ),
        ParameterPart(
            "Wav2Vec2BertForSequenceClassification", ("hidden_size", "classifier_proj_size", "num_labels"),
            layer_weights + _linear(hidden, projection) + _linear(projection, labels),
        ),
        ParameterPart(
            "Wav2Vec2BertForAudioFrameClassification", ("hidden_size", "num_labels"),
            layer_weights + _linear(hidden, labels),
        ),
        ParameterPart(
            "Wav2Vec2BertForPreTraining",
            ("num_codevector_groups", "num_codevectors_per_group", "codevector_dim", "proj_codevector_dim"),
            _linear(config.feature_projection_input_dim, codes)  # quantizer.weight_proj
            + config.codevector_dim * config.num_codevectors_per_group  # quantizer.codevectors
            + _linear(hidden, config.proj_codevector_dim) + _linear(config.codevector_dim, config.proj_codevector_dim)
            + _linear(hidden, config.num_codevectors_per_group * config.num_target_codebooks)  # masked prediction
            + (0 if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0 else hidden),  # its mask embedding
        ),
        ParameterPart(
            "Wav2Vec2BertForXVector", ("tdnn_dim", "tdnn_kernel", "xvector_output_dim", "num_labels"),
            layer_weights + _linear(xvector_input, tdnn[0]) + tdnn_layers
            + _linear(2 * tdnn[-1], xvector) + _linear(xvector, xvector)
            + xvector * labels,  # the AM-softmax weight
        ),
    ]


def _about(count: int) -> str:
    """'2.4e+16'; past what a float holds (num_hidden_layers of 400 digits), the power of ten."""
    return f"{count:.2g}" if count < 1e300 else f"10^{math.log10(count):.0f}"


def estimated_parameters(config: Wav2Vec2BertConfig) -> int:
    """Parameters of the largest model the config can build: the bare model plus its largest head."""
    model = sum(part.parameters for part in model_parameter_parts(config))
    return model + max(part.parameters for part in head_parameter_parts(config))


# ------------------------------------------------------------------------------------ kinds of field value
def _shown(value: Any) -> str:
    """A value as an error message quotes it: short (long lists and strings are cut) and with its type."""
    return "None" if value is None else f"{reprlib.repr(value)} ({type(value).__name__})"


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # True is an int in Python


def _is_class_id(key: Any) -> bool:
    return _is_integer(key) or (isinstance(key, str) and re.fullmatch(r"-?[0-9]+", key) is not None)


def _integer(value: Any) -> str | None:
    return None if _is_integer(value) else f"must be an integer, got {_shown(value)}"


def _number(value: Any) -> str | None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return f"must be a number, got {_shown(value)}"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # a JSON integer of 400 digits: no float holds it
        finite = False
    return None if finite else f"must be a finite number, got {reprlib.repr(value)}"


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {_shown(value)}"


def _boolean(value: Any) -> str | None:
    # Only JSON true/false: the strings "false" and "no" are truthy, so taking them as given would turn a
    # switch on that the file meant to turn off.
    return None if isinstance(value, bool) else f"must be true or false (a JSON boolean), got {_shown(value)}"


def _integers(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) and all(_is_integer(v) for v in value):
        return None
    return f"must be a list of integers, got {_shown(value)}"


def _class_names(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return None
    if isinstance(value, str):  # a bare name would be read as a list of its characters
        return f"must be a list of class names, such as {json.dumps([value])}, got {_shown(value)}"
    return f"must be a list of class names (strings), got {_shown(value)}"


def _id2label(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f'must map class ids to label names, such as {{"0": "yes", "1": "no"}}, got {_shown(value)}'
    for key, label in value.items():
        if not _is_class_id(key):
            return f"keys must be integer class ids, got key {key!r}"
        if not isinstance(label, str):
            return f"entry {key!r} must be a label name (a string), got {_shown(label)}"
    if len({int(key) for key in value}) < len(value):
        return f"names one class id twice (keys {sorted(value, key=int)})"
    return None


def _label2id(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f'must map label names to class ids, such as {{"yes": 0, "no": 1}}, got {_shown(value)}'
    for label, key in value.items():
        if not isinstance(label, str):
            return f"keys must be label names (strings), got key {label!r}"
        if not _is_integer(key):
            return f"entry {label!r} must be an integer class id, got {_shown(key)}"
    return None


def _mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be a dict of config.json keys, got {_shown(value)}"


@dataclass(frozen=True)
class FieldKind:
    """What one field annotation admits: `problem` words a wrong value, `canonical` stores a right one."""

    problem: Callable[[Any], str | None]
    canonical: Callable[[Any], Any]
    optional: bool = False  # annotated `... | None`: null is a value (vocab_size, id2label, ...)


# The annotations the fields use, and the kind of value each admits.
KINDS: dict[Any, FieldKind] = {
    int: FieldKind(_integer, int),
    float: FieldKind(_number, float),
    str: FieldKind(_string, str),
    bool: FieldKind(_boolean, bool),
    tuple[int, ...]: FieldKind(_integers, lambda values: tuple(int(v) for v in values)),
    list[str]: FieldKind(_class_names, list),
    dict[int, str]: FieldKind(_id2label, lambda labels: {int(key): name for key, name in labels.items()}),
    dict[str, int]: FieldKind(_label2id, lambda ids: {name: int(key) for name, key in ids.items()}),
    dict[str, Any]: FieldKind(_mapping, dict),
}


def _field_kinds() -> dict[str, FieldKind]:
    """Each field's kind, read from its annotation (`int | None` is the kind of `int`, null allowed)."""
    hints = typing.get_type_hints(Wav2Vec2BertConfig)
    kinds = {}
    for f in dataclasses.fields(Wav2Vec2BertConfig):
        hint, optional = hints[f.name], False
        if isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint):
            (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
            optional = True
        if hint not in KINDS:
            raise TypeError(f"Wav2Vec2BertConfig.{f.name}: annotation {hint} has no entry in config.KINDS; add one")
        kinds[f.name] = dataclasses.replace(KINDS[hint], optional=optional)
    return kinds


FIELD_KINDS = _field_kinds()
# The pre-training fields (the dataclass's "pre-training" section).
PRETRAINING_FIELDS = tuple(
    f.name for f in dataclasses.fields(Wav2Vec2BertConfig)
    if f.name in ("num_codevector_groups", "num_codevectors_per_group", "codevector_dim", "proj_codevector_dim",
                  "max_gumbel_temperature", "min_gumbel_temperature", "gumbel_temperature_decay",
                  "contrastive_logits_temperature", "num_negatives", "diversity_loss_weight", "pretraining_mask_prob",
                  "num_masked_prediction_layers", "num_target_codebooks", "masked_prediction_loss_weight",
                  "contrastive_loss_weight")
)
