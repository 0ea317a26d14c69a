"""`Wav2Vec2BertProcessor` and the `pad` methods behind it: transformers' outputs, types and dtypes, for a collator."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import assert_same_outputs
from w2vbert import SeamlessM4TFeatureExtractor, Wav2Vec2BertProcessor, Wav2Vec2CTCTokenizer, load_audio


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
    assert_same_outputs(
        ours.pad(inputs(), return_tensors=return_tensors, **options),
        theirs.pad(inputs(), return_tensors=return_tensors, **options),
    )


def test_feature_pad_on_the_left_equals_transformers():
    import transformers

    ours = SeamlessM4TFeatureExtractor(padding_value=1.0, padding_side="left")
    theirs = transformers.SeamlessM4TFeatureExtractor(padding_value=1.0, padding_side="left")
    inputs = [{"input_features": x} for x in clips()]
    assert_same_outputs(ours.pad(inputs, return_tensors="pt"), theirs.pad(inputs, return_tensors="pt"))


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


# ---------------------------------------------------------------------- the fine-tuning blog's data collator
DATA = Path(__file__).parent / "data"
CLIPS = ["hello.wav", "quick.wav", "numbers.wav", "short.wav"]
SENTENCES = ["hello world", "the quick brown fox", "one two three four five", "hi", "zebra quiz"]


@dataclass
class DataCollatorCTCWithPadding:
    """The collator of "Fine-tune W2V2-Bert for low-resource ASR with 🤗 Transformers", as written there."""

    processor: Any
    padding: bool | str = True

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_features = [{"input_features": f["input_features"]} for f in features]
        label_features = [{"input_ids": f["labels"]} for f in features]
        batch = self.processor.pad(input_features, padding=self.padding, return_tensors="pt")
        labels_batch = self.processor.pad(labels=label_features, padding=self.padding, return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        batch["labels"] = labels
        return batch


def blog_vocab(directory: Path) -> Path:
    """The blog's vocabulary: every character of the transcripts, "|" in place of the space, [UNK] and [PAD]."""
    vocab = {c: i for i, c in enumerate(sorted(set("".join(SENTENCES))))}
    vocab["|"] = vocab.pop(" ")
    vocab["[UNK]"] = len(vocab)
    vocab["[PAD]"] = len(vocab)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    return directory


@pytest.fixture(scope="module")
def processors(tmp_path_factory):
    """(ours, transformers') processors as the blog builds them: the tokenizer from the vocab directory, the
    extractor of the base checkpoint (padding_value 1.0)."""
    import transformers

    directory = blog_vocab(tmp_path_factory.mktemp("vocab"))
    kwargs = dict(unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|")
    ours = Wav2Vec2BertProcessor(
        SeamlessM4TFeatureExtractor(padding_value=1.0), Wav2Vec2CTCTokenizer.from_pretrained(directory, **kwargs)
    )
    theirs = transformers.Wav2Vec2BertProcessor(
        feature_extractor=transformers.SeamlessM4TFeatureExtractor(padding_value=1.0),
        tokenizer=transformers.Wav2Vec2CTCTokenizer.from_pretrained(directory, **kwargs),
    )
    return ours, theirs


def prepared(processor) -> list[dict[str, Any]]:
    """The blog's prepare_dataset on speech clips and a noise clip, one example per (clip, sentence)."""
    audios = [load_audio(DATA / name) for name in CLIPS]
    audios.append(np.random.default_rng(0).uniform(-0.3, 0.3, 9000).astype(np.float32))
    examples = []
    for audio, sentence in zip(audios, SENTENCES, strict=True):
        example = {"input_features": processor(audio, sampling_rate=16000).input_features[0]}
        example["input_length"] = len(example["input_features"])
        example["labels"] = processor(text=sentence).input_ids
        examples.append(example)
    return examples


def as_stored(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The examples as a `datasets` column gives them back: nested Python lists."""
    return [{k: np.asarray(v).tolist() if k != "input_length" else v for k, v in e.items()} for e in examples]


def test_the_blog_collator_gives_transformers_tensors(processors):
    ours, theirs = processors
    mine, reference = prepared(ours), prepared(theirs)
    for a, b in zip(mine, reference, strict=True):  # the preparation itself agrees (features to 1e-4)
        assert a["labels"] == b["labels"] and a["input_length"] == b["input_length"]
        np.testing.assert_allclose(np.asarray(a["input_features"]), b["input_features"], atol=1e-4, rtol=0)
    for examples in (reference, mine, as_stored(reference)):
        batch = DataCollatorCTCWithPadding(ours)(examples)
        assert_same_outputs(batch, DataCollatorCTCWithPadding(theirs)(examples))
        assert batch["input_features"].dtype == torch.float32 and batch["attention_mask"].dtype == torch.int32
        assert batch["labels"].dtype == torch.int64 and (batch["labels"][3, 2:] == -100).all()  # "hi" is 2 long


def test_the_blog_compute_metrics_pattern_decodes_as_transformers(processors):
    ours, theirs = processors
    batch = DataCollatorCTCWithPadding(ours)(prepared(ours))
    vocab_size = ours.tokenizer.vocab_size
    pred_ids = np.random.default_rng(1).integers(0, vocab_size, size=(batch["labels"].shape[0], 40))
    for processor in (ours, theirs):  # the Trainer hands numpy arrays to compute_metrics
        label_ids = batch["labels"].numpy().copy()
        label_ids[label_ids == -100] = processor.tokenizer.pad_token_id
        processor.decoded = processor.batch_decode(label_ids, group_tokens=False), processor.batch_decode(pred_ids)
    assert ours.decoded == theirs.decoded
    assert ours.decoded[0] == SENTENCES


@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
def test_processor_pad_of_labels_features_or_both_equals_transformers(processors, return_tensors):
    ours, theirs = processors
    examples = prepared(theirs)
    features = [{"input_features": e["input_features"]} for e in examples]
    labels = [{"input_ids": e["labels"]} for e in examples]
    for kwargs in ({"labels": labels}, {"input_features": features}, {"input_features": features, "labels": labels}):
        assert_same_outputs(
            ours.pad(padding=True, return_tensors=return_tensors, **kwargs),
            theirs.pad(padding=True, return_tensors=return_tensors, **kwargs),
        )
    out = ours.pad(labels=labels, return_tensors=return_tensors)
    assert out.attention_mask is out["attention_mask"] and out.input_ids is out["input_ids"]
    with pytest.raises(ValueError, match="pass input_features=..., labels=..., or both"):
        ours.pad()
    with pytest.raises(TypeError, match=r"wrap each id sequence as \{'input_ids': ids\}"):
        ours.pad(labels=[e["labels"] for e in examples])
    with pytest.raises(ValueError, match="no tokenizer .* cannot pad labels"):
        Wav2Vec2BertProcessor(SeamlessM4TFeatureExtractor()).pad(labels=labels)


# ------------------------------------------------------------------------------- from_pretrained keywords
@pytest.fixture
def processor_dir(tmp_path):
    vocab = json.loads((blog_vocab(tmp_path / "vocab") / "vocab.json").read_text())
    upper = {token.upper() if len(token) == 1 else token: index for token, index in vocab.items()}
    tokenizer = Wav2Vec2CTCTokenizer(vocab=upper, unk_token="[UNK]", pad_token="[PAD]")
    processor = Wav2Vec2BertProcessor(SeamlessM4TFeatureExtractor(padding_value=1.0), tokenizer)
    processor.save_pretrained(tmp_path / "model" / "sub")
    return tmp_path / "model"


@pytest.mark.parametrize("entry", ["Wav2Vec2BertProcessor", "AutoProcessor"])
def test_from_pretrained_keywords_go_to_the_part_that_takes_them(processor_dir, tmp_path, entry):
    import w2vbert

    load = getattr(w2vbert, entry).from_pretrained
    processor = load(processor_dir, subfolder="sub", do_lower_case=True, padding_value=0.5)
    assert processor.tokenizer.do_lower_case
    assert processor.tokenizer("hello").input_ids == processor.tokenizer("HELLO").input_ids  # an upper-case vocab
    assert processor.feature_extractor.padding_value == 0.5 and "do_lower_case" not in processor.feature_extractor.extra
    assert "padding_value" not in processor.tokenizer.extra
    processor.save_pretrained(tmp_path / "saved")
    assert "do_lower_case" not in json.loads((tmp_path / "saved" / "preprocessor_config.json").read_text())
    assert json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())["do_lower_case"] is True
    assert "padding_value" not in json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())


def test_from_pretrained_refuses_a_keyword_no_part_takes_and_lists_what_each_takes(processor_dir):
    from w2vbert import AutoProcessor

    for load in (Wav2Vec2BertProcessor.from_pretrained, AutoProcessor.from_pretrained):
        with pytest.raises(TypeError, match=r"unknown keyword\(s\) \['bogus'\]") as error:
            load(processor_dir, subfolder="sub", bogus=1, do_lower_case=True)
        assert "'padding_value'" in str(error.value) and "'do_lower_case'" in str(error.value)
        assert "'subfolder'" in str(error.value)


def test_saving_names_the_processor_class_in_the_file_not_in_the_extractor(processors, tmp_path):
    import transformers

    ours, _ = processors
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["processor_class"] == "Wav2Vec2BertProcessor"
    assert "processor_class" not in ours.feature_extractor.to_dict()  # saving leaves the extractor as it was
    theirs = transformers.AutoProcessor.from_pretrained(tmp_path)
    assert type(theirs) is transformers.Wav2Vec2BertProcessor
    assert theirs.feature_extractor.to_dict() == ours.feature_extractor.to_dict()
    reloaded = Wav2Vec2BertProcessor.from_pretrained(tmp_path)
    assert reloaded.feature_extractor.to_dict() == ours.feature_extractor.to_dict()


def test_from_pretrained_hands_transformers_tokenizer_keywords_to_the_tokenizer(processor_dir, tmp_path):
    """transformers' `from_pretrained(d, cls_token=..., sep_token=...)`: the tokenizer keeps and saves them."""
    import transformers

    kwargs = {"cls_token": "(CLS)", "sep_token": "(SEP)", "model_max_length": 64}
    Wav2Vec2BertProcessor.from_pretrained(processor_dir, subfolder="sub", **kwargs).save_pretrained(tmp_path / "ours")
    theirs = transformers.Wav2Vec2BertProcessor.from_pretrained(processor_dir / "sub", **kwargs)
    theirs.save_pretrained(tmp_path / "theirs")
    ours_config, theirs_config = (
        json.loads((tmp_path / name / "tokenizer_config.json").read_text()) for name in ("ours", "theirs")
    )
    assert {k: ours_config[k] for k in kwargs} == {k: theirs_config[k] for k in kwargs} == kwargs
    assert "cls_token" not in json.loads((tmp_path / "ours" / "preprocessor_config.json").read_text())


def test_from_pretrained_uses_the_parts_it_is_given_as_transformers_does(processor_dir):
    import transformers

    extractor = SeamlessM4TFeatureExtractor(padding_value=0.25)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(processor_dir, subfolder="sub", do_lower_case=True)
    ours = Wav2Vec2BertProcessor.from_pretrained(processor_dir, subfolder="sub", feature_extractor=extractor)
    theirs = transformers.Wav2Vec2BertProcessor.from_pretrained(
        processor_dir / "sub", feature_extractor=transformers.SeamlessM4TFeatureExtractor(padding_value=0.25)
    )
    assert ours.feature_extractor is extractor and ours.to_dict() == theirs.to_dict()
    given = Wav2Vec2BertProcessor.from_pretrained(processor_dir, subfolder="sub", tokenizer=tokenizer)
    assert given.tokenizer is tokenizer


def test_transformers_auto_classes_load_our_extractor_without_their_loading_flags(processor_dir):
    """AutoFeatureExtractor calls a class's from_pretrained with `_from_auto=True`: not a setting, not kept."""
    ours = SeamlessM4TFeatureExtractor.from_pretrained(processor_dir, subfolder="sub", _from_auto=True)
    assert ours.to_dict() == SeamlessM4TFeatureExtractor.from_pretrained(processor_dir, subfolder="sub").to_dict()
    assert "_from_auto" not in ours.to_json_string()


# ------------------------------------------------------------------------- processor(audio=..., text=...)
def test_labels_beside_speech_are_the_tokenizers_ids_with_minus_100_where_it_padded(processors):
    """transformers' labels (the tokenizer's input_ids under the call's padding), -100 where transformers leaves
    the pad id: the CTC loss ignores -100, and would read the pad id as a blank target."""
    ours, theirs = processors
    audio = [load_audio(DATA / "hello.wav"), load_audio(DATA / "quick.wav")]
    texts = ["hello world", "the quick brown fox"]
    out = ours(audio=audio, text=texts, sampling_rate=16000, padding=True, return_tensors="pt")
    reference = theirs(audio=audio, text=texts, sampling_rate=16000, padding=True, return_tensors="pt")
    assert out["labels"].shape == reference["labels"].shape == (2, 19) and out["labels"].dtype == torch.int64
    assert (out["labels"][0, 11:] == -100).all() and (reference["labels"][0, 11:] == ours.tokenizer.pad_token_id).all()
    assert torch.equal(out["labels"][1], reference["labels"][1]) and ours.decode(out["labels"][1]) == texts[1]
    unpadded = ours(audio=audio, text=texts, sampling_rate=16000)  # transformers' defaults: numpy and lists
    assert isinstance(unpadded["input_features"], np.ndarray)
    assert unpadded["labels"] == theirs(audio=audio, text=texts, sampling_rate=16000)["labels"]
    with pytest.raises(ValueError, match="pad them first"):  # ragged ids make no tensor, as in transformers
        ours(audio=audio, text=texts, sampling_rate=16000, return_tensors="pt")


def test_a_text_that_is_not_a_string_is_a_type_error(processors):
    ours, _ = processors
    with pytest.raises(TypeError, match="expected str"):
        ours(text=["hello", 3])
