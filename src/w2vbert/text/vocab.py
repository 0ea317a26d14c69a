"""The CTC vocabulary and the tokenizer's files: what `Wav2Vec2CTCTokenizer` is built from.

A CTC vocabulary (vocab.json) is one token per character, plus "|" between words, an unknown token and a pad token
that doubles as the CTC blank; ids are JSON integers, each naming one output of the CTC head.

In order: the file names; `AddedToken`, an entry of tokenizer_config.json's `added_tokens_decoder`;
`checked_vocab`, vocab.json's table with every id checked; `given_added_tokens`, the added tokens a caller or a
file gives, checked against it; `read_tokenizer_files`, the constructor arguments of a directory or hub repo in
the layout of transformers 5 (or of the older files it still reads); `write_tokenizer_files`, the same files
written back; `build_vocab`, the vocabulary of a training set.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from w2vbert.loading.hub import HubOptions, resolve_optional_file
from w2vbert.text.chat_template import read_chat_templates
from w2vbert.utils.files import atomic_write_text, read_json_object

VOCAB_NAME = "vocab.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_NAME = "special_tokens_map.json"
ADDED_TOKENS_NAME = "added_tokens.json"
# The special tokens transformers names (SPECIAL_TOKENS_ATTRIBUTES); tokens of added_tokens.json that one of them
# names are special.
_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# tokenizer_config.json keys that describe how transformers loaded or saved the files, not the tokenizer
_LOADING_KEYS = (
    "name_or_path",
    "special_tokens_map_file",
    "tokenizer_file",
    "processor_class",
    "backend",
    "is_local",
    "local_files_only",
    "files_loaded",
    "vocab_file",
    "init_inputs",
)


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

    def __str__(self) -> str:
        return self.content  # as transformers' (tokenizers') AddedToken: str(token) is its text

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str) -> AddedToken:
        if not isinstance(values, dict) or not isinstance(values.get("content"), str):
            raise ValueError(f"{where}: expected an added token {{'content': str, ...}}, got {values!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def of(cls, value: Any, where: str, **defaults: bool) -> AddedToken:
        """`value` as an AddedToken: a str (with `defaults` for the flags), one of ours, its dict (as JSON holds
        it), or the `tokenizers.AddedToken` transformers passes (read through its `__getstate__` dict, the state
        transformers writes to tokenizer_config.json). Anything else is a TypeError naming what came."""
        if isinstance(value, AddedToken):
            return value
        if isinstance(value, str):
            return cls(value, **defaults)
        state = value if isinstance(value, dict) else getattr(value, "__getstate__", lambda: None)()
        if isinstance(state, dict) and isinstance(state.get("content"), str):
            return cls.from_dict({k: v for k, v in state.items() if k != "__type"}, where)
        raise TypeError(f"{where} must be a str or an AddedToken, got {type(value).__name__}: {value!r:.80}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


def given_added_tokens(
    added_tokens_decoder: dict[int | str, AddedToken | dict[str, Any]] | None, decoder: dict[int, str], source: str
) -> dict[int, AddedToken]:
    """The added tokens a caller or tokenizer_config.json gives ({id: token or its dict}), with their ids as ints.

    An id must be an integer >= 0 (a digit string, as JSON keys are, is read as one), and an id of vocab.json
    (`decoder`, id -> token) may only be given to the same token. `source` names vocab.json in errors.
    """
    tokens: dict[int, AddedToken] = {}
    for key, token in (added_tokens_decoder or {}).items():
        where = f"added token {key!r}"
        if isinstance(key, str) and key.isdigit():
            key = int(key)
        if isinstance(key, bool) or not isinstance(key, int) or key < 0:
            raise ValueError(f"{where}: ids of added tokens must be integers >= 0")
        if not isinstance(token, AddedToken):
            token = AddedToken.from_dict(token, where)
        if decoder.get(key, token.content) != token.content:
            raise ValueError(
                f"{where}: {token.content!r} has the id of {decoder[key]!r} in {source}; an added token "
                "takes an id of its own (or the id its content has in vocab.json)"
            )
        tokens[key] = token
    return tokens


def read_tokenizer_files(
    path_or_repo_id: str | os.PathLike, hub: HubOptions, overrides: dict[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """vocab.json's path and the constructor arguments the other files give, for `Wav2Vec2CTCTokenizer.from_hub`.

    As transformers 5: tokenizer_config.json gives the arguments; its `added_tokens_decoder` the added tokens.
    A config without one (files of transformers < 4.34) takes the special tokens of special_tokens_map.json
    and the added tokens of added_tokens.json (special if they name a special token, never stripped).
    Chat templates come from chat_template.jinja and additional_chat_templates/ before the config's entry.
    `overrides` (which win over the files) only decide which tokens are special here.
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
            config["added_tokens_decoder"] = _older_added_tokens(path, config | overrides)
    # transformers 5 files the word delimiter under model_specific_special_tokens as well; one copy is kept
    specific = config.pop("model_specific_special_tokens", None) or {}
    if isinstance(specific, dict) and "word_delimiter_token" in specific:
        config.setdefault("word_delimiter_token", specific["word_delimiter_token"])
    for key in _LOADING_KEYS:
        config.pop(key, None)
    templates = read_chat_templates(path_or_repo_id, hub)  # the template files win over the config's entry
    if templates is not None:
        config["chat_template"] = templates
    return vocab_path, config


def _older_added_tokens(path: Path, named: dict[str, Any]) -> dict[int, AddedToken]:
    """added_tokens.json ({token: id}) as added tokens: special where one of the special tokens `named` is it
    (a named one, or one of the extra special tokens)."""
    special = {str(named[k]) for k in _SPECIAL_NAMES if named.get(k)}
    extra = named.get("extra_special_tokens") or named.get("additional_special_tokens") or []
    special.update(str(AddedToken.of(t, "an extra special token")) for t in extra if isinstance(extra, list))
    decoder: dict[int, AddedToken] = {}
    for content, index in read_json_object(path).items():
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"{path}: token {content!r} has id {index!r}; ids must be integers >= 0")
        is_special = content in special
        decoder[index] = AddedToken(content, normalized=not is_special, special=is_special)
    return decoder


def _token_strings(values: dict[str, Any]) -> dict[str, Any]:
    """Config values with each special token as its string (older files store `{"content": "<s>", ...}`)."""
    return {
        k: v["content"] if k.endswith("_token") and isinstance(v, dict) and "content" in v else v
        for k, v in values.items()
    }


def write_tokenizer_files(
    directory: Path, vocab: dict[str, Any], config: dict[str, Any], special: dict[str, str], outside: dict[str, int]
) -> list[str]:
    """Write vocab.json (`vocab`, nested per language where it is), tokenizer_config.json (`config`, as
    transformers 5 reads it), special_tokens_map.json (`special`, name -> token) and, when there are tokens
    outside vocab.json (`outside`, token -> id), added_tokens.json: the files of transformers 5 plus those older
    versions read. Returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {VOCAB_NAME: vocab, TOKENIZER_CONFIG_NAME: config, SPECIAL_TOKENS_MAP_NAME: special}
    if outside:
        files[ADDED_TOKENS_NAME] = outside
    return [
        str(atomic_write_text(directory / name, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"))
        for name, value in files.items()
    ]


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
