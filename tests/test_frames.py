"""Frame classification: segment files, frame labels and their overlap rule, training, segments out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import tiny_config_kwargs
from test_training import write_wav
from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertForAudioFrameClassification, Wav2Vec2BertModel, pipeline
from w2vbert.audio.features import SeamlessM4TFeatureExtractor
from w2vbert.cli.parser import main
from w2vbert.text.segments import frame_labels, merge_frames, read_segments
from w2vbert.training.datasets import Collator, SpeechDataset, load_examples
from w2vbert.training.examples import BadExamples
from w2vbert.training.recipes import DataConfig, finetune
from w2vbert.training.trainer import TrainingConfig

FRAME = 0.02


def test_segment_files_and_rttm_read_in_file_order_and_rttm_keeps_the_named_recording(tmp_path):
    (tmp_path / "a.txt").write_text("# start end label\n0.5 1.25 speech\n\n2 3 music  # a comment\n")
    assert [(s.start, s.end, s.label, s.line) for s in read_segments(tmp_path / "a.txt")] == [
        (0.5, 1.25, "speech", 2), (2.0, 3.0, "music", 4)]
    (tmp_path / "b.rttm").write_text("SPEAKER rec1 1 0.00 1.50 <NA> <NA> alice <NA> <NA>\n"
                                     "SPEAKER rec2 1 0.20 0.30 <NA> <NA> bob <NA> <NA>\n"
                                     "SPEAKER rec1 1 1.20 2.00 <NA> <NA> bob <NA> <NA>\n")
    segments = read_segments(tmp_path / "b.rttm", recording="rec1")
    assert [(s.start, s.end, s.label) for s in segments] == [(0.0, 1.5, "alice"), (1.2, 3.2, "bob")]
    with pytest.raises(ValueError, match="holds recordings"):
        read_segments(tmp_path / "b.rttm", recording="rec9")


@pytest.mark.parametrize("line, problem", [("0.5 speech", "expected 'start end label'"),
                                           ("1.0 0.5 speech", "0 <= start < end"),
                                           ("-1 0.5 speech", "0 <= start < end"),
                                           ("a b speech", "expected 'start end label'")])
def test_a_malformed_segment_line_is_named_with_file_and_line(tmp_path, line, problem):
    (tmp_path / "s.txt").write_text(f"0 0.1 speech\n{line}\n")
    with pytest.raises(ValueError, match=rf"s\.txt:2: .*{problem}"):
        read_segments(tmp_path / "s.txt")


def test_overlapping_segments_give_their_frames_to_the_one_that_starts_later():
    # speech 0-1 s, music 0.5-0.7 s inside it, noise from 0.9 s: frame centres decide; the rest is background 0
    ids = frame_labels([(0.0, 1.0, 1), (0.5, 0.7, 2), (0.9, 1.2, 3)], 70, FRAME, background=0)
    assert ids[:25].tolist() == [1] * 25 and ids[25:35].tolist() == [2] * 10 and ids[35:45].tolist() == [1] * 10
    assert ids[45:60].tolist() == [3] * 15 and ids[60:].tolist() == [0] * 10
    # the same start: the segment listed later wins
    assert frame_labels([(0.0, 0.1, 1), (0.0, 0.1, 2)], 5, FRAME, 0).tolist() == [2] * 5


@given(st.lists(st.tuples(st.floats(0, 2), st.floats(0.01, 1), st.integers(1, 3)), max_size=6),
       st.integers(1, 120))
def test_merged_segments_cover_every_frame_once_in_time_order_and_give_back_the_frame_labels(raw, frames):
    segments = [(start, start + length, label) for start, length, label in raw]
    ids = frame_labels(segments, frames, FRAME, background=0)
    merged = merge_frames(ids, torch.ones(frames), FRAME, {0: "bg", 1: "a", 2: "b", 3: "c"})
    assert merged[0]["start"] == 0 and merged[-1]["end"] == pytest.approx(frames * FRAME)
    for before, after in zip(merged, merged[1:], strict=False):
        assert before["end"] == after["start"] and before["label"] != after["label"]
    rebuilt = torch.cat([torch.full((round((s["end"] - s["start"]) / FRAME),), "bg a b c".split().index(s["label"]))
                         for s in merged])
    assert torch.equal(rebuilt, ids)


def tone_recordings(folder, name, count, seed):
    """1 s recordings of faint noise with one beep each; `start end beep` segments where the beep is."""
    rng = np.random.default_rng(seed)
    rows = ["audio\tsegments"]
    for i in range(count):
        audio = 0.003 * rng.standard_normal(16000)
        start, end = sorted(rng.uniform(0.05, 0.95, 2))
        end = max(end, start + 0.15)
        t = np.arange(int(start * 16000), int(min(end, 1.0) * 16000))
        audio[t] += 0.5 * np.sin(2 * np.pi * 800 * t / 16000)
        write_wav(folder / f"{name}{i}.wav", audio)
        (folder / f"{name}{i}.txt").write_text(f"{start:.3f} {min(end, 1.0):.3f} beep\n")
        rows.append(f"{name}{i}.wav\t{name}{i}.txt")
    (folder / f"{name}.tsv").write_text("\n".join(rows) + "\n")
    return folder / f"{name}.tsv"


def test_segments_outside_the_clip_missing_files_and_unknown_labels_are_reported_per_example(tmp_path):
    manifest = tone_recordings(tmp_path, "c", 4, 0)
    (tmp_path / "c1.txt").write_text("0.2 1.5 beep\n")  # the clip is 1 s long
    (tmp_path / "c2.txt").unlink()
    (tmp_path / "c3.txt").write_text("0.1 0.2 whistle\n")
    bad = BadExamples("skip")
    kept = load_examples(manifest, "frames", bad, labels={"beep", "background"})
    assert [e.source.rsplit(":", 1)[1] for e in kept] == ["2"]
    assert bad.counts == {"bad segments": 1, "missing segments": 1, "unknown label": 1}
    with pytest.raises(ValueError, match=r"c1\.txt:1: segment 0.2-1.5 s \(beep\) lies outside the clip"):
        load_examples(manifest, "frames", BadExamples("fail"))


def test_the_collator_labels_each_valid_frame_and_leaves_padding_out(tmp_path):
    manifest = tone_recordings(tmp_path, "c", 2, 1)
    examples = load_examples(manifest, "frames", BadExamples("fail"))
    short = examples[1].__class__(**{**examples[1].__dict__, "seconds": 0.5, "crop": True})
    data = SpeechDataset([examples[0], short], {"background": 0, "beep": 1}.__getitem__)
    batch = Collator(SeamlessM4TFeatureExtractor(), "frames", background=0)([data[0], data[1]])
    valid = batch["attention_mask"].sum(-1).tolist()
    labels = batch["labels"]
    assert labels.shape == batch["attention_mask"].shape and valid[1] < valid[0]
    assert (labels[1, valid[1]:] == -100).all() and (labels[0] >= 0).all()
    segment = examples[0].segments[0]
    expected = frame_labels([(segment.start, segment.end, 1)], valid[0], FRAME, 0)
    assert torch.equal(labels[0], expected)


def test_frame_ids_and_transformers_one_hot_labels_give_the_same_loss():
    torch.manual_seed(0)
    model = Wav2Vec2BertForAudioFrameClassification(Wav2Vec2BertConfig(**tiny_config_kwargs())).eval()
    features, ids = torch.randn(2, 9, 160), torch.randint(0, 3, (2, 9))
    one_hot = torch.nn.functional.one_hot(ids, 3).float()
    torch.testing.assert_close(model(features, labels=ids).loss, model(features, labels=one_hot).loss)
    with pytest.raises(ValueError, match=r"class ids per frame \(2, 9\)"):
        model(features, labels=ids[:, :5])
    with pytest.raises(ValueError, match=r"frame class ids must be in \[0, 3\)"):
        model(features, labels=ids + 3)


def test_finetune_frames_learns_where_the_beeps_are_and_transformers_loads_the_checkpoint(tmp_path):
    import transformers

    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(tmp_path / "base")
    train, held = tone_recordings(tmp_path, "train", 12, 0), tone_recordings(tmp_path, "held", 4, 1)
    config = TrainingConfig(output_dir=str(tmp_path / "run"), task="frames", learning_rate=3e-3, warmup_steps=2,
                            max_steps=30, max_batch_seconds=4.0, eval_every=15, save_every=15, log_every=5,
                            progress=False, tensorboard=False)
    summary = finetune(str(tmp_path / "base"), DataConfig(str(train), str(held), background_label="quiet"), config)
    final = summary["final_eval"]
    assert final["frame_accuracy"] > 0.9 and final["f1_beep"] > 0.85 and {"f1_quiet", "macro_f1"} <= set(final)

    best = tmp_path / "run" / "best"
    reference = transformers.Wav2Vec2BertForAudioFrameClassification.from_pretrained(best).eval()
    assert reference.config.id2label == {0: "beep", 1: "quiet"}
    segments = pipeline("audio-frame-classification", str(best))(str(tmp_path / "held0.wav"))
    beeps = [s for s in segments if s["label"] == "beep"]
    truth = read_segments(tmp_path / "held0.txt")[0]
    assert len(beeps) == 1 and abs(beeps[0]["start"] - truth.start) <= 0.06 and abs(beeps[0]["end"] - truth.end) <= 0.06
    ours = Wav2Vec2BertForAudioFrameClassification.from_pretrained(best).eval()
    features = SeamlessM4TFeatureExtractor()(np.random.default_rng(0).standard_normal(8000) * 0.1,
                                             sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(ours(**features).logits, reference(**features).logits, rtol=1e-4, atol=1e-5)


def test_classify_frames_prints_one_line_per_segment_and_writes_json(tmp_path, capsys):
    torch.manual_seed(0)
    labels = {"id2label": {0: "background", 1: "beep"}, "label2id": {"background": 0, "beep": 1}}
    Wav2Vec2BertForAudioFrameClassification(Wav2Vec2BertConfig(**tiny_config_kwargs(num_labels=2, **labels))) \
        .save_pretrained(tmp_path / "model")
    tone_recordings(tmp_path, "c", 2, 0)
    code = main(["classify", "--frames", str(tmp_path / "c0.wav"), str(tmp_path / "c1.wav"), "-m",
                 str(tmp_path / "model"), "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    written = json.loads((tmp_path / "out" / "c0.json").read_text())
    rows = [line for line in lines if line[0].endswith("c0.wav")]
    assert [(float(r[1]), float(r[2]), r[3]) for r in rows] == [(s["start"], s["end"], s["label"]) for s in written]
    assert written[0]["start"] == 0.0 and written[-1]["end"] == pytest.approx(1.0, abs=0.03)


def test_a_datasets_object_for_frames_is_refused_saying_a_manifest_is_needed():
    from w2vbert.training.datasets import examples_from_dataset

    with pytest.raises(ValueError, match="frames examples come from a manifest"):
        examples_from_dataset([{"audio": "a.wav", "segments": "a.txt"}], "frames", BadExamples("fail"))
