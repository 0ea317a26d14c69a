"""`Wav2Vec2CTCTokenizer`: characters <-> CTC label ids, with the files and behaviour of the transformers class.

A CTC vocabulary (vocab.json) is one token per character, plus "|" between words, an unknown token and a pad token
that doubles as the CTC blank. As in transformers, special tokens missing from it (`<s>` and `</s>` by default) are
added after it, so `len(tokenizer)` can exceed `vocab_size`. Text is cut into added tokens, matched whole
(multi-character vocabulary tokens such as `[UNK]` eat the spaces around them), and characters. Decoding CTC output
collapses repeats, then drops blanks. `do_lower_case=True` means the vocabulary is upper case: text is upper-cased
in and lower-cased out.

In order: the small types (`Wav2Vec2CTCTokenizerOutput`, `AddedToken`); the tokenizer (vocabulary, encode, pad,
decode, files) and its `BatchEncoding`; the vocab.json check; the helpers (`build_vocab`, `pad_labels`, the checks
of id sequences).
"""

from __future__ import annotations

import dataclasses
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

from w2vbert.loading.hub import HubOptions, resolve_optional_file
from w2vbert.utils.batch import BatchFeature, as_columns, padding_plan
from w2vbert.utils.files import atomic_write_text, read_json_object

logger = logging.getLogger("w2vbert")

VOCAB_NAME = "vocab.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_NAME = "special_tokens_map.json"
ADDED_TOKENS_NAME = "added_tokens.json"
LABEL_PAD = -100  # label positions the CTC loss ignores
# The special tokens transformers names (SPECIAL_TOKENS_ATTRIBUTES); tokens of added_tokens.json that one of them
# names are special.
_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# tokenizer_config.json keys that describe how transformers loaded or saved the files, not the tokenizer
_LOADING_KEYS = (
    "model_max_length",
    "name_or_path",
    "special_tokens_map_file",
    "additional_special_tokens",
    "extra_special_tokens",
    "processor_class",
    "backend",
    "is_local",
    "local_files_only",
    "vocab_file",
    "init_inputs",
)


@dataclass
class Wav2Vec2CTCTokenizerOutput:
    """`decode(..., output_char_offsets=True)`: text and offsets in output frames (as transformers)."""

    text: str | list[str]
    char_offsets: list[dict[str, Any]] | list[list[dict[str, Any]]] | None = None
    word_offsets: list[dict[str, Any]] | list[list[dict[str, Any]]] | None = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass(frozen=True)
class AddedToken:
    """A token matched whole in text before the text is split into characters: an entry of the
    `added_tokens_decoder` of tokenizer_config.json, with the fields transformers writes there.

    lstrip / rstrip: the whitespace on that side of the token is dropped. single_word and normalized are kept so
    that files round-trip; neither changes how this tokenizer splits text (transformers' CTC tokenizer never sets
    single_word, and normalized has no effect on its Python tokenizer).
    """

    content: str
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    normalized: bool = True
    special: bool = False

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str) -> AddedToken:
        if not isinstance(values, dict) or not isinstance(values.get("content"), str):
            raise ValueError(f"{where}: expected an added token {{'content': str, ...}}, got {values!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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

        self.added_tokens_decoder: dict[int, AddedToken] = {}
        for key, token in (added_tokens_decoder or {}).items():
            where = f"added token {key!r}"
            if isinstance(key, str) and key.isdigit():
                key = int(key)
            if isinstance(key, bool) or not isinstance(key, int) or key < 0:
                raise ValueError(f"{where}: ids of added tokens must be integers >= 0")
            if not isinstance(token, AddedToken):
                token = AddedToken.from_dict(token, where)
            if self.decoder.get(key, token.content) != token.content:
                raise ValueError(
                    f"{where}: {token.content!r} has the id of {self.decoder[key]!r} in {source}; an added token "
                    "takes an id of its own (or the id its content has in vocab.json)"
                )
            self.added_tokens_decoder[key] = token
        for name in ("pad_token", "unk_token"):
            token = getattr(self, name)
            if token not in self.encoder and token not in self._added_contents():
                raise ValueError(f"{name} {token!r} is not in the vocabulary ({source})")
        # As transformers: the special tokens missing so far are added (no stripping), then every multi-character
        # vocabulary token is matched whole, eating the spaces around it.
        for token in self.all_special_tokens:
            if token not in self._added_contents():
                index = self.encoder[token] if token in self.encoder else self._next_free_id()
                self.added_tokens_decoder[index] = AddedToken(token, normalized=False, special=True)
        for token, index in self.encoder.items():
            if len(token) > 1:
                self.added_tokens_decoder[index] = AddedToken(token, lstrip=True, rstrip=True, normalized=False)
        self.added_tokens_decoder = dict(sorted(self.added_tokens_decoder.items()))
        self.added_tokens_encoder = {t.content: i for i, t in self.added_tokens_decoder.items()}
        # Added tokens are found leftmost first, the longest where several start at one place (transformers' trie).
        whole = sorted(self.added_tokens_encoder, key=len, reverse=True)
        self._added_pattern = re.compile("(" + "|".join(map(re.escape, whole)) + ")") if whole else None
        self._reported_unknown: set[str] = set()

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
            return_tensors = _tensor_kind(columns["input_ids"])
        padding_side = self.padding_side if padding_side is None else padding_side
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        return_attention_mask = True if return_attention_mask is None else return_attention_mask
        rows, single = _id_rows(columns["input_ids"], "input_ids")
        if not rows:
            return BatchEncoding(input_ids=[], **({"attention_mask": []} if return_attention_mask else {}))
        masks = _id_rows(columns["attention_mask"], "attention_mask")[0] if "attention_mask" in columns else None
        if masks is not None and [len(m) for m in masks] != [len(r) for r in rows]:
            raise ValueError(
                f"attention_mask lengths {[len(m) for m in masks]} differ from input_ids lengths "
                f"{[len(r) for r in rows]}"
            )
        others = {key: values for key, values in columns.items() if key not in ("input_ids", "attention_mask")}
        if not single and any(len(values) != len(rows) for values in others.values()):
            sizes = {key: len(values) for key, values in columns.items()}
            raise ValueError(f"pad needs one value per example in every key, got these counts: {sizes}")
        _, target = padding_plan([len(r) for r in rows], padding, max_length, pad_to_multiple_of, unit="ids")
        out_ids, out_masks = [], []
        for index, row in enumerate(rows):
            mask = masks[index] if masks is not None else [1] * len(row)
            missing = 0 if target is None else max(0, target - len(row))
            if padding_side == "right":
                out_ids.append(row + [self.pad_token_id] * missing)
                out_masks.append(mask + [0] * missing)
            else:
                out_ids.append([self.pad_token_id] * missing + row)
                out_masks.append([0] * missing + mask)
        out = BatchEncoding(input_ids=out_ids[0] if single else out_ids)
        if return_attention_mask:
            out["attention_mask"] = out_masks[0] if single else out_masks
        firsts = {
            key: values if single or isinstance(values, torch.Tensor) else values[0] for key, values in others.items()
        }
        numeric = {
            key
            for key, first in firsts.items()
            if isinstance(first, torch.Tensor) or np.asarray(first).dtype.kind in "biuf"
        }
        out.update({key: others[key] for key in numeric})
        out.convert_to_tensors(return_tensors)
        out.update({key: values for key, values in others.items() if key not in numeric})  # texts: as given
        return out

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
        """`from_pretrained` with the hub options already gathered.

        As transformers 5: tokenizer_config.json gives the arguments; its `added_tokens_decoder` the added tokens.
        A config without one (files of transformers < 4.34) takes the special tokens of special_tokens_map.json
        and the added tokens of added_tokens.json (special if they name a special token, never stripped).
        Keyword `overrides` win over the files.
        """
        vocab_path = resolve_optional_file(path_or_repo_id, VOCAB_NAME, hub)
        if vocab_path is None:
            raise FileNotFoundError(
                f"{path_or_repo_id} has no {VOCAB_NAME}: it has no CTC tokenizer (a base checkpoint such as "
                "facebook/w2v-bert-2.0 needs fine-tuning with a vocabulary first; see build_vocab)"
            )
        config: dict[str, Any] = {}
        path = resolve_optional_file(path_or_repo_id, TOKENIZER_CONFIG_NAME, hub)
        if path is not None:
            config = _token_strings(read_json_object(path))
        if "added_tokens_decoder" not in config:
            path = resolve_optional_file(path_or_repo_id, SPECIAL_TOKENS_MAP_NAME, hub)
            if path is not None:
                config.update(_token_strings(read_json_object(path)))
            path = resolve_optional_file(path_or_repo_id, ADDED_TOKENS_NAME, hub)
            if path is not None:
                named = config | overrides
                special = {str(named[k]) for k in _SPECIAL_NAMES if named.get(k)}
                decoder: dict[int, AddedToken] = {}
                for content, index in read_json_object(path).items():
                    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                        raise ValueError(f"{path}: token {content!r} has id {index!r}; ids must be integers >= 0")
                    is_special = content in special
                    decoder[index] = AddedToken(content, normalized=not is_special, special=is_special)
                config["added_tokens_decoder"] = decoder
        # transformers 5 files the word delimiter under model_specific_special_tokens as well; one copy is kept
        specific = config.pop("model_specific_special_tokens", None) or {}
        if isinstance(specific, dict) and "word_delimiter_token" in specific:
            config.setdefault("word_delimiter_token", specific["word_delimiter_token"])
        for key in _LOADING_KEYS:
            config.pop(key, None)
        return cls(vocab_file=vocab_path, **(config | overrides))


class BatchEncoding(BatchFeature):
    """The tokenizer's output, as transformers' BatchEncoding: a dict with attribute access (`out.input_ids`),
    `.to(device)` and `convert_to_tensors`."""


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


def _token_strings(values: dict[str, Any]) -> dict[str, Any]:
    """Config values with each special token as its string (older files store `{"content": "<s>", ...}`)."""
    return {
        k: v["content"] if k.endswith("_token") and isinstance(v, dict) and "content" in v else v
        for k, v in values.items()
    }


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


def pad_labels(labels: Sequence[Sequence[int]]) -> torch.Tensor:
    """Label id lists -> (batch, longest) LongTensor padded with -100, the value the CTC loss ignores."""
    width = max((len(row) for row in labels), default=0)
    out = torch.full((len(labels), width), LABEL_PAD, dtype=torch.long)
    for row, ids in enumerate(labels):
        out[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
    return out


def _tensor_kind(values: Any) -> str | None:
    """The kind of tensor ids came as: "pt", "np", or None for lists. As transformers, the column, its first
    non-empty example or that example's first id decides (a list of 0-d tensors is "pt")."""
    first = values
    for _ in range(3):  # the column, an example, an id
        if isinstance(first, torch.Tensor):
            return "pt"
        if isinstance(first, np.ndarray):
            return "np"
        if not isinstance(first, (list, tuple)):
            return None
        first = next((v for v in first if not isinstance(v, (list, tuple)) or v), None)
    return None


def _is_id(value: Any) -> bool:
    """An integer (Python, numpy, or a 0-d integer tensor or array), not a bool."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.ndim == 0 and _integer_dtype(value)
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _integer_dtype(array: torch.Tensor | np.ndarray) -> bool:
    if isinstance(array, torch.Tensor):
        return not (array.is_floating_point() or array.is_complex() or array.dtype == torch.bool)
    return array.dtype.kind in "iu"


def _id_rows(values: Any, key: str) -> tuple[list[list[int]], bool]:
    """`values` of `key` as rows of ints, and whether they were one example (a flat sequence) instead of a batch."""
    if isinstance(values, (torch.Tensor, np.ndarray)):
        if values.ndim not in (1, 2):
            raise ValueError(f"{key} must be 1-D (one example) or 2-D (a batch), got shape {tuple(values.shape)}")
        if values.ndim == 1:
            return [_id_row(values, key, 0)], True
        return [_id_row(row, key, index) for index, row in enumerate(values)], False
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{key} must be a list of ids or a list of id sequences, got {type(values).__name__}")
    if values and all(_is_id(v) for v in values):
        return [_id_row(values, key, 0)], True
    return [_id_row(row, key, index) for index, row in enumerate(values)], False


def _id_row(row: Any, key: str, index: int) -> list[int]:
    """One example's ids as ints; anything but a 1-D sequence of integers is refused, saying where it is."""
    if isinstance(row, (torch.Tensor, np.ndarray)):
        if not _integer_dtype(row):
            raise TypeError(f"example {index}: {key} must hold integer ids, got a {row.dtype} {type(row).__name__}")
        if row.ndim != 1:
            raise ValueError(f"example {index}: {key} must be 1-D (one id per position), got shape {tuple(row.shape)}")
        return [int(v) for v in row.tolist()]
    if not isinstance(row, (list, tuple)):
        raise TypeError(f"example {index}: {key} must be a sequence of integer ids, got {type(row).__name__} {row!r}")
    for position, value in enumerate(row):
        if not _is_id(value):
            raise TypeError(
                f"example {index}: {key}[{position}] is {value!r} ({type(value).__name__}); ids must be integers"
            )
    return [int(v) for v in row]


def _as_id_list(token_ids: Sequence[int] | np.ndarray | torch.Tensor) -> list[int]:
    if isinstance(token_ids, torch.Tensor):
        token_ids = token_ids.detach().cpu().numpy()
    array = np.asarray(token_ids)
    if array.ndim != 1:
        raise ValueError(f"decode takes one sequence of ids (1-D), got shape {array.shape}; use batch_decode")
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(
            f"decode takes integer ids, got {array.dtype} values: pass the argmax of the logits "
            "(logits.argmax(-1)), not the logits or probabilities"
        )
    return [int(i) for i in array]
