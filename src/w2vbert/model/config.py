"""`Wav2Vec2BertConfig`: every hyper-parameter of the model family, read from and written to `config.json`.

The field names, defaults and JSON layout are those of the Hugging Face config of the same name, so a
`config.json` written by either library loads in the other. Keys this class does not know are kept in
`extra` and written back unchanged.

In order: the value rules (each field's own, one line per field, then the rules between fields), the config
dataclass (whose field annotations give each field's type, model/field_kinds.py the values each type admits),
then `FIELD_KINDS` and `PRETRAINING_FIELDS`. `validate()` checks every field's type and own rules in field
order, then the rules between fields, then the model's size (model/size.py: too large a model is refused before
anything is built), and raises one `ValueError` with one message per bad field.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2vbert.loading.hub import HubOptions, resolve_file
from w2vbert.model.field_kinds import field_kinds
from w2vbert.model.size import size_problem
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

# The rules a value must keep, checked once its type is right and before any arithmetic on it (a head count of 0
# used to escape as ZeroDivisionError from the divisibility rule).


@dataclass(frozen=True)
class Rule:
    """One rule for one field's value: `holds` tests it, `words` say what the value must be."""

    holds: Callable[[Any], bool]
    words: str  # the message reads "<field> <words>, got <value>"
    quote: bool = False  # show the value as repr() (names, so that 'relu ' shows its space)

    def problem(self, value: Any) -> str | None:
        if self.holds(value):
            return None
        return f"{self.words}, got {value!r}" if self.quote else f"{self.words}, got {value}"


def one_of(choices: tuple) -> Rule:
    return Rule(lambda value: value in choices, f"must be one of {choices}", quote=True)


AT_LEAST_1 = Rule(lambda v: v >= 1, "must be >= 1")
AT_LEAST_0 = Rule(lambda v: v >= 0, "must be >= 0")
POSITIVE = Rule(lambda v: v > 0, "must be a positive number")
PROBABILITY = Rule(lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")
UP_TO_1 = Rule(lambda v: 0 < v <= 1, "must be in (0, 1]")
ODD = Rule(lambda v: v % 2 == 1, "must be odd")
TDNN_LAYERS = Rule(lambda v: len(v) >= 1 and min(v) >= 1, "must list one or more values >= 1 (one per TDNN layer)")

# Each field's rules, checked in order (the first broken one is reported); the type comes from the annotation.
FIELD_RULES: dict[str, tuple[Rule, ...]] = {
    "hidden_size": (AT_LEAST_1,),
    "num_hidden_layers": (AT_LEAST_1,),
    "num_attention_heads": (AT_LEAST_1,),
    "intermediate_size": (AT_LEAST_1,),
    "feature_projection_input_dim": (AT_LEAST_1,),
    "hidden_act": (one_of(ACTIVATIONS),),
    "layer_norm_eps": (POSITIVE,),
    "initializer_range": (AT_LEAST_0,),
    "hidden_dropout": (PROBABILITY,),
    "activation_dropout": (PROBABILITY,),
    "attention_dropout": (PROBABILITY,),
    "feat_proj_dropout": (PROBABILITY,),
    "final_dropout": (PROBABILITY,),
    "layerdrop": (PROBABILITY,),
    "conformer_conv_dropout": (PROBABILITY,),
    "position_embeddings_type": (one_of(POSITION_EMBEDDING_TYPES),),
    "rotary_embedding_base": (AT_LEAST_1,),
    "max_source_positions": (AT_LEAST_1,),
    "left_max_position_embeddings": (AT_LEAST_0,),
    "right_max_position_embeddings": (AT_LEAST_0,),
    "conv_depthwise_kernel_size": (AT_LEAST_1, ODD),
    "mask_time_prob": (PROBABILITY,),
    "mask_time_length": (AT_LEAST_1,),
    "mask_time_min_masks": (AT_LEAST_0,),
    "mask_feature_prob": (PROBABILITY,),
    "mask_feature_length": (AT_LEAST_1,),
    "mask_feature_min_masks": (AT_LEAST_0,),
    "vocab_size": (Rule(lambda v: v >= 1, "must be positive"),),
    "ctc_loss_reduction": (one_of(CTC_REDUCTIONS),),
    "classifier_proj_size": (AT_LEAST_1,),
    "tdnn_dim": (TDNN_LAYERS,),
    "tdnn_kernel": (TDNN_LAYERS,),
    "tdnn_dilation": (TDNN_LAYERS,),
    "xvector_output_dim": (AT_LEAST_1,),
    "num_labels": (Rule(lambda v: 0 <= v <= MAX_LABELS, f"must be in [0, {MAX_LABELS:,}]"),),
    "adapter_kernel_size": (AT_LEAST_1,),
    "adapter_stride": (AT_LEAST_1,),
    "num_adapter_layers": (AT_LEAST_1,),
    "adapter_act": (one_of(ACTIVATIONS),),
    "output_hidden_size": (AT_LEAST_1,),
    "num_codevector_groups": (AT_LEAST_1,),
    "num_codevectors_per_group": (AT_LEAST_1,),
    "codevector_dim": (AT_LEAST_1,),
    "proj_codevector_dim": (AT_LEAST_1,),
    "max_gumbel_temperature": (POSITIVE,),
    "min_gumbel_temperature": (POSITIVE,),
    "gumbel_temperature_decay": (UP_TO_1,),
    "contrastive_logits_temperature": (POSITIVE,),
    "num_negatives": (AT_LEAST_1,),
    "diversity_loss_weight": (AT_LEAST_0,),
    "pretraining_mask_prob": (UP_TO_1,),
    "num_masked_prediction_layers": (AT_LEAST_0,),
    "num_target_codebooks": (AT_LEAST_1,),
    "masked_prediction_loss_weight": (AT_LEAST_0,),
    "contrastive_loss_weight": (AT_LEAST_0,),
}


@dataclass(frozen=True)
class Between:
    """A rule between fields: checked when none of `fields` broke its own rules (each bad field gets one message)."""

    fields: tuple[str, ...]
    holds: Callable[[Any], bool]  # config -> whether the rule holds
    message: Callable[[Any], str]  # config -> what is wrong


RULES_BETWEEN_FIELDS = (
    Between(
        ("hidden_size", "num_attention_heads"), lambda c: c.hidden_size % c.num_attention_heads == 0,
        lambda c: f"hidden_size={c.hidden_size} is not divisible by num_attention_heads={c.num_attention_heads}",
    ),
    Between(
        ("output_hidden_size", "hidden_size", "num_attention_heads"),
        # None means hidden_size, checked above
        lambda c: c.output_hidden_size in (None, c.hidden_size) or c.output_hidden_size % c.num_attention_heads == 0,
        lambda c: f"output_hidden_size={c.output_hidden_size} is not divisible by num_attention_heads="
        f"{c.num_attention_heads} (the adapter's attention uses the same heads)",
    ),
    Between(
        ("position_embeddings_type", "hidden_size", "num_attention_heads"),
        lambda c: c.position_embeddings_type != "rotary" or (c.hidden_size // c.num_attention_heads) % 2 == 0,
        lambda c: "rotary position embeddings need an even head dimension",
    ),
    Between(
        ("use_intermediate_ffn_before_adapter", "add_adapter"),
        lambda c: c.add_adapter or not c.use_intermediate_ffn_before_adapter,
        lambda c: "use_intermediate_ffn_before_adapter=True needs add_adapter=True",
    ),
    Between(
        ("tdnn_dim", "tdnn_kernel", "tdnn_dilation"),
        lambda c: len(c.tdnn_dim) == len(c.tdnn_kernel) == len(c.tdnn_dilation),
        lambda c: "tdnn_dim, tdnn_kernel and tdnn_dilation must have one entry per TDNN layer, got lengths "
        f"{len(c.tdnn_dim)}, {len(c.tdnn_kernel)}, {len(c.tdnn_dilation)}",
    ),
    Between(
        ("num_labels", "id2label"),
        lambda c: None in (c.num_labels, c.id2label) or c.num_labels == len(c.id2label),
        lambda c: f"num_labels={c.num_labels} contradicts id2label with {len(c.id2label)} entries; "
        "pass one of them, or both consistently",
    ),
    Between(
        ("codevector_dim", "num_codevector_groups"), lambda c: c.codevector_dim % c.num_codevector_groups == 0,
        lambda c: f"codevector_dim={c.codevector_dim} is not divisible by "
        f"num_codevector_groups={c.num_codevector_groups} (each codebook holds an equal slice)",
    ),
    Between(
        ("num_target_codebooks", "num_codevector_groups"),
        lambda c: c.num_target_codebooks <= c.num_codevector_groups,
        lambda c: f"num_target_codebooks={c.num_target_codebooks} exceeds num_codevector_groups="
        f"{c.num_codevector_groups}",
    ),
    Between(
        ("num_masked_prediction_layers", "num_hidden_layers"),
        lambda c: c.num_masked_prediction_layers is None or c.num_masked_prediction_layers < c.num_hidden_layers,
        lambda c: f"num_masked_prediction_layers={c.num_masked_prediction_layers} leaves no block before the "
        f"contrastive loss's tap (num_hidden_layers={c.num_hidden_layers})",
    ),
    Between(
        ("min_gumbel_temperature", "max_gumbel_temperature"),
        lambda c: c.min_gumbel_temperature <= c.max_gumbel_temperature,
        lambda c: f"min_gumbel_temperature={c.min_gumbel_temperature} is above "
        f"max_gumbel_temperature={c.max_gumbel_temperature}",
    ),
)


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

        Each field's type (from its annotation) and rules come first, in field order, then the rules between
        fields, skipping a rule whose fields are already reported (each bad field gets one message), then the
        model's size, which needs a config that passed every check before it.
        """
        problems, bad = self._field_problems()
        problems += [rule.message(self) for rule in RULES_BETWEEN_FIELDS
                     if bad.isdisjoint(rule.fields) and not rule.holds(self)]
        too_large = None if problems else size_problem(self)  # the count needs a config that passed the rest
        if too_large is not None:
            problems.append(too_large)
        if problems:
            raise ValueError("invalid Wav2Vec2BertConfig: " + "; ".join(problems))

    def _field_problems(self) -> tuple[list[str], set[str]]:
        """One message per field whose type or own rules it breaks, in field order; and the names of those fields."""
        problems, bad = [], set()
        for name, kind in FIELD_KINDS.items():
            value = getattr(self, name)
            problem = None if value is None and kind.optional else kind.problem(value)
            for rule in FIELD_RULES.get(name, ()) if problem is None and value is not None else ():
                problem = problem or rule.problem(value)
            if problem is not None:
                problems.append(f"{name} {problem}")
                bad.add(name)
        return problems, bad

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
