"""The named special tokens of the tokenizer as attributes: `tokenizer.pad_token`, `tokenizer.pad_token_id`, ...

transformers' tokenizers carry seven named special tokens (`SPECIAL_TOKEN_NAMES`), each readable and settable as
a token and as an id; the CTC tokenizer adds the word delimiter. `SpecialToken` is that attribute, declared once
per name on the tokenizer class; the tokens themselves live in the tokenizer's `_special_tokens_map`
({name: str, AddedToken or None}, the values as given, as in transformers), and ids are looked up in its
vocabulary each time, so that added tokens and a changed `target_lang` are seen.
"""

from __future__ import annotations

from typing import Any

from w2vbert.text.vocab import AddedToken

# transformers' SPECIAL_TOKENS_ATTRIBUTES, in its order (the order of `all_special_tokens`)
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# the CTC tokenizer's own special token, after the named ones (transformers 5 counts it special too)
WORD_DELIMITER_NAME = "word_delimiter_token"


def checked_special_token(name: str, value: Any) -> Any:
    """`value` if it can name the special token `name` (None, a str, or an AddedToken of ours or of transformers),
    else a TypeError as transformers raises it."""
    if value is None or isinstance(value, str):
        return value
    AddedToken.of(value, name)  # a TypeError naming what came, if it is no token
    return value


class SpecialToken:
    """`tokenizer.<name>` (the token's text or None) or, declared as `<name>_id`, its id (None when unset).

    Setting the token stores it as given; setting the id stores the token at that id (None unsets it). Neither adds
    the token to the vocabulary: `add_special_tokens` does that (as in transformers).
    """

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.as_id = attribute.endswith("_id")
        self.name = attribute.removesuffix("_id")

    def __get__(self, tokenizer: Any, owner: type | None = None) -> Any:
        if tokenizer is None:
            return self
        value = tokenizer._special_tokens_map.get(self.name)
        if value is None:
            return None
        return tokenizer.convert_tokens_to_ids(str(value)) if self.as_id else str(value)

    def __set__(self, tokenizer: Any, value: Any) -> None:
        if self.as_id and value is not None:
            value = tokenizer.convert_ids_to_tokens(value)
        if value is not None and not isinstance(value, str):
            try:
                checked_special_token(self.name, value)
            except TypeError as error:
                raise ValueError(f"cannot set {self.name} to {value!r}: {error}") from None
        tokenizer._special_tokens_map[self.name] = value
