"""`Wav2Vec2CTCTokenizer`: characters <-> CTC label ids, with the files and behaviour of the transformers class.

The vocabulary (vocab.json, see `vocab`) is one token per character, plus "|" between words, an unknown token and
a pad token that doubles as the CTC blank. As in transformers, special tokens missing from it (`<s>` and `</s>` by
default) are added after it, so `len(tokenizer)` can exceed `vocab_size`. Text is cut into added tokens, matched
whole (multi-character vocabulary tokens such as `[UNK]` eat the spaces around them), and characters. Decoding CTC
output collapses repeats, then drops blanks. `do_lower_case=True` means the vocabulary is upper case: text is
upper-cased in and lower-cased out.

In order: the tokenizer (its added tokens, vocabulary, encode, pad, decode, files). The vocabulary and the files
are read in `vocab`; ids are checked and padded in `encoding`; CTC tokens become text with offsets
(`Wav2Vec2CTCTokenizerOutput`) in `ctc_text`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vbert.loading.hub import HubOptions
from w2vbert.text.ctc_text import (
    CtcSymbols,
    Wav2Vec2CTCTokenizerOutput,
    clean_up_tokenization,
    ctc_tokens_to_text,
    word_offsets,
)
from w2vbert.text.encoding import BatchEncoding, as_id_list, id_rows, mask_rows, pad_rows, tensor_kind
from w2vbert.text.vocab import (
    ADDED_TOKENS_NAME,
    SPECIAL_TOKENS_MAP_NAME,
    TOKENIZER_CONFIG_NAME,
    VOCAB_NAME,
    AddedToken,
    checked_vocab,
    given_added_tokens,
    read_tokenizer_files,
)
from w2vbert.utils.batch import as_columns, holds_numbers, padding_plan, with_other_columns
from w2vbert.utils.files import atomic_write_text, read_json_object

logger = logging.getLogger("w2vbert")


class Wav2Vec2CTCTokenizer:
    """Character-level CTC tokenizer; `Wav2Vec2CTCTokenizer.from_pretrained(dir)` reads transformers' files.

    Ids: vocab.json's (`vocab_size` of them), then the added tokens, as transformers numbers them: the entries of
    `added_tokens_decoder` (tokenizer_config.json) or added_tokens.json, then each special token (bos, eos, unk,
    pad, word delimiter, in that order) that is in neither, at the next id from `len(self)` on. So the default
    `<s>` and `</s>` of a vocabulary without them take ids `vocab_size` and `vocab_size + 1`, and `len(self)` is
    `vocab_size + 2`, exactly as in transformers (a CTC head sized from vocab.json alone does not cover them).
    """

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"  # where `pad` adds pad ids unless told otherwise (transformers' default)

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        bos_token: str | None = "<s>",
        eos_token: str | None = "</s>",
        unk_token: str = "<unk>",
        pad_token: str = "<pad>",
        word_delimiter_token: str | None = "|",
        replace_word_delimiter_char: str = " ",
        do_lower_case: bool = False,
        target_lang: str | None = None,
        *,
        vocab: dict[str, int] | None = None,
        added_tokens_decoder: dict[int | str, AddedToken | dict[str, Any]] | None = None,
        clean_up_tokenization_spaces: bool = False,
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
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        extra.pop("tokenizer_class", None)
        self.extra = extra  # other tokenizer_config.json keys, written back unchanged

        self.added_tokens_decoder = given_added_tokens(added_tokens_decoder, self.decoder, source)
        for name in ("pad_token", "unk_token"):
            token = getattr(self, name)
            if token not in self.encoder and token not in self._added_contents():
                raise ValueError(f"{name} {token!r} is not in the vocabulary ({source})")
        self._add_implicit_tokens()
        self.added_tokens_encoder = {t.content: i for i, t in self.added_tokens_decoder.items()}
        # Added tokens are found leftmost first, the longest where several start at one place (transformers' trie).
        whole = sorted(self.added_tokens_encoder, key=len, reverse=True)
        self._added_pattern = re.compile("(" + "|".join(map(re.escape, whole)) + ")") if whole else None
        self._reported_unknown: set[str] = set()

    def _add_implicit_tokens(self) -> None:
        """As transformers: the special tokens missing so far are added (no stripping), then every multi-character
        vocabulary token is matched whole, eating the spaces around it; the table ends sorted by id."""
        for token in self.all_special_tokens:
            if token not in self._added_contents():
                index = self.encoder[token] if token in self.encoder else self._next_free_id()
                self.added_tokens_decoder[index] = AddedToken(token, normalized=False, special=True)
        for token, index in self.encoder.items():
            if len(token) > 1:
                self.added_tokens_decoder[index] = AddedToken(token, lstrip=True, rstrip=True, normalized=False)
        self.added_tokens_decoder = dict(sorted(self.added_tokens_decoder.items()))

    def _added_contents(self) -> set[str]:
        return {t.content for t in self.added_tokens_decoder.values()}

    def _next_free_id(self) -> int:
        # transformers numbers a new token len(self) (counted over token strings); where a gap in vocab.json's ids
        # makes that id taken, it reuses it and the token vanishes: here the next free id is used instead.
        taken = set(self.decoder) | set(self.added_tokens_decoder)
        index = len(set(self.encoder) | self._added_contents())
        while index in taken:
            index += 1
        return index

    # --------------------------------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        """The number of ids in vocab.json (added tokens not counted, as transformers)."""
        return len(self.decoder)

    def __len__(self) -> int:
        """The number of tokens: vocab.json's and the added ones (as transformers)."""
        return len(self.get_vocab())

    @property
    def max_vocab_id(self) -> int:
        """The largest id in vocab.json: a CTC head needs more outputs than this to name every vocabulary token."""
        return max(self.decoder)

    @property
    def max_token_id(self) -> int:
        """The largest id this tokenizer can produce or name (vocab.json's and the added tokens'): labels of any
        text are below `max_token_id + 1`, the CTC head width that leaves no id out."""
        return max(max(self.decoder), max(self.added_tokens_decoder, default=0))

    def get_vocab(self) -> dict[str, int]:
        return self.encoder | self.added_tokens_encoder

    @property
    def all_special_tokens(self) -> list[str]:
        """bos, eos, unk, pad and the word delimiter (transformers 5 counts it special too), without repeats."""
        tokens = [self.bos_token, self.eos_token, self.unk_token, self.pad_token, self.word_delimiter_token]
        return list(dict.fromkeys(t for t in tokens if t is not None))

    @property
    def all_special_ids(self) -> list[int]:
        return [self._id_of(t) for t in self.all_special_tokens]

    def _id_of(self, token: str | None) -> int | None:
        if token is None:
            return None
        return self.added_tokens_encoder.get(token, self.encoder.get(token))

    @property
    def pad_token_id(self) -> int:
        return self._id_of(self.pad_token)

    @property
    def unk_token_id(self) -> int:
        return self._id_of(self.unk_token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id_of(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id_of(self.eos_token)

    @property
    def word_delimiter_token_id(self) -> int | None:
        return self._id_of(self.word_delimiter_token)

    # ------------------------------------------------------------------------------------------- encode
    def tokenize(self, text: str) -> list[str]:
        """Text -> tokens, as transformers: added tokens (multi-character vocabulary tokens such as `[UNK]`, and the
        special tokens) are cut out whole first, with the whitespace their lstrip / rstrip drop; the text between
        them is upper-cased if do_lower_case, spaces become "|", and each character is a token."""
        pieces = self._added_pattern.split(text) if self._added_pattern else [text]
        # pieces: text, added token, text, added token, ..., text (the texts may be empty)
        for i in range(1, len(pieces), 2):
            token = self.added_tokens_decoder[self.added_tokens_encoder[pieces[i]]]
            if token.lstrip:
                pieces[i - 1] = pieces[i - 1].rstrip()
            if token.rstrip:
                pieces[i + 1] = pieces[i + 1].lstrip()
        tokens: list[str] = []
        for index, piece in enumerate(pieces):
            if index % 2:
                tokens.append(piece)
            elif piece:
                if self.do_lower_case:  # after the cut: `[unk]` is not `[UNK]` (transformers)
                    piece = piece.upper()
                if self.word_delimiter_token is not None:
                    piece = piece.replace(" ", self.word_delimiter_token)
                tokens.extend(piece)
        return tokens

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        unk = self.unk_token_id
        if isinstance(tokens, str):
            return self.added_tokens_encoder.get(tokens, self.encoder.get(tokens, unk))
        return [self.added_tokens_encoder.get(t, self.encoder.get(t, unk)) for t in tokens]

    def _token_of(self, index: int) -> str:
        """vocab.json's token first, then an added token's, else unk (transformers' order)."""
        if index in self.decoder:
            return self.decoder[index]
        token = self.added_tokens_decoder.get(index)
        return token.content if token is not None else self.unk_token

    def convert_ids_to_tokens(self, ids: int | Iterable[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, (int, np.integer)):
            return self._token_of(int(ids))
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._token_of(int(i)) for i in ids if int(i) not in special]

    def encode(self, text: str) -> list[int]:
        """Label ids of one transcript. Characters outside the vocabulary become the unk id (reported once)."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes one text (str), got {type(text).__name__}: {text!r:.80}")
        tokens = self.tokenize(text)
        known = self.encoder.keys() | self.added_tokens_encoder.keys()
        unknown = sorted({t for t in tokens if t not in known} - self._reported_unknown)
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
        truncation: bool | str = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        **unused: Any,
    ) -> BatchEncoding:
        """`{"input_ids", "attention_mask"}` of a text or a list of texts, as transformers: padded as `pad` says
        (default: not at all), cut to max_length with truncation=True. One text gives flat lists, or (1, length)
        tensors with return_tensors ("pt" / "np")."""
        unknown = unused.keys() - {"add_special_tokens", "verbose", "return_token_type_ids"}
        if unknown:
            raise TypeError(f"Wav2Vec2CTCTokenizer got unexpected argument(s) {sorted(unknown)}")
        single = isinstance(text, str)
        if not single:
            if not isinstance(text, (list, tuple)):
                raise TypeError(f"expected a text (str) or a list of texts, got {type(text).__name__}")
            for index, item in enumerate(text):
                if not isinstance(item, str):
                    raise TypeError(
                        f"text {index} is a {type(item).__name__}, expected str: the tokenizer takes a text or a "
                        "list of texts (label ids are padded with tokenizer.pad([{'input_ids': ids}, ...]))"
                    )
        ids = [self.encode(t) for t in ([text] if single else text)]
        if truncation not in (False, None, "do_not_truncate"):
            if max_length is None:
                raise ValueError("truncation needs max_length (in ids)")
            ids = [row[:max_length] for row in ids]
        out = self.pad(
            {"input_ids": ids},
            padding=padding,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=return_attention_mask,
            return_tensors=return_tensors,
        )
        if single and return_tensors is None:
            return BatchEncoding({key: value[0] for key, value in out.items()})
        return out

    # ---------------------------------------------------------------------------------------------- pad
    def pad(
        self,
        encoded_inputs: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad label id sequences to one length with the pad id: transformers' `PreTrainedTokenizerBase.pad`.

        `encoded_inputs` is a list of dicts with "input_ids" (one per example, as a data collator gets them), a
        dict of lists, or one example's dict; ids are lists of ints, integer arrays or integer tensors. `padding`,
        `max_length` and `pad_to_multiple_of` as in `padding_plan` (a longer sequence is not cut); the mask is 0
        where pad ids were added, on `padding_side` ("right" by default). Returns lists, or int64 "pt" / "np"
        tensors (by default those of the inputs); one example's dict stays 1-D. Other keys pass through.
        """
        columns = as_columns(encoded_inputs, "input_ids", "each id sequence as {'input_ids': ids}")
        if "input_ids" not in columns:
            raise ValueError(f"pad needs 'input_ids', got keys {sorted(columns)}: pass [{{'input_ids': ids}}, ...]")
        if return_tensors is None:  # the inputs' kind, as in transformers
            return_tensors = tensor_kind(columns["input_ids"])
        padding_side = self.padding_side if padding_side is None else padding_side
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        return_attention_mask = True if return_attention_mask is None else return_attention_mask
        rows, single = id_rows(columns["input_ids"], "input_ids")
        if not rows:
            return BatchEncoding(input_ids=[], **({"attention_mask": []} if return_attention_mask else {}))
        masks = mask_rows(columns, rows)
        others = {key: values for key, values in columns.items() if key not in ("input_ids", "attention_mask")}
        if not single and any(len(values) != len(rows) for values in others.values()):
            sizes = {key: len(values) for key, values in columns.items()}
            raise ValueError(f"pad needs one value per example in every key, got these counts: {sizes}")
        _, target = padding_plan([len(r) for r in rows], padding, max_length, pad_to_multiple_of, unit="ids")
        ids = pad_rows(rows, target, self.pad_token_id, padding_side)
        masks = pad_rows(masks or [[1] * len(r) for r in rows], target, 0, padding_side)
        out = BatchEncoding(input_ids=ids[0] if single else ids)
        if return_attention_mask:
            out["attention_mask"] = masks[0] if single else masks
        # one example's dict holds one value per key; a batch's, one per example (a tensor decides as a whole)
        numeric = {
            key: values
            for key, values in others.items()
            if holds_numbers(values if single or isinstance(values, torch.Tensor) else values[0])
        }
        return with_other_columns(out, numeric, others, return_tensors)  # texts: as given

    # ------------------------------------------------------------------------------------------- decode
    def convert_tokens_to_string(
        self,
        tokens: Sequence[str],
        group_tokens: bool = True,
        spaces_between_special_tokens: bool = False,
        output_char_offsets: bool = False,
        output_word_offsets: bool = False,
    ) -> dict[str, Any]:
        """CTC output tokens -> `{"text", "char_offsets", "word_offsets"}` (offsets None unless asked), as
        transformers: repeats collapsed (`group_tokens`), blanks dropped, "|" -> space."""
        symbols = CtcSymbols(self.pad_token, self.word_delimiter_token, self.replace_word_delimiter_char)
        out = ctc_tokens_to_text(
            tokens, symbols, group_tokens, spaces_between_special_tokens, output_char_offsets, output_word_offsets
        )
        if self.do_lower_case:
            out["text"] = out["text"].lower()
        return out

    _get_word_offsets = staticmethod(word_offsets)  # transformers' name, which its tests and some scripts call

    def clean_up_tokenization(self, text: str) -> str:
        return clean_up_tokenization(text)

    def decode(
        self,
        token_ids: int | Sequence[int] | np.ndarray | torch.Tensor,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        output_char_offsets: bool = False,
        output_word_offsets: bool = False,
        group_tokens: bool = True,
        spaces_between_special_tokens: bool = False,
    ) -> str | Wav2Vec2CTCTokenizerOutput:
        """CTC ids of one clip -> text: repeats collapsed (`group_tokens`), blanks dropped, "|" -> space. With
        offsets asked, a `Wav2Vec2CTCTokenizerOutput`; offsets count output frames of the model (multiply by
        seconds per frame for times)."""
        tokens = self.convert_ids_to_tokens(as_id_list(token_ids))
        if skip_special_tokens:
            skip = set(self.all_special_tokens) - {self.word_delimiter_token}
            tokens = [t for t in tokens if t not in skip]
        out = self.convert_tokens_to_string(
            tokens, group_tokens, spaces_between_special_tokens, output_char_offsets, output_word_offsets
        )
        clean = (
            self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        )
        text = clean_up_tokenization(out["text"]) if clean else out["text"]
        if not (output_char_offsets or output_word_offsets):
            return text
        return Wav2Vec2CTCTokenizerOutput(  # the offsets asked for (transformers gives both for no ids)
            text,
            out["char_offsets"] if output_char_offsets else None,
            out["word_offsets"] if output_word_offsets else None,
        )

    def batch_decode(
        self, sequences: Sequence[Sequence[int]] | np.ndarray | torch.Tensor, **options: Any
    ) -> list[str] | Wav2Vec2CTCTokenizerOutput:
        """`decode` for each row; with offsets asked, one output whose fields are lists (as transformers)."""
        decoded = [self.decode(row, **options) for row in sequences]
        fields = ["text"] + [f"{kind}_offsets" for kind in ("char", "word") if options.get(f"output_{kind}_offsets")]
        if len(fields) == 1:
            return decoded
        return Wav2Vec2CTCTokenizerOutput({field: [d[field] for d in decoded] for field in fields})

    # --------------------------------------------------------------------------------------------- files
    def to_config(self) -> dict[str, Any]:
        """The `tokenizer_config.json` dictionary, in transformers' layout (added tokens under their ids)."""
        return dict(
            sorted(
                (
                    self.extra
                    | {
                        "added_tokens_decoder": {str(i): t.to_dict() for i, t in self.added_tokens_decoder.items()},
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
        """Write vocab.json, tokenizer_config.json, special_tokens_map.json and, when there are tokens outside
        vocab.json, added_tokens.json: the files of transformers 5 plus those older versions read."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        special = {name: getattr(self, name) for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
        files = {
            VOCAB_NAME: self.vocab,
            TOKENIZER_CONFIG_NAME: self.to_config(),
            SPECIAL_TOKENS_MAP_NAME: {k: v for k, v in special.items() if v is not None},
        }
        outside = {t.content: i for i, t in self.added_tokens_decoder.items() if t.content not in self.encoder}
        if outside:
            files[ADDED_TOKENS_NAME] = outside
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
        """`from_pretrained` with the hub options already gathered: the arguments `vocab.read_tokenizer_files`
        reads (tokenizer_config.json as transformers 5 writes it, or the files of older versions), then keyword
        `overrides`, which win over the files."""
        vocab_path, config = read_tokenizer_files(path_or_repo_id, hub, overrides)
        return cls(vocab_file=vocab_path, **(config | overrides))
