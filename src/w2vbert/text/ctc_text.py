"""CTC tokens -> text: what `Wav2Vec2CTCTokenizer.decode` and `convert_tokens_to_string` do, with the offsets.

In order: `Wav2Vec2CTCTokenizerOutput`, the text and offsets as transformers returns them (a dict holding only the
fields that were asked for, read by key, by position or as attributes); `CtcSymbols`, the tokens that the collapse
treats apart (the blank, the word delimiter); `ctc_tokens_to_text`, the collapse itself (repeats merged, blanks
dropped, the delimiter made a space) with character and word offsets; `word_offsets`, characters grouped into
words; `clean_up_tokenization`, transformers' clean-up of spaces.

Offsets count output frames of the model: a character's `start_offset` is the first frame of its run, its
`end_offset` one past the last, so `offset * seconds_per_frame` is a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

_FIELDS = ("text", "char_offsets", "word_offsets")


class Wav2Vec2CTCTokenizerOutput(dict):
    """`decode(..., output_char_offsets=True)`: transformers' output of the same name, a dict of the fields that are
    set (`keys()` leaves out the offsets not asked for), read as `out["text"]`, `out.text` or `out[0]`.

    Built from keywords, from positional fields in the order text, char_offsets, word_offsets, or from one dict
    of them (`Wav2Vec2CTCTokenizerOutput({"text": [...], ...})`, as transformers' `batch_decode` builds it).
    """

    def __init__(self, text: Any = None, char_offsets: Any = None, word_offsets: Any = None) -> None:
        super().__init__()
        if isinstance(text, Mapping) and char_offsets is None and word_offsets is None:
            unknown = sorted(set(text) - set(_FIELDS))
            if unknown:
                raise KeyError(f"Wav2Vec2CTCTokenizerOutput has the fields {list(_FIELDS)}, got {unknown}")
            text, char_offsets, word_offsets = (text.get(name) for name in _FIELDS)
        for name, value in zip(_FIELDS, (text, char_offsets, word_offsets), strict=True):
            if value is not None:
                super().__setitem__(name, value)

    def __getattr__(self, name: str) -> Any:
        if name in _FIELDS:
            return self.get(name)
        raise AttributeError(f"Wav2Vec2CTCTokenizerOutput has no {name!r}; its fields are {list(_FIELDS)}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _FIELDS:
            raise AttributeError(f"Wav2Vec2CTCTokenizerOutput has the fields {list(_FIELDS)}, not {name!r}")
        self[name] = value

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in _FIELDS:
            raise KeyError(f"Wav2Vec2CTCTokenizerOutput has the fields {list(_FIELDS)}, not {key!r}")
        if value is None:  # an unset field is no key, as in transformers' ModelOutput
            self.pop(key, None)
        else:
            super().__setitem__(key, value)

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple[Any, ...]:
        """The fields that are set, in order (transformers' `ModelOutput.to_tuple`)."""
        return tuple(self.values())


@dataclass(frozen=True)
class CtcSymbols:
    """The tokens that CTC decoding treats apart from the others."""

    blank: str | None  # the pad token: the CTC blank, dropped (it separates repeats of one character)
    delimiter: str | None  # the word delimiter token ("|"), written as `replace_with`
    replace_with: str = " "  # what a delimiter becomes in the text (transformers' replace_word_delimiter_char)


def ctc_tokens_to_text(
    tokens: Sequence[str],
    symbols: CtcSymbols,
    group_tokens: bool = True,
    spaces_between_special_tokens: bool = False,
    output_char_offsets: bool = False,
    output_word_offsets: bool = False,
) -> dict[str, Any]:
    """`{"text", "char_offsets", "word_offsets"}` of CTC output tokens, as transformers' `convert_tokens_to_string`.

    Runs of one token collapse to one (`group_tokens`), blanks are dropped, delimiters become `replace_with`, and
    the characters are joined (with spaces where `spaces_between_special_tokens`) and stripped. The offsets asked
    for are lists of `{"char" | "word", "start_offset", "end_offset"}`, else None; no tokens give empty lists.
    """
    if not tokens:
        return {"text": "", "char_offsets": [], "word_offsets": []}
    runs = [(t, len(list(g))) for t, g in groupby(tokens)] if group_tokens else [(t, 1) for t in tokens]
    chars, offsets, position = [], [], 0
    for token, count in runs:  # e.g. H H <pad> E | | -> H (0, 2), E (3, 4), " " (4, 6)
        if token != symbols.blank:
            char = symbols.replace_with if token == symbols.delimiter else token
            chars.append(char)
            offsets.append({"char": char, "start_offset": position, "end_offset": position + count})
        position += count
    text = (" " if spaces_between_special_tokens else "").join(chars).strip()
    words = word_offsets(offsets, symbols.replace_with) if output_word_offsets else None
    return {"text": text, "char_offsets": offsets if output_char_offsets else None, "word_offsets": words}


def word_offsets(char_offsets: list[dict[str, Any]], delimiter: str = " ") -> list[dict[str, Any]]:
    """Group character offsets into words at `delimiter` characters: `[{"word", "start_offset", "end_offset"}]`
    (runs of delimiters, leading or trailing ones included, make no empty words)."""
    words: list[dict[str, Any]] = []
    for is_space, group in groupby(char_offsets, key=lambda o: o["char"] == delimiter):
        if not is_space:
            group = list(group)
            words.append(
                {
                    "word": "".join(o["char"] for o in group),
                    "start_offset": group[0]["start_offset"],
                    "end_offset": group[-1]["end_offset"],
                }
            )
    return words


def clean_up_tokenization(text: str) -> str:
    """transformers' clean-up of spaces before punctuation and in English contractions."""
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text
