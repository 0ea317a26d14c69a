"""How many parameters the models of a config have, and the refusal of a config whose models are too large.

Config validation (where a model is built or loaded) refuses a model too large to build (`num_hidden_layers=1e9`
used to hang while the memory grew) and must answer at once, for any integer (`num_hidden_layers=10**400`). The
count is that of the models themselves, built on the meta device with a few layers and extrapolated
(model/meta_count.py), so the modules stay the one description of the architecture; the defaults give W2v-BERT
2.0's 580,493,120. A count costs tens of milliseconds (benchmarks/NOTES.md, "The size check of validation") and is
kept by the config's values, so the models built from one config cost one count.

In order: the limit, `ParameterPart` and the fields that size each part (`PART_FIELDS`, which the refusal names),
the counts (`model_parameter_parts`, `head_parameter_parts`, `estimated_parameters`), and `size_problem`, the
refusal `Wav2Vec2BertConfig.validate` adds (model/config_rules.py).
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import typing

if typing.TYPE_CHECKING:
    from w2vbert.model.config import Wav2Vec2BertConfig
    from w2vbert.model.meta_count import TensorTooLarge

# A config whose model would be larger is refused: 1e11 parameters are 400 GB in float32, and W2v-BERT 2.0, the
# largest, has 5.8e8.
MAX_PARAMETERS = 10**11
CACHED_COUNTS = 256  # configs whose counts are kept, the oldest dropped first (one count is a few kB)


class ParameterPart(typing.NamedTuple):
    name: str  # the bare model's attribute ("encoder", "adapter", ...), or a head's class name
    fields: tuple[str, ...]  # the fields that set its size (the error names them when the model is too big)
    parameters: int


# The fields that size each part, for the refusal to name: the bare model's parts by attribute (the checkpoint
# prefixes), then the heads by class. Counting does not read it; a test holds it to every part a model has.
MODEL_PART_FIELDS = {
    "masked_spec_embed": ("hidden_size",),
    "feature_projection": ("feature_projection_input_dim", "hidden_size"),
    "encoder": ("num_hidden_layers", "hidden_size", "intermediate_size", "conv_depthwise_kernel_size"),
    "adapter": ("num_adapter_layers", "output_hidden_size", "adapter_kernel_size", "intermediate_size"),
    "intermediate_ffn": ("hidden_size", "intermediate_size"),
    "inner_layer_norm": ("output_hidden_size",),
}
HEAD_FIELDS = {
    "Wav2Vec2BertForCTC": ("vocab_size", "hidden_size"),  # output_hidden_size, with the adapter
    "Wav2Vec2BertForSequenceClassification": ("hidden_size", "classifier_proj_size", "num_labels"),
    "Wav2Vec2BertForAudioFrameClassification": ("hidden_size", "num_labels"),
    "Wav2Vec2BertForPreTraining": (
        "num_codevector_groups", "num_codevectors_per_group", "codevector_dim", "proj_codevector_dim",
    ),
    "Wav2Vec2BertForXVector": ("tdnn_dim", "tdnn_kernel", "xvector_output_dim", "num_labels"),
}
PART_FIELDS = MODEL_PART_FIELDS | HEAD_FIELDS
# Fields no tensor's shape reads, left out of the key the counts are kept by: the label names (their count stands
# for them) and the class names.
UNSIZED_FIELDS = ("id2label", "label2id", "architectures")


def part_fields(part: str, config: Wav2Vec2BertConfig) -> tuple[str, ...]:
    """The fields that size `part` of this config's models."""
    fields = PART_FIELDS.get(part, ())
    if part == "encoder" and config.position_embeddings_type == "relative_key":  # Shaw's distance embeddings
        fields += ("left_max_position_embeddings", "right_max_position_embeddings")
    if part == "Wav2Vec2BertForCTC" and config.add_adapter:  # the adapter's width feeds the head
        fields = ("vocab_size", "output_hidden_size")
    return fields


def _sized_values(config: Wav2Vec2BertConfig) -> tuple:
    """The config's values that its models' shapes can depend on, hashable (a list set by hand as a tuple)."""
    return (config.num_labels, *(
        tuple(value) if isinstance(value, list) else value
        for value in (getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in UNSIZED_FIELDS)
    ))


_counted: dict[tuple, tuple[list[ParameterPart], list[ParameterPart]]] = {}  # sized values -> parts, oldest first


def _parts(config: Wav2Vec2BertConfig) -> tuple[list[ParameterPart], list[ParameterPart]]:
    """(the bare model's parts, each head the config can build as one part), counted once per config's values."""
    key = _sized_values(config)
    if key not in _counted:
        # The models import the config, which imports this module: they are imported when first counted.
        from w2vbert.model.meta_count import count_parameters

        model, heads = count_parameters(config)
        if len(_counted) >= CACHED_COUNTS:
            del _counted[next(iter(_counted))]
        _counted[key] = (
            [ParameterPart(name, part_fields(name, config), count) for name, count in model.items()],
            [ParameterPart(name, part_fields(name, config), count) for name, count in heads.items()],
        )
    return _counted[key]


def model_parameter_parts(config: Wav2Vec2BertConfig) -> list[ParameterPart]:
    """The parameters of each part of `Wav2Vec2BertModel(config)`, by attribute, in the order it builds them.

    Raises model/meta_count.py's `TensorTooLarge` for sizes no tensor can hold."""
    return list(_parts(config)[0])


def head_parameter_parts(config: Wav2Vec2BertConfig) -> list[ParameterPart]:
    """What each head class adds to the bare model, named by the class: those that take the config (transformers'
    classification heads and pre-training refuse the adapter, CTC needs a vocabulary)."""
    return list(_parts(config)[1])


def estimated_parameters(config: Wav2Vec2BertConfig) -> int:
    """Parameters of the largest model the config can build: the bare model plus its largest head."""
    model, heads = _parts(config)
    return sum(part.parameters for part in model) + max((part.parameters for part in heads), default=0)


def _about(count: int) -> str:
    """'2.4e+16'; past what a float holds (num_hidden_layers of 400 digits), the power of ten."""
    return f"{count:.2g}" if count < 1e300 else f"10^{math.log10(count):.0f}"


def _refusal(amount: str, config: Wav2Vec2BertConfig, fields: tuple[str, ...], part: str) -> str:
    shown = {name: getattr(config, name) for name in fields}  # as config.json writes them: lists, not tuples
    sizes = ", ".join(f"{name}={reprlib.repr(list(v) if isinstance(v, tuple) else v)}" for name, v in shown.items())
    limit = f"{MAX_PARAMETERS:.0e} ({4 * MAX_PARAMETERS / 1e9:,.0f} GB in float32, W2v-BERT 2.0 has 5.8e8)"
    return f"these sizes make a model {amount}, over the limit of {limit}: lower {sizes} (they size the {part})"


def _indescribable(config: Wav2Vec2BertConfig, error: TensorTooLarge) -> str:
    """The refusal for a tensor no shape can describe: it names the fields of the class that failed whose value
    is the tensor's largest size, else the largest of those fields (the size is then a sum or a product)."""
    parts = [error.model] if error.model in HEAD_FIELDS else list(MODEL_PART_FIELDS)
    candidates = dict.fromkeys(field for part in parts for field in part_fields(part, config))

    def sizes(name: str) -> set[int]:
        value = getattr(config, name)
        return set(value) if isinstance(value, tuple) else {value or 0}  # vocab_size may be None

    named = tuple(name for name in candidates if max(error.shape) in sizes(name))
    named = named or (max(candidates, key=lambda name: max(sizes(name))),)
    shape = "(" + ", ".join(reprlib.repr(size) for size in error.shape) + ")"
    amount = f"too large to describe (a tensor of shape {shape}, past 2^63 bytes)"
    return _refusal(amount, config, named, f"{error.model}, the part that could not be built")


def size_problem(config: Wav2Vec2BertConfig) -> str | None:
    """The message refusing a config whose largest model is over MAX_PARAMETERS; None when it is not.

    Reads most fields: it needs a config that passed every other check of `validate`.
    """
    from w2vbert.model.meta_count import TensorTooLarge  # imported with the models (see `_parts`)

    try:
        total = estimated_parameters(config)
    except TensorTooLarge as error:
        return _indescribable(config, error)
    if total <= MAX_PARAMETERS:
        return None
    model, heads = _parts(config)
    biggest = max(model + heads, key=lambda part: part.parameters)
    return _refusal(f"of about {_about(total)} parameters", config, biggest.fields, f"{biggest.name}, the largest part")
