"""Speaker verification: trial lists, equal error rate and detection cost, x-vector training, `w2vbert verify`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import tiny_config_kwargs
from test_training import write_wav
from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertForXVector, Wav2Vec2BertModel, load_audio, pipeline
from w2vbert.cli.parser import main
from w2vbert.data.verification import all_pairs, cosine_scores, equal_error_rate, min_dcf, read_trials
from w2vbert.training.recipes import DataConfig, finetune
from w2vbert.training.trainer import TrainingConfig


def test_the_equal_error_rate_is_where_misses_meet_false_alarms():
    # targets 0.9 0.8 0.3, non-targets 0.7 0.2 0.1: accepting from 0.7 misses one target of three and lets one
    # non-target of three in
    scores = torch.tensor([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    targets = torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool)
    eer, threshold = equal_error_rate(scores, targets)
    assert eer == pytest.approx(1 / 3) and threshold == pytest.approx(0.7)
    assert equal_error_rate(torch.tensor([0.9, 0.8, 0.2]), torch.tensor([1, 1, 0]).bool())[0] == 0.0
    # the cheapest operating point: rejecting everything costs P(target) / min(P(target), 1 - P(target)) = 1
    assert min_dcf(torch.tensor([0.9, 0.8, 0.2]), torch.tensor([1, 1, 0]).bool()) == 0.0
    assert min_dcf(torch.tensor([0.1, 0.9]), torch.tensor([1, 0]).bool()) == pytest.approx(1.0)


@given(st.lists(st.tuples(st.floats(-1, 1), st.booleans()), min_size=2, max_size=30))
def test_the_equal_error_rate_is_the_brute_force_closest_crossing(pairs):
    scores = torch.tensor([s for s, _ in pairs], dtype=torch.float64)
    targets = torch.tensor([t for _, t in pairs])
    if targets.all() or not targets.any():
        with pytest.raises(ValueError, match="both target and non-target"):
            equal_error_rate(scores, targets)
        return
    eer, _ = equal_error_rate(scores, targets)
    # every threshold: a score, or above them all; accept score >= threshold
    rates = []
    for threshold in [*scores.tolist(), float(scores.max()) + 1]:
        miss = float((scores[targets] < threshold).double().mean())
        false_alarm = float((scores[~targets] >= threshold).double().mean())
        rates.append((abs(miss - false_alarm), (miss + false_alarm) / 2))
    closest = min(gap for gap, _ in rates)
    assert any(eer == pytest.approx(mean) for gap, mean in rates if gap <= closest + 1e-9)


def test_trials_are_read_relative_to_their_file_and_unknown_clips_are_named(tmp_path):
    (tmp_path / "t.txt").write_text("a.wav b.wav 1\n\na.wav c.wav 0\n")
    trials = read_trials(tmp_path / "t.txt")
    assert trials == [(str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), 1),
                      (str(tmp_path / "a.wav"), str(tmp_path / "c.wav"), 0)]
    embeddings = {str(tmp_path / name): torch.ones(3) for name in ("a.wav", "b.wav")}
    with pytest.raises(ValueError, match=r"1 trial clip\(s\) are not in the evaluation data: .*c\.wav"):
        cosine_scores(embeddings, trials)
    (tmp_path / "bad.txt").write_text("a.wav b.wav yes\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: expected 'enroll test target'"):
        read_trials(tmp_path / "bad.txt")
    assert all_pairs({"x": "s1", "y": "s1", "z": "s2"}) == [("x", "y", 1), ("x", "z", 0), ("y", "z", 0)]


def speaker_clips(folder, name, speakers, per_speaker, seed):
    """Each "speaker" a buzz at its own pitch and timbre; clips of 0.5-0.8 s, labelled with the speaker."""
    rng = np.random.default_rng(seed)
    rows = ["audio,label"]
    for speaker in speakers:
        for i in range(per_speaker):
            t = np.arange(int(16000 * rng.uniform(0.5, 0.8))) / 16000
            pitch = 120 + 90 * speaker
            audio = sum(np.sin(2 * np.pi * pitch * k * t) / k ** (1 + speaker % 3) for k in range(1, 6))
            audio = 0.3 * audio * (np.sin(2 * np.pi * rng.uniform(3, 6) * t) > 0) + 0.01 * rng.standard_normal(len(t))
            write_wav(folder / f"{name}{speaker}_{i}.wav", audio)
            rows.append(f"{name}{speaker}_{i}.wav,spk{speaker}")
    (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return folder / f"{name}.csv"


def test_finetune_xvector_scores_held_out_speakers_keeps_a_threshold_and_verify_decides_with_it(tmp_path, capsys):
    import transformers

    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(tmp_path / "base")
    train = speaker_clips(tmp_path, "train", range(4), 6, 0)
    held = speaker_clips(tmp_path, "held", range(4, 7), 3, 1)
    (tmp_path / "trials.txt").write_text("held4_0.wav held4_1.wav 1\nheld4_0.wav held5_0.wav 0\n"
                                         "held5_1.wav held5_2.wav 1\nheld6_0.wav held5_2.wav 0\n"
                                         "held6_1.wav held6_2.wav 1\nheld6_2.wav held4_2.wav 0\n")
    config = TrainingConfig(output_dir=str(tmp_path / "run"), task="xvector", learning_rate=3e-3, warmup_steps=2,
                            max_steps=20, max_batch_seconds=5.0, eval_every=10, save_every=10, log_every=5,
                            progress=False, tensorboard=False, trials=str(tmp_path / "trials.txt"))
    summary = finetune(str(tmp_path / "base"), DataConfig(str(train), str(held)), config)
    final = summary["final_eval"]
    assert final["trials"] == 6 and 0 <= final["eer"] <= 1 and 0 <= final["min_dcf"]
    assert "loss" not in final  # the held-out speakers have no training class: no AM-softmax loss to report
    best = tmp_path / "run" / "best"
    stored = json.loads((best / "config.json").read_text())["verification_threshold"]
    evaluations = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl") if '"eval"' in line]
    assert stored == pytest.approx(next(e for e in evaluations if e["step"] == summary["best_step"])["threshold"])

    reference = transformers.Wav2Vec2BertForXVector.from_pretrained(best).eval()
    ours = pipeline("speaker-embedding", str(best))
    embedding = ours(str(tmp_path / "held4_0.wav"))
    inputs = ours.feature_extractor(load_audio(str(tmp_path / "held4_0.wav")), sampling_rate=16000,
                                    return_tensors="pt")
    with torch.no_grad():
        np.testing.assert_allclose(embedding, reference(**inputs).embeddings[0].numpy(), rtol=1e-4, atol=1e-5)

    a, b = str(tmp_path / "held4_0.wav"), str(tmp_path / "held5_0.wav")
    for threshold, decision in ((-1.0, "same"), (1.01, "different")):
        assert main(["verify", a, b, "-m", str(best), "--threshold", str(threshold)]) == 0
        enroll, test, score, said = capsys.readouterr().out.strip().split("\t")
        assert (enroll, test) == (a, b) and -1 <= float(score) <= 1 and said.startswith(decision)
    assert main(["verify", a, b, "-m", str(best)]) == 0
    assert f"(threshold {stored:.4f})" in capsys.readouterr().out


def test_verify_without_a_stored_threshold_prints_the_score_and_says_what_to_pass(tmp_path, capsys):
    torch.manual_seed(0)
    Wav2Vec2BertForXVector(Wav2Vec2BertConfig(**tiny_config_kwargs())).save_pretrained(tmp_path / "model")
    clips = speaker_clips(tmp_path, "c", range(2), 1, 0)
    assert clips.is_file()
    assert main(["verify", str(tmp_path / "c0_0.wav"), str(tmp_path / "c1_0.wav"), "-m", str(tmp_path / "model")]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().split("\t")) == 3 and "pass --threshold" in captured.err


def test_a_channel_that_stays_constant_for_a_whole_clip_keeps_the_gradients_finite():
    """Statistics pooling takes a standard deviation; a channel constant throughout a clip has none, where sqrt's
    gradient is infinite (a run at lr 1e-2 went NaN from it)."""
    torch.manual_seed(0)
    model = Wav2Vec2BertForXVector(Wav2Vec2BertConfig(**tiny_config_kwargs(num_labels=2)))
    with torch.no_grad():
        model.tdnn[-1].kernel.weight[:5] = 0.0  # five channels that read nothing: their bias, 1.0, throughout
        model.tdnn[-1].kernel.bias[:5] = 1.0
    output = model(torch.randn(2, 40, 160), labels=torch.tensor([0, 1]))
    output.loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)


def test_trials_with_a_task_other_than_xvector_are_refused():
    with pytest.raises(ValueError, match="trials are for task 'xvector'"):
        TrainingConfig(output_dir="x", task="classify", trials="t.txt")


def test_finetune_weighted_layer_sum_gives_the_head_a_learned_mix_of_layers(tmp_path):
    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(tmp_path / "base")
    train = speaker_clips(tmp_path, "t", range(2), 2, 0)
    assert main(["finetune", "--task", "xvector", "--model", str(tmp_path / "base"), "--train", str(train),
                 "--output-dir", str(tmp_path / "run"), "--max-steps", "2", "--warmup-steps", "1",
                 "--max-batch-seconds", "3", "--weighted-layer-sum", "--no-progress"]) == 0
    trained = Wav2Vec2BertForXVector.from_pretrained(tmp_path / "run" / "last")
    assert trained.config.use_weighted_layer_sum and trained.layer_weights.shape == (3,)  # input + 2 blocks
    assert not torch.allclose(trained.layer_weights, torch.ones(3) / 3)  # trained from its uniform start
