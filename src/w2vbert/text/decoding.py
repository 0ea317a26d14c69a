"""CTC decoding: log-probabilities per frame -> text, with character or word times in seconds.

Greedy decoding (best token per frame, repeats collapsed, blanks dropped) needs nothing but the tokenizer.
Beam search, optionally with a KenLM word n-gram, runs through flashlight-text (the decoder torchaudio uses,
with KenLM built into its wheel): `pip install 'w2vbert[lm]'`. With a word LM the beam only spells words the
LM knows; the lexicon (word -> characters) is read from the unigrams of the ARPA file.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
from w2vbert.utils.extras import optional_import

PAUSE_S = 0.5  # blank runs at least this long between two characters end a word (see split_words_at_pauses)
BEAM_SEARCH = "beam search (flashlight-text's CTC decoder)"  # what needs the `lm` extra, as MissingExtra says


def ctc_transcribe(
    log_probs: torch.Tensor,
    tokenizer: Wav2Vec2CTCTokenizer,
    seconds_per_frame: float,
    *,
    timestamps: str | None = None,
    decoder: BeamSearchDecoder | None = None,
) -> dict[str, Any]:
    """(frames, vocab) log-probabilities of one recording -> `{"text"}`, plus `"chunks"` with timestamps.

    `timestamps` "char" or "word" adds `chunks=[{"text", "timestamp": (start_s, end_s)}]`, the shape of
    transformers' speech recognition pipeline; times are frame offsets times `seconds_per_frame`.
    """
    known = tokenizer.max_token_id + 1  # ids the tokenizer can write (it may know more than the head emits)
    if log_probs.ndim != 2 or log_probs.shape[-1] > known:
        raise ValueError(
            f"expected log-probabilities of shape (frames, at most {known} tokens), got {tuple(log_probs.shape)}"
        )
    ids = decoder.best_path(log_probs, tokenizer) if decoder is not None else log_probs.argmax(-1).tolist()
    ids = split_words_at_pauses(ids, tokenizer, round(PAUSE_S / seconds_per_frame))
    if timestamps is None:
        return {"text": tokenizer.decode(ids)}
    if timestamps not in ("char", "word"):
        raise ValueError(f"timestamps must be None, 'char' or 'word', got {timestamps!r}")
    out = tokenizer.decode(ids, output_char_offsets=timestamps == "char", output_word_offsets=timestamps == "word")
    offsets = out.char_offsets if timestamps == "char" else out.word_offsets
    key = "char" if timestamps == "char" else "word"
    chunks = [
        {
            "text": o[key],
            "timestamp": (
                round(o["start_offset"] * seconds_per_frame, 3),
                round(o["end_offset"] * seconds_per_frame, 3),
            ),
        }
        for o in offsets
    ]
    return {"text": out.text, "chunks": chunks}


def split_words_at_pauses(ids: list[int], tokenizer: Wav2Vec2CTCTokenizer, min_frames: int) -> list[int]:
    """Put a word delimiter in the middle of each run of >= `min_frames` blanks between two characters.

    Models fine-tuned on single utterances rarely emit "|" at an utterance's end, so in a recording of many
    utterances (long audio) the last word of one and the first of the next would run together ("catseven").
    A half-second pause is a word boundary in any language that writes "|", so the delimiter is implied there.
    """
    delimiter, blank = tokenizer.word_delimiter_token_id, tokenizer.pad_token_id
    if delimiter is None or min_frames < 1:
        return ids
    out, run_start, previous = list(ids), None, None
    for index, token in enumerate(ids):
        if token == blank:
            run_start = index if run_start is None else run_start
            continue
        if run_start is not None and previous not in (None, delimiter) and token != delimiter:
            if index - run_start >= min_frames:
                out[(run_start + index) // 2] = delimiter
        run_start, previous = None, token
    return out


class BeamSearchDecoder:
    """CTC beam search over the tokenizer's characters, with an optional KenLM word n-gram (ARPA or binary).

    Args:
        lm: path of a KenLM model; None decodes without a language model (lexicon-free).
        beam_size: hypotheses kept per frame.
        lm_weight: weight of the LM log-probability (alpha); word_score: bonus per word (beta).
        beam_threshold: hypotheses scoring this far below the best are pruned.
        lexicon: words the beam may spell when an LM is given; by default the ARPA file's unigrams.
    """

    def __init__(
        self,
        lm: str | os.PathLike | None = None,
        *,
        beam_size: int = 50,
        lm_weight: float = 0.5,
        word_score: float = 1.0,
        beam_threshold: float = 25.0,
        lexicon: list[str] | None = None,
        quiet: bool = False,
    ) -> None:
        optional_import("flashlight.lib.text.decoder", BEAM_SEARCH)  # a missing extra is said before any audio
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if lm is not None and not Path(lm).is_file():
            raise FileNotFoundError(f"{lm}: no such language model file (expected a KenLM .arpa or .bin)")
        if lm is not None and lexicon is None:
            lexicon = arpa_unigrams(lm)
        self.lm_path, self.lexicon = lm, lexicon
        self.beam_size, self.lm_weight, self.word_score, self.beam_threshold = (
            beam_size,
            lm_weight,
            word_score,
            beam_threshold,
        )
        self.quiet = quiet  # keep KenLM's loading banner off stderr
        self._built: tuple[int, int, Any] | None = None  # (id of the tokenizer, tokens, flashlight decoder)

    def best_path(self, log_probs: torch.Tensor, tokenizer: Wav2Vec2CTCTokenizer) -> list[int]:
        """The best hypothesis as a per-frame token sequence (blanks and repeats kept), for `tokenizer.decode`."""
        emissions = log_probs.detach().float().cpu().contiguous()
        frames, tokens = emissions.shape
        decoder = self.prepare(tokenizer, tokens)
        results = decoder.decode(emissions.data_ptr(), frames, tokens)
        if not results:
            return [tokenizer.pad_token_id] * frames
        # flashlight returns one token per frame, padded by a leading and trailing silence slot.
        path = list(results[0].tokens)[1:-1] if len(results[0].tokens) == frames + 2 else list(results[0].tokens)
        return [t if t >= 0 else tokenizer.pad_token_id for t in path][:frames]

    def prepare(self, tokenizer: Wav2Vec2CTCTokenizer, tokens: int) -> Any:
        """Build the flashlight decoder for `tokenizer` and `tokens` emissions per frame (the CTC head's width),
        reading the language model; once, then reused. Called when a pipeline is built, so that a bad LM fails
        once, before any audio."""
        if self._built is not None and self._built[:2] == (id(tokenizer), tokens):
            return self._built[2]
        with _stderr_silenced(self.quiet):  # KenLM prints its loading banner from C++
            decoder = self._build(tokenizer, tokens)
        self._built = (id(tokenizer), tokens, decoder)
        return decoder

    def _build(self, tokenizer: Wav2Vec2CTCTokenizer, tokens: int) -> Any:
        fl = optional_import("flashlight.lib.text.decoder", BEAM_SEARCH)
        blank = tokenizer.pad_token_id
        silence = tokenizer.word_delimiter_token_id
        if silence is None:
            raise ValueError(f"beam search needs the word delimiter {tokenizer.word_delimiter_token!r} in the vocab")
        transitions: list[float] = []
        if self.lm_path is None:
            options = fl.LexiconFreeDecoderOptions(
                beam_size=self.beam_size,
                beam_size_token=tokens,
                beam_threshold=self.beam_threshold,
                lm_weight=0.0,
                sil_score=0.0,
                log_add=False,
                criterion_type=fl.CriterionType.CTC,
            )
            decoder = fl.LexiconFreeDecoder(options, fl.ZeroLM(), silence, blank, transitions)
        else:
            KenLM = optional_import("flashlight.lib.text.decoder.kenlm", BEAM_SEARCH).KenLM  # noqa: N806 - a class
            Dictionary = optional_import("flashlight.lib.text.dictionary", BEAM_SEARCH).Dictionary  # noqa: N806
            words = Dictionary()
            for word in self.lexicon:
                words.add_entry(word)
            if "<unk>" not in self.lexicon:
                words.add_entry("<unk>")
            lm = KenLM(str(self.lm_path), words)
            trie = fl.Trie(tokens, silence)
            start = lm.start(False)
            for word in self.lexicon:
                spelling = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
                if word in ("<s>", "</s>", "<unk>") or tokenizer.unk_token_id in spelling or max(spelling) >= tokens:
                    continue  # the beam cannot spell it with this vocabulary and head
                index = words.get_index(word)
                _, score = lm.score(start, index)
                trie.insert(spelling, index, score)
            trie.smear(fl.SmearingMode.MAX)
            options = fl.LexiconDecoderOptions(
                beam_size=self.beam_size,
                beam_size_token=tokens,
                beam_threshold=self.beam_threshold,
                lm_weight=self.lm_weight,
                word_score=self.word_score,
                unk_score=-math.inf,
                sil_score=0.0,
                log_add=False,
                criterion_type=fl.CriterionType.CTC,
            )
            decoder = fl.LexiconDecoder(options, trie, lm, silence, blank, words.get_index("<unk>"), transitions, False)
        return decoder


@contextlib.contextmanager
def _stderr_silenced(quiet: bool) -> Iterator[None]:
    """Send what C++ code writes to file descriptor 2 to /dev/null while the block runs (when `quiet`)."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def arpa_unigrams(path: str | os.PathLike) -> list[str]:
    """The words of an ARPA n-gram file's `\\1-grams:` section (the lexicon a word LM can score)."""
    words: list[str] = []
    section = False
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line.startswith("\\"):
                    if section:
                        break
                    section = line == "\\1-grams:"
                elif section and line:
                    fields = line.split()
                    if len(fields) >= 2:
                        words.append(fields[1])
    except UnicodeDecodeError:
        raise ValueError(
            f"{path} is not an ARPA text file; for a binary KenLM model pass lexicon=[words] explicitly"
        ) from None
    if not words:
        raise ValueError(f"{path} has no \\1-grams: section: expected an ARPA n-gram file")
    return words
