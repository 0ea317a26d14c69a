"""The rules a `Wav2Vec2BertConfig` must keep to build a model, and `build_problems`, which words what breaks them.

A config is made from whatever transformers' config would accept (model/config.py); these rules are checked
where a model is built or loaded (`Wav2Vec2BertConfig.validate`). In order: the choices, `Rule` and the
rules every field's value keeps (`FIELD_RULES`), the rules of transformers' common attributes
(`COMMON_RULES`), `Between` and the rules between fields (`RULES_BETWEEN_FIELDS`), and `build_problems`: each
field's type (model/field_kinds.py) and own rules in field order, then the common attributes', then the rules
between fields, then the model's size (model/size.py), which needs a config that passed every check before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from w2vbert.model.size import size_problem

if TYPE_CHECKING:
    from w2vbert.model.config import Wav2Vec2BertConfig
    from w2vbert.model.field_kinds import FieldKind

POSITION_EMBEDDING_TYPES = (None, "relative_key", "relative", "rotary")
ACTIVATIONS = ("relu", "gelu", "gelu_new", "swish", "silu", "selu", "tanh", "sigmoid")
CTC_REDUCTIONS = ("sum", "mean", "none")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")  # transformers'
# A label count with no id2label makes the names LABEL_0 ... up front: a million take 0.4 s and ~100 MB, and no
# audio classification task comes near (MMS language ID has 4,017 classes, VoxCeleb2 speaker ID 5,994).
MAX_LABELS = 1_000_000


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


# The rules a value must keep, checked once its type is right and before any arithmetic on it (a head count of 0
# used to escape as ZeroDivisionError from the divisibility rule).
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
    "adapter_kernel_size": (AT_LEAST_1,),
    "adapter_stride": (AT_LEAST_1,),
    "num_adapter_layers": (AT_LEAST_1,),
    "adapter_act": (one_of(ACTIVATIONS),),
    "output_hidden_size": (AT_LEAST_1,),
    "streaming_chunk_size": (AT_LEAST_1,),
    "streaming_left_chunks": (AT_LEAST_0,),
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

# transformers' common attributes that a model reads (model/config_dict.py holds them all); each rule as above.
COMMON_RULES: dict[str, tuple[Rule, ...]] = {
    "problem_type": (one_of(PROBLEM_TYPES),),
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
    Between(  # transformers refuses this one when the config is made
        ("problem_type", "id2label"),
        lambda c: c.problem_type != "single_label_classification" or c.num_labels != 1,
        lambda c: 'problem_type="single_label_classification" needs num_labels > 1: for one output use '
        'problem_type="regression", for two classes num_labels=2',
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


def adapter_chunk_sizes(config: Wav2Vec2BertConfig, count: int = 4) -> list[int]:
    """The first `count` chunk sizes (frames) the adapter's strides divide: multiples of stride ** layers."""
    step = config.adapter_stride**config.num_adapter_layers if config.add_adapter else 1
    return [step * n for n in range(1, count + 1)]


def _chunk_fits_adapter(c: Wav2Vec2BertConfig) -> bool:
    if c.streaming_chunk_size is None or not c.add_adapter:
        return True
    return c.streaming_chunk_size % c.adapter_stride**c.num_adapter_layers == 0


RULES_BETWEEN_FIELDS += (
    Between(
        ("streaming_chunk_size", "position_embeddings_type"),
        lambda c: c.streaming_chunk_size is None or c.position_embeddings_type in (None, "relative_key"),
        lambda c: f"streaming_chunk_size needs position_embeddings_type 'relative_key' or None (distances that do "
        f"not depend on the clip's length), got {c.position_embeddings_type!r}",
    ),
    Between(
        ("streaming_left_chunks", "streaming_chunk_size"),
        lambda c: c.streaming_left_chunks is None or c.streaming_chunk_size is not None,
        lambda c: "streaming_left_chunks needs streaming_chunk_size (the chunks it counts)",
    ),
    Between(
        ("streaming_chunk_size", "add_adapter", "adapter_stride", "num_adapter_layers"),
        _chunk_fits_adapter,
        lambda c: f"streaming_chunk_size={c.streaming_chunk_size} frames is not divisible by the adapter's stride "
        f"{c.adapter_stride}**{c.num_adapter_layers}; sizes that work: "
        + ", ".join(f"{n} ({n * 20} ms)" for n in adapter_chunk_sizes(c)) + ", ...",
    ),
    Between(
        # Output t of a strided convolution reads inputs s*t - p .. s*t - p + k - 1 (p = s // 2): with k <= s + p
        # the last output of a chunk reads nothing past the chunk's end (kernel 3, stride 2: inputs 2t-1 .. 2t+1).
        ("streaming_chunk_size", "add_adapter", "adapter_kernel_size", "adapter_stride"),
        lambda c: c.streaming_chunk_size is None or not c.add_adapter
        or c.adapter_kernel_size <= c.adapter_stride + c.adapter_stride // 2,
        lambda c: f"streaming_chunk_size needs adapter_kernel_size <= adapter_stride + adapter_stride // 2 "
        f"(= {c.adapter_stride + c.adapter_stride // 2}), got {c.adapter_kernel_size}: a wider kernel reads past "
        "a chunk's end",
    ),
)


def type_problems(config: Wav2Vec2BertConfig, kinds: dict[str, FieldKind]) -> dict[str, str]:
    """Field name -> what is wrong with its value's type, for the fields in `kinds` (in their order)."""
    problems = {}
    for name, kind in kinds.items():
        value = getattr(config, name)
        problem = None if value is None and kind.optional else kind.problem(value)
        if problem is not None:
            problems[name] = problem
    return problems


def _value_problems(config: Wav2Vec2BertConfig, kinds: dict[str, FieldKind]) -> dict[str, str]:
    """One message per field (type first, then its rules in order) and per common attribute that breaks a rule."""
    problems = type_problems(config, kinds)
    rules = [(name, FIELD_RULES.get(name, ())) for name in kinds] + list(COMMON_RULES.items())
    for name, field_rules in rules:
        value = getattr(config, name)
        if name in problems or (value is None and name in kinds):
            continue
        problem = next((p for rule in field_rules if (p := rule.problem(value)) is not None), None)
        if problem is not None:
            problems[name] = problem
    return problems


def build_problems(config: Wav2Vec2BertConfig, kinds: dict[str, FieldKind]) -> list[str]:
    """Every reason `config` cannot build a model, worded "<field> <what it must be>, got <value>", in field order.

    A rule between fields is skipped when one of its fields is already reported (each bad field gets one
    message); the model's size is counted only for a config that passed every other check.
    """
    bad = _value_problems(config, kinds)
    order = {name: index for index, name in enumerate([*kinds, *COMMON_RULES])}
    problems = [f"{name} {bad[name]}" for name in sorted(bad, key=order.__getitem__)]
    problems += [rule.message(config) for rule in RULES_BETWEEN_FIELDS
                 if bad.keys().isdisjoint(rule.fields) and not rule.holds(config)]
    too_large = None if problems else size_problem(config)
    return problems if too_large is None else [too_large]
