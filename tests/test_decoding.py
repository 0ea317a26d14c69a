"""CTC decoding: greedy and beam search (with a word LM), times in seconds, pauses as word boundaries, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from w2vbert import Wav2Vec2CTCTokenizer, build_vocab
from w2vbert.text.decoding import BeamSearchDecoder, ctc_transcribe, split_words_at_pauses


def tokenizer() -> Wav2Vec2CTCTokenizer:
    return Wav2Vec2CTCTokenizer(vocab=build_vocab(["cat dog"]), unk_token="[UNK]", pad_token="[PAD]")


def frames(tok: Wav2Vec2CTCTokenizer, spec: str) -> list[int]:
    """One token per character of `spec`; "_" is a blank frame."""
    return [tok.pad_token_id if c == "_" else tok.convert_tokens_to_ids(c) for c in spec.replace(" ", "|")]


def test_a_long_blank_run_between_letters_is_a_word_boundary_and_a_short_one_is_not():
    tok = tokenizer()
    ids = split_words_at_pauses(frames(tok, "c_a_t______d_o__g"), tok, min_frames=5)
    assert tok.decode(ids) == "cat dog"
    assert tok.decode(split_words_at_pauses(frames(tok, "c_a_t____d_o_g"), tok, min_frames=5)) == "catdog"


def test_a_pause_next_to_a_word_delimiter_adds_no_second_boundary():
    tok = tokenizer()
    ids = frames(tok, "cat ______dog______ ")
    assert split_words_at_pauses(ids, tok, min_frames=5) == ids


def emissions(vocab: dict[str, int], frames: list[dict[str, float]]) -> torch.Tensor:
    probs = torch.full((len(frames), len(vocab)), 1e-4)
    for row, frame in enumerate(frames):
        for token, p in frame.items():
            probs[row, vocab[token]] = p
    return (probs / probs.sum(-1, keepdim=True)).log()


AMBIGUOUS = [{"t": 1}, {"h": 1}, {"e": 1}, {"|": 1}, {"b": 0.55, "c": 0.45}, {"a": 1}, {"t": 1}, {"[PAD]": 1}]


def tiny_arpa(path: Path) -> Path:
    """A bigram LM (log10 probabilities, tab-separated as KenLM wants) that much prefers "the cat" to "the bat"."""
    unigrams = {"<s>": -1.0, "</s>": -1.0, "<unk>": -1.0, "the": -0.5, "cat": -0.3, "bat": -3.0}
    lines = ["\\data\\", f"ngram 1={len(unigrams)}", "ngram 2=1", "", "\\1-grams:"]
    lines += [f"{p}\t{w}\t0" for w, p in unigrams.items()]
    lines += ["", "\\2-grams:", "-0.2\tthe cat", "", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return path


def test_greedy_transcription_gives_text_and_word_times_in_seconds():
    vocab = build_vocab(["the cat a bat"])
    tokenizer = Wav2Vec2CTCTokenizer(vocab=vocab, unk_token="[UNK]", pad_token="[PAD]")
    out = ctc_transcribe(emissions(vocab, AMBIGUOUS), tokenizer, 0.02, timestamps="word")
    assert out == {
        "text": "the bat",
        "chunks": [{"text": "the", "timestamp": (0.0, 0.06)}, {"text": "bat", "timestamp": (0.08, 0.14)}],
    }


def test_beam_search_without_lm_agrees_with_greedy_and_a_word_lm_flips_the_ambiguous_word(tmp_path):
    vocab = build_vocab(["the cat a bat"])
    tokenizer = Wav2Vec2CTCTokenizer(vocab=vocab, unk_token="[UNK]", pad_token="[PAD]")
    log_probs = emissions(vocab, AMBIGUOUS)
    assert ctc_transcribe(log_probs, tokenizer, 0.02, decoder=BeamSearchDecoder(beam_size=8))["text"] == "the bat"
    lm = BeamSearchDecoder(tiny_arpa(tmp_path / "lm.arpa"), beam_size=8, lm_weight=2.0, word_score=0.0)
    out = ctc_transcribe(log_probs, tokenizer, 0.02, decoder=lm, timestamps="word")
    assert out["text"] == "the cat" and [c["text"] for c in out["chunks"]] == ["the", "cat"]


def test_decoding_errors_name_what_was_expected(tmp_path):
    tokenizer = Wav2Vec2CTCTokenizer(vocab=build_vocab(["ab"]), unk_token="[UNK]", pad_token="[PAD]")
    # 5 vocabulary tokens, and <s>, </s> added as transformers adds them: 7 ids it can write
    with pytest.raises(ValueError, match=r"shape \(frames, at most 7 tokens\), got \(2, 3, 5\)"):
        ctc_transcribe(torch.zeros(2, 3, 5), tokenizer, 0.02)
    with pytest.raises(FileNotFoundError, match="no such language model file"):
        BeamSearchDecoder(tmp_path / "missing.arpa")
    (tmp_path / "bad.arpa").write_text("not an arpa file\n")
    with pytest.raises(ValueError, match="no \\\\1-grams: section"):
        BeamSearchDecoder(tmp_path / "bad.arpa")
