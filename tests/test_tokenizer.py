"""`Wav2Vec2CTCTokenizer`, CTC decoding and the processor: transformers' behaviour on the same vocabulary."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_same_outputs
from w2vbert import SeamlessM4TFeatureExtractor, Wav2Vec2BertProcessor, Wav2Vec2CTCTokenizer, build_vocab, load_audio

DATA = Path(__file__).parent / "data"
TEXTS = ["the quick brown fox", "jumps over the lazy dog", "hello world"]


@pytest.fixture
def vocab_dir(tmp_path):
    vocab = build_vocab(TEXTS) | {"<s>": 100, "</s>": 101}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    return tmp_path


def pair(vocab_dir, **kwargs):
    import transformers

    kwargs = dict(unk_token="[UNK]", pad_token="[PAD]") | kwargs
    theirs = transformers.Wav2Vec2CTCTokenizer(str(vocab_dir / "vocab.json"), **kwargs)
    return Wav2Vec2CTCTokenizer(vocab_dir / "vocab.json", **kwargs), theirs


def test_build_vocab_follows_the_fine_tuning_recipe():
    vocab = build_vocab(["Ab c", "ba"])
    assert vocab == {"a": 0, "b": 1, "c": 2, "|": 3, "[UNK]": 4, "[PAD]": 5}
    with pytest.raises(ValueError, match="no characters"):
        build_vocab(["   "])


@pytest.mark.parametrize(
    "text", ["the quick brown fox", "  spaced  out ", "unknown ¿chars! here", "a [UNK] b", "x<s>y"]
)
def test_encoding_equals_transformers(vocab_dir, text):
    ours, theirs = pair(vocab_dir)
    assert ours(text).input_ids == theirs(text).input_ids
    assert ours([text, "ab"], padding=True)["input_ids"] == theirs([text, "ab"], padding=True)["input_ids"]


def test_do_lower_case_means_an_upper_case_vocabulary(tmp_path):
    vocab = build_vocab(["ABC D"], lowercase=False)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    ours, theirs = pair(tmp_path, do_lower_case=True)
    assert ours("abc d").input_ids == theirs("abc d").input_ids
    ids = ours("abc d").input_ids
    assert ours.decode(ids) == theirs.decode(ids) == "abc d"


def test_unknown_characters_map_to_unk_and_are_reported_once(vocab_dir, caplog):
    ours, _ = pair(vocab_dir)
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        ids = ours("qz7 77").input_ids
        ours("7")
    assert ids.count(ours.unk_token_id) == 3
    assert caplog.text.count("not in the vocabulary") == 1 and "'7'" in caplog.text


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.integers(0, 25), max_size=40), skip=st.booleans(), group=st.booleans())
def test_ctc_decoding_equals_transformers(ids, skip, group):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        vocab = build_vocab(TEXTS)
        Path(tmp, "vocab.json").write_text(json.dumps(vocab))
        ours, theirs = pair(Path(tmp))
    ids = [i % len(vocab) for i in ids]
    kwargs = dict(skip_special_tokens=skip, group_tokens=group)
    assert ours.decode(ids, **kwargs) == theirs.decode(ids, **kwargs)
    a = ours.decode(ids, output_char_offsets=True, output_word_offsets=True, **kwargs)
    b = theirs.decode(ids, output_char_offsets=True, output_word_offsets=True, **kwargs)
    assert a.text == b.text
    assert [(o["char"], int(o["start_offset"]), int(o["end_offset"])) for o in b.char_offsets] == [
        (o["char"], o["start_offset"], o["end_offset"]) for o in a.char_offsets
    ]
    assert [(o["word"], int(o["start_offset"]), int(o["end_offset"])) for o in b.word_offsets] == [
        (o["word"], o["start_offset"], o["end_offset"]) for o in a.word_offsets
    ]


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", max_size=30))
def test_labels_decode_back_to_the_text_without_grouping(text):
    tokenizer = Wav2Vec2CTCTokenizer(
        vocab=build_vocab(["abcdefghijklmnopqrstuvwxyz"]), unk_token="[UNK]", pad_token="[PAD]"
    )
    assert tokenizer.decode(tokenizer.encode(text), group_tokens=False) == text.strip()


def test_files_load_both_ways_with_transformers(vocab_dir, tmp_path):
    import transformers

    ours, theirs = pair(vocab_dir)
    ours.save_pretrained(tmp_path / "ours")
    loaded = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "ours")
    assert loaded("hello world").input_ids == ours("hello world").input_ids and loaded.pad_token == "[PAD]"
    theirs.save_pretrained(tmp_path / "theirs")
    back = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "theirs")
    assert back("hello world").input_ids == theirs("hello world").input_ids and back.unk_token == "[UNK]"


def test_a_directory_without_vocab_says_it_has_no_tokenizer(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no vocab.json"):
        Wav2Vec2CTCTokenizer.from_pretrained(tmp_path)


def test_processor_gives_features_and_minus_100_padded_labels(vocab_dir, tmp_path):
    tokenizer, _ = pair(vocab_dir)
    processor = Wav2Vec2BertProcessor(SeamlessM4TFeatureExtractor(padding_value=1.0), tokenizer)
    clips = [load_audio(DATA / "hello.wav"), load_audio(DATA / "quick.wav")]
    out = processor(audio=clips, text=["hello world", "the quick brown fox"], sampling_rate=16000,
                    padding=True, return_tensors="pt")
    assert out["input_features"].shape[0] == 2 and out["labels"].shape == (2, 19)
    assert (out["labels"][0, 11:] == -100).all() and processor.decode(out["labels"][1]) == "the quick brown fox"
    with pytest.raises(ValueError, match="2 audio clip.*1 text"):
        processor(audio=clips, text=["one text"], sampling_rate=16000)
    padded = processor.pad(labels=[{"input_ids": [1, 2]}, {"input_ids": [3]}], return_tensors="pt")
    assert padded["input_ids"].tolist() == [[1, 2], [3, tokenizer.pad_token_id]]
    assert padded.attention_mask.tolist() == [[1, 1], [1, 0]]
    processor.save_pretrained(tmp_path / "p")
    assert Wav2Vec2BertProcessor.from_pretrained(tmp_path / "p").tokenizer.get_vocab() == tokenizer.get_vocab()


def test_a_checkpoint_without_tokenizer_gives_a_feature_extractor_only_processor(tmp_path, caplog):
    SeamlessM4TFeatureExtractor().save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        processor = Wav2Vec2BertProcessor.from_pretrained(tmp_path)
    assert processor.tokenizer is None and "has no vocab.json" in caplog.text
    assert processor(audio=np.zeros(8000, np.float32), sampling_rate=16000)["input_features"].shape[-1] == 160
    with pytest.raises(ValueError, match="no tokenizer"):
        processor.batch_decode([[1, 2]])


# ------------------------------------------------------------------------------------------- CTC decoding
BLOG_VOCAB = {"a": 0, "b": 1, "c": 2, "|": 3, "[UNK]": 4, "[PAD]": 5}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"c": -1}, r"token 'c' has the negative id -1"),
        ({"c": "2"}, r"token 'c' has id '2' \(str\); ids must be integers"),
        ({"c": 1.5}, r"token 'c' has id 1.5 \(float\); ids must be integers"),
        ({"c": 2.0}, r"token 'c' has id 2.0 \(float\); ids must be integers"),
        ({"c": True}, r"token 'c' has id True \(bool\); ids must be integers"),
        ({"c": None}, r"token 'c' has id None"),
        ({"c": 1}, r"tokens 'b' and 'c' share the id 1"),
    ],
)
def test_a_bad_id_in_vocab_json_is_refused_naming_the_file_and_the_token(tmp_path, bad, message):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(BLOG_VOCAB | bad))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        Wav2Vec2CTCTokenizer(path, unk_token="[UNK]", pad_token="[PAD]")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        Wav2Vec2CTCTokenizer.from_pretrained(tmp_path, unk_token="[UNK]", pad_token="[PAD]")
    with pytest.raises(ValueError, match="the vocab dict.*" + message):
        Wav2Vec2CTCTokenizer(vocab=BLOG_VOCAB | bad, unk_token="[UNK]", pad_token="[PAD]")


def test_a_multilingual_vocab_needs_target_lang_and_its_section_is_checked(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"eng": BLOG_VOCAB, "fra": BLOG_VOCAB | {"é": -3}}))
    with pytest.raises(ValueError, match=r"multilingual vocabulary .*\['eng', 'fra'\].*target_lang"):
        Wav2Vec2CTCTokenizer(path, unk_token="[UNK]", pad_token="[PAD]")
    assert Wav2Vec2CTCTokenizer(path, unk_token="[UNK]", pad_token="[PAD]", target_lang="eng").max_vocab_id == 5
    with pytest.raises(ValueError, match=r"\['fra'\]: token 'é' has the negative id -3"):
        Wav2Vec2CTCTokenizer(path, unk_token="[UNK]", pad_token="[PAD]", target_lang="fra")


def test_the_largest_ids_are_exposed_for_a_check_against_the_ctc_head():
    tokenizer = Wav2Vec2CTCTokenizer(vocab=BLOG_VOCAB | {"z": 9}, unk_token="[UNK]", pad_token="[PAD]")
    assert tokenizer.max_vocab_id == 9  # a gap in the ids: the head needs 10 outputs, not vocab_size = 7
    assert tokenizer.max_token_id >= tokenizer.max_vocab_id


# ------------------------------------------------------------------- files saved by transformers, and back
SENTENCES = ["hello world", "the quick brown fox", "jumps over the lazy dog"]
PROBES = [
    "hello world",
    "HELLO World",
    "a <s> b</s>c",
    "<s>hello</s>",
    "<S>hello",
    "x [UNK] y",
    "[unk] lower",
    "a  [PAD]  b",
    "q7 ¿é!",
    "  spaced  out ",
    "",
]


def blog_vocab_dir(path: Path, upper: bool = False) -> Path:
    """vocab.json as the fine-tuning blog builds it: the characters, "|" for the space, then [UNK] and [PAD]."""
    chars = sorted(set("".join(s.upper() if upper else s for s in SENTENCES)))
    vocab = {c: i for i, c in enumerate(chars)}
    vocab["|"] = vocab.pop(" ")
    vocab["[UNK]"] = len(vocab)
    vocab["[PAD]"] = len(vocab)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    return path


def saved_by_transformers(tmp_path: Path, do_lower_case: bool, layout: str) -> Path:
    """A tokenizer directory written by transformers' save_pretrained; "legacy" strips it to the older layout
    (no added_tokens_decoder in tokenizer_config.json, the added tokens in added_tokens.json only)."""
    import transformers

    source = blog_vocab_dir(tmp_path / "vocab", upper=do_lower_case)
    theirs = transformers.Wav2Vec2CTCTokenizer.from_pretrained(
        source, unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|", do_lower_case=do_lower_case
    )
    directory = tmp_path / "saved"
    theirs.save_pretrained(directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    # What transformers 5 writes: the added tokens under their ids, and <s> / </s> in added_tokens.json too
    assert "added_tokens_decoder" in config
    assert json.loads((directory / "added_tokens.json").read_text()) == {
        "<s>": theirs.vocab_size,
        "</s>": theirs.vocab_size + 1,
    }
    if layout == "legacy":
        del config["added_tokens_decoder"]
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
        (directory / "special_tokens_map.json").write_text(
            json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "[UNK]", "pad_token": "[PAD]"})
        )
    return directory


def offsets_of(output):
    """Char and word offsets as plain tuples (transformers' offsets are numpy integers)."""
    chars = [[(o["char"], int(o["start_offset"]), int(o["end_offset"])) for o in row] for row in output.char_offsets]
    words = [[(o["word"], int(o["start_offset"]), int(o["end_offset"])) for o in row] for row in output.word_offsets]
    return output.text, chars, words


def assert_same_tokenizer(ours, theirs):
    """Ids, vocabulary and decoding of transformers' tokenizer, on texts with special, unknown and upper-case text."""
    assert len(ours) == len(theirs) and ours.vocab_size == theirs.vocab_size
    assert ours.get_vocab() == theirs.get_vocab()
    assert ours.all_special_tokens == theirs.all_special_tokens
    for name in ("pad_token_id", "unk_token_id", "bos_token_id", "eos_token_id", "word_delimiter_token_id"):
        assert getattr(ours, name) == getattr(theirs, name), name
    for text in PROBES:
        assert ours(text).input_ids == theirs(text).input_ids, text
        assert ours.tokenize(text) == theirs.tokenize(text), text
    rows = [theirs(text).input_ids for text in PROBES] + [
        [0, 0, len(theirs) - 1, len(theirs) - 2, theirs.pad_token_id, 1, 1, 999, 2],
        list(range(len(theirs) + 1)),
    ]
    for options in [
        {},
        {"group_tokens": False},
        {"skip_special_tokens": True},
        {"spaces_between_special_tokens": True},
    ]:
        for row in rows:
            assert ours.decode(row, **options) == theirs.decode(row, **options), (row, options)
        assert ours.batch_decode(rows, **options) == theirs.batch_decode(rows, **options)
        with_offsets = dict(options, output_char_offsets=True, output_word_offsets=True)
        assert offsets_of(ours.batch_decode(rows, **with_offsets)) == offsets_of(
            theirs.batch_decode(rows, **with_offsets)
        )


@pytest.mark.parametrize("layout", ["added_tokens_decoder", "legacy"])
@pytest.mark.parametrize("do_lower_case", [False, True])
def test_a_tokenizer_saved_by_transformers_loads_to_its_ids(tmp_path, do_lower_case, layout):
    import transformers

    directory = saved_by_transformers(tmp_path, do_lower_case, layout)
    theirs = transformers.Wav2Vec2CTCTokenizer.from_pretrained(directory)
    ours = Wav2Vec2CTCTokenizer.from_pretrained(directory)
    assert len(ours) == ours.vocab_size + 2 and ours.bos_token_id == ours.vocab_size  # <s>, </s> appended
    assert ours.max_token_id == len(ours) - 1 and ours.max_vocab_id == ours.vocab_size - 1
    assert_same_tokenizer(ours, theirs)


@pytest.mark.parametrize("do_lower_case", [False, True])
def test_our_saved_tokenizer_loads_in_transformers_to_the_same_ids_and_back(tmp_path, do_lower_case):
    import transformers

    directory = saved_by_transformers(tmp_path, do_lower_case, "added_tokens_decoder")
    theirs = transformers.Wav2Vec2CTCTokenizer.from_pretrained(directory)
    Wav2Vec2CTCTokenizer.from_pretrained(directory).save_pretrained(tmp_path / "ours")
    reloaded_by_them = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "ours")
    assert_same_tokenizer(Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "ours"), theirs)
    assert_same_tokenizer(Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "ours"), reloaded_by_them)
    # vocab.json stays the vocabulary: the added tokens are not folded into it
    assert json.loads((tmp_path / "ours" / "vocab.json").read_text()) == json.loads(
        (directory / "vocab.json").read_text()
    )
    assert json.loads((tmp_path / "ours" / "added_tokens.json").read_text()) == json.loads(
        (directory / "added_tokens.json").read_text()
    )


def test_a_fresh_tokenizer_numbers_its_added_tokens_as_transformers(tmp_path):
    import transformers

    directory = blog_vocab_dir(tmp_path)
    kwargs = dict(unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|")
    assert_same_tokenizer(
        Wav2Vec2CTCTokenizer(directory / "vocab.json", **kwargs),
        transformers.Wav2Vec2CTCTokenizer(str(directory / "vocab.json"), **kwargs),
    )
    # no "|" in the vocabulary: transformers appends it after <s> and </s>
    vocab = {"a": 0, "b": 1, "[UNK]": 2, "[PAD]": 3}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    ours = Wav2Vec2CTCTokenizer(tmp_path / "vocab.json", unk_token="[UNK]", pad_token="[PAD]")
    theirs = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"), unk_token="[UNK]", pad_token="[PAD]")
    assert ours.get_vocab() == theirs.get_vocab() == vocab | {"<s>": 4, "</s>": 5, "|": 6}
    assert ours("a b").input_ids == theirs("a b").input_ids == [0, 6, 1]
    # without bos / eos nothing is appended (what w2vbert's trainer builds)
    ours = Wav2Vec2CTCTokenizer(vocab=BLOG_VOCAB, unk_token="[UNK]", pad_token="[PAD]", bos_token=None, eos_token=None)
    assert len(ours) == ours.vocab_size == 6 and ours.bos_token_id is None


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(
        st.sampled_from(
            ["a", "c", "h", "A", "C", " ", "  ", "\t", "<s>", "</s>", "<", "s>", "[UNK]", "[unk]", "ch", "cha", "é"]
        ),
        max_size=8,
    ),
    do_lower_case=st.booleans(),
)
def test_tokenization_with_overlapping_whole_tokens_equals_transformers(pieces, do_lower_case):
    import tempfile

    import transformers

    chars = "ACH" if do_lower_case else "ach"
    vocab = {c: i for i, c in enumerate(chars)} | {"|": 3, "[UNK]": 4, "[PAD]": 5, chars[1:]: 6, chars: 7}
    kwargs = dict(unk_token="[UNK]", pad_token="[PAD]", do_lower_case=do_lower_case)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "vocab.json").write_text(json.dumps(vocab))
        ours = Wav2Vec2CTCTokenizer(Path(tmp, "vocab.json"), **kwargs)
        theirs = transformers.Wav2Vec2CTCTokenizer(str(Path(tmp, "vocab.json")), **kwargs)
    text = "".join(pieces)
    assert ours(text).input_ids == theirs(text).input_ids


# ------------------------------------------------------------------------------------------ pad and call
PAD_INPUTS = {
    "lists": lambda: [{"input_ids": [1, 2, 3]}, {"input_ids": [4]}, {"input_ids": [5, 6]}],
    "tensors": lambda: [{"input_ids": torch.tensor(ids)} for ids in ([1, 2, 3], [4], [5, 6])],
    "int32 arrays": lambda: [{"input_ids": np.array(ids, np.int32)} for ids in ([1, 2, 3], [4], [5, 6])],
    "0-d tensors": lambda: [{"input_ids": list(torch.tensor(ids))} for ids in ([1, 2, 3], [4], [5, 6])],
    "with masks": lambda: [{"input_ids": [1, 2], "attention_mask": [1, 1]}, {"input_ids": [3], "attention_mask": [1]}],
    "with another key": lambda: [{"input_ids": [1, 2], "speaker": 3}, {"input_ids": [3], "speaker": 4}],
    "a dict of lists": lambda: {"input_ids": [[1, 2, 3], [4]]},
    "one example": lambda: {"input_ids": [1, 2, 3]},
    "a batch tensor": lambda: {"input_ids": torch.tensor([[1, 2], [3, 4]])},
}
PAD_OPTIONS = {
    "longest": {},
    "not padded": {"padding": False},
    "multiple of 4": {"pad_to_multiple_of": 4},
    "max_length": {"padding": "max_length", "max_length": 5},
    "max_length shorter than one": {"padding": "max_length", "max_length": 2},
    "left": {"padding_side": "left"},
    "no mask": {"return_attention_mask": False},
}


@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
@pytest.mark.parametrize("options", PAD_OPTIONS.values(), ids=PAD_OPTIONS.keys())
@pytest.mark.parametrize("inputs", PAD_INPUTS.values(), ids=PAD_INPUTS.keys())
def test_tokenizer_pad_equals_transformers(vocab_dir, inputs, options, return_tensors):
    ours, theirs = pair(vocab_dir)
    if options.get("return_attention_mask") is False and "attention_mask" in str(inputs()):
        # transformers passes a given mask through unpadded here (so "pt" fails); ours leaves it out, as asked
        out = ours.pad(inputs(), return_tensors=return_tensors, **options)
        assert "attention_mask" not in out
        assert np.asarray(out["input_ids"]).tolist() == theirs.pad(inputs(), **options)["input_ids"]
        return
    try:
        expected = theirs.pad(inputs(), return_tensors=return_tensors, **options)
    except ValueError:
        expected = None
    if expected is None or any(getattr(v, "dtype", None) == np.dtype(object) for v in expected.values()):
        # Unequal lengths make no tensor: transformers raises for "pt" but makes numpy object arrays (of arrays) for
        # "np"; ours refuses both, saying why.
        with pytest.raises(ValueError, match="pad them first"):
            ours.pad(inputs(), return_tensors=return_tensors, **options)
        return
    assert_same_outputs(ours.pad(inputs(), return_tensors=return_tensors, **options), expected)


@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
@pytest.mark.parametrize(
    "options",
    [{}, {"padding": True}, {"padding": "max_length", "max_length": 30}, {"padding": True, "pad_to_multiple_of": 8}],
)
@pytest.mark.parametrize("text", ["hello world", ["hello world", "the quick brown fox"], ["a [UNK] b"]])
def test_tokenizer_call_equals_transformers(vocab_dir, text, options, return_tensors):
    ours, theirs = pair(vocab_dir)
    try:
        expected = theirs(text, return_tensors=return_tensors, **options)
    except ValueError:
        expected = None
    if expected is None or any(getattr(v, "dtype", None) == np.dtype(object) for v in expected.values()):
        with pytest.raises(ValueError, match="pad them first"):
            ours(text, return_tensors=return_tensors, **options)
        return
    assert_same_outputs(ours(text, return_tensors=return_tensors, **options), expected)


def test_tokenizer_call_truncates_to_max_length_as_transformers(vocab_dir):
    ours, theirs = pair(vocab_dir)
    texts = ["hello world", "the quick brown fox"]
    options = dict(truncation=True, max_length=7, padding=True, return_tensors="pt")
    assert_same_outputs(ours(texts, **options), theirs(texts, **options))


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        ([[1, 2], [3]], TypeError, r"list of dicts.*got a list of list: wrap each id sequence as \{'input_ids': ids\}"),
        (torch.tensor([[1, 2]]), TypeError, "got Tensor"),
        ([], ValueError, "empty list"),
        ([{"labels": [1, 2]}], ValueError, r"needs 'input_ids', got keys \['labels'\]"),
        ([{"input_ids": [1, 2.5]}], TypeError, r"example 0: input_ids\[1\] is 2.5 \(float\); ids must be integers"),
        ([{"input_ids": [1]}, {"input_ids": ["a"]}], TypeError, r"example 1: input_ids\[0\] is 'a' \(str\)"),
        ([{"input_ids": [True, 1]}], TypeError, r"input_ids\[0\] is True \(bool\)"),
        (
            [{"input_ids": torch.tensor([1.0, 2.0])}],
            TypeError,
            "example 0: input_ids must hold integer ids, got a torch.float32",
        ),
        ([{"input_ids": np.array([1.0])}], TypeError, "must hold integer ids, got a float64 ndarray"),
        ([{"input_ids": torch.tensor([[1, 2]])}], ValueError, r"example 0: input_ids must be 1-D .*\(1, 2\)"),
        ([{"input_ids": "abc"}], TypeError, "example 0: input_ids must be a sequence of integer ids, got str"),
        ([{"input_ids": [1, 2], "attention_mask": [1]}], ValueError, r"attention_mask lengths \[1\] differ"),
    ],
)
def test_tokenizer_pad_refuses_what_is_not_label_ids_with_the_reason(vocab_dir, inputs, error, message):
    ours, _ = pair(vocab_dir)
    with pytest.raises(error, match=message):
        ours.pad(inputs)


def test_tokenizer_pad_and_call_refuse_unknown_options(vocab_dir):
    ours, theirs = pair(vocab_dir)
    rows = [{"input_ids": [1, 2]}, {"input_ids": [3]}]
    with pytest.raises(ValueError, match=r"padding must be True, False, 'longest', 'max_length' or 'do_not_pad'"):
        ours.pad(rows, padding="foo")
    with pytest.raises(ValueError, match=r"padding must be True, False"):
        ours(["ab", "a"], padding="foo")
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        ours.pad(rows, padding="max_length")
    with pytest.raises(ValueError, match="padding_side must be 'right' or 'left'"):
        ours.pad(rows, padding_side="middle")
    with pytest.raises(ValueError, match="return_tensors must be 'pt', 'np' or None"):
        ours.pad(rows, return_tensors="tf")
    with pytest.raises(ValueError, match="pad them first"):
        ours(["ab", "a"], return_tensors="pt")
    with pytest.raises(TypeError, match="text must be a text .* got int"):
        ours(3)
    with pytest.raises(TypeError, match=r"text 1 is a list, expected str.*tokenizer.pad"):
        ours(["ab", [1, 2]])
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['bogus'\]"):
        ours("ab", bogus=1)
    # truncation=True without max_length cuts at model_max_length, so without one nothing (was refused before it)
    assert ours("abc", truncation=True).input_ids == theirs("abc", truncation=True).input_ids == ours("abc").input_ids


def test_encode_and_decode_refuse_what_is_not_text_or_integer_ids(vocab_dir):
    ours, _ = pair(vocab_dir)
    processor = Wav2Vec2BertProcessor(SeamlessM4TFeatureExtractor(), ours)
    with pytest.raises(TypeError, match="expected str"):
        processor(text=["hello", 3])
    with pytest.raises(TypeError, match=r"decode takes integer ids, got float32 values: pass the argmax"):
        ours.decode(torch.tensor([1.7, 2.2]))
    with pytest.raises(TypeError, match=r"decode takes integer ids, got float64"):
        ours.batch_decode(np.zeros((2, 3)))
    assert ours.decode([]) == "" and ours.decode(np.array([], np.int64)) == ""


def test_an_added_token_on_the_id_of_another_vocabulary_token_is_refused(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps(BLOG_VOCAB))
    added = {"1": {"content": "<s>", "special": True}}
    with pytest.raises(ValueError, match=r"added token '1': '<s>' has the id of 'b' in .*vocab.json"):
        Wav2Vec2CTCTokenizer(tmp_path / "vocab.json", unk_token="[UNK]", pad_token="[PAD]", added_tokens_decoder=added)


DEMO_MODEL = Path(__file__).resolve().parent.parent / "examples" / "demo-model"
NOT_TEXT = st.one_of(st.integers(), st.floats(), st.booleans(), st.binary(max_size=4),
                     st.dictionaries(st.text(), st.text(), max_size=2))


@settings(max_examples=30, deadline=None)
@given(value=NOT_TEXT)
def test_text_that_is_not_a_str_or_a_list_is_refused_naming_the_argument(value):
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(DEMO_MODEL)
    with pytest.raises(TypeError, match="^text must be a text \\(str\\) or a list of texts, got "):
        tokenizer(value)
    with pytest.raises(TypeError, match="^text must be a text \\(str\\) or a list of texts, got "):
        Wav2Vec2BertProcessor.from_pretrained(DEMO_MODEL)(text=value)
