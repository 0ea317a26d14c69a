"""CTC forced alignment: the Viterbi path against a brute-force search, and what it says when text cannot fit."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from w2vbert.text.alignment import forced_align, token_spans

BLANK = 0


def collapse(path: tuple[int, ...]) -> list[int]:
    """CTC's many-to-one map: merge repeats, then drop blanks."""
    return [token for token, _ in itertools.groupby(path) if token != BLANK]


def brute_force_best(log_probs: np.ndarray, targets: list[int]) -> float:
    frames, vocab = log_probs.shape
    best = -np.inf
    for path in itertools.product(range(vocab), repeat=frames):
        if collapse(path) == targets:
            best = max(best, float(log_probs[np.arange(frames), path].sum()))
    return best


@settings(max_examples=80, deadline=None)
@given(
    frames=st.integers(1, 6),
    vocab=st.integers(2, 4),
    targets=st.lists(st.integers(1, 3), max_size=4),
    seed=st.integers(0, 2**31 - 1),
)
def test_the_viterbi_path_is_the_best_path_that_spells_the_targets(frames, vocab, targets, seed):
    targets = [t % (vocab - 1) + 1 for t in targets]  # ids other than the blank
    logits = np.random.default_rng(seed).normal(size=(frames, vocab))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    best = brute_force_best(log_probs, targets)
    if best == -np.inf:  # no path fits: the alignment says so
        with pytest.raises(ValueError, match="cannot be aligned"):
            forced_align(log_probs, targets, BLANK)
        return
    path, score = forced_align(log_probs, targets, BLANK)
    assert collapse(tuple(path)) == targets
    assert score == pytest.approx(best, abs=1e-9)
    assert score == pytest.approx(float(log_probs[np.arange(frames), path].sum()), abs=1e-9)
    # With back-pointers for two frames at a time (segments recomputed on the way back): the same path.
    states = 2 * len(targets) + 1
    segmented, segmented_score = forced_align(log_probs, targets, BLANK, max_moves_bytes=2 * states)
    assert list(segmented) == list(path) and segmented_score == score
    spans = token_spans(path, log_probs, BLANK)
    assert [s.token for s in spans] == targets
    assert all(0 <= s.start < s.end <= frames and 0 < s.score <= 1 for s in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))


def test_a_transcript_longer_than_the_audio_can_hold_is_a_clear_error():
    log_probs = np.log(np.full((3, 4), 0.25))
    with pytest.raises(ValueError, match="its 3 tokens need at least 4 frames, the audio has 3"):
        forced_align(log_probs, [1, 1, 2], BLANK)  # the repeated 1 needs a blank between
    with pytest.raises(ValueError, match="ids in \\[0, 4\\) other than the blank"):
        forced_align(log_probs, [0], BLANK)


def test_words_of_a_known_transcript_land_within_40_ms_of_the_greedy_decodings_times():
    """On the example recordings with the shipped demo model: where greedy decoding writes the same words, the
    forced alignment of those words puts each within one 40 ms frame of the times greedy decoding reports."""
    from pathlib import Path

    import torch

    from w2vbert import pipeline
    from w2vbert.audio.decode import SAMPLING_RATE, load_audio
    from w2vbert.text.alignment import align_words

    root = Path(__file__).resolve().parent.parent
    pipe = pipeline("automatic-speech-recognition", str(root / "examples" / "demo-model"))
    seconds = pipe.frame_samples() / SAMPLING_RATE

    def log_probs_of(path: Path) -> torch.Tensor:
        features = pipe.feature_extractor(load_audio(path), sampling_rate=SAMPLING_RATE, return_tensors="pt",
                                          return_attention_mask=True)
        with torch.inference_mode():
            return pipe.forward(features["input_features"], features["attention_mask"])[0]

    for path in sorted((root / "examples" / "audio").glob("*.wav")):
        greedy = pipe(str(path), return_timestamps="word")
        aligned = align_words(log_probs_of(path), greedy["text"], pipe.tokenizer, seconds)
        assert [w["word"] for w in aligned["words"]] == greedy["text"].split() and not aligned["unknown"]
        for word, chunk in zip(aligned["words"], greedy["chunks"], strict=True):
            assert abs(word["start"] - chunk["timestamp"][0]) <= 0.04 + 1e-9, (word, chunk)
            assert abs(word["end"] - chunk["timestamp"][1]) <= 0.04 + 1e-9, (word, chunk)
            assert 0 < word["score"] <= 1
    path = root / "examples" / "audio" / "dog_cat.wav"
    aligned = align_words(log_probs_of(path), "Ωmega " + path.with_suffix(".txt").read_text().strip(),
                          pipe.tokenizer, seconds)
    assert aligned["unknown"] == ["Ω"]  # not in the vocabulary: said, and aligned as [UNK]
    assert aligned["words"][0]["word"] == "Ωmega"  # the word as the transcript writes it


def test_align_takes_capitalised_text_in_the_lower_case_vocabularys_case_and_keeps_the_words_as_written(tmp_path,
                                                                                                        capsys):
    from pathlib import Path

    from w2vbert.cli.parser import main

    root = Path(__file__).resolve().parent.parent
    clip = root / "examples" / "audio" / "dog_cat.wav"
    text = clip.with_suffix(".txt").read_text().strip()
    (tmp_path / "title.txt").write_text(text.upper())
    assert main(["align", str(clip), str(tmp_path / "title.txt"), "-m", str(root / "examples" / "demo-model"),
                 "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""  # no "characters the vocabulary lacks" warning
    aligned = json.loads((tmp_path / "out" / "dog_cat.json").read_text())
    assert [w["word"] for w in aligned["words"]] == text.upper().split()
    assert "".join(c["char"] for c in aligned["chars"]) == text.replace(" ", "")  # the vocabulary's letters
    lower = tmp_path / "lower"
    assert main(["align", str(clip), str(clip.with_suffix(".txt")), "-m", str(root / "examples" / "demo-model"),
                 "-o", str(lower), "--no-progress"]) == 0
    same = json.loads((lower / "dog_cat.json").read_text())
    assert [(w["start"], w["end"]) for w in same["words"]] == [(w["start"], w["end"]) for w in aligned["words"]]


def test_the_align_command_writes_every_format_aligns_long_audio_and_names_what_cannot_be_aligned(tmp_path, capsys):
    """`w2vbert align`: one file in every format; a manifest whose second row's text cannot fit its audio fails
    alone, named, exit 1; a recording longer than a window aligns through the long-audio windows."""
    from pathlib import Path

    import numpy as np

    from w2vbert.audio.decode import load_audio, wav_bytes
    from w2vbert.cli.parser import main

    root = Path(__file__).resolve().parent.parent
    model = str(root / "examples" / "demo-model")
    clip = root / "examples" / "audio" / "dog_cat.wav"
    text = clip.with_suffix(".txt").read_text().strip()
    assert main(["align", str(clip), str(clip.with_suffix(".txt")), "-m", model, "-o", str(tmp_path / "out"),
                 "-f", "all"]) == 0
    out = tmp_path / "out"
    aligned = json.loads((out / "dog_cat.json").read_text())
    assert [w["word"] for w in aligned["words"]] == text.split() and aligned["text"] == text
    tsv = (out / "dog_cat.tsv").read_text().splitlines()
    assert tsv[0] == "start\tend\ttext" and [row.split("\t")[2] for row in tsv[1:]] == text.split()
    assert (out / "dog_cat.srt").read_text().startswith("1\n00:00:00,")
    assert (out / "dog_cat.vtt").read_text().startswith("WEBVTT")
    grid = (out / "dog_cat.textgrid").read_text()
    assert 'name = "words"' in grid and 'name = "chars"' in grid and 'text = "small"' in grid

    pause = np.zeros(8000, np.float32)
    long_audio = np.concatenate([load_audio(clip), pause] * 14)  # 43 s: two 30 s windows
    (tmp_path / "long.wav").write_bytes(wav_bytes(long_audio))
    (tmp_path / "m.tsv").write_text(f"audio\ttext\nlong.wav\t{' '.join([text] * 14)}\n"
                                    f"dog_cat.wav\t{'word ' * 200}\n")
    (tmp_path / "dog_cat.wav").write_bytes(clip.read_bytes())
    capsys.readouterr()
    assert main(["align", "--manifest", str(tmp_path / "m.tsv"), "-m", model, "-o", str(tmp_path / "m"),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dog_cat.wav: the transcript cannot be aligned to this audio" in err[0]
    words = json.loads((tmp_path / "m" / "long.json").read_text())["words"]
    assert len(words) == 14 * len(text.split())
    assert all(a["end"] <= b["start"] for a, b in zip(words, words[1:], strict=False))
    assert words[-1]["end"] > 40  # the last words are found in the second window
    assert main(["align", str(clip), "-m", model]) == 2  # no transcript
