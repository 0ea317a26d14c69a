"""CTC decoding: pauses as word boundaries."""

from __future__ import annotations

from w2vbert import Wav2Vec2CTCTokenizer, build_vocab
from w2vbert.decoding import split_words_at_pauses


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
