"""`Wav2Vec2BertProcessor` and the `pad` methods behind it: transformers' outputs, types and dtypes, for a collator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from w2vbert import SeamlessM4TFeatureExtractor


def assert_same_batch(ours, theirs):
    """The same keys, each the same kind (tensor, array or list), dtype, shape and values (exactly)."""
    assert sorted(ours.keys()) == sorted(theirs.keys())
    for key in theirs.keys():
        a, b = ours[key], theirs[key]
        assert type(a) is type(b), (key, type(a), type(b))
        if isinstance(b, (torch.Tensor, np.ndarray)):
            assert a.dtype == b.dtype and a.shape == b.shape, (key, a.dtype, b.dtype, a.shape, b.shape)
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=key)
        else:
            assert a == b, key


def clips(dtype=np.float32, lengths=(3, 6, 5)):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((n, 160)).astype(dtype) for n in lengths]


# ------------------------------------------------------------------------------------ feature extractor pad
@pytest.fixture(scope="module")
def extractor_pair():
    import transformers

    return SeamlessM4TFeatureExtractor(padding_value=1.0), transformers.SeamlessM4TFeatureExtractor(padding_value=1.0)


FEATURE_INPUTS = {
    "numpy float32": lambda: [{"input_features": x} for x in clips()],
    "nested lists (a datasets column)": lambda: [{"input_features": x.tolist()} for x in clips()],
    "tensors": lambda: [{"input_features": torch.from_numpy(x)} for x in clips()],
    "numpy float16": lambda: [{"input_features": x} for x in clips(np.float16)],
    "with a list mask": lambda: [{"input_features": x, "attention_mask": [1] * len(x)} for x in clips()],
    "with an int32 mask": lambda: [{"input_features": x, "attention_mask": np.ones(len(x), np.int32)} for x in clips()],
    "with a scalar key": lambda: [{"input_features": x, "seconds": 0.5 * i} for i, x in enumerate(clips())],
    "a dict of lists": lambda: {"input_features": clips()},
}
PAD_OPTIONS = {
    "longest": {},
    "multiple of 4": {"pad_to_multiple_of": 4},
    "max_length, truncated": {"padding": "max_length", "max_length": 4, "truncation": True},
    "longest, truncated to a multiple": {"max_length": 3, "truncation": True, "pad_to_multiple_of": 2},
}


@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
@pytest.mark.parametrize("options", PAD_OPTIONS.values(), ids=PAD_OPTIONS.keys())
@pytest.mark.parametrize("inputs", FEATURE_INPUTS.values(), ids=FEATURE_INPUTS.keys())
def test_feature_pad_equals_transformers_in_values_dtypes_and_kinds(extractor_pair, inputs, options, return_tensors):
    ours, theirs = extractor_pair
    assert_same_batch(
        ours.pad(inputs(), return_tensors=return_tensors, **options),
        theirs.pad(inputs(), return_tensors=return_tensors, **options),
    )


def test_feature_pad_on_the_left_equals_transformers():
    import transformers

    ours = SeamlessM4TFeatureExtractor(padding_value=1.0, padding_side="left")
    theirs = transformers.SeamlessM4TFeatureExtractor(padding_value=1.0, padding_side="left")
    inputs = [{"input_features": x} for x in clips()]
    assert_same_batch(ours.pad(inputs, return_tensors="pt"), theirs.pad(inputs, return_tensors="pt"))


@pytest.mark.parametrize("padding", ["foo", "true", 1, None])
def test_an_unknown_padding_strategy_is_refused_by_pad_and_by_the_extractor(padding):
    extractor = SeamlessM4TFeatureExtractor()
    accepted = r"True, False, 'longest', 'max_length' or 'do_not_pad'"
    with pytest.raises(ValueError, match=accepted):
        extractor.pad([{"input_features": x} for x in clips()], padding=padding)
    with pytest.raises(ValueError, match=accepted):
        extractor(np.zeros(8000, np.float32), sampling_rate=16000, padding=padding)


def test_pad_and_the_extractor_read_max_length_and_multiples_alike():
    """One padding rule: the extractor's frames and pad's steps are padded to the same rounded lengths."""
    extractor = SeamlessM4TFeatureExtractor()
    inputs = [{"input_features": x} for x in clips(lengths=(3, 7))]
    assert extractor.pad(inputs, pad_to_multiple_of=4)["input_features"].shape[1] == 8
    assert extractor.pad(inputs, padding="max_length", max_length=9)["input_features"].shape[1] == 9
    assert (
        extractor.pad(inputs, padding="max_length", max_length=9, pad_to_multiple_of=4)["input_features"].shape[1] == 12
    )
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        extractor.pad(inputs, padding="max_length")
    with pytest.raises(ValueError, match=r"padding='max_length' needs max_length \(in 10 ms frames\)"):
        extractor(np.zeros(8000, np.float32), sampling_rate=16000, padding="max_length")
    with pytest.raises(ValueError, match="truncation=True needs max_length"):
        extractor.pad(inputs, truncation=True)
    audio = np.zeros(16000, np.float32)  # 98 frames
    out = extractor(audio, sampling_rate=16000, padding="max_length", max_length=99, pad_to_multiple_of=4)
    assert out["input_features"].shape[1] == 50  # 99 frames rounded up to 100, stacked in pairs
    with pytest.raises(ValueError, match="pad_to_multiple_of must be a positive integer"):
        extractor.pad(inputs, pad_to_multiple_of=0)


def test_feature_pad_refuses_inputs_it_cannot_pad_with_the_reason():
    extractor = SeamlessM4TFeatureExtractor()
    with pytest.raises(TypeError, match=r"list of dicts.*got a list of ndarray.*wrap each"):
        extractor.pad(clips())
    with pytest.raises(ValueError, match=r"needs 'input_features', got keys \['input_values'\]"):
        extractor.pad([{"input_values": x} for x in clips()])
    with pytest.raises(TypeError, match="example 0: 'input_features' must hold numbers"):
        extractor.pad([{"input_features": "abc"}])
    with pytest.raises(ValueError, match="example 1: attention_mask of shape"):
        extractor.pad([{"input_features": x, "attention_mask": [1, 1, 1]} for x in clips()])
    with pytest.raises(ValueError, match="pad them first"):
        extractor.pad([{"input_features": x} for x in clips()], padding=False, return_tensors="pt")
