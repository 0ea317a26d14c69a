"""CTC forced alignment: the most likely frame path that spells a known token sequence.

The path runs over the blank-augmented sequence of the N target tokens, 2N + 1 states (a blank before, between
and after the tokens): from a state it stays, moves to the next state, or skips the blank in between when the
two tokens around it differ (a repeated token needs a blank between its copies). Viterbi keeps, per frame, the
best score of each state and which of the three moves reached it (one byte per state and frame, at most
`MOVES_BYTES` of them at once: longer alignments recompute them segment by segment); the path is read back from
the end, which is either the last token or the blank after it.

    frames  t=0  t=1  t=2  t=3  t=4
    states  _    c    c    _    a        targets "c a": states _ c _ a _ (0..4)

In order: the alignment of one sequence (`forced_align`, with its input checks and the `_Trellis` of states that
runs the Viterbi passes), the spans of its tokens (`token_spans`), and words with times from a transcript and a
CTC tokenizer (`align_words`, with `spelled`: the transcript in the vocabulary's case).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer


@dataclass(frozen=True)
class TokenSpan:
    """One target token on the frame axis: frames [start, end), and the mean probability of its frames."""

    token: int
    start: int
    end: int
    score: float


MOVES_BYTES = 256 * 2**20  # back-pointers held at once; longer alignments recompute them segment by segment


def forced_align(
    log_probs: torch.Tensor | np.ndarray, targets: list[int], blank: int, max_moves_bytes: int = MOVES_BYTES
) -> tuple[np.ndarray, float]:
    """Viterbi over (frames, vocab) log-probabilities: (the state of each frame, as a token id or `blank`, and the
    path's total log-probability). Raises ValueError when the frames cannot hold the targets (each token needs a
    frame, and each repeated pair one blank frame between).

    Memory is bounded whatever the length: the back-pointers of at most `max_moves_bytes` / states frames are held
    at once. Past that, the forward pass keeps only the scores at each segment's start, and the way back runs the
    segments again from there, last first (twice the work, the same path)."""
    scores, targets = _checked(log_probs, targets, blank)  # (T, V) float64, [N]
    frames = len(scores)
    if not targets:
        return np.full(frames, blank), float(scores[:, blank].sum())
    trellis = _Trellis.of(scores, targets, blank)
    segment = max(1, max_moves_bytes // trellis.size)  # frames of back-pointers held at once
    firsts = list(range(1, frames, segment))  # segments [first, first + segment) of frames 1 .. T-1
    entries, best, moves = trellis.forward(firsts, segment)
    last = trellis.size - 1 if best[-1] >= best[-2] else trellis.size - 2  # ends on the last token or blank
    path = trellis.backward(firsts, segment, entries, moves, last)
    return trellis.states[path], float(best[last])


def _checked(
    log_probs: torch.Tensor | np.ndarray, targets: list[int], blank: int
) -> tuple[np.ndarray, list[int]]:
    """(frames, vocab) float64 scores and the targets as ints, once the frames are known to hold the targets."""
    scores = np.asarray(log_probs.float().cpu() if isinstance(log_probs, torch.Tensor) else log_probs, np.float64)
    if scores.ndim != 2:
        raise ValueError(f"expected log-probabilities of shape (frames, vocab), got {scores.shape}")
    frames, vocab = scores.shape
    targets = [int(t) for t in targets]
    if any(not 0 <= t < vocab or t == blank for t in targets):
        raise ValueError(f"targets must be ids in [0, {vocab}) other than the blank {blank}, got {targets}")
    repeats = sum(a == b for a, b in zip(targets, targets[1:], strict=False))
    if frames < len(targets) + repeats:
        raise ValueError(
            f"the transcript cannot be aligned to this audio: its {len(targets)} tokens need at least "
            f"{len(targets) + repeats} frames, the audio has {frames}"
        )
    return scores, targets


@dataclass(frozen=True)
class _Trellis:
    """The S = 2N + 1 states of N targets over the frames' scores, and the Viterbi moves between them."""

    scores: np.ndarray  # (T, V) log-probabilities
    states: np.ndarray  # (S,) the token each state emits: blank, t1, blank, t2, ..., tN, blank
    skip: np.ndarray  # (S,) bool: may the path come from two states back (over a blank)?
    columns: np.ndarray  # (S,) 0 .. S - 1: picks each state's best move out of the (3, S) candidates

    @classmethod
    def of(cls, scores: np.ndarray, targets: list[int], blank: int) -> _Trellis:
        states = np.full(2 * len(targets) + 1, blank)
        states[1::2] = targets
        skip = np.zeros(len(states), dtype=bool)
        skip[3::2] = np.asarray(targets[1:]) != np.asarray(targets[:-1])  # a repeated token needs the blank
        return cls(scores, states, skip, np.arange(len(states)))

    @property
    def size(self) -> int:
        return len(self.states)

    def step(self, best: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame t from the scores after frame t - 1: (the move into each state, the scores after frame t)."""
        candidates = np.full((3, self.size), -np.inf)
        candidates[0] = best  # stay
        candidates[1, 1:] = best[:-1]  # from the previous state
        candidates[2, 2:] = np.where(self.skip[2:], best[:-2], -np.inf)  # over a blank, between different tokens
        move = candidates.argmax(0).astype(np.int8)
        return move, candidates[move, self.columns] + self.scores[t, self.states]

    def run(self, best: np.ndarray, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames [first, stop): their moves (stop - first, S) and the scores after the last."""
        moves = np.zeros((stop - first, self.size), dtype=np.int8)
        for t in range(first, stop):
            moves[t - first], best = self.step(best, t)
        return moves, best

    def forward(self, firsts: list[int], segment: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
        """The scores entering each segment, the scores after the last frame, and the moves when one segment
        covers all frames (else None: the way back recomputes each segment's moves from its entry)."""
        frames = len(self.scores)
        best = np.full(self.size, -np.inf)
        best[:2] = self.scores[0, self.states[:2]]  # a path starts on the first blank or the first token
        entries, moves = [], None
        for first in firsts:
            entries.append(best)
            if len(firsts) == 1:
                moves, best = self.run(best, first, frames)
            else:
                for t in range(first, min(first + segment, frames)):
                    _, best = self.step(best, t)
        return entries, best, moves

    def backward(
        self, firsts: list[int], segment: int, entries: list[np.ndarray], moves: np.ndarray | None, last: int
    ) -> np.ndarray:
        """(T,) the state of each frame, read back from state `last` at the final frame, last segment first."""
        frames = len(self.scores)
        path = np.empty(frames, dtype=np.int64)
        for first, entry in zip(reversed(firsts), reversed(entries), strict=True):
            stop = min(first + segment, frames)
            if len(firsts) > 1:
                moves, _ = self.run(entry, first, stop)
            for t in range(stop - 1, first - 1, -1):
                path[t] = last
                last -= int(moves[t - first, last])
        path[0] = last
        return path


def token_spans(frame_tokens: np.ndarray, log_probs: torch.Tensor | np.ndarray, blank: int) -> list[TokenSpan]:
    """The runs of non-blank frames of an aligned path, one per target token, with their mean probability.

    A run of one token is one span; two copies of a token always have a blank between them in a CTC path, so
    consecutive runs are distinct targets."""
    scores = np.asarray(log_probs.float().cpu() if isinstance(log_probs, torch.Tensor) else log_probs, np.float64)
    spans, start = [], None
    for t in range(len(frame_tokens) + 1):
        token = frame_tokens[t] if t < len(frame_tokens) else blank
        if start is not None and token != frame_tokens[start]:
            run = frame_tokens[start]
            spans.append(TokenSpan(int(run), start, t, float(np.exp(scores[start:t, run]).mean())))
            start = None
        if start is None and token != blank:
            start = t
    return spans


def align_words(
    log_probs: torch.Tensor | np.ndarray, text: str, tokenizer: Wav2Vec2CTCTokenizer, seconds_per_frame: float
) -> dict:
    """A known transcript on the frames of a CTC model's output: `{"words": [{"word", "start", "end", "score"}],
    "chars": [...], "unknown": [characters the vocabulary lacks, aligned as its unknown token], "score": the
    path's mean log-probability per frame}`. Times are seconds (frames x `seconds_per_frame`); a word's score is
    the mean of its characters'. Characters are aligned in the case the vocabulary has (`spelled`); words keep the
    transcript's own spelling, chars the vocabulary's tokens."""
    words_given = text.split()  # any run of whitespace (a line break of a .txt file) is one word boundary
    text = spelled(" ".join(words_given), tokenizer)
    ids = tokenizer(text)["input_ids"]
    if not ids:
        raise ValueError("the transcript is empty: nothing to align")
    unk = tokenizer.unk_token_id
    unknown = sorted({ch for ch in text if not ch.isspace() and tokenizer.convert_tokens_to_ids(ch) == unk})
    path, total = forced_align(log_probs, ids, tokenizer.pad_token_id)
    spans = token_spans(path, log_probs, tokenizer.pad_token_id)  # one per id, in order
    delimiter = tokenizer.word_delimiter_token_id
    chars, words, current = [], [], []
    for span in [*spans, None]:
        if span is None or span.token == delimiter:
            if current:
                words.append({"word": "".join(c["char"] for c in current), "start": current[0]["start"],
                              "end": current[-1]["end"], "score": float(np.mean([c["score"] for c in current]))})
            current = []
            continue
        char = {"char": tokenizer.convert_ids_to_tokens(span.token), "start": round(span.start * seconds_per_frame, 3),
                "end": round(span.end * seconds_per_frame, 3), "score": round(span.score, 4)}
        chars.append(char)
        current.append(char)
    if len(words) == len(words_given):  # one token run per given word: name each as the transcript wrote it
        words = [{**word, "word": given} for word, given in zip(words, words_given, strict=True)]
    return {"words": words, "chars": chars, "unknown": unknown, "score": total / len(path)}


def spelled(text: str, tokenizer: Wav2Vec2CTCTokenizer) -> str:
    """`text` with each character the vocabulary lacks replaced by its lower or upper case where the vocabulary
    has that: a vocabulary of one case (W2v-BERT CTC heads are usually trained on lower-cased text) would otherwise
    take every capital as its unknown token."""
    unk = tokenizer.unk_token_id

    def known(token: str) -> bool:
        return tokenizer.convert_tokens_to_ids(token) != unk

    def spell(ch: str) -> str:
        if ch.isspace() or known(ch):
            return ch
        return next((case for case in (ch.lower(), ch.upper()) if known(case)), ch)

    return "".join(spell(ch) for ch in text)
