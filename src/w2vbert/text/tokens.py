"""`CtcTokens`: the tokens of a CTC tokenizer, and text <-> tokens <-> ids, as transformers' Wav2Vec2CTCTokenizer.

A CTC vocabulary (vocab.json, see `vocab`) is one token per character, plus "|" between words, an unknown token and
a pad token that doubles as the CTC blank; a multilingual one nests a vocabulary per language (`target_lang`). On
top come the added tokens (`added.AddedTokens`), matched whole in text: those of the files, the special tokens
missing from vocab.json (`<s>` and `</s>` by default, numbered after it, so `len(tokenizer)` can exceed
`vocab_size`), every multi-character vocabulary token (such as `[UNK]`, which eats the spaces around it), and
those `add_tokens` adds. The special tokens are named attributes (`special.SpecialToken`).

In order: the class and its construction; the vocabulary and its sizes; the special tokens; adding tokens and
changing the language; text -> tokens -> ids and back. `Wav2Vec2CTCTokenizer` (in `tokenizer`) builds on it
transformers' calls, padding, decoding and files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from w2vbert.text.added import AddedTokens
from w2vbert.text.special import SPECIAL_TOKEN_NAMES, WORD_DELIMITER_NAME, SpecialToken, checked_special_token
from w2vbert.text.vocab import AddedToken, checked_vocab, given_added_tokens

logger = logging.getLogger("w2vbert")

EXTRA_SPECIAL_TOKENS = "extra_special_tokens"  # the key of the unnamed special tokens (transformers 5's name)


class CtcTokens:
    """The vocabulary, added tokens and special tokens of a CTC tokenizer, and the conversions between them.

    Ids: vocab.json's (`vocab_size` of them), then the added tokens, numbered as transformers numbers them: the
    entries of `added_tokens_decoder`, then each special token (bos, eos, unk, sep, pad, cls, mask, word
    delimiter, the extra ones, in that order) that is in neither, at the next id from `len(self)` on.
    """

    bos_token, bos_token_id = SpecialToken(), SpecialToken()
    eos_token, eos_token_id = SpecialToken(), SpecialToken()
    unk_token, unk_token_id = SpecialToken(), SpecialToken()
    sep_token, sep_token_id = SpecialToken(), SpecialToken()
    pad_token, pad_token_id = SpecialToken(), SpecialToken()
    cls_token, cls_token_id = SpecialToken(), SpecialToken()
    mask_token, mask_token_id = SpecialToken(), SpecialToken()
    word_delimiter_token, word_delimiter_token_id = SpecialToken(), SpecialToken()

    def __init__(
        self,
        vocab: dict[str, Any],
        source: str,
        special_tokens: dict[str, Any],
        extra_special_tokens: Sequence[Any] | None,
        added_tokens_decoder: dict[int | str, Any] | None,
        target_lang: str | None = None,
        do_lower_case: bool = False,
    ) -> None:
        """`vocab` as vocab.json holds it (`source` names it in errors); `special_tokens`, {name: token or None} for
        the names of `special.SPECIAL_TOKEN_NAMES` and the word delimiter; `added_tokens_decoder`, {id: token}."""
        self.vocab, self.target_lang, self.do_lower_case = vocab, target_lang, do_lower_case
        self._source = source
        self.encoder: dict[str, int] = checked_vocab(vocab, target_lang, source)
        self.decoder = {i: t for t, i in self.encoder.items()}
        self._special_tokens_map: dict[str, Any] = {name: None for name in (*SPECIAL_TOKEN_NAMES, WORD_DELIMITER_NAME)}
        for name, value in special_tokens.items():
            self._special_tokens_map[name] = checked_special_token(name, value)
        self._extra_special_tokens = [
            checked_special_token(EXTRA_SPECIAL_TOKENS, t) for t in extra_special_tokens or []
        ]
        self._added = AddedTokens(given_added_tokens(added_tokens_decoder, self.decoder, source))
        # As transformers: the special tokens missing so far are added (never stripped), then every multi-character
        # vocabulary token is matched whole, eating the spaces around it.
        missing = [t for t in self.all_special_tokens if t not in self._added]
        self._add(AddedToken(t, normalized=False, special=True) for t in missing)
        self._add_vocabulary_words()
        self._reported_unknown: set[str] = set()
        if self.pad_token is not None and self.pad_token not in self.encoder:
            logger.warning(
                "pad_token %r, the CTC blank, is not in %s: it is added as id %s, beyond the vocabulary; a CTC head "
                "needs max_token_id + 1 = %d outputs to predict it",
                self.pad_token, source, self.pad_token_id, self.max_token_id + 1,
            )  # fmt: skip

    def _add_vocabulary_words(self) -> None:
        """Each multi-character token of the vocabulary is an added token at its own id (lstrip and rstrip)."""
        for token, index in self.encoder.items():
            if len(token) > 1:
                self._added.set(index, AddedToken(token, lstrip=True, rstrip=True, normalized=False))

    def _add(self, tokens: Iterable[AddedToken]) -> int:
        return self._added.add(tokens, self.get_vocab(), set(self.decoder) | set(self._added.decoder))

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
        return max(max(self.decoder), max(self._added.decoder, default=0))

    def get_vocab(self) -> dict[str, int]:
        """{token: id} of vocab.json and the added tokens (an added token's id wins for its text)."""
        return self.encoder | self._added.encoder

    def get_added_vocab(self) -> dict[str, int]:
        return self._added.encoder

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        """{id: AddedToken}, sorted by id, as tokenizer_config.json stores them."""
        return self._added.decoder

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return self._added.encoder

    # ----------------------------------------------------------------------------------- special tokens
    @property
    def special_tokens_map(self) -> dict[str, str]:
        """{name: token} of the named special tokens that are set (the word delimiter included)."""
        return {name: str(value) for name, value in self._special_tokens_map.items() if value is not None}

    @property
    def extra_special_tokens(self) -> list[str]:
        """The special tokens without a name (a new list: changing it changes nothing until it is set back)."""
        return [str(t) for t in self._extra_special_tokens]

    @extra_special_tokens.setter
    def extra_special_tokens(self, tokens: Sequence[Any] | None) -> None:
        if tokens is not None and not isinstance(tokens, (list, tuple)):
            raise ValueError(f"extra_special_tokens must be a list or tuple, got {type(tokens).__name__}")
        self._extra_special_tokens = [checked_special_token(EXTRA_SPECIAL_TOKENS, t) for t in tokens or []]

    @property
    def extra_special_tokens_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.extra_special_tokens)

    @extra_special_tokens_ids.setter
    def extra_special_tokens_ids(self, ids: Sequence[int] | None) -> None:
        self.extra_special_tokens = None if ids is None else [self.convert_ids_to_tokens(i) for i in ids]

    @property
    def all_special_tokens(self) -> list[str]:
        """The named special tokens that are set, the word delimiter, then the extra ones, without repeats."""
        tokens = [*self.special_tokens_map.values(), *self.extra_special_tokens]
        return list(dict.fromkeys(tokens))

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    # ------------------------------------------------- special ids around a text (transformers' helpers)
    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """0: this tokenizer adds no special ids around a text or a pair."""
        return 0

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        return token_ids_0 + (token_ids_1 or [])

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        return [0] * len(token_ids_0) + [1] * len(token_ids_1 or [])

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        """1 where an id is special: with `already_has_special_tokens`, any special token's id; else none (no
        special ids are added)."""
        if not already_has_special_tokens:
            return [0] * (len(token_ids_0) + len(token_ids_1 or []))
        if token_ids_1 is not None:
            raise ValueError("a sequence that already has its special tokens comes alone: token_ids_1 must be None")
        special = set(self.all_special_ids)
        return [int(int(i) in special) for i in token_ids_0]

    # ------------------------------------------------------------------------------- adding, languages
    def add_tokens(self, new_tokens: str | Any | Sequence[str | Any], special_tokens: bool = False) -> int:
        """Add tokens matched whole in text (never stripped when given as str), as transformers; returns how many
        were new. One already in the vocabulary keeps its id. With `special_tokens`, they are special (skipped by
        `decode(skip_special_tokens=True)`); special ones without a name join `extra_special_tokens`."""
        if not new_tokens:
            return 0
        tokens = []
        for value in new_tokens if isinstance(new_tokens, (list, tuple)) else [new_tokens]:
            token = AddedToken.of(value, "a new token", normalized=False)
            if not token.content:
                continue
            if special_tokens:
                token = AddedToken(**(token.to_dict() | {"special": True}))
            if not token.special and token.normalized and self.do_lower_case:  # lower-cased, as transformers does
                token = AddedToken(**(token.to_dict() | {"content": token.content.lower()}))
            if token.special and token.content not in self.all_special_tokens:
                self._extra_special_tokens.append(token)
            tokens.append(token)
        return self._add(tokens)

    def add_special_tokens(self, special_tokens_dict: dict[str, Any], replace_extra_special_tokens: bool = True) -> int:
        """Name special tokens (`{"pad_token": "[PAD]", "extra_special_tokens": [...]}`) and add them, as
        transformers; returns how many were new. Extra special tokens replace the current ones, or with
        `replace_extra_special_tokens=False` join them (a replaced one stays an added token)."""
        if not special_tokens_dict:
            return 0
        values = dict(special_tokens_dict)
        if "additional_special_tokens" in values and not values.get(EXTRA_SPECIAL_TOKENS):  # transformers 4's name
            values[EXTRA_SPECIAL_TOKENS] = values.pop("additional_special_tokens")
        allowed = {*self._special_tokens_map, EXTRA_SPECIAL_TOKENS}
        to_add = []
        for name, value in values.items():
            if name not in allowed:
                raise ValueError(f"Key {name} is not a valid special token. Valid keys are: {sorted(allowed)}")
            if name != EXTRA_SPECIAL_TOKENS:
                token = _special(value, name)
                self._special_tokens_map[name], to_add = token, [*to_add, token]
                continue
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"Tokens {value!r} for key {name} should all be str or AddedToken instances")
            new = [_special(t, name) for t in value]
            if not replace_extra_special_tokens:
                new = [t for t in new if t.content not in self.extra_special_tokens]
            self._extra_special_tokens = (
                new if replace_extra_special_tokens and new else self._extra_special_tokens + new
            )
            to_add += new
        return self.add_tokens(to_add, special_tokens=True)

    def set_target_lang(self, target_lang: str) -> None:
        """Switch a multilingual (nested) vocab.json to the vocabulary of `target_lang`, as transformers: added
        tokens on ids of the new vocabulary give way to it; its multi-character tokens become added tokens."""
        if not any(isinstance(v, dict) for v in self.vocab.values()):
            raise ValueError(f"{self._source} is not a multilingual (nested) vocabulary: there is no language to set")
        if target_lang not in self.vocab:
            raise ValueError(f"{target_lang!r} is not in {self._source}; choose one of {', '.join(self.vocab)}")
        self.encoder = checked_vocab(self.vocab, target_lang, self._source)
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.target_lang = target_lang
        self._added.drop([i for i in self._added.decoder if i in self.decoder])
        self._add_vocabulary_words()

    # ------------------------------------------------------------------------------- text <-> tokens <-> ids
    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        """Text -> tokens, as transformers: added tokens (multi-character vocabulary tokens, special and added
        ones) are cut out whole first, with the whitespace their lstrip / rstrip drop; the text between them is
        upper-cased if do_lower_case, spaces become "|", and each character is a token. `split_special_tokens=True`
        cuts out nothing; `is_split_into_words=True` reads `text` as a word (after a space)."""
        unknown = kwargs.keys() - {"split_special_tokens", "is_split_into_words", "add_special_tokens"}
        if unknown:
            raise TypeError(f"tokenize got unexpected argument(s) {sorted(unknown)}")
        if not isinstance(text, str):
            raise TypeError(f"tokenize takes one text (str), got {type(text).__name__}: {text!r:.80}")
        if kwargs.get("is_split_into_words"):
            text = " " + text
        if kwargs.get("split_special_tokens"):
            return self._characters(text)
        tokens: list[str] = []
        for piece, is_added in self._added.split(text):
            tokens.extend([piece] if is_added else self._characters(piece))
        return tokens

    def _characters(self, text: str) -> list[str]:
        if self.do_lower_case:  # after the cut: `[unk]` is not `[UNK]` (transformers)
            text = text.upper()
        delimiter = self.word_delimiter_token
        return list(text if delimiter is None else text.replace(" ", delimiter))

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | None | list[int | None]:
        """A token's id (vocab.json's, or an added token's), else the unknown token's; a list for a list."""
        unk = self._id(self.unk_token)
        if isinstance(tokens, str):
            return self._id(tokens, unk)
        ids = self.encoder | self._added.ids  # one look-up table for the list: an added token's id wins
        return [ids.get(t, unk) for t in tokens]

    def _id(self, token: str | None, default: int | None = None) -> int | None:
        if token is None:
            return default
        index = self._added.ids.get(token)
        return index if index is not None else self.encoder.get(token, default)

    def _report_unknown(self, tokens: list[str]) -> None:
        """Warn once per character that is not in the vocabulary (it becomes the unknown token)."""
        unknown = sorted(set(tokens) - self.encoder.keys() - self._added.ids.keys() - self._reported_unknown)
        if unknown:
            self._reported_unknown.update(unknown)
            logger.warning(
                "characters not in the vocabulary, mapped to %s: %s", self.unk_token, " ".join(map(repr, unknown))
            )

    def _token_of(self, index: int) -> str:
        """vocab.json's token first, then an added token's, else unk (transformers' order)."""
        if index in self.decoder:
            return self.decoder[index]
        token = self._added.token_at(index)
        return token.content if token is not None else self.unk_token

    def convert_ids_to_tokens(self, ids: int | Iterable[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, (int, np.integer)):
            return self._token_of(int(ids))
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._token_of(int(i)) for i in ids if int(i) not in special]


def _special(value: Any, name: str) -> AddedToken:
    """A token given to `add_special_tokens` as a special AddedToken (a str is never stripped nor normalized);
    anything but a str or an AddedToken is transformers' ValueError."""
    try:
        return AddedToken.of(value, name, normalized=False, special=True)
    except TypeError:
        raise ValueError(f"Token {value!r} for key {name} should be a str or an AddedToken instance") from None
