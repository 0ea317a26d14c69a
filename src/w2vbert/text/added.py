"""The added tokens of a tokenizer: the tokens matched whole in text before the rest is cut into characters.

`AddedTokens` holds them by id (transformers' `added_tokens_decoder`) and by text (`added_tokens_encoder`), numbers
new ones (`add`), and cuts a text at them (`split`), honouring each token's lstrip / rstrip / single_word as
transformers' Python tokenizers do. Which tokens are added, and when, is the tokenizer's business
(`Wav2Vec2CTCTokenizer.add_tokens`); this table only keeps them consistent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from w2vbert.text.vocab import AddedToken


class AddedTokens:
    """{id: AddedToken}, kept sorted by id, with the reverse table and the pattern that finds them in text."""

    def __init__(self, tokens: dict[int, AddedToken] | None = None) -> None:
        self._decoder: dict[int, AddedToken] = {}
        self._encoder: dict[str, int] = {}
        self._pattern: re.Pattern[str] | None = None
        for index, token in (tokens or {}).items():
            self.set(index, token)

    @property
    def decoder(self) -> dict[int, AddedToken]:
        """{id: token}, sorted by id (a copy)."""
        return dict(sorted(self._decoder.items()))

    @property
    def encoder(self) -> dict[str, int]:
        """{text: id}, sorted by id (a copy)."""
        return {token.content: index for index, token in sorted(self._decoder.items())}

    @property
    def ids(self) -> dict[str, int]:
        """{text: id} in the order added: the table itself, for look-ups (not to be changed)."""
        return self._encoder

    def __contains__(self, content: str) -> bool:
        return content in self._encoder

    def token_at(self, index: int) -> AddedToken | None:
        return self._decoder.get(index)

    def set(self, index: int, token: AddedToken) -> None:
        """Put `token` at `index`, replacing what was there (another text at that id, or this text elsewhere)."""
        self.drop([self._encoder.get(token.content, index), index])
        self._decoder[index], self._encoder[token.content] = token, index
        self._pattern = None

    def drop(self, ids: Iterable[int]) -> None:
        for index in ids:
            token = self._decoder.pop(index, None)
            if token is not None:
                del self._encoder[token.content]
        self._pattern = None

    def add(self, tokens: Iterable[AddedToken], vocab: dict[str, int], taken: set[int]) -> int:
        """Add `tokens` as transformers' `_add_tokens` does; returns how many got a new id.

        A token whose text is in `vocab` (token -> id, vocab.json's and the added ones) keeps that id, with the new
        flags; any other takes the next id from `len(vocab)` on. transformers counts that id over token texts, so
        where a gap in vocab.json's ids makes it `taken` it shadows another token: here the next free id is used.
        """
        vocab, taken, added = dict(vocab), set(taken), 0  # copies: the ids given out so far
        for token in tokens:
            if not token.content:
                continue
            index = vocab.get(token.content)
            if index is None:
                index = len(vocab)
                while index in taken:
                    index += 1
                added += 1
            vocab[token.content] = index
            taken.add(index)
            self.set(index, token)
        return added

    def split(self, text: str) -> list[tuple[str, bool]]:
        """`text` cut at the added tokens: [(piece, is_added_token)], empty pieces left out.

        Tokens are found leftmost first, the longest where several start at one place (transformers' trie). Then,
        as in transformers, each piece that is an added token's text, in order, acts on its neighbours (text or
        token): rstrip drops the whitespace starting the next piece, lstrip the whitespace ending the previous one,
        and a single_word token touching a word joins that piece as text. A piece is a token if its text still is
        one's at the end (so a whitespace token stripped away is gone).
        """
        if self._pattern is None:
            whole = sorted(self._encoder, key=len, reverse=True)
            self._pattern = re.compile("(" + "|".join(map(re.escape, whole)) + ")") if whole else re.compile("(?!)")
        pieces = [piece for piece in self._pattern.split(text) if piece]  # e.g. "a <s>b" -> ["a ", "<s>", "b"]
        for i, piece in enumerate(pieces):
            token = self._decoder.get(self._encoder.get(piece, -1))
            if token is None:
                continue
            left = pieces[i - 1] if i > 0 else ""
            right = pieces[i + 1] if i + 1 < len(pieces) else ""
            if token.rstrip and right:
                pieces[i + 1] = right.lstrip()
            if token.lstrip and left:
                pieces[i - 1] = left.rstrip()
            if token.single_word and left and left[-1] != " ":  # the neighbours as they were before stripping
                pieces[i - 1], pieces[i] = pieces[i - 1] + piece, ""
            elif token.single_word and right and right[0] != " ":
                pieces[i + 1], pieces[i] = piece + pieces[i + 1], ""
        return [(piece, piece in self._encoder) for piece in pieces if piece]
