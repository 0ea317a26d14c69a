"""`Wav2Vec2BertProcessor.__call__` against transformers' (the oracle): return types, keyword routing, labels."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from w2vbert import SeamlessM4TFeatureExtractor, Wav2Vec2BertProcessor, Wav2Vec2CTCTokenizer
from w2vbert.text.processor_kwargs import AudioKwargs, TextKwargs

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]
WORDS = ["HELLO", "WORLD", "THE", "QUICK", "FOX", "A"]


@pytest.fixture(scope="module")
def processors(tmp_path_factory):
    """(ours, transformers') processors loaded from the same folder: a character vocabulary, W2v-BERT's extractor."""
    import transformers

    folder = tmp_path_factory.mktemp("processor")
    (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(folder)
    Wav2Vec2BertProcessor(SeamlessM4TFeatureExtractor(padding_value=1.0), tokenizer).save_pretrained(folder)
    return Wav2Vec2BertProcessor.from_pretrained(folder), transformers.Wav2Vec2BertProcessor.from_pretrained(folder)


def clips(lengths: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(sum(lengths))
    return [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in lengths]


def call_both(processors, **kwargs):
    """Both processors' outputs, or the types of the exceptions both raise (they must agree on which)."""
    outputs = []
    for processor in processors:
        try:
            outputs.append(processor(**kwargs))
        except ValueError as error:  # transformers' refusals of ragged tensors and bad strategies
            outputs.append(type(error))
    return outputs


def as_list(value):
    """Ids as nested Python lists, whatever the container (a ragged object array holds one array per row)."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.dtype != object:
        return value.tolist()
    return [as_list(v) for v in value] if isinstance(value, (list, tuple, np.ndarray)) else value


def assert_same_kind(a, b, key):
    assert type(a) is type(b), (key, type(a), type(b))
    if isinstance(b, (torch.Tensor, np.ndarray)):
        assert a.dtype == b.dtype and a.shape == b.shape, (key, a.dtype, b.dtype, a.shape, b.shape)


def expected_labels(theirs, text, padding_kwargs):
    """transformers' labels with -100 where its tokenizer padded: the one difference, kept on purpose."""
    encoded = theirs.tokenizer(text, return_attention_mask=True, **padding_kwargs)
    ids, mask = as_list(encoded["input_ids"]), as_list(encoded["attention_mask"])
    if ids and isinstance(ids[0], int):
        return [-100 if m == 0 else i for i, m in zip(ids, mask, strict=True)]
    return [[-100 if m == 0 else i for i, m in zip(r, k, strict=True)] for r, k in zip(ids, mask, strict=True)]


def assert_same_call(ours, theirs, theirs_processor, text, padding_kwargs):
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        a, b = ours[key], theirs[key]
        assert_same_kind(a, b, key)
        if key == "input_features":
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=0)
        elif key == "labels":
            assert as_list(a) == expected_labels(theirs_processor, text, padding_kwargs)
        else:
            assert as_list(a) == as_list(b), key
        assert getattr(ours, key) is a


def assert_same_outcome(processors, kwargs, text=None):
    """Both processors called with `kwargs`: the same refusal (exception type), or the same output.

    One refusal is the tokenizer's own, kept from before (tests/test_tokenizer.py pins it): ids of different
    lengths with return_tensors="np", which transformers makes a 1-D object array of arrays."""
    ours, theirs = processors
    a, b = call_both(processors, **kwargs)
    if a is ValueError and not isinstance(b, type):
        ragged = [key for key in ("input_ids", "labels") if getattr(b.get(key), "dtype", None) == np.dtype(object)]
        assert ragged and kwargs.get("return_tensors") == "np", (kwargs, b)
        with pytest.raises(ValueError, match="cannot make one array of 'input_ids'.*pad them first"):
            ours(**kwargs)
        return
    if isinstance(a, type) or isinstance(b, type):
        assert a is b, (a, b)
        return
    defaults = theirs.tokenizer.init_kwargs
    merged = theirs._merge_kwargs(theirs.valid_processor_kwargs, tokenizer_init_kwargs=defaults, **kwargs)
    assert_same_call(a, b, theirs, text, merged["text_kwargs"])


def call_kwargs(parts, single, return_tensors, padding, lengths, texts):
    """The keywords of one call: audio and/or text, one example or a batch, the return type and padding."""
    audio = clips(lengths[:1] if single else lengths)
    text = texts[0] if single else texts[: len(audio)]
    kwargs = {"return_tensors": return_tensors, **padding}
    if parts != "text":
        kwargs |= {"audio": audio[0] if single else audio, "sampling_rate": 16000}
    if parts != "audio":
        kwargs |= {"text": text}
    if padding.get("padding") == "max_length" and parts != "text":
        kwargs["truncation"] = True  # max_length reaches the extractor too (frames): longer clips must be cut
    return kwargs, text


PADDINGS = [{}, {"padding": True}, {"padding": "longest"}, {"padding": "max_length", "max_length": 40}]


@pytest.mark.parametrize("padding", PADDINGS, ids=["no padding", "True", "longest", "max_length"])
@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
@pytest.mark.parametrize("single", [True, False], ids=["one", "batch"])
@pytest.mark.parametrize("parts", ["audio", "text", "both"])
def test_a_call_returns_what_transformers_returns(processors, parts, single, return_tensors, padding):
    """Same keys, containers (lists, arrays, ragged object arrays, tensors), dtypes, shapes and values; the same
    refusals (ragged tensors without padding). Only padded label positions differ: -100 here, the pad id there."""
    texts = ["THE QUICK FOX", "A", "HELLO WORLD"]
    kwargs, text = call_kwargs(parts, single, return_tensors, padding, [1200, 3100, 2000], texts)
    assert_same_outcome(processors, kwargs, text)


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(800, 3000), min_size=1, max_size=3),  # >= 3 frames: one frame is NaN there
    words=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4), min_size=3, max_size=3),
    return_tensors=st.sampled_from([None, "np", "pt"]),
    padding=st.sampled_from(PADDINGS),
)
def test_calls_on_clips_and_texts_of_any_length_return_what_transformers_returns(
    processors, lengths, words, return_tensors, padding
):
    texts = [" ".join(w) for w in words]
    kwargs, text = call_kwargs("both", False, return_tensors, padding, lengths, texts)
    assert_same_outcome(processors, kwargs, text)


def test_text_with_return_tensors_pt_gives_tensors_as_the_docstrings_of_transformers_use_it(processors):
    ours, theirs = processors
    labels = ours(text="HELLO WORLD", return_tensors="pt").input_ids
    assert isinstance(labels, torch.Tensor) and labels.dtype == torch.int64
    assert torch.equal(labels, theirs(text="HELLO WORLD", return_tensors="pt").input_ids)


# ---------------------------------------------------------------------------------------------- routing
ROUTINGS = {
    "flat to both": {"padding": "max_length", "max_length": 30, "truncation": True},
    "flat to one": {"sampling_rate": 16000, "add_special_tokens": False},
    "grouped": {"text_kwargs": {"padding": "max_length", "max_length": 20}, "audio_kwargs": {"sampling_rate": 16000}},
    "common": {"common_kwargs": {"return_tensors": "pt"}, "text_kwargs": {"padding": True}},
    "common below flat": {"common_kwargs": {"return_tensors": "np"}, "return_tensors": "pt", "padding": True},
    "grouped beside flat": {
        "text_kwargs": {"max_length": 9},
        "audio_kwargs": {"max_length": 300},
        "padding": "max_length",
        "truncation": True,
    },
    "refused alike": {"padding": "max_length"},  # no max_length: a ValueError in both
    "empty group": {"text_kwargs": {}, "return_tensors": "pt", "padding": True},
}


@pytest.mark.parametrize("defaults", [{}, {"padding": "max_length", "max_length": 50}], ids=["", "tokenizer defaults"])
@pytest.mark.parametrize("kwargs", ROUTINGS.values(), ids=ROUTINGS.keys())
def test_keywords_reach_the_parts_transformers_hands_them_to(processors, kwargs, defaults):
    ours, theirs = processors
    merged = ours._merge_kwargs(ours.valid_processor_kwargs, tokenizer_init_kwargs=defaults, **kwargs)
    reference = theirs._merge_kwargs(theirs.valid_processor_kwargs, tokenizer_init_kwargs=defaults, **kwargs)
    assert merged == {part: reference[part] for part in ("text_kwargs", "audio_kwargs")}
    texts = ["HELLO WORLD", "A FOX"]
    assert_same_outcome(processors, {"audio": clips([2000, 3000]), "text": texts, **kwargs}, texts)


def test_the_tokenizers_own_keywords_become_call_defaults_as_in_transformers(processors, tmp_path):
    import transformers

    ours, _ = processors
    ours.save_pretrained(tmp_path)
    tokenizer_kwargs = {"padding": "max_length", "max_length": 25}
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path, **tokenizer_kwargs)
    mine = Wav2Vec2BertProcessor(ours.feature_extractor, tokenizer)
    theirs = transformers.Wav2Vec2BertProcessor(
        transformers.SeamlessM4TFeatureExtractor.from_pretrained(tmp_path),
        transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path, **tokenizer_kwargs),
    )
    kwargs = {"audio": clips([1600]), "text": ["HELLO"], "sampling_rate": 16000, "return_tensors": "pt"}
    a, b = mine(**kwargs), theirs(**kwargs)
    assert a["labels"].shape == b["labels"].shape == (1, 25) and a["input_features"].shape == b["input_features"].shape
    assert mine(text="A").input_ids == theirs(text="A").input_ids and len(mine(text="A").input_ids) == 25
    assert len(mine(text="A", max_length=4).input_ids) == len(theirs(text="A", max_length=4).input_ids) == 4


def test_a_keyword_given_flat_and_grouped_is_a_value_error_in_both(processors):
    for processor in processors:
        with pytest.raises(ValueError, match="passed two times"):
            processor(text="A", audio=clips([1600]), text_kwargs={"padding": "do_not_pad"}, padding="max_length")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bogus": 1}, r"the processor got unexpected keyword argument\(s\) \['bogus'\]: the tokenizer takes"),
        ({"text_kwargs": {"sampling_rate": 16000}}, r"text_kwargs got unexpected keyword argument\(s\) \['sampling"),
        ({"audio_kwargs": {"add_special_tokens": True}}, r"audio_kwargs got unexpected keyword argument"),
        ({"common_kwargs": {"bogus": 1}}, r"common_kwargs got unexpected keyword argument"),
        ({"text_kwargs": 3}, "text_kwargs must be a dict of keyword arguments, got int"),
    ],
)
def test_a_keyword_no_part_takes_is_refused_where_transformers_drops_it(processors, kwargs, message):
    ours, _ = processors
    with pytest.raises(TypeError, match=message):
        ours(text="A", audio=clips([1600]), sampling_rate=16000, **kwargs)


def test_one_text_per_clip_is_required(processors):
    ours, _ = processors
    with pytest.raises(ValueError, match=r"got 2 audio clip\(s\) but 1 text\(s\): pass one text per clip"):
        ours(audio=clips([1600, 1600]), text=["A"], sampling_rate=16000)
    with pytest.raises(ValueError, match=r"pass audio=\.\.\., text=\.\.\., or both"):
        ours()


# ---------------------------------------------------------------------------------- the class, described
def test_the_class_describes_itself_as_transformers_does(processors):
    import transformers.processing_utils as reference

    ours, theirs = processors
    assert ours.get_attributes() == theirs.get_attributes() == type(ours).get_attributes()
    assert ours.model_input_names == theirs.model_input_names
    assert ours.to_dict() == theirs.to_dict() and ours.to_json_string() == theirs.to_json_string()
    assert repr(ours).startswith("Wav2Vec2BertProcessor:\n- feature_extractor: SeamlessM4TFeatureExtractor {")
    # Every keyword the call takes is one transformers' processors take, or the extractor's own.
    assert set(TextKwargs.__annotations__) <= set(reference.TextKwargs.__annotations__)
    own = {"do_normalize_per_mel_bins", "lengths"}
    assert set(AudioKwargs.__annotations__) - own <= set(reference.AudioKwargs.__annotations__)
    assert own <= set(inspect.signature(SeamlessM4TFeatureExtractor.__call__).parameters)
    # transformers' rule for processors: explicit __call__ arguments are the inputs, defaulting to None
    parameters = inspect.signature(Wav2Vec2BertProcessor.__call__).parameters
    assert [p.default for p in parameters.values() if p.kind == p.POSITIONAL_OR_KEYWORD][1:] == [None, None]


def test_to_json_file_writes_what_transformers_writes(processors, tmp_path: Path):
    ours, theirs = processors
    ours.to_json_file(tmp_path / "ours.json")
    theirs.to_json_file(tmp_path / "theirs.json")
    assert (tmp_path / "ours.json").read_text() == (tmp_path / "theirs.json").read_text()


def test_a_processor_around_transformers_own_feature_extractor_works_saves_and_reloads_as_transformers(tmp_path):
    # transformers' processor takes any of its feature extractors (its processor tests build one around
    # Wav2Vec2FeatureExtractor, whose key is "input_values"); code written for it hands ours the same objects
    import transformers

    (tmp_path / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path)
    ours = Wav2Vec2BertProcessor(transformers.Wav2Vec2FeatureExtractor(), tokenizer)
    theirs = transformers.Wav2Vec2BertProcessor(
        transformers.Wav2Vec2FeatureExtractor(), transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path)
    )
    audio, text = clips([800, 1200]), ["HELLO WORLD", "A FOX"]
    ours_out, theirs_out = ours(audio=audio, text=text), theirs(audio=audio, text=text)
    assert ours.model_input_names == theirs.model_input_names == ["input_values", "attention_mask", "labels"]
    for mine, expected in zip(ours_out["input_values"], theirs_out["input_values"], strict=True):
        np.testing.assert_array_equal(mine, expected)
    ours.save_pretrained(tmp_path / "saved")
    reloaded = Wav2Vec2BertProcessor.from_pretrained(tmp_path / "saved")
    assert type(reloaded.feature_extractor) is transformers.Wav2Vec2FeatureExtractor
    assert reloaded.feature_extractor.to_dict() == ours.feature_extractor.to_dict()
    with pytest.raises(TypeError, match="feature_extractor must be a SeamlessM4TFeatureExtractor"):
        Wav2Vec2BertProcessor(object(), tokenizer)
