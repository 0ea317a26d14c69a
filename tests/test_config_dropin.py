"""`Wav2Vec2BertConfig` behaves as transformers' `PretrainedConfig` for its users: each test builds transformers'
config and ours from the same keywords or files and compares what a user sees (attributes, dictionaries, JSON,
the labels, the unused keywords).

Where this project is deliberately different (stricter), the test says so in its name and comment.
"""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import w2vbert
from w2vbert import Wav2Vec2BertConfig
from w2vbert.model.config_dict import COMMON_ATTRIBUTES, EXTENSION_FLAGS, PRETRAINING_FIELDS

transformers = pytest.importorskip("transformers")
Theirs = transformers.Wav2Vec2BertConfig

# The keywords transformers' own model tests build this config with (tests/models/wav2vec2_bert): three of them
# (num_conv_pos_embeddings, hidden_dropout_prob, do_stable_layer_norm) are no field of this model.
MODEL_TESTER_KEYWORDS = dict(
    hidden_size=16, feature_projection_input_dim=16, mask_time_prob=0.5, mask_time_length=2,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_hidden_layers=2, num_attention_heads=2,
    hidden_dropout_prob=0.1, intermediate_size=20, layer_norm_eps=1e-5, do_stable_layer_norm=False,
    hidden_act="gelu", initializer_range=0.02, vocab_size=32, num_adapter_layers=2, adapter_stride=2,
    tdnn_dim=(32, 32), tdnn_kernel=(5, 3), tdnn_dilation=(1, 2), xvector_output_dim=32,
    position_embeddings_type="relative",
)
# The common keywords transformers' config tests set on every config (tests/utils/test_configuration_utils.py).
COMMON_KEYWORDS = dict(
    return_dict=False, output_hidden_states=True, output_attentions=True, dtype="float16",
    chunk_size_feed_forward=5, architectures=["BertModel"], id2label={0: "label"}, label2id={"label": "0"},
    problem_type="regression",
)


# The fields transformers' config lacks (written to config.json only when in use).
W2VBERT_FIELDS = {*EXTENSION_FLAGS, *PRETRAINING_FIELDS}


def both(**keywords):
    return Wav2Vec2BertConfig(**keywords), Theirs(**keywords)


def without_version(values: dict) -> dict:
    """transformers stamps its version on every dictionary; a config made here has none."""
    return {k: v for k, v in values.items() if k != "transformers_version"}


# ------------------------------------------------------------------------------------------ keywords kept
def test_keywords_of_no_field_are_kept_as_attributes_and_written_as_transformers_keeps_them():
    ours, theirs = both(**MODEL_TESTER_KEYWORDS)
    for name in ("num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "hidden_dropout_prob",
                 "do_stable_layer_norm"):
        assert getattr(ours, name) == getattr(theirs, name) == MODEL_TESTER_KEYWORDS[name]
    assert ours.to_diff_dict() == without_version(theirs.to_diff_dict())
    assert dict(ours.extra) == {"num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2,
                                "hidden_dropout_prob": 0.1, "do_stable_layer_norm": False}


def test_the_common_attributes_have_transformers_defaults():
    ours, theirs = both()
    for name in COMMON_ATTRIBUTES:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours._attn_implementation is theirs._attn_implementation is None
    assert ours.use_return_dict is theirs.return_dict is True and ours.name_or_path == theirs.name_or_path == ""
    assert ours.num_labels == theirs.num_labels == 2 and ours.id2label == theirs.id2label


def test_the_common_keywords_are_set_as_transformers_sets_them():
    ours, theirs = both(**COMMON_KEYWORDS)
    for name in COMMON_KEYWORDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.dtype == theirs.dtype == torch.float16  # a dtype's name becomes the torch.dtype
    assert ours.to_diff_dict() == without_version(theirs.to_diff_dict())


@pytest.mark.parametrize(
    "keywords",
    [dict(torch_dtype="bfloat16"), dict(torch_dtype=torch.float16), dict(dtype="float32", torch_dtype="bfloat16")],
)
def test_torch_dtype_is_the_old_name_of_dtype(keywords):
    ours, theirs = both(**keywords)
    assert ours.dtype == ours.torch_dtype == theirs.dtype
    assert ours.to_diff_dict()["dtype"] == theirs.to_diff_dict()["dtype"] and "torch_dtype" not in ours.to_diff_dict()


def test_attn_implementation_is_recorded_and_not_written(tmp_path):
    ours, theirs = both(attn_implementation="eager")
    assert ours._attn_implementation == theirs._attn_implementation == "eager"
    ours._attn_implementation = "sdpa"  # transformers' tests and its Trainer set it on the config
    assert ours._attn_implementation == "sdpa"
    assert "attn_implementation" not in json.dumps(ours.to_dict()) + json.dumps(theirs.to_dict())


def test_a_positional_argument_is_refused_with_transformers_exception_type():
    with pytest.raises(ValueError) as theirs:
        Theirs(1024)
    with pytest.raises(type(theirs.value), match="keyword arguments only, got 1 positional"):
        Wav2Vec2BertConfig(1024)


def test_a_key_that_would_hide_a_method_is_refused():
    # Deliberately stricter: transformers' config takes it and then cannot write itself (to_dict is the value).
    with pytest.raises(AttributeError, match="config key 'to_dict' would hide the method"):
        Wav2Vec2BertConfig(to_dict=1)


def test_a_key_that_names_a_computed_property_is_kept_and_written_back():
    config = Wav2Vec2BertConfig.from_dict({"head_dim": 7, "extra": "my note"})
    assert config.head_dim == 64 and config.to_diff_dict()["head_dim"] == 7 and config.extra["extra"] == "my note"


# ---------------------------------------------------------------------------------------------- labels
@pytest.mark.parametrize("count", [0, 1, 3, 5])
def test_setting_num_labels_resizes_the_labels_as_transformers(count):
    ours, theirs = both(id2label={0: "yes", 1: "no", 2: "maybe"}, label2id={"yes": 0, "no": 1, "maybe": 2})
    ours.num_labels, theirs.num_labels = count, count
    assert ours.id2label == theirs.id2label and ours.label2id == theirs.label2id and ours.num_labels == count


def test_the_same_label_count_keeps_the_names_as_transformers():
    ours, theirs = both(id2label={0: "yes", 1: "no"}, label2id={"yes": 0, "no": 1})
    ours.num_labels, theirs.num_labels = 2, 2
    assert ours.id2label == theirs.id2label == {0: "yes", 1: "no"} and ours.label2id == theirs.label2id


def test_num_labels_that_contradicts_id2label_wins_with_a_warning_as_transformers(caplog):
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        ours, theirs = both(num_labels=3, id2label={0: "a", 1: "b"})
    assert ours.id2label == theirs.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert ours.label2id == theirs.label2id and "num_labels=3 replaces the 2 labels" in caplog.text


def test_num_labels_in_from_pretrained_replaces_stored_labels_of_another_count(tmp_path):
    Wav2Vec2BertConfig(id2label={0: "a", 1: "b", 2: "c"}).save_pretrained(tmp_path)
    for count in (3, 4):
        ours = Wav2Vec2BertConfig.from_pretrained(tmp_path, num_labels=count)
        theirs = Theirs.from_pretrained(tmp_path, num_labels=count)
        assert ours.id2label == theirs.id2label and ours.label2id == theirs.label2id


def test_label2id_follows_id2label_when_not_given_and_is_kept_when_given():
    # Deliberately different: transformers leaves label2id None beside a given id2label, and replaces a label2id
    # given without id2label by LABEL_0 ...; here label2id is id2label's inverse unless it is given.
    ours, theirs = both(id2label={0: "yes", 1: "no"})
    assert ours.label2id == {"yes": 0, "no": 1} and theirs.label2id is None
    ours, theirs = both(label2id={"yes": 0, "no": 1})
    assert ours.label2id == {"yes": 0, "no": 1} and theirs.label2id == {"LABEL_0": 0, "LABEL_1": 1}
    assert ours.id2label == theirs.id2label == {0: "LABEL_0", 1: "LABEL_1"}


@pytest.mark.parametrize(("count", "message"), [(-1, r"in \[0, 1,000,000\], got -1"), ("3", "an integer, got '3'")])
def test_a_label_count_that_makes_no_labels_is_refused_at_once(count, message):
    # Deliberately stricter: transformers makes no labels of -1 and fails with a TypeError inside range() on "3";
    # a billion labels would fill the memory before any check (test_config_validation.py).
    config = Wav2Vec2BertConfig()
    with pytest.raises(ValueError, match=f"num_labels must be {message}"):
        config.num_labels = count


# --------------------------------------------------------------------------------- dictionaries and JSON
def test_to_dict_holds_transformers_keys_and_values_plus_the_w2vbert_fields():
    ours, theirs = both(**MODEL_TESTER_KEYWORDS, **COMMON_KEYWORDS)
    mine, their = ours.to_dict(), without_version(theirs.to_dict())
    assert set(mine) - set(their) == W2VBERT_FIELDS and set(their) <= set(mine)
    assert {k: mine[k] for k in their} == their


def test_to_dict_is_a_copy():
    config = Wav2Vec2BertConfig(id2label={0: "a"}, note={"lang": "mn"})
    values = config.to_dict()
    values["id2label"][0], values["note"]["lang"] = "changed", "changed"
    assert config.id2label == {0: "a"} and config.note == {"lang": "mn"}


@pytest.mark.parametrize("use_diff", [True, False])
def test_json_written_here_loads_in_transformers_and_back_with_the_extra_keys(tmp_path, use_diff):
    ours = Wav2Vec2BertConfig(**MODEL_TESTER_KEYWORDS, gradient_checkpointing=True, output_hidden_states=True)
    ours.to_json_file(tmp_path / "ours.json", use_diff=use_diff)
    theirs = Theirs.from_json_file(tmp_path / "ours.json")
    assert theirs.hidden_dropout_prob == 0.1 and theirs.gradient_checkpointing and theirs.output_hidden_states
    # to_dict (use_diff=False) holds the w2vbert fields too, which transformers keeps as keys of its own
    assert {k: v for k, v in theirs.to_diff_dict().items() if k not in W2VBERT_FIELDS} == ours.to_diff_dict() | {
        "transformers_version": transformers.__version__}
    theirs.to_json_file(tmp_path / "theirs.json", use_diff=use_diff)
    back = Wav2Vec2BertConfig.from_json_file(tmp_path / "theirs.json")
    assert back.to_diff_dict() == ours.to_diff_dict() | {"transformers_version": transformers.__version__}


def test_to_json_string_is_transformers_text():
    ours, theirs = both(**MODEL_TESTER_KEYWORDS, problem_type="regression")
    for use_diff in (True, False):
        mine, their = json.loads(ours.to_json_string(use_diff)), json.loads(theirs.to_json_string(use_diff))
        assert {k: v for k, v in mine.items() if k in their} == without_version(their)
    assert repr(ours) == f"Wav2Vec2BertConfig {ours.to_json_string()}"


@settings(max_examples=30, deadline=None)
@given(
    keywords=st.dictionaries(
        st.sampled_from(sorted({*MODEL_TESTER_KEYWORDS, *COMMON_KEYWORDS, "my_note", "gradient_checkpointing"})),
        st.none(), max_size=8,
    ),
    extras=st.dictionaries(st.sampled_from(["my_note", "lang", "tie_word_embeddings"]),
                           st.integers(-3, 3) | st.booleans() | st.text(max_size=3), max_size=3),
)
def test_any_mix_of_fields_common_and_unknown_keys_writes_transformers_diff_dict(keywords, extras):
    values = {k: {**MODEL_TESTER_KEYWORDS, **COMMON_KEYWORDS}.get(k, True) for k in keywords} | extras
    if {"id2label", "label2id"} & set(values):  # the labels go together: alone, each is read differently
        values |= {"id2label": COMMON_KEYWORDS["id2label"], "label2id": COMMON_KEYWORDS["label2id"]}
    ours, theirs = both(**values)
    assert ours.to_diff_dict() == without_version(theirs.to_diff_dict())
    assert Wav2Vec2BertConfig.from_dict(json.loads(ours.to_json_string())) == ours


def test_update_sets_any_key_as_transformers():
    ours, theirs = both()
    for config in (ours, theirs):
        config.update({"hidden_size": 128, "my_note": "x", "output_hidden_states": True})
    assert ours.to_diff_dict() == without_version(theirs.to_diff_dict())


def test_iteration_membership_text_config_and_sub_configs_as_transformers():
    ours, theirs = both(my_note=1)
    assert "my_note" in ours and "my_note" in theirs and "hidden_size" in ours and "nothing" not in ours
    assert {*theirs} - {*ours} <= {"transformers_version", "_output_attentions", "_post_init_done",
                                   "_attn_implementation_internal", "_experts_implementation_internal"}
    assert ours.get_text_config() is ours and theirs.get_text_config() is theirs
    assert dict(Wav2Vec2BertConfig.sub_configs) == Theirs.sub_configs == {}


def test_configs_are_equal_when_every_attribute_is():
    config = Wav2Vec2BertConfig(my_note=1)
    assert copy.deepcopy(config) == config and Wav2Vec2BertConfig(my_note=2) != config
    assert Wav2Vec2BertConfig() != Wav2Vec2BertConfig(output_hidden_states=True)


# ----------------------------------------------------------------------------- overrides and unused ones
def test_from_dict_returns_the_unused_keywords_as_transformers():
    values = {"hidden_size": 8, "num_attention_heads": 2, "my_note": 1}
    keywords = dict(vocab_size=5, my_note=2, num_labels=3, output_attentions=True, not_a_key=4)
    ours, unused = Wav2Vec2BertConfig.from_dict(values, return_unused_kwargs=True, **keywords)
    theirs, their_unused = Theirs.from_dict(values, return_unused_kwargs=True, **keywords)
    assert unused == their_unused == {"not_a_key": 4}
    assert ours.to_diff_dict() == without_version(theirs.to_diff_dict())


@pytest.mark.parametrize("by_file", [False, True])
def test_from_pretrained_returns_the_unused_keywords_as_transformers(tmp_path, by_file):
    Wav2Vec2BertConfig(**MODEL_TESTER_KEYWORDS).save_pretrained(tmp_path)
    source = tmp_path / "config.json" if by_file else tmp_path
    keywords = dict(return_unused_kwargs=True, hidden_size=32, hidden_dropout_prob=0.2, foo=1)
    ours, unused = Wav2Vec2BertConfig.from_pretrained(source, **keywords)
    theirs, their_unused = Theirs.from_pretrained(source, **keywords)
    assert unused == their_unused == {"foo": 1}
    assert ours.hidden_size == theirs.hidden_size == 32 and ours.hidden_dropout_prob == theirs.hidden_dropout_prob
    assert ours.to_diff_dict() == without_version(theirs.to_diff_dict())


def test_an_unknown_override_without_return_unused_kwargs_is_refused(tmp_path):
    # Deliberately stricter: transformers drops it silently, so a misspelt override would do nothing.
    Wav2Vec2BertConfig().save_pretrained(tmp_path)
    assert not hasattr(Theirs.from_pretrained(tmp_path, hiden_size=8), "hiden_size")
    with pytest.raises(TypeError, match=r"unknown Wav2Vec2BertConfig field\(s\): \['hiden_size'\]"):
        Wav2Vec2BertConfig.from_pretrained(tmp_path, hiden_size=8)


# ------------------------------------------------------------------------- validation moved to the build
# Values transformers' config takes, that cannot build a model: made here too, refused by validate().
UNBUILDABLE = [
    (dict(conv_depthwise_kernel_size=30), "conv_depthwise_kernel_size must be odd, got 30"),
    (dict(hidden_size=100, num_attention_heads=16), "hidden_size=100 is not divisible by num_attention_heads=16"),
    (dict(layerdrop=1.5), r"layerdrop must be in \[0, 1\], got 1.5"),
    (dict(num_hidden_layers=0), "num_hidden_layers must be >= 1, got 0"),
    (dict(vocab_size=0), "vocab_size must be positive"),
    (dict(hidden_act="gelu_fast_and_wrong"), "hidden_act must be one of"),
    (dict(num_hidden_layers=10**9), "these sizes make a model of about 2.4e\\+16 parameters"),
    (dict(problem_type="ranking"), "problem_type must be one of"),
    (dict(label2id={"yes": "0"}), "label2id entry 'yes' must be an integer class id"),
    (dict(architectures="Wav2Vec2BertForCTC"), "architectures must be a list of class names"),
]


@pytest.mark.parametrize(("values", "message"), UNBUILDABLE)
def test_a_config_transformers_makes_is_made_and_validate_names_what_cannot_build(values, message):
    Theirs(**values)
    config = Wav2Vec2BertConfig(**values)
    with pytest.raises(ValueError, match=f"^invalid Wav2Vec2BertConfig: {message}"):
        config.validate()


@pytest.mark.parametrize(
    "values",
    [dict(hidden_size="144"), dict(apply_spec_augment="false"), dict(tdnn_dim=512), dict(layer_norm_eps="1e-5")],
)
def test_a_value_of_a_wrong_type_is_refused_when_the_config_is_made_as_transformers(values):
    with pytest.raises(Exception) as theirs:
        Theirs(**values)
    assert "Validation error for field" in str(theirs.value)
    with pytest.raises(ValueError, match=f"^invalid Wav2Vec2BertConfig: {next(iter(values))} must be"):
        Wav2Vec2BertConfig(**values)


def test_single_label_classification_with_one_label_is_refused_as_transformers():
    with pytest.raises(ValueError, match="single_label_classification.*num_labels > 1"):
        Theirs(problem_type="single_label_classification", num_labels=1)
    with pytest.raises(ValueError, match='problem_type="single_label_classification" needs num_labels > 1'):
        Wav2Vec2BertConfig(problem_type="single_label_classification", num_labels=1).validate()


def test_a_config_changed_after_it_was_made_is_validated_as_it_now_is():
    config = Wav2Vec2BertConfig(hidden_size=16, num_attention_heads=2)
    config.validate()
    config.num_attention_heads = 3  # transformers' model tests change configs between builds
    with pytest.raises(ValueError, match="hidden_size=16 is not divisible by num_attention_heads=3"):
        config.validate()


def test_a_config_from_transformers_model_tests_builds_the_same_model():
    ours, theirs = both(**MODEL_TESTER_KEYWORDS)
    ours.validate()
    model, reference = w2vbert.Wav2Vec2BertForCTC(ours).eval(), transformers.Wav2Vec2BertForCTC(theirs).eval()
    model.load_state_dict(reference.state_dict())
    features = torch.randn(2, 30, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(features).logits, reference(features).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("values", "message"), UNBUILDABLE[:2])
def test_a_model_is_not_built_from_a_config_that_cannot_build_one(values, message):
    with pytest.raises(ValueError, match=message):
        w2vbert.Wav2Vec2BertModel(Wav2Vec2BertConfig(**values))
