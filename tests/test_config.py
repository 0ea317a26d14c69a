"""`Wav2Vec2BertConfig`: the Hugging Face `config.json` layout, both ways, and clear errors for impossible values."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from w2vbert import Wav2Vec2BertConfig

# The defaults of transformers' Wav2Vec2BertConfig that describe W2v-BERT 2.0 (facebook/w2v-bert-2.0).
W2V_BERT_2_0 = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    feature_projection_input_dim=160, position_embeddings_type="relative_key", left_max_position_embeddings=64,
    right_max_position_embeddings=8, conv_depthwise_kernel_size=31, layerdrop=0.1, add_adapter=False,
)


def test_defaults_describe_w2v_bert_2_0_as_transformers_does():
    import transformers

    ours, theirs = Wav2Vec2BertConfig(), transformers.Wav2Vec2BertConfig()
    for name, value in W2V_BERT_2_0.items():
        assert getattr(ours, name) == value == getattr(theirs, name), name


def test_every_transformers_field_is_known_with_the_same_default():
    import transformers

    theirs = transformers.Wav2Vec2BertConfig().to_dict()
    ours = Wav2Vec2BertConfig().to_dict()
    fields = {f.name for f in dataclasses.fields(Wav2Vec2BertConfig)}
    model_fields = set(transformers.Wav2Vec2BertConfig().__dict__) & set(theirs)
    # Generic PretrainedConfig bookkeeping (return_dict, dtype, ...) is kept verbatim in `extra`, not a field.
    generic = set(transformers.PretrainedConfig().to_dict())
    for name in sorted(model_fields - generic - {"model_type"}):
        assert name in fields, f"transformers' field {name} is missing"
        assert ours[name] == theirs[name], f"{name}: ours {ours[name]!r}, transformers {theirs[name]!r}"


def test_config_json_round_trips_through_transformers(tmp_path):
    import transformers

    config = Wav2Vec2BertConfig(
        hidden_size=64, num_attention_heads=4, add_adapter=True, use_intermediate_ffn_before_adapter=True,
        output_hidden_size=128, position_embeddings_type="rotary", vocab_size=37,
        id2label={0: "yes", 1: "no", 2: "maybe"},
        tdnn_dim=(8, 8), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1), architectures=["Wav2Vec2BertForCTC"],
    )
    config.save_pretrained(tmp_path / "ours")
    theirs = transformers.Wav2Vec2BertConfig.from_pretrained(tmp_path / "ours")
    assert theirs.output_hidden_size == 128 and theirs.position_embeddings_type == "rotary"
    assert theirs.id2label == {0: "yes", 1: "no", 2: "maybe"} and theirs.num_labels == 3
    assert list(theirs.tdnn_dim) == [8, 8] and theirs.vocab_size == 37
    theirs.save_pretrained(tmp_path / "theirs")
    back = Wav2Vec2BertConfig.from_pretrained(tmp_path / "theirs")
    for f in dataclasses.fields(Wav2Vec2BertConfig):
        if f.name != "extra":
            assert getattr(back, f.name) == getattr(config, f.name), f.name


def test_unknown_keys_are_kept_and_written_back(tmp_path):
    values = Wav2Vec2BertConfig().to_dict() | {"my_project_note": {"lang": "mn"}, "transformers_version": "4.99"}
    (tmp_path / "config.json").write_text(json.dumps(values))
    config = Wav2Vec2BertConfig.from_pretrained(tmp_path)
    assert config.extra["my_project_note"] == {"lang": "mn"}
    config.save_pretrained(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["my_project_note"] == {"lang": "mn"} and written["transformers_version"] == "4.99"
    assert written["model_type"] == "wav2vec2-bert"


def test_overrides_replace_stored_values_and_a_new_label_count_replaces_the_labels(tmp_path):
    Wav2Vec2BertConfig(id2label={0: "a", 1: "b", 2: "c"}, vocab_size=None).save_pretrained(tmp_path)
    config = Wav2Vec2BertConfig.from_pretrained(tmp_path, vocab_size=40, num_labels=5)
    assert config.vocab_size == 40
    assert config.num_labels == 5 and config.id2label == {i: f"LABEL_{i}" for i in range(5)}
    with pytest.raises(TypeError, match="unknown Wav2Vec2BertConfig field.*vocab_sise"):
        Wav2Vec2BertConfig.from_pretrained(tmp_path, vocab_sise=40)


def test_json_label_ids_become_integers_and_label2id_follows():
    config = Wav2Vec2BertConfig.from_dict({"id2label": {"0": "de", "1": "mn"}})
    assert config.id2label == {0: "de", 1: "mn"} and config.label2id == {"de": 0, "mn": 1}
    assert config.num_labels == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(conv_depthwise_kernel_size=30), "conv_depthwise_kernel_size must be odd, got 30"),
        (dict(hidden_size=100, num_attention_heads=16), "hidden_size=100 is not divisible by num_attention_heads=16"),
        (dict(use_intermediate_ffn_before_adapter=True), "use_intermediate_ffn_before_adapter=True needs add_adapter"),
        (dict(position_embeddings_type="alibi"), "position_embeddings_type must be one of"),
        (dict(hidden_act="gelu_fast_and_wrong"), "hidden_act must be one of"),
        (dict(ctc_loss_reduction="average"), "ctc_loss_reduction must be one of"),
        (dict(tdnn_dim=(8, 8), tdnn_kernel=(3,), tdnn_dilation=(1, 1)), "one entry per TDNN layer"),
        (dict(layerdrop=1.5), r"layerdrop must be in \[0, 1\], got 1.5"),
        (dict(num_hidden_layers=0), "num_hidden_layers must be >= 1, got 0"),
        (dict(vocab_size=0), "vocab_size must be positive"),
        (dict(output_hidden_size=100, add_adapter=True, num_attention_heads=16), "output_hidden_size=100"),
    ],
)
def test_contradictory_values_fail_naming_the_field(values, message):
    # Checked where a model is built or loaded (validate); the config itself is made, as transformers makes it.
    with pytest.raises(ValueError, match=message):
        Wav2Vec2BertConfig(**values).validate()


def test_a_config_of_another_model_type_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper", "d_model": 384}))
    with pytest.raises(ValueError, match="model_type 'whisper', expected 'wav2vec2-bert'"):
        Wav2Vec2BertConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize(("text", "message"), [("{not json", "not valid JSON"), ("[1, 2]", "must hold a JSON object")])
def test_a_broken_config_file_is_reported(tmp_path, text, message):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        Wav2Vec2BertConfig.from_pretrained(tmp_path)


def test_a_directory_without_config_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        Wav2Vec2BertConfig.from_pretrained(tmp_path)


@settings(max_examples=40, deadline=None)
@given(
    heads=st.sampled_from([1, 2, 4, 8]),
    head_dim=st.sampled_from([2, 4, 8]),
    kernel=st.integers(1, 15).map(lambda k: 2 * k + 1),
    position=st.sampled_from([None, "relative_key", "relative", "rotary"]),
    adapter=st.booleans(),
    labels=st.integers(1, 6),
)
def test_any_valid_config_survives_a_json_round_trip(heads, head_dim, kernel, position, adapter, labels):
    config = Wav2Vec2BertConfig(
        hidden_size=heads * head_dim, num_attention_heads=heads, conv_depthwise_kernel_size=kernel,
        position_embeddings_type=position, add_adapter=adapter, num_labels=labels,
    )
    back = Wav2Vec2BertConfig.from_dict(json.loads(config.to_json_string()))
    assert back == config
