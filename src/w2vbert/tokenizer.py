"""`Wav2Vec2CTCTokenizer`: characters <-> CTC label ids, with the files and behaviour of the transformers class.

A CTC vocabulary is one token per character, plus "|" between words, an unknown token and a pad token that
doubles as the CTC blank. Decoding CTC output collapses repeats, then drops blanks. Tokens longer than one
character (`[UNK]`, `<s>`) are matched whole in text, and the spaces around them are dropped, as transformers
does. `do_lower_case=True` means the vocabulary is upper case: text is upper-cased in and lower-cased out.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import atomic_write_text, read_json_object
from .hub import HubOptions, resolve_optional_file

logger = logging.getLogger("w2vbert")

VOCAB_NAME = "vocab.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_NAME = "special_tokens_map.json"
ADDED_TOKENS_NAME = "added_tokens.json"
LABEL_PAD = -100  # label positions the CTC loss ignores


@dataclass
class Wav2Vec2CTCTokenizerOutput:
    """`decode(..., output_char_offsets=True)`: text and offsets in output frames (as transformers)."""

    text: str | list[str]
    char_offsets: list[dict[str, Any]] | list[list[dict[str, Any]]] | None = None
    word_offsets: list[dict[str, Any]] | list[list[dict[str, Any]]] | None = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class Wav2Vec2CTCTokenizer:
    """Character-level CTC tokenizer; `Wav2Vec2CTCTokenizer.from_pretrained(dir)` reads transformers' files."""

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        bos_token: str = "<s>",
        eos_token: str = "</s>",
        unk_token: str = "<unk>",
        pad_token: str = "<pad>",
        word_delimiter_token: str = "|",
        replace_word_delimiter_char: str = " ",
        do_lower_case: bool = False,
        target_lang: str | None = None,
        *,
        vocab: dict[str, int] | None = None,
        **extra: Any,
    ) -> None:
        if (vocab is None) == (vocab_file is None):
            raise ValueError("pass exactly one of vocab_file (a vocab.json path) and vocab (a token -> id dict)")
        source = "the vocab dict" if vocab_file is None else str(vocab_file)
        if vocab is None:
            vocab = read_json_object(Path(vocab_file))
        self.vocab = vocab
        self.encoder: dict[str, int] = checked_vocab(vocab, target_lang, source)
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.bos_token, self.eos_token, self.unk_token, self.pad_token = bos_token, eos_token, unk_token, pad_token
        self.word_delimiter_token = word_delimiter_token
        self.replace_word_delimiter_char = replace_word_delimiter_char
        self.do_lower_case = do_lower_case
        self.target_lang = target_lang
        extra.pop("tokenizer_class", None)
        extra.pop("added_tokens_decoder", None)
        self.clean_up_tokenization_spaces = bool(extra.pop("clean_up_tokenization_spaces", False))
        self.extra = extra  # other tokenizer_config.json keys, written back unchanged
        for name in ("pad_token", "unk_token"):
            if getattr(self, name) not in self.encoder:
                raise ValueError(f"{name} {getattr(self, name)!r} is not in the vocabulary")
        # Tokens of several characters are matched whole, longest first, eating the spaces around them.
        whole = sorted((t for t in self.encoder if len(t) > 1), key=len, reverse=True)
        self._whole = re.compile(r"\s*(" + "|".join(map(re.escape, whole)) + r")\s*") if whole else None
        self._reported_unknown: set[str] = set()

    # --------------------------------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        return len(self.decoder)

    def __len__(self) -> int:
        return len(self.encoder)

    @property
    def max_vocab_id(self) -> int:
        """The largest id in vocab.json: a CTC head needs more outputs than this to name every vocabulary token."""
        return max(self.decoder)

    @property
    def max_token_id(self) -> int:
        """The largest id this tokenizer can produce or name (vocab.json's and the added tokens'): labels of any
        text are below `max_token_id + 1`, the CTC head width that leaves no id out."""
        return max(self.decoder)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.encoder)

    @property
    def all_special_tokens(self) -> list[str]:
        tokens = [self.bos_token, self.eos_token, self.unk_token, self.pad_token, self.word_delimiter_token]
        return [t for t in tokens if t is not None]

    @property
    def all_special_ids(self) -> list[int]:
        return [self.encoder[t] for t in self.all_special_tokens if t in self.encoder]

    @property
    def pad_token_id(self) -> int:
        return self.encoder[self.pad_token]

    @property
    def unk_token_id(self) -> int:
        return self.encoder[self.unk_token]

    @property
    def bos_token_id(self) -> int | None:
        return self.encoder.get(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self.encoder.get(self.eos_token)

    @property
    def word_delimiter_token_id(self) -> int | None:
        return self.encoder.get(self.word_delimiter_token)

    # ------------------------------------------------------------------------------------------- encode
    def tokenize(self, text: str) -> list[str]:
        """Text -> tokens: one per character, spaces -> "|", multi-character vocabulary tokens kept whole."""
        if self.do_lower_case:
            text = text.upper()
        pieces = self._whole.split(text) if self._whole else [text]
        tokens: list[str] = []
        for index, piece in enumerate(pieces):
            if index % 2:  # a whole token matched by the pattern
                tokens.append(piece)
            else:
                tokens.extend(piece.replace(" ", self.word_delimiter_token))
        return tokens

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self.encoder.get(tokens, self.unk_token_id)
        return [self.encoder.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Iterable[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, (int, np.integer)):
            return self.decoder.get(int(ids), self.unk_token)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.decoder.get(int(i), self.unk_token) for i in ids if int(i) not in special]

    def encode(self, text: str) -> list[int]:
        """Label ids of one transcript. Characters outside the vocabulary become the unk id (reported once)."""
        tokens = self.tokenize(text)
        unknown = sorted({t for t in tokens if t not in self.encoder} - self._reported_unknown)
        if unknown:
            self._reported_unknown.update(unknown)
            logger.warning(
                "characters not in the vocabulary, mapped to %s: %s", self.unk_token, " ".join(map(repr, unknown))
            )
        return self.convert_tokens_to_ids(tokens)

    def __call__(
        self,
        text: str | Sequence[str],
        padding: bool | str = False,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        **unused: Any,
    ) -> dict[str, Any]:
        """`{"input_ids", "attention_mask"}` for a text or a list of texts (padded with the pad id if asked)."""
        if unused.keys() - {"add_special_tokens", "truncation", "verbose"}:
            raise TypeError(f"Wav2Vec2CTCTokenizer got unexpected argument(s) {sorted(unused)}")
        single = isinstance(text, str)
        if not single and not all(isinstance(t, str) for t in text):
            raise TypeError(f"expected a text or a list of texts, got {type(text).__name__}")
        ids = [self.encode(t) for t in ([text] if single else text)]
        if padding in (True, "longest") or return_tensors is not None and len({len(i) for i in ids}) > 1:
            if padding in (False, "do_not_pad"):
                raise ValueError("texts of different lengths need padding=True to become one tensor")
            width = max(map(len, ids), default=0)
            masks = [[1] * len(i) + [0] * (width - len(i)) for i in ids]
            ids = [i + [self.pad_token_id] * (width - len(i)) for i in ids]
        else:
            masks = [[1] * len(i) for i in ids]
        out: dict[str, Any] = {"input_ids": ids[0] if single else ids}
        if return_attention_mask:
            out["attention_mask"] = masks[0] if single else masks
        if return_tensors == "pt":
            out = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
        elif return_tensors == "np":
            out = {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}
        elif return_tensors is not None:
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        return _Encoding(out)

    # ------------------------------------------------------------------------------------------- decode
    def decode(
        self,
        token_ids: Sequence[int] | np.ndarray | torch.Tensor,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        group_tokens: bool = True,
        spaces_between_special_tokens: bool = False,
        output_char_offsets: bool = False,
        output_word_offsets: bool = False,
    ) -> str | Wav2Vec2CTCTokenizerOutput:
        """CTC ids of one clip -> text: repeats collapsed (`group_tokens`), blanks dropped, "|" -> space.

        Offsets count output frames of the model (multiply by seconds per frame for times).
        """
        ids = _as_id_list(token_ids)
        tokens = self.convert_ids_to_tokens(ids)
        if skip_special_tokens:
            skip = set(self.all_special_tokens) - {self.word_delimiter_token}
            tokens = [t for t in tokens if t not in skip]
        if group_tokens:
            runs = [(token, len(list(group))) for token, group in groupby(tokens)]
        else:
            runs = [(token, 1) for token in tokens]
        chars, offsets, position = [], [], 0
        for token, count in runs:
            if token != self.pad_token:
                char = self.replace_word_delimiter_char if token == self.word_delimiter_token else token
                chars.append(char)
                offsets.append({"char": char, "start_offset": position, "end_offset": position + count})
            position += count
        text = (" " if spaces_between_special_tokens else "").join(chars).strip()
        if self.do_lower_case:
            text = text.lower()
        if (
            clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is not None
            else self.clean_up_tokenization_spaces
        ):
            text = clean_up_tokenization(text)
        if not (output_char_offsets or output_word_offsets):
            return text
        return Wav2Vec2CTCTokenizerOutput(
            text=text,
            char_offsets=offsets if output_char_offsets else None,
            word_offsets=word_offsets(offsets, self.replace_word_delimiter_char) if output_word_offsets else None,
        )

    def batch_decode(
        self, sequences: Sequence[Sequence[int]] | np.ndarray | torch.Tensor, **options: Any
    ) -> list[str] | Wav2Vec2CTCTokenizerOutput:
        """`decode` for each row; with offsets asked, one output whose fields are lists (as transformers)."""
        decoded = [self.decode(row, **options) for row in sequences]
        if options.get("output_char_offsets") or options.get("output_word_offsets"):
            return Wav2Vec2CTCTokenizerOutput(
                text=[d.text for d in decoded],
                char_offsets=[d.char_offsets for d in decoded] if options.get("output_char_offsets") else None,
                word_offsets=[d.word_offsets for d in decoded] if options.get("output_word_offsets") else None,
            )
        return decoded

    # --------------------------------------------------------------------------------------------- files
    def to_config(self) -> dict[str, Any]:
        """The `tokenizer_config.json` dictionary."""
        return dict(
            sorted(
                (
                    self.extra
                    | {
                        "bos_token": self.bos_token,
                        "eos_token": self.eos_token,
                        "unk_token": self.unk_token,
                        "pad_token": self.pad_token,
                        "word_delimiter_token": self.word_delimiter_token,
                        "replace_word_delimiter_char": self.replace_word_delimiter_char,
                        "do_lower_case": self.do_lower_case,
                        "target_lang": self.target_lang,
                        "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
                        "tokenizer_class": type(self).__name__,
                    }
                ).items()
            )
        )

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[str]:
        """Write vocab.json, tokenizer_config.json and special_tokens_map.json (read by any transformers version)."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        special = {name: getattr(self, name) for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
        files = {
            VOCAB_NAME: self.vocab,
            TOKENIZER_CONFIG_NAME: self.to_config(),
            SPECIAL_TOKENS_MAP_NAME: special,
        }
        return [
            str(
                atomic_write_text(
                    directory / name, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
                )
            )
            for name, value in files.items()
        ]

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        subfolder: str = "",
        **overrides: Any,
    ) -> Wav2Vec2CTCTokenizer:
        """Read vocab.json (required) and the optional config / special-token / added-token files."""
        hub = HubOptions(revision, cache_dir, local_files_only, token, subfolder)
        return cls.from_hub(path_or_repo_id, hub, **overrides)

    @classmethod
    def from_hub(cls, path_or_repo_id: str | os.PathLike, hub: HubOptions, **overrides: Any) -> Wav2Vec2CTCTokenizer:
        """`from_pretrained` with the hub options already gathered."""
        vocab_path = resolve_optional_file(path_or_repo_id, VOCAB_NAME, hub)
        if vocab_path is None:
            raise FileNotFoundError(
                f"{path_or_repo_id} has no {VOCAB_NAME}: it has no CTC tokenizer (a base checkpoint such as "
                "facebook/w2v-bert-2.0 needs fine-tuning with a vocabulary first; see build_vocab)"
            )
        config: dict[str, Any] = {}
        for name in (TOKENIZER_CONFIG_NAME, SPECIAL_TOKENS_MAP_NAME):
            path = resolve_optional_file(path_or_repo_id, name, hub)
            if path is not None:
                values = read_json_object(path)
                config.update(
                    {k: v["content"] if isinstance(v, dict) and "content" in v else v for k, v in values.items()}
                )
        vocab = read_json_object(vocab_path)
        checked_vocab(vocab, (config | overrides).get("target_lang"), str(vocab_path))
        added = resolve_optional_file(path_or_repo_id, ADDED_TOKENS_NAME, hub)
        if added is not None:  # older transformers kept tokens added after training here
            vocab = vocab | {k: int(v) for k, v in read_json_object(added).items()}
        for key in (
            "model_max_length",
            "name_or_path",
            "special_tokens_map_file",
            "additional_special_tokens",
            "processor_class",
            "backend",
        ):
            config.pop(key, None)
        return cls(vocab=vocab, **(config | overrides))


class _Encoding(dict):
    """The tokenizer's output: a dict with attribute access (`out.input_ids`), as transformers' BatchEncoding."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def checked_vocab(vocab: dict[str, Any], target_lang: str | None = None, source: str = "vocab.json") -> dict[str, int]:
    """The token -> id table of a vocab.json (of `target_lang` in a multilingual one), with every id checked.

    Ids must be JSON integers (not strings, floats or booleans), non-negative, and each used by one token only: any
    other id would train or decode against the wrong output of the CTC head. `source` names the file in errors.
    """
    if target_lang is not None:  # a multilingual vocab.json nests one vocabulary per language
        if target_lang not in vocab:
            raise ValueError(f"target_lang {target_lang!r} is not in {source} (it has {sorted(vocab)[:10]})")
        vocab = vocab[target_lang]
        source = f"{source} [{target_lang!r}]"
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError(f"{source} must be a non-empty JSON object of token -> id, got {type(vocab).__name__}")
    nested = sorted(k for k, v in vocab.items() if isinstance(v, dict))
    if nested:
        raise ValueError(
            f"{source} is a multilingual vocabulary (one per language: {nested[:10]}): pass target_lang=... to pick one"
        )
    owners: dict[int, str] = {}
    for token, index in vocab.items():
        if not isinstance(token, str):
            raise ValueError(f"{source}: token {token!r} is a {type(token).__name__}; tokens must be strings")
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise ValueError(
                f"{source}: token {token!r} has id {index!r} ({type(index).__name__}); ids must be integers, "
                "as transformers writes them"
            )
        if index < 0:
            raise ValueError(f"{source}: token {token!r} has the negative id {index}; ids must be >= 0")
        if int(index) in owners:
            raise ValueError(
                f"{source}: tokens {owners[int(index)]!r} and {token!r} share the id {index}; each id must name one "
                "token (one output of the CTC head)"
            )
        owners[int(index)] = token
    return {token: int(index) for token, index in vocab.items()}


def word_offsets(char_offsets: list[dict[str, Any]], delimiter: str = " ") -> list[dict[str, Any]]:
    """Group character offsets into words at `delimiter` characters: `[{"word", "start_offset", "end_offset"}]`."""
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


def build_vocab(
    transcripts: Iterable[str],
    *,
    lowercase: bool = True,
    word_delimiter: str = "|",
    unk_token: str = "[UNK]",
    pad_token: str = "[PAD]",
) -> dict[str, int]:
    """The CTC vocabulary of a training set, as the standard fine-tuning recipe builds it.

    Sorted characters of the transcripts (space replaced by `word_delimiter`), then `unk_token` and `pad_token`.
    """
    chars: set[str] = set()
    for text in transcripts:
        chars.update(text.lower() if lowercase else text)
    chars.discard(" ")
    chars.discard(word_delimiter)
    if not chars:
        raise ValueError("the transcripts hold no characters to build a vocabulary from")
    tokens = sorted(chars) + [word_delimiter, unk_token, pad_token]
    return {token: index for index, token in enumerate(tokens)}


def save_vocab(vocab: dict[str, int], path: str | os.PathLike) -> Path:
    return atomic_write_text(path, json.dumps(vocab, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def pad_labels(labels: Sequence[Sequence[int]]) -> torch.Tensor:
    """Label id lists -> (batch, longest) LongTensor padded with -100, the value the CTC loss ignores."""
    width = max((len(row) for row in labels), default=0)
    out = torch.full((len(labels), width), LABEL_PAD, dtype=torch.long)
    for row, ids in enumerate(labels):
        out[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
    return out


def _as_id_list(token_ids: Sequence[int] | np.ndarray | torch.Tensor) -> list[int]:
    if isinstance(token_ids, torch.Tensor):
        token_ids = token_ids.detach().cpu().numpy()
    array = np.asarray(token_ids)
    if array.ndim != 1:
        raise ValueError(f"decode takes one sequence of ids (1-D), got shape {array.shape}; use batch_decode")
    return [int(i) for i in array]
