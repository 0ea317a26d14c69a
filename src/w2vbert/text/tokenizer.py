"""`Wav2Vec2CTCTokenizer`: characters <-> CTC label ids, with the files, calls and outputs of the transformers class.

The tokens themselves (the vocabulary, added and special tokens, text <-> tokens <-> ids, `add_tokens`,
`set_target_lang`) are `tokens.CtcTokens`; this class adds transformers' API around them: the constructor and
`from_pretrained` / `save_pretrained` with transformers' files (read and written in `vocab`), `__call__` and
`encode` with transformers' padding, truncation and text pairs (`prepare`), `pad` for data collators, and CTC
`decode`: repeats collapsed, blanks dropped, with character and word offsets (`ctc_text`), and
`apply_chat_template` (`chat_template`). `do_lower_case=True`
means the vocabulary is upper case: text is upper-cased in and lower-cased out.

In order: the class and its construction; calls (`__call__`, `encode`, transformers' helpers for pairs and special
tokens); `pad`; decoding; chat templates; files.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vbert.loading.hub import HubOptions
from w2vbert.text.chat_template import apply_chat_template, as_templates, save_chat_templates
from w2vbert.text.ctc_text import (
    CtcSymbols,
    Wav2Vec2CTCTokenizerOutput,
    clean_up_tokenization,
    ctc_tokens_to_text,
    word_offsets,
)
from w2vbert.text.encoding import BatchEncoding, as_id_list, tensor_kind
from w2vbert.text.prepare import (
    VERY_LARGE_INTEGER,
    EncodeOptions,
    Texts,
    assemble,
    call_options,
    encode_example,
    pad_columns,
    read_texts,
    resolve_strategies,
    truncate_ids,
)
from w2vbert.text.special import SPECIAL_TOKEN_NAMES, WORD_DELIMITER_NAME
from w2vbert.text.tokens import EXTRA_SPECIAL_TOKENS, CtcTokens
from w2vbert.text.vocab import (
    TOKENIZER_CONFIG_NAME,
    VOCAB_NAME,
    AddedToken,
    read_tokenizer_files,
    write_tokenizer_files,
)
from w2vbert.utils.batch import as_columns
from w2vbert.utils.files import read_json_object

__all__ = ["TOKENIZER_CONFIG_NAME", "VOCAB_NAME", "Wav2Vec2CTCTokenizer", "Wav2Vec2CTCTokenizerOutput"]

logger = logging.getLogger("w2vbert")

# call keywords of other transformers tokenizers that this one takes and ignores (seq2seq language codes)
_IGNORED_CALL_KEYWORDS = ("src_lang", "tgt_lang")
_TOO_LONG = "sequence-length-is-longer-than-the-specified-maximum"  # transformers' key in deprecation_warnings


class Wav2Vec2CTCTokenizer(CtcTokens):
    """Character-level CTC tokenizer; `Wav2Vec2CTCTokenizer.from_pretrained(dir)` reads transformers' files.

    Takes transformers' arguments: vocab.json's path (or `vocab`, its dict), the special tokens, and the settings
    of every transformers tokenizer (`model_max_length`, `padding_side`, `truncation_side`, ...). Other keywords
    are kept as tokenizer_config.json keys and written back unchanged; one that names a method is an
    AttributeError, as in transformers. `init_kwargs` holds the arguments it was built with.
    """

    vocab_files_names = {"vocab_file": VOCAB_NAME, "tokenizer_config_file": TOKENIZER_CONFIG_NAME}
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"  # where `pad` adds pad ids unless told otherwise (transformers' default)
    truncation_side = "right"  # where truncation cuts
    pad_token_type_id = 0  # the token type id of padding
    is_fast = False
    backend = "custom"  # transformers' name for a tokenizer written in Python

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        bos_token: str | AddedToken | None = "<s>",
        eos_token: str | AddedToken | None = "</s>",
        unk_token: str | AddedToken | None = "<unk>",
        pad_token: str | AddedToken | None = "<pad>",
        word_delimiter_token: str | AddedToken | None = "|",
        replace_word_delimiter_char: str = " ",
        do_lower_case: bool = False,
        target_lang: str | None = None,
        *,
        vocab: dict[str, Any] | None = None,
        added_tokens_decoder: dict[int | str, AddedToken | dict[str, Any]] | None = None,
        sep_token: str | AddedToken | None = None,
        cls_token: str | AddedToken | None = None,
        mask_token: str | AddedToken | None = None,
        extra_special_tokens: Sequence[str | AddedToken] | None = None,
        model_max_length: int | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        model_input_names: Sequence[str] | None = None,
        clean_up_tokenization_spaces: bool = False,
        split_special_tokens: bool = False,
        verbose: bool = False,
        **extra: Any,
    ) -> None:
        arguments = {k: v for k, v in locals().items() if k not in ("self", "extra", "vocab", "vocab_file")}
        arguments.pop("__class__", None)
        self.init_kwargs = copy.deepcopy(arguments | extra)
        self.init_inputs = ()
        if (vocab is None) == (vocab_file is None):
            raise ValueError("pass exactly one of vocab_file (a vocab.json path) and vocab (a token -> id dict)")
        self._take_extra(extra)
        if extra_special_tokens is None:
            extra_special_tokens = extra.pop("additional_special_tokens", None)  # transformers 4's name
        for name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
            if side not in ("right", "left"):
                raise ValueError(f"{name} must be 'right' or 'left', got {side!r}")
        self.padding_side, self.truncation_side = padding_side, truncation_side
        self.model_max_length = VERY_LARGE_INTEGER if model_max_length is None else model_max_length
        self.model_input_names = list(model_input_names or type(self).model_input_names)
        self.replace_word_delimiter_char = replace_word_delimiter_char
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.split_special_tokens, self.verbose = split_special_tokens, verbose
        self.name_or_path, self.deprecation_warnings = "", {}
        self.chat_template = as_templates(extra.pop("chat_template", None))  # None, a template, or name -> template
        self.extra = extra  # other tokenizer_config.json keys, written back unchanged
        specials = dict(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, sep_token=sep_token)
        specials |= dict(pad_token=pad_token, cls_token=cls_token, mask_token=mask_token)
        specials[WORD_DELIMITER_NAME] = word_delimiter_token
        source = "the vocab dict" if vocab_file is None else str(vocab_file)
        if vocab is None:
            vocab = read_json_object(Path(vocab_file))
        super().__init__(
            vocab, source, specials, extra_special_tokens, added_tokens_decoder, target_lang, do_lower_case
        )

    def _take_extra(self, extra: dict[str, Any]) -> None:
        """Check the keywords beyond the named ones: none may name a method (transformers' AttributeError)."""
        extra.pop("tokenizer_class", None)
        for key in extra:
            if callable(getattr(type(self), key, None)):
                raise AttributeError(f"{key} conflicts with the method {key} in {type(self).__name__}")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"truncation_side={self.truncation_side!r}, special_tokens={self.special_tokens_map})"
        )

    def set_target_lang(self, target_lang: str) -> None:
        super().set_target_lang(target_lang)
        self.init_kwargs["target_lang"] = target_lang  # saved with the tokenizer, as transformers does

    # -------------------------------------------------------------------------------------------- calls
    def __call__(
        self,
        text: Texts | Sequence[Any] | None = None,
        text_pair: Texts | Sequence[Any] | None = None,
        text_target: Texts | Sequence[Any] | None = None,
        text_pair_target: Texts | Sequence[Any] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """`{"input_ids", "attention_mask", ...}` of a text, a pair of texts (`text_pair`, or a second positional
        argument), or a batch of texts or pairs, as transformers: padded (default: not at all), truncated to
        `max_length` (or `model_max_length`), with `labels` from `text_target`. One text gives flat lists, or
        (1, length) tensors with return_tensors ("pt" / "np")."""
        named = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "tokenizer_kwargs")}
        named |= (tokenizer_kwargs or {}) | kwargs
        unknown = named.keys() - _CALL_KEYWORDS - {"max_target_length", "split_special_tokens", *_IGNORED_CALL_KEYWORDS}
        if unknown:
            raise TypeError(f"Wav2Vec2CTCTokenizer got unexpected argument(s) {sorted(unknown)}")
        if named["text"] is None and named["text_target"] is None:
            raise ValueError("pass text=... (or text_target=...): there is nothing to encode")
        if named["return_offsets_mapping"]:
            raise NotImplementedError(
                "return_offsets_mapping needs a fast tokenizer; for this one, a character's id is at its position "
                "in tokenizer.tokenize(text)"
            )
        options = call_options(named, self.model_input_names, self.model_max_length)
        self._check_can_pad(options.padding)
        split = (named["is_split_into_words"], named.get("split_special_tokens", self.split_special_tokens))
        encodings = targets = None
        if named["text"] is not None:
            encodings = self._encode(named["text"], named["text_pair"], options, *split)
        if named["text_target"] is not None:
            target_length = named.get("max_target_length")  # else max_length, as in transformers
            target_length = options.max_length if target_length is None else target_length
            target_options = dataclasses.replace(options, max_length=target_length)
            targets = self._encode(named["text_target"], named["text_pair_target"], target_options, *split)
        if encodings is None:
            return targets
        if targets is not None:
            encodings["labels"] = targets["input_ids"]
        return encodings

    def _check_can_pad(self, padding: str) -> None:
        if padding != "do_not_pad" and (self.pad_token is None or (self.pad_token_id or 0) < 0):
            raise ValueError(
                "Asking to pad but the tokenizer does not have a padding token: set one, e.g. "
                "tokenizer.add_special_tokens({'pad_token': '[PAD]'}) (the CTC blank is the pad token)"
            )

    def _encode(
        self, text: Any, text_pair: Any, options: EncodeOptions, is_split_into_words: bool, split_special: bool
    ) -> BatchEncoding:
        examples, batched = read_texts(text, text_pair, is_split_into_words)
        columns = []
        for first, second in examples:
            ids = self._text_ids(first, split_special)
            pair_ids = None if second is None else self._text_ids(second, split_special)
            columns.append(encode_example(ids, pair_ids, options, self.truncation_side))
            too_long = len(columns[-1]["input_ids"]) > self.model_max_length
            if options.max_length is None and too_long and options.verbose and self.model_max_length:
                if not self.deprecation_warnings.get(_TOO_LONG):
                    logger.warning(
                        "Token indices sequence length is longer than the specified maximum sequence length for this "
                        "model (%d > %d)", len(columns[-1]["input_ids"]), self.model_max_length,
                    )  # fmt: skip
                self.deprecation_warnings[_TOO_LONG] = True
        return assemble(columns, batched, options, self.pad)

    def _text_ids(self, text: Texts, split_special_tokens: bool) -> list[int]:
        """The ids of a text, or of a text given as words (each tokenized alone, as transformers does)."""
        words = [text] if isinstance(text, str) else text
        tokens = [t for word in words for t in self.tokenize(word, split_special_tokens=split_special_tokens)]
        self._report_unknown(tokens)
        return self.convert_tokens_to_ids(tokens)

    def encode(
        self,
        text: Texts,
        text_pair: Texts | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> list[int] | torch.Tensor | np.ndarray:
        """Label ids of one transcript (and of `text_pair` after it), with the call's padding and truncation.
        Characters outside the vocabulary become the unk id (reported once)."""
        if not isinstance(text, str) and not kwargs.get("is_split_into_words"):
            raise TypeError(
                f"encode takes one text (str), got {type(text).__name__}: {text!r:.80} (a batch: tokenizer(texts))"
            )
        kwargs.setdefault("return_attention_mask", False)
        return self(
            text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
            max_length=max_length, stride=stride, padding_side=padding_side, return_tensors=return_tensors, **kwargs,
        )["input_ids"]  # fmt: skip

    # transformers' lengths left for text once special tokens are in: all of it, as this tokenizer adds none
    max_len_single_sentence = max_len_sentences_pair = property(lambda self: self.model_max_length)

    def truncate_sequences(
        self,
        ids: list[int],
        pair_ids: list[int] | None = None,
        num_tokens_to_remove: int = 0,
        truncation_strategy: str = "longest_first",
        stride: int = 0,
    ) -> tuple[list[int], list[int] | None, list[int]]:
        """(ids, pair_ids, overflowing ids) with `num_tokens_to_remove` cut on `truncation_side`, as transformers."""
        strategy = resolve_strategies(False, truncation_strategy, 1, None, self.model_max_length)[1]
        return truncate_ids(ids, pair_ids, num_tokens_to_remove, strategy, stride, self.truncation_side)

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
        `max_length` and `pad_to_multiple_of` as in `padding_plan` (a longer sequence is not cut; padding to
        "max_length" without one pads to model_max_length); the mask is 0 where pad ids were added, token type
        ids get `pad_token_type_id` and a special tokens mask 1, on `padding_side` ("right" by default). Returns
        lists, or int64 "pt" / "np" tensors (by default those of the inputs); one example's dict stays 1-D.
        Other keys pass through.
        """
        columns = as_columns(encoded_inputs, "input_ids", "each id sequence as {'input_ids': ids}")
        if "input_ids" not in columns:
            raise ValueError(f"pad needs 'input_ids', got keys {sorted(columns)}: pass [{{'input_ids': ids}}, ...]")
        if return_tensors is None:  # the inputs' kind, as in transformers
            return_tensors = tensor_kind(columns["input_ids"])
        padding_side = self.padding_side if padding_side is None else padding_side
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        padding, _, max_length = resolve_strategies(padding, False, max_length, None, self.model_max_length)
        self._check_can_pad(padding)
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        options = EncodeOptions(
            padding=padding,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            return_attention_mask=return_attention_mask,
        )
        return pad_columns(columns, options, self.pad_token_id, self.pad_token_type_id)

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

    # ------------------------------------------------------------------------------------ chat templates
    # transformers' method, written once beside the rendering it drives
    apply_chat_template = apply_chat_template

    # --------------------------------------------------------------------------------------------- files
    def to_config(self) -> dict[str, Any]:
        """The `tokenizer_config.json` dictionary, in transformers' layout (added tokens under their ids)."""
        config = self.extra | {name: None if v is None else str(v) for name, v in self._special_tokens_map.items()}
        if self._extra_special_tokens:
            config[EXTRA_SPECIAL_TOKENS] = self.extra_special_tokens
        if self.model_input_names != type(self).model_input_names:
            config["model_input_names"] = self.model_input_names
        if self.split_special_tokens:
            config["split_special_tokens"] = True
        config |= {
            "added_tokens_decoder": {str(i): t.to_dict() for i, t in self.added_tokens_decoder.items()},
            "replace_word_delimiter_char": self.replace_word_delimiter_char,
            "do_lower_case": self.do_lower_case,
            "target_lang": self.target_lang,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "tokenizer_class": type(self).__name__,
        }
        return dict(sorted(config.items()))

    def save_pretrained(self, save_directory: str | os.PathLike, save_jinja_files: bool = True) -> list[str]:
        """Write vocab.json, tokenizer_config.json, special_tokens_map.json and, when there are tokens outside
        vocab.json, added_tokens.json: the files of transformers 5 plus those older versions read. Chat templates
        go to chat_template.jinja and additional_chat_templates/ (to tokenizer_config.json without
        `save_jinja_files`), as `chat_template.save_chat_templates` says."""
        entry, templates = save_chat_templates(Path(save_directory), self.chat_template, save_jinja_files)
        config = self.to_config() | ({} if entry is None else {"chat_template": entry})
        special = {name: str(v) for name, v in self._special_tokens_map.items() if name in _MAPPED and v is not None}
        if self._extra_special_tokens:
            special["additional_special_tokens"] = self.extra_special_tokens  # the older files' name
        outside = {t.content: i for i, t in self.added_tokens_decoder.items() if t.content not in self.encoder}
        return write_tokenizer_files(Path(save_directory), self.vocab, config, special, outside) + templates

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
        tokenizer = cls(vocab_file=vocab_path, **(config | overrides))
        tokenizer.name_or_path = str(path_or_repo_id)
        return tokenizer


_CALL_KEYWORDS = {  # the named keywords of __call__
    p.name for p in inspect.signature(Wav2Vec2CTCTokenizer.__call__).parameters.values() if p.default is not p.empty
}
_MAPPED = (*SPECIAL_TOKEN_NAMES, WORD_DELIMITER_NAME)  # the names special_tokens_map.json holds
