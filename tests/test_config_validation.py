"""`Wav2Vec2BertConfig` refuses wrong types and ranges with one `ValueError` naming every bad field.

These are the values an outside test fed through `config.json` that used to escape as tracebacks or be read
wrongly (the string "false" as true, a bare architecture name as a list of its characters). A wrong type is
refused when the config is made; every other rule where a model is built or loaded (`validate`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import types
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import tiny_config_kwargs
from w2vbert import Wav2Vec2BertConfig
from w2vbert.model.config import ACTIVATIONS, CTC_REDUCTIONS, EXTENSION_FLAGS, PRETRAINING_FIELDS
from w2vbert.model.size import MAX_PARAMETERS, estimated_parameters, head_parameter_parts, model_parameter_parts


def problems_of(**values) -> list[str]:
    """The messages one invalid config gives, one per bad field (the ValueError joins them with '; '), when it is
    made or, for the values of the right types, when a model is built from it (`validate`)."""
    with pytest.raises(ValueError) as caught:
        Wav2Vec2BertConfig.from_dict(values).validate()
    message = str(caught.value)
    assert message.startswith("invalid Wav2Vec2BertConfig: ")
    return message.removeprefix("invalid Wav2Vec2BertConfig: ").split("; ")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(hidden_size="144"), "hidden_size must be an integer, got '144' (str)"),
        (dict(hidden_size=4.5), "hidden_size must be an integer, got 4.5 (float)"),
        (dict(hidden_size=None), "hidden_size must be an integer, got None"),
        (dict(num_hidden_layers=True), "num_hidden_layers must be an integer, got True (bool)"),
        (dict(id2label=["yes", "no"]), "id2label must map class ids to label names"),
        (dict(id2label={"a": "yes"}), "id2label keys must be integer class ids, got key 'a'"),
        (dict(id2label={"0": None}), "id2label entry '0' must be a label name (a string), got None"),
        (dict(id2label={"0": "a", "00": "b"}), "id2label names one class id twice"),
        (dict(label2id={"yes": "0"}), "label2id entry 'yes' must be an integer class id, got '0' (str)"),
        (dict(tdnn_dim=512), "tdnn_dim must be a list of integers, got 512 (int)"),
        (dict(tdnn_kernel=[3, "1"]), "tdnn_kernel must be a list of integers"),
        (dict(layer_norm_eps="1e-5"), "layer_norm_eps must be a number, got '1e-5' (str)"),
        (dict(layer_norm_eps=float("nan")), "layer_norm_eps must be a finite number, got nan"),
        (dict(layer_norm_eps=10**400), "layer_norm_eps must be a finite number, got 1000"),  # no float holds it
        (dict(hidden_act=None), "hidden_act must be a string, got None"),
        (dict(apply_spec_augment="false"), "apply_spec_augment must be true or false (a JSON boolean), got 'false'"),
        (dict(add_adapter="yes"), "add_adapter must be true or false (a JSON boolean), got 'yes'"),
        (dict(ctc_zero_infinity=1), "ctc_zero_infinity must be true or false (a JSON boolean), got 1 (int)"),
        (dict(architectures=[1]), "architectures must be a list of class names (strings), got [1]"),
    ],
)
def test_a_wrong_type_is_one_message_naming_the_field(values, message):
    (problem,) = problems_of(**values)
    assert problem.startswith(message)


def test_a_bare_architecture_name_is_refused_showing_the_list_it_should_be():
    assert problems_of(architectures="Wav2Vec2BertForCTC") == [
        'architectures must be a list of class names, such as ["Wav2Vec2BertForCTC"], '
        "got 'Wav2Vec2BertForCTC' (str)"
    ]


def test_architectures_may_be_null_or_a_list_of_names():
    assert Wav2Vec2BertConfig.from_dict({"architectures": None}).architectures is None
    assert Wav2Vec2BertConfig.from_dict({"architectures": ["Wav2Vec2BertForCTC"]}).architectures == [
        "Wav2Vec2BertForCTC"
    ]


def test_zero_heads_is_a_range_error_not_a_zero_division():
    # The divisibility rule used to run first and raise ZeroDivisionError.
    assert problems_of(num_attention_heads=0) == ["num_attention_heads must be >= 1, got 0"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(layer_norm_eps=-1e-5), "layer_norm_eps must be a positive number, got -1e-05"),
        (dict(layer_norm_eps=0), "layer_norm_eps must be a positive number, got 0"),
        (dict(initializer_range=-0.02), "initializer_range must be >= 0, got -0.02"),
        (dict(output_hidden_size=0), "output_hidden_size must be >= 1, got 0"),
        (dict(left_max_position_embeddings=-1), "left_max_position_embeddings must be >= 0, got -1"),
        (dict(mask_time_length=0), "mask_time_length must be >= 1, got 0"),
        (dict(tdnn_dim=[]), "tdnn_dim must list one or more values >= 1"),
        (dict(tdnn_dilation=[1, 0, 1, 1, 1]), "tdnn_dilation must list one or more values >= 1"),
        (dict(num_labels=-1), "num_labels must be in [0, 1,000,000], got -1"),
    ],
)
def test_a_value_out_of_range_is_one_message_naming_the_field(values, message):
    (problem,) = problems_of(**values)
    assert problem.startswith(message)


def test_every_bad_field_is_reported_at_once_in_field_order():
    assert problems_of(layer_norm_eps=-1e-5, hidden_size="144", apply_spec_augment="yes") == [
        "hidden_size must be an integer, got '144' (str)",
        "layer_norm_eps must be a positive number, got -1e-05",
        "apply_spec_augment must be true or false (a JSON boolean), got 'yes' (str)",
    ]


def test_a_rule_between_fields_is_skipped_when_one_of_them_is_already_reported():
    # hidden_size is wrong, so "not divisible by num_attention_heads" would only repeat it.
    assert problems_of(hidden_size="1024", num_attention_heads=0) == [
        "hidden_size must be an integer, got '1024' (str)",
        "num_attention_heads must be >= 1, got 0",
    ]


def test_a_huge_label_count_is_refused_before_the_label_names_are_made():
    # num_labels alone makes the names LABEL_0 ... LABEL_{n-1}: a billion of them used to fill the memory.
    assert problems_of(num_labels=10**9) == ["num_labels must be in [0, 1,000,000], got 1000000000"]


def test_json_integers_are_numbers_for_float_fields():
    config = Wav2Vec2BertConfig.from_dict({"layerdrop": 1, "layer_norm_eps": 1, "mask_time_prob": 0})
    assert (config.layerdrop, config.layer_norm_eps, config.mask_time_prob) == (1.0, 1.0, 0.0)
    assert isinstance(config.layerdrop, float)


def test_optional_fields_accept_null():
    optional = ["vocab_size", "output_hidden_size", "pad_token_id", "bos_token_id", "eos_token_id",
                "position_embeddings_type", "num_labels", "id2label", "label2id", "architectures"]
    config = Wav2Vec2BertConfig.from_dict(dict.fromkeys(optional))
    assert config.vocab_size is None and config.pad_token_id is None and config.position_embeddings_type is None
    assert config.output_hidden_size == config.hidden_size and config.id2label == {0: "LABEL_0", 1: "LABEL_1"}


def test_a_non_dict_extra_key_in_config_json_is_kept_like_any_unknown_key():
    config = Wav2Vec2BertConfig.from_dict({"extra": "my note", "other": 1})
    assert config.extra == {"extra": "my note", "other": 1}
    assert Wav2Vec2BertConfig.from_dict(config.to_dict()) == config


def test_a_config_json_transformers_wrote_with_other_values_loads_with_equal_values(tmp_path):
    import transformers

    theirs = transformers.Wav2Vec2BertConfig(
        hidden_size=96, num_hidden_layers=3, num_attention_heads=6, intermediate_size=200,
        feature_projection_input_dim=80, hidden_act="gelu", layer_norm_eps=1e-6, layerdrop=0, final_dropout=0.2,
        position_embeddings_type="relative", conv_depthwise_kernel_size=7, apply_spec_augment=False,
        mask_time_prob=0.1, vocab_size=51, ctc_loss_reduction="mean", ctc_zero_infinity=True, pad_token_id=3,
        use_weighted_layer_sum=True, tdnn_dim=[16, 16], tdnn_kernel=[3, 1], tdnn_dilation=[1, 2],
        add_adapter=True, adapter_kernel_size=5, adapter_stride=3, num_adapter_layers=2, output_hidden_size=48,
        use_intermediate_ffn_before_adapter=True, id2label={0: "de", 1: "en", 2: "mn"},
        architectures=["Wav2Vec2BertForCTC"], dtype="bfloat16",
    )
    theirs.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    ours = Wav2Vec2BertConfig.from_pretrained(tmp_path)
    for f in dataclasses.fields(Wav2Vec2BertConfig):
        if f.name in ("extra", "label2id", *EXTENSION_FLAGS, *PRETRAINING_FIELDS):  # fields transformers lacks
            continue
        expected = getattr(theirs, f.name)
        assert getattr(ours, f.name) == (tuple(expected) if isinstance(expected, list) and f.name != "architectures"
                                         else expected), f.name
    assert ours.label2id == {"de": 0, "en": 1, "mn": 2} and written["label2id"] is None  # transformers 5 writes null
    assert ours.extra["dtype"] == "bfloat16" and ours.extra["transformers_version"] == transformers.__version__


# ------------------------------------------------------------------------------------------- model size
HEAD_CLASSES = ["Wav2Vec2BertForCTC", "Wav2Vec2BertForSequenceClassification",
                "Wav2Vec2BertForAudioFrameClassification", "Wav2Vec2BertForPreTraining", "Wav2Vec2BertForXVector"]


def built_parameters(module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_the_parameter_count_of_the_defaults_is_w2v_bert_2_0():
    # 580,493,120: transformers' Wav2Vec2BertModel built (on the meta device) from its default config, which is
    # facebook/w2v-bert-2.0's. The count builds it with 0 and 1 blocks; the tiny models below are built whole.
    parts = model_parameter_parts(Wav2Vec2BertConfig())
    assert sum(part.parameters for part in parts) == 580_493_120


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(position_embeddings_type="relative", mask_time_prob=0.0),
        dict(position_embeddings_type="rotary", use_weighted_layer_sum=True),
        dict(position_embeddings_type=None, add_encoder_layer_norm=True, add_inner_layer_norm=True),
        dict(add_adapter=True, num_adapter_layers=2, adapter_kernel_size=5, use_intermediate_ffn_before_adapter=True),
        dict(add_adapter=True, output_hidden_size=48, add_inner_layer_norm=True, use_weighted_layer_sum=True),
        dict(num_hidden_layers=5, add_adapter=True, num_adapter_layers=3, output_hidden_size=48,
             use_weighted_layer_sum=True),
        dict(vocab_size=None, apply_spec_augment=False),  # no CTC head, no pre-training
    ],
)
def test_the_parameter_count_equals_that_of_every_built_head(overrides):
    import w2vbert

    config = Wav2Vec2BertConfig(**tiny_config_kwargs(**overrides))
    model = sum(part.parameters for part in model_parameter_parts(config))
    assert model == built_parameters(w2vbert.Wav2Vec2BertModel(config))
    heads = {part.name: part.parameters for part in head_parameter_parts(config)}
    buildable = []
    for head in HEAD_CLASSES:  # the heads that refuse this config are left out of the count
        try:
            built = getattr(w2vbert, head)(config)
        except ValueError:
            continue
        buildable.append(head)
        assert model + heads[head] == built_parameters(built), head
    assert list(heads) == buildable
    assert estimated_parameters(config) == model + max(heads.values())


def test_every_part_of_a_model_names_the_fields_that_size_it():
    config = Wav2Vec2BertConfig(**tiny_config_kwargs(
        add_adapter=True, output_hidden_size=48, use_intermediate_ffn_before_adapter=True, add_inner_layer_norm=True,
        add_encoder_layer_norm=True,
    ))
    parts = model_parameter_parts(config) + head_parameter_parts(Wav2Vec2BertConfig(**tiny_config_kwargs()))
    assert {part.name for part in parts} == {
        "masked_spec_embed", "feature_projection", "encoder", "adapter", "intermediate_ffn", "inner_layer_norm",
        *HEAD_CLASSES,
    }
    assert all(part.fields for part in parts)


def test_the_count_covers_every_model_class():
    # meta_count lists the heads itself: w2vbert.model.auto's list imports the audio decoders, which validating a
    # config must not pay for.
    from w2vbert.model.auto import MODEL_CLASSES
    from w2vbert.model.meta_count import HEADS, Wav2Vec2BertModel

    assert {cls.__name__ for cls in (Wav2Vec2BertModel, *HEADS)} == set(MODEL_CLASSES)
    assert sorted(cls.__name__ for cls in HEADS) == sorted(HEAD_CLASSES)


def test_the_models_of_one_config_are_counted_once_until_a_size_changes(monkeypatch):
    from w2vbert.model import meta_count

    counted = []
    count = meta_count.count_parameters
    monkeypatch.setattr(meta_count, "count_parameters", lambda config: counted.append(1) or count(config))
    config = Wav2Vec2BertConfig(**tiny_config_kwargs(num_hidden_layers=7))
    first = estimated_parameters(config)
    assert estimated_parameters(config) == first and estimated_parameters(Wav2Vec2BertConfig.from_dict(
        config.to_dict())) == first  # equal values, another object: counted once
    config.num_hidden_layers = 8  # a config is mutable: its values, not the object, key the count
    assert estimated_parameters(config) > first and len(counted) == 2


@pytest.mark.parametrize(
    ("values", "part", "sizes"),
    [
        (dict(num_hidden_layers=10**9), "encoder", "num_hidden_layers=1000000000, hidden_size=1024"),
        (dict(hidden_size=2**20, num_attention_heads=16), "encoder", "num_hidden_layers=24, hidden_size=1048576"),
        (dict(vocab_size=10**9), "Wav2Vec2BertForCTC", "vocab_size=1000000000, hidden_size=1024"),
        (dict(tdnn_dim=[10**6] * 5), "Wav2Vec2BertForXVector", "tdnn_dim=[1000000, 1000000"),
        (dict(left_max_position_embeddings=10**12), "encoder", "left_max_position_embeddings=1000000000000"),
        (dict(num_hidden_layers=10**400), "encoder", "num_hidden_layers=1000"),  # more than a float holds
    ],
)
def test_an_absurd_model_size_is_refused_at_once_naming_the_sizes(values, part, sizes):
    estimated_parameters(Wav2Vec2BertConfig())  # the first count imports the model classes, as building one does
    started = time.process_time()  # this process's work: on a shared runner the wall clock measures the others
    (problem,) = problems_of(**values)
    assert time.process_time() - started < 0.1  # no tensor is made: it used to hang as the memory grew
    assert problem.startswith("these sizes make a model of about ")
    assert "parameters, over the limit of 1e+11 (400 GB in float32" in problem
    lower = problem.split("): lower ")[1]
    assert sizes in lower and lower.endswith(f"(they size the {part}, the largest part)")


@pytest.mark.parametrize(
    ("values", "shape", "part", "sizes"),
    [
        (dict(hidden_size=2**40, num_attention_heads=16), "(1099511627776, 1099511627776)", "Wav2Vec2BertModel",
         "hidden_size=1099511627776, output_hidden_size=1099511627776"),
        (dict(hidden_size=10**400, num_attention_heads=16), "(100000000000000000...0000000000000000000, 160)",
         "Wav2Vec2BertModel", "hidden_size=100000000000000000...0000000000000000000"),
        (dict(vocab_size=2**60), "(1152921504606846976, 1024)", "Wav2Vec2BertForCTC", "vocab_size=1152921504606846976"),
        (dict(tdnn_dim=[2**31] * 5), "(2147483648, 10737418240)", "Wav2Vec2BertForXVector", "tdnn_dim=[2147483648"),
    ],
)
def test_a_size_no_tensor_can_hold_is_refused_naming_the_tensor_and_its_sizes(values, shape, part, sizes):
    # torch describes a tensor's bytes in int64: past 2^63 it cannot build one, even on the meta device.
    (problem,) = problems_of(**values)
    assert problem.startswith(f"these sizes make a model too large to describe (a tensor of shape {shape}, past 2^63 "
                              "bytes), over the limit of 1e+11 (400 GB in float32")
    lower = problem.split("): lower ")[1]
    assert lower.startswith(sizes) and lower.endswith(f"(they size the {part}, the part that could not be built)")


def test_a_model_just_under_the_limit_is_accepted():
    # 1e11 / 24.2e6 per default block: about 4,100 blocks pass, 4,200 do not.
    assert estimated_parameters(Wav2Vec2BertConfig(num_hidden_layers=4100)) < MAX_PARAMETERS
    assert problems_of(num_hidden_layers=4200)[0].startswith("these sizes make a model of about 1e+11")


def test_a_count_computes_no_tensor_values():
    # On the meta device a value computed from a tensor (nn.Embedding's normal_ for Shaw's distances, the layer
    # weights' 1 / n) makes torch import its compiler the first time: seconds, in every process that validates a
    # config. So what reaches torch while counting makes tensors (on meta) and reads their shapes, nothing else.
    import torch
    from torch.overrides import TorchFunctionMode

    from w2vbert.model.meta_count import FACTORIES, count_parameters

    computed = set()

    class Computed(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if isinstance(result, torch.Tensor) and func not in FACTORIES:
                computed.add(func)
            return result

    everything = dict(add_adapter=True, output_hidden_size=48, use_intermediate_ffn_before_adapter=True,
                      add_inner_layer_norm=True, add_encoder_layer_norm=True, use_weighted_layer_sum=True)
    with Computed():
        for overrides in (everything, dict(use_weighted_layer_sum=True, mask_time_prob=0.0)):  # every head
            count_parameters(Wav2Vec2BertConfig(**tiny_config_kwargs(**overrides)))
    assert not computed


# ------------------------------------------------------------------------------------- property tests
FIELD_HINTS = {
    name: hint for name, hint in typing.get_type_hints(Wav2Vec2BertConfig).items() if name != "extra"
}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


def is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def admits(hint, value) -> bool:
    """Whether a field annotated `hint` takes `value`, as the annotations read (the specification here)."""
    if isinstance(hint, types.UnionType):
        return value is None or admits(next(a for a in typing.get_args(hint) if a is not type(None)), value)
    if hint is int:
        return is_integer(value)
    if hint is float:
        return is_integer(value) or isinstance(value, float)
    if hint in (str, bool):
        return isinstance(value, hint)
    if hint == tuple[int, ...]:
        return isinstance(value, list) and all(is_integer(v) for v in value)
    if hint == list[str]:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if hint == dict[int, str]:  # JSON keys are strings: class ids written in decimal
        return isinstance(value, dict) and all(re.fullmatch(r"-?[0-9]+", k) and isinstance(v, str)
                                               for k, v in value.items())
    if hint == dict[str, int]:
        return isinstance(value, dict) and all(is_integer(v) for v in value.values())
    raise AssertionError(f"no rule for {hint}")


@st.composite
def a_field_and_a_wrong_value(draw):
    name = draw(st.sampled_from(sorted(FIELD_HINTS)))
    return name, draw(JSON_VALUES.filter(lambda value: not admits(FIELD_HINTS[name], value)))


@settings(max_examples=150, deadline=None)
@given(a_field_and_a_wrong_value())
def test_any_wrong_typed_value_is_a_value_error_naming_that_field_alone(field_and_value):
    name, value = field_and_value
    with pytest.raises(ValueError) as caught:
        Wav2Vec2BertConfig.from_dict({name: value}).validate()
    assert str(caught.value).startswith(f"invalid Wav2Vec2BertConfig: {name} "), (name, value)
    others = [other for other in re.findall(r"; (\w+) ", str(caught.value)) if other in FIELD_HINTS]
    assert not others, f"{name}={value!r} also reported {others}"  # one message, for the one wrong field


def typed_values(hint) -> st.SearchStrategy:
    """Values of the annotated type, of any size (ranges and rules between fields are left to chance)."""
    if isinstance(hint, types.UnionType):
        return st.none() | typed_values(next(a for a in typing.get_args(hint) if a is not type(None)))
    sizes = st.integers(-1, 8) | st.integers(0, 10**15)
    names = st.sampled_from([*ACTIVATIONS, *CTC_REDUCTIONS, "relative_key", "relative", "rotary"])  # the choices
    return {
        int: sizes,
        float: st.floats(-0.5, 1.5) | st.integers(0, 2),
        str: names | st.text(max_size=4),
        bool: st.booleans(),
        tuple[int, ...]: st.lists(sizes, max_size=4),
        list[str]: st.lists(st.text(max_size=4), max_size=2),
        dict[int, str]: st.dictionaries(st.integers(0, 4).map(str), st.text(max_size=3), max_size=4),
        dict[str, int]: st.dictionaries(st.text(max_size=3), st.integers(0, 4), max_size=4),
    }[hint]


@st.composite
def config_json_values(draw):
    names = draw(st.lists(st.sampled_from(sorted(FIELD_HINTS)), max_size=6, unique=True))
    return {name: draw(typed_values(FIELD_HINTS[name]) | JSON_VALUES) for name in names}


@settings(max_examples=100, deadline=None)
@given(config_json_values())
def test_any_json_values_build_a_config_that_round_trips_or_raise_a_value_error(values):
    try:
        config = Wav2Vec2BertConfig.from_dict(values)
    except ValueError as error:
        assert str(error).startswith("invalid Wav2Vec2BertConfig: ")
        return
    assert Wav2Vec2BertConfig.from_dict(json.loads(config.to_json_string())) == config
