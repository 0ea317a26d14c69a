"""Training data: manifest parsing, each kind of bad example (skip vs fail, counted), normalisation, batching."""

from __future__ import annotations

import csv
import json
import wave

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from w2vbert.data.manifest import read_manifest
from w2vbert.data.sampler import LengthGroupedBatchSampler, padded_seconds
from w2vbert.training.datasets import SpeechDataset, examples_from_dataset, load_examples
from w2vbert.training.examples import (
    BadExamples,
    TextNormalizer,
    ctc_frames_needed,
    drop_too_short,
    limit_length,
    output_frames_for_seconds,
)


def write_wav(path, seconds, rate=16000):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.random.default_rng(0).standard_normal(int(rate * seconds)) * 1000).astype(np.int16).tobytes())


@pytest.fixture
def clips(tmp_path):
    (tmp_path / "audio").mkdir()
    write_wav(tmp_path / "audio" / "long.wav", 1.0)
    write_wav(tmp_path / "audio" / "short.wav", 0.1, rate=8000)
    return tmp_path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_manifest_formats_read_relative_paths_and_durations(clips, suffix):
    rows = [("audio/long.wav", "Hello, World!"), ("audio/short.wav", "hi")]
    path = clips / f"train{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps({"audio": a, "text": t}) + "\n" for a, t in rows))
    else:
        sep = "," if suffix == ".csv" else "\t"
        path.write_text("audio" + sep + "text\n" + "".join(f'{a}{sep}"{t}"\n' for a, t in rows))
    examples = load_examples(path, "ctc", BadExamples())
    assert [e.target for e in examples] == ["hello world", "hi"]
    assert examples[0].audio == str(clips / "audio" / "long.wav")
    assert examples[0].seconds == pytest.approx(1.0) and examples[1].seconds == pytest.approx(0.1)
    assert examples[1].source.endswith(f"train{suffix}:{3 if suffix != '.jsonl' else 2}")


def test_wrong_header_names_expected_and_found_columns(clips):
    (clips / "m.csv").write_text("path,transcript\naudio/long.wav,hi\n")
    with pytest.raises(ValueError, match=r"expected \['audio', 'text'\], found \['path', 'transcript'\]"):
        load_examples(clips / "m.csv", "ctc", BadExamples())
    with pytest.raises(ValueError, match="must end in one of"):
        load_examples(clips / "m.txt", "ctc", BadExamples())


def test_bad_examples_are_skipped_and_counted_or_refused_with_file_and_line(clips):
    (clips / "m.tsv").write_text(
        "audio\ttext\n"
        "audio/long.wav\tgood one\n"
        "audio/nowhere.wav\tmissing file\n"
        "audio/long.wav\t?!\n"  # empty once punctuation is removed
        "audio/short.wav\thello hello hello\n"  # 0.1 s: 2 output frames for 17 labels
    )
    bad = BadExamples("skip")
    examples = load_examples(clips / "m.tsv", "ctc", bad)
    assert len(examples) == 2
    kept = drop_too_short(examples, lambda text: [ord(c) for c in text], lambda n: n, bad)
    assert [e.target for e in kept] == ["good one"]
    assert bad.counts == {"missing audio": 1, "empty transcript": 1, "too short for transcript": 1}
    assert bad.total == 3
    with pytest.raises(ValueError, match=r"m\.tsv:3: audio file .*nowhere\.wav does not exist"):
        load_examples(clips / "m.tsv", "ctc", BadExamples("fail"))


def test_labels_outside_the_label_set_are_bad(clips):
    (clips / "m.csv").write_text("audio,label\naudio/long.wav,dog\naudio/long.wav,cat\naudio/long.wav, \n")
    bad = BadExamples()
    examples = load_examples(clips / "m.csv", "classify", bad, labels=["cat"])
    assert [e.target for e in examples] == ["cat"]
    assert bad.counts == {"unknown label": 1, "empty label": 1}
    with pytest.raises(ValueError, match=r"m\.csv:2: label 'dog' is not in the label set \['cat'\]"):
        load_examples(clips / "m.csv", "classify", BadExamples("fail"), labels=["cat"])


def test_ctc_needs_a_frame_per_label_and_a_blank_between_repeats():
    assert ctc_frames_needed([1, 2, 3]) == 3
    assert ctc_frames_needed([1, 1, 2, 2, 2]) == 8  # "ll" needs a blank between the two l's
    # 1 s = 98 fbank frames -> 49 steps of 20 ms; the adapter (stride 2) halves that.
    assert output_frames_for_seconds(1.0, lambda n: n) == 49
    assert output_frames_for_seconds(0.01, lambda n: n) == 0


def test_text_normalizer_options():
    text = "Don't STOP — naïve café, 42!"
    assert TextNormalizer()(text) == "don't stop naïve café 42"
    assert TextNormalizer(lowercase=False, remove_punctuation=False)(text) == text
    assert TextNormalizer(allowed_characters="abcdefghijklmnopqrstuvwxyz'")(text) == "don't stop nave caf"


def test_examples_from_a_datasets_object_take_arrays_at_any_rate():
    rows = [{"audio": {"array": np.zeros(8000, np.float32), "sampling_rate": 8000}, "text": "Hi"},
            {"audio": {"array": np.zeros(100, np.float32), "sampling_rate": 16000}, "text": ""}]
    bad = BadExamples()
    examples = examples_from_dataset(rows, "ctc", bad)
    assert len(examples) == 1 and examples[0].seconds == pytest.approx(1.0) and examples[0].target == "hi"
    assert bad.counts == {"empty transcript": 1}


@settings(max_examples=60, deadline=None)
@given(
    seconds=st.lists(st.floats(0.1, 30.0), min_size=2, max_size=60),
    cap=st.floats(5.0, 60.0),
    max_size=st.one_of(st.none(), st.integers(2, 8)),
    world_size=st.sampled_from([1, 2]),
    epoch=st.integers(0, 3),
)
def test_batches_hold_every_example_once_and_respect_the_seconds_cap(seconds, cap, max_size, world_size, epoch):
    samplers = [LengthGroupedBatchSampler(seconds, cap, max_size, seed=7, rank=r, world_size=world_size)
                for r in range(world_size)]
    batches = samplers[0].global_batches(epoch)
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(len(seconds)))
    for batch in batches:
        if len(batch) > world_size:  # a batch of one clip (or one per rank) may exceed the cap; no other may
            assert padded_seconds(batch, seconds) <= cap + 1e-9 or len(batch) <= 2 * world_size - 1
            if max_size is not None:
                assert len(batch) <= max(max_size, 2 * world_size - 1)
    if world_size == 1:
        for batch in batches:
            assert len(batch) == 1 or padded_seconds(batch, seconds) <= cap + 1e-9
    # Ranks split each global batch between them, and together see it whole.
    for sampler in samplers:
        sampler.set_epoch(epoch)
    shards = [list(sampler) for sampler in samplers]
    assert [sorted(sum((s[k] for s in shards), [])) for k in range(len(batches))] == [sorted(b) for b in batches]
    # Resuming mid-epoch continues with the same batches.
    samplers[0].set_epoch(epoch, start_batch=len(batches) // 2)
    assert list(samplers[0]) == shards[0][len(batches) // 2 :]


def test_batches_change_between_epochs_but_not_between_runs():
    seconds = list(np.random.default_rng(0).uniform(1, 10, 200))
    a, b = LengthGroupedBatchSampler(seconds, 40.0, seed=1), LengthGroupedBatchSampler(seconds, 40.0, seed=1)
    assert a.global_batches(0) == b.global_batches(0)
    assert a.global_batches(0) != a.global_batches(1)


def test_a_manifest_that_is_not_utf8_names_the_file_and_line(clips):
    (clips / "m.tsv").write_bytes("audio\ttext\naudio/long.wav\tcafé\n".encode() + b"audio/long.wav\tcaf\xe9\n")
    with pytest.raises(ValueError, match=r"m\.tsv:3: not UTF-8 text"):
        load_examples(clips / "m.tsv", "ctc", BadExamples())


@pytest.fixture
def csv_field_cap():
    """The csv module's own cap on a field (131,072 characters), whatever an earlier test left."""
    before = csv.field_size_limit(131_072)
    yield
    csv.field_size_limit(before)


def test_a_manifest_field_longer_than_the_csv_modules_cap_is_read(tmp_path, csv_field_cap):
    transcript = "the quick brown fox " * 10_000  # 200,000 characters: a long recording's transcript
    (tmp_path / "corpus.csv").write_text(f"audio,text\nclip.wav,{transcript}\n")
    assert list(read_manifest(tmp_path / "corpus.csv", ["audio"])) == [
        (f"{tmp_path / 'corpus.csv'}:2", {"audio": "clip.wav", "text": transcript})]


def test_a_manifest_row_csv_refuses_all_the_same_is_one_error_naming_its_line(tmp_path, csv_field_cap, monkeypatch):
    monkeypatch.setattr("csv.field_size_limit", lambda *limit: 131_072)  # a cap csv would keep
    (tmp_path / "corpus.csv").write_text("audio,text\nshort.wav,hi\nclip.wav," + "x" * 140_000 + "\n")
    with pytest.raises(ValueError, match=r"corpus.csv:3: not a CSV row: field larger than field limit \(131072\)$"):
        list(read_manifest(tmp_path / "corpus.csv", ["audio"]))


def test_clips_longer_than_the_batch_cap_are_skipped_and_counted_or_cropped(clips):
    (clips / "m.tsv").write_text("audio\tlabel\naudio/long.wav\tx\naudio/short.wav\ty\n")
    bad = BadExamples()
    examples = load_examples(clips / "m.tsv", "classify", bad)
    kept = limit_length(examples, 0.5, "skip", bad)
    assert [e.target for e in kept] == ["y"] and bad.counts == {"longer than the batch cap": 1}
    cropped = limit_length(examples, 0.5, "crop", BadExamples())
    assert [e.seconds for e in cropped] == [0.5, pytest.approx(0.1)] and cropped[0].crop
    item = SpeechDataset(cropped, lambda label: 0)[0]
    assert len(item["audio"]) == 8000 and item["seconds"] == 0.5


def test_a_clip_that_fails_to_decode_is_skipped_by_the_collator_and_counted(clips):
    from w2vbert.audio.features import SeamlessM4TFeatureExtractor
    from w2vbert.training.datasets import Collator
    from w2vbert.training.examples import Example

    samples = np.zeros(16000, dtype=np.float32)
    samples[8000] = np.nan
    examples = [Example(str(clips / "audio" / "long.wav"), "a", 1.0, "m.tsv:2"),
                Example(samples, "b", 1.0, "m.tsv:3")]  # NaN samples: found only when read
    skipping = SpeechDataset(examples, lambda text: [1], on_bad="skip")
    batch = Collator(SeamlessM4TFeatureExtractor(), "ctc")([skipping[0], skipping[1]])
    assert batch["texts"] == ["a"] and batch["bad"] == ["unreadable audio"]
    with pytest.raises(ValueError, match=r"m\.tsv:3: .*NaN"):
        SpeechDataset(examples, lambda text: [1], on_bad="fail")[1]
    empty = Collator(SeamlessM4TFeatureExtractor(), "ctc")([None])
    assert empty["labels"].shape[0] == 0 and empty["input_features"].shape[0] == 0
