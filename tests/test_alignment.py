"""CTC forced alignment: the Viterbi path against a brute-force search, and what it says when text cannot fit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from w2vbert.alignment import forced_align, token_spans

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
    from w2vbert.alignment import align_words
    from w2vbert.audio import SAMPLING_RATE, load_audio

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
    aligned = align_words(log_probs_of(path), "Zebra " + path.with_suffix(".txt").read_text().strip(),
                          pipe.tokenizer, seconds)
    assert aligned["unknown"] == ["Z"]  # the vocabulary is lower case: said, and aligned as [UNK]
