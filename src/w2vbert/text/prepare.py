"""From texts to the tokenizer's output columns: transformers' rules for padding, truncation and text pairs.

In order: the length constants; `EncodeOptions`, the keywords of `Wav2Vec2CTCTokenizer.__call__` once resolved;
`resolve_strategies`, how padding / truncation / max_length combine (transformers'
`_get_padding_truncation_strategies`); `call_options`, the call's keywords resolved; `read_texts`, what `text` and
`text_pair` hold (one text, a pair, a batch of texts or of pairs); `truncate_ids`, the truncation strategies with
stride and side; `encode_example`, one example's columns before padding; `pad_columns`, the padding behind
`Wav2Vec2CTCTokenizer.pad`; `assemble`, the examples padded and converted as one output.

The tokenizer adds no special ids (transformers' "none" pattern for this class), so a pair is the two texts' ids
one after the other, and `add_special_tokens` changes only the token type ids.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from w2vbert.text.encoding import BatchEncoding, id_rows, mask_rows, pad_rows
from w2vbert.utils.batch import PADDING_STRATEGIES, holds_numbers, padding_plan, with_other_columns

VERY_LARGE_INTEGER = int(1e30)  # transformers' model_max_length of a model without one (saved as this number)
LARGE_INTEGER = int(1e20)  # a model_max_length above this is no maximum (transformers)
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
OVERFLOW_KEYS = ("overflowing_tokens", "num_truncated_tokens")  # per example, ragged: never made tensors
PADDED_KEYS = ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask")  # what padding pads

logger = logging.getLogger("w2vbert")


@dataclass(frozen=True)
class EncodeOptions:
    """How a call encodes its texts: transformers' keywords, with the strategies resolved."""

    padding: str = "do_not_pad"  # "longest", "max_length" or "do_not_pad"
    truncation: str = "do_not_truncate"  # one of TRUNCATION_STRATEGIES
    max_length: int | None = None  # the cut and / or the padded length, in ids
    stride: int = 0  # the overflowing ids start this many kept ids before the cut
    pad_to_multiple_of: int | None = None  # padded lengths are rounded up to a multiple of this
    padding_side: str | None = None  # "right" or "left"; None: the tokenizer's padding_side
    add_special_tokens: bool = True  # no special ids are added either way: True marks a pair's second text type 1
    return_tensors: str | None = None  # "pt", "np" or None (lists)
    return_token_type_ids: bool = False  # 0 for the first text's ids, 1 for the second's
    return_attention_mask: bool = True
    return_overflowing_tokens: bool = False  # the ids cut off (with `stride` kept ones), and how many were cut
    return_special_tokens_mask: bool = False  # 1 where an id is a special one the tokenizer added (never: all 0)
    return_length: bool = False  # each example's length in ids
    verbose: bool = True  # warn about sequences longer than model_max_length


def _value(option: Any) -> Any:
    """transformers' PaddingStrategy / TruncationStrategy members as their strings."""
    return option.value if isinstance(option, enum.Enum) else option


def resolve_strategies(
    padding: Any, truncation: Any, max_length: int | None, pad_to_multiple_of: int | None, model_max_length: int
) -> tuple[str, str, int | None]:
    """(padding, truncation, max_length) as transformers resolves them.

    max_length alone truncates (longest_first); truncation without max_length cuts at model_max_length, or not at
    all when the model has none. padding="max_length" without max_length pads to model_max_length; when the model
    has none it stays unresolved and the padding step says it needs a length (transformers silently pads nothing).
    """
    padding, truncation = _value(padding), _value(truncation)
    if max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"
    padding = "longest" if padding is True else "do_not_pad" if padding in (False, None) else padding
    if padding not in PADDING_STRATEGIES:
        raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
    truncation = (
        "longest_first" if truncation is True else "do_not_truncate" if truncation in (False, None) else truncation
    )
    if truncation not in TRUNCATION_STRATEGIES:
        raise ValueError(f"truncation must be True, False or one of {list(TRUNCATION_STRATEGIES)}, got {truncation!r}")
    limited = model_max_length <= LARGE_INTEGER
    if max_length is None and limited and (padding == "max_length" or truncation != "do_not_truncate"):
        max_length = model_max_length
    if max_length is None and truncation != "do_not_truncate":
        truncation = "do_not_truncate"  # nothing to cut at (transformers)
    if (
        truncation != "do_not_truncate"
        and padding != "do_not_pad"
        and pad_to_multiple_of is not None
        and max_length is not None
        and max_length % pad_to_multiple_of
    ):
        raise ValueError(
            f"truncation and padding are both on, but the truncation length ({max_length}) is not a multiple of "
            f"pad_to_multiple_of ({pad_to_multiple_of}): pass a max_length that is one"
        )
    return padding, truncation, max_length


def call_options(named: dict[str, Any], model_input_names: list[str], model_max_length: int) -> EncodeOptions:
    """The keywords of `Wav2Vec2CTCTokenizer.__call__` (`named`, name -> value) resolved: strategies as
    `resolve_strategies`, the attention mask and token type ids returned when the model takes them."""
    padding, truncation, max_length = resolve_strategies(
        named["padding"], named["truncation"], named["max_length"], named["pad_to_multiple_of"], model_max_length
    )
    if padding == "longest" and named["max_length"] is not None and named["truncation"] in (None, False):
        if named["verbose"]:
            logger.warning("max_length is ignored with padding=True and no truncation: use padding='max_length'")
    mask, types = named["return_attention_mask"], named["return_token_type_ids"]
    return EncodeOptions(
        padding=padding,
        truncation=truncation,
        max_length=max_length,
        stride=named["stride"],
        pad_to_multiple_of=named["pad_to_multiple_of"],
        padding_side=named["padding_side"],
        add_special_tokens=named["add_special_tokens"],
        return_tensors=named["return_tensors"],
        return_token_type_ids="token_type_ids" in model_input_names if types is None else types,
        return_attention_mask="attention_mask" in model_input_names if mask is None else mask,
        return_overflowing_tokens=named["return_overflowing_tokens"],
        return_special_tokens_mask=named["return_special_tokens_mask"],
        return_length=named["return_length"],
        verbose=named["verbose"],
    )


Texts = str | list[str]  # one text, or (is_split_into_words) its words


def read_texts(text: Any, text_pair: Any, is_split_into_words: bool) -> tuple[list[tuple[Texts, Texts | None]], bool]:
    """The examples of a call, [(text, pair or None)], and whether they are a batch, as transformers reads them: a
    str (or, with is_split_into_words, a list of words) is one text; a list of texts is a batch; in a batch a
    tuple or list of two texts is a pair; `text_pair` pairs with `text` item by item."""
    batched = isinstance(text, (list, tuple)) and (
        (not text and not is_split_into_words)
        or (bool(text) and is_split_into_words and isinstance(text[0], (list, tuple)))
        or (bool(text) and not is_split_into_words and isinstance(text[0], (str, list, tuple)))
    )
    if not batched:
        return [(_one_text(text, is_split_into_words, "text"), _pair_text(text_pair, is_split_into_words))], False
    if text_pair is not None and (not isinstance(text_pair, (list, tuple)) or len(text_pair) != len(text)):
        raise ValueError(f"text is a batch of {len(text)}, so text_pair must be a list of as many texts")
    examples = []
    for index, item in enumerate(text):
        pair = None if text_pair is None else text_pair[index]
        if isinstance(item, (list, tuple)) and pair is None and _is_pair(item, is_split_into_words):
            item, pair = item
        elif isinstance(item, (list, tuple)) and pair is None and len(item) == 1:
            item = item[0]
        where = f"text {index}"
        examples.append((_one_text(item, is_split_into_words, where), _pair_text(pair, is_split_into_words)))
    return examples, True


def _is_pair(item: list | tuple, is_split_into_words: bool) -> bool:
    return (
        len(item) == 2
        and (not is_split_into_words or isinstance(item, tuple))
        and all(isinstance(part, (str, list, tuple)) for part in item)
    )


def _pair_text(pair: Any, is_split_into_words: bool) -> Texts | None:
    return None if pair is None else _one_text(pair, is_split_into_words, "text_pair")


def _one_text(value: Any, is_split_into_words: bool, where: str) -> Texts:
    if isinstance(value, str):
        return value
    if is_split_into_words and isinstance(value, (list, tuple)) and all(isinstance(w, str) for w in value):
        return list(value)
    if where == "text" and not isinstance(value, (list, tuple)):
        raise TypeError(f"{where} must be a text (str) or a list of texts, got {type(value).__name__}: {value!r:.80}")
    raise TypeError(
        f"{where} is a {type(value).__name__}, expected str: the tokenizer takes a text, a pair of texts or a "
        "list of them (label ids are padded with tokenizer.pad([{'input_ids': ids}, ...]))"
    )


def truncate_ids(
    ids: list[int], pair_ids: list[int] | None, remove: int, strategy: str, stride: int, side: str
) -> tuple[list[int], list[int] | None, list[int]]:
    """(ids, pair_ids, overflowing) with `remove` ids cut, as transformers' `truncate_sequences`.

    only_first (or longest_first with one text) cuts the first text, only_second the second, on `side`; the
    overflowing ids are those cut plus `stride` kept ones next to the cut. longest_first with a pair cuts the
    longer text down to the shorter one first, then both in turn, and returns no overflowing ids.
    """
    if remove <= 0:
        return ids, pair_ids, []
    if strategy == "only_first" or (strategy == "longest_first" and pair_ids is None):
        window = min(len(ids), stride + remove)
        if side == "left":
            return ids[remove:], pair_ids, ids[:window]
        return ids[:-remove], pair_ids, ids[-window:]
    if strategy == "longest_first":
        first = min(abs(len(pair_ids) - len(ids)), remove)  # bring the longer text down to the shorter one
        second = remove - first  # then take from both, the first text one less when odd
        if len(ids) > len(pair_ids):
            cut_ids, cut_pair = first + second // 2, second - second // 2
        else:
            cut_ids, cut_pair = second // 2, first + second - second // 2
        if side == "right":
            return ids[: len(ids) - cut_ids], pair_ids[: len(pair_ids) - cut_pair], []
        return ids[cut_ids:], pair_ids[cut_pair:], []
    if strategy == "only_second" and pair_ids:
        window = min(len(pair_ids), stride + remove)
        if side == "right":
            return ids, pair_ids[:-remove], pair_ids[-window:]
        return ids, pair_ids[remove:], pair_ids[:window]
    return ids, pair_ids, []


def encode_example(ids: list[int], pair_ids: list[int] | None, options: EncodeOptions, side: str) -> dict[str, Any]:
    """One example's columns before padding: input_ids, then those the options ask for. `side` is where to cut."""
    if options.return_overflowing_tokens and options.truncation == "longest_first" and pair_ids is not None:
        raise ValueError(
            "Not possible to return overflowing tokens for pair of sequences with the `longest_first`. Please "
            "select another truncation strategy than `longest_first`, for instance `only_second` or `only_first`."
        )
    total = len(ids) + len(pair_ids or [])
    overflow: list[int] = []
    if options.truncation != "do_not_truncate" and options.max_length and total > options.max_length:
        remove = total - options.max_length
        ids, pair_ids, overflow = truncate_ids(ids, pair_ids, remove, options.truncation, options.stride, side)
    sequence = ids + (pair_ids or [])
    out: dict[str, Any] = {"input_ids": sequence}
    if options.return_token_type_ids:  # transformers' "bert_style": the pair's ids are type 1
        second = len(pair_ids or []) if options.add_special_tokens else 0
        out["token_type_ids"] = [0] * (len(sequence) - second) + [1] * second
    if options.return_special_tokens_mask:
        out["special_tokens_mask"] = [0] * len(sequence)
    if options.return_overflowing_tokens and overflow and options.return_tensors is None:
        out["overflowing_tokens"], out["num_truncated_tokens"] = overflow, total - options.max_length
    if options.return_length:
        out["length"] = len(sequence)
    return out


def pad_columns(columns: dict[str, Any], options: EncodeOptions, pad_id: int, pad_type_id: int) -> BatchEncoding:
    """`columns` ({key: one example's values, or one per example}) padded as `options` say: input_ids with
    `pad_id`, the attention mask (given, else ones; if asked) with 0, token type ids with `pad_type_id` and a
    special tokens mask with 1 (transformers' pad values), on `options.padding_side`. Other keys pass through:
    numbers converted with the rest, texts as given."""
    rows, single = id_rows(columns["input_ids"], "input_ids")
    if not rows:
        return BatchEncoding(columns | ({"attention_mask": []} if options.return_attention_mask else {}))
    others = {key: values for key, values in columns.items() if key not in PADDED_KEYS}
    if not single and any(len(values) != len(rows) for values in others.values()):
        sizes = {key: len(values) for key, values in columns.items()}
        raise ValueError(f"pad needs one value per example in every key, got these counts: {sizes}")
    lengths = [len(r) for r in rows]
    _, target = padding_plan(lengths, options.padding, options.max_length, options.pad_to_multiple_of, unit="ids")
    side = options.padding_side
    padded = {"input_ids": pad_rows(rows, target, pad_id, side)}
    if options.return_attention_mask:
        padded["attention_mask"] = pad_rows(mask_rows(columns, rows) or [[1] * n for n in lengths], target, 0, side)
    for key, value in (("token_type_ids", pad_type_id), ("special_tokens_mask", 1)):
        if key in columns:
            key_rows = id_rows(columns[key], key)[0]
            if [len(r) for r in key_rows] != lengths:
                raise ValueError(f"{key} lengths {[len(r) for r in key_rows]} differ from input_ids lengths {lengths}")
            padded[key] = pad_rows(key_rows, target, value, side)
    out = BatchEncoding({key: values[0] if single else values for key, values in padded.items()})
    # one example's dict holds one value per key; a batch's, one per example (a tensor decides as a whole)
    numeric = {
        key: values
        for key, values in others.items()
        if holds_numbers(values if single or isinstance(values, torch.Tensor) else values[0])
    }
    return with_other_columns(out, numeric, others, options.return_tensors)  # texts: as given


def assemble(columns: list[dict[str, Any]], batched: bool, options: EncodeOptions, pad: Callable) -> BatchEncoding:
    """The examples' columns as one output: padded by `pad` (the tokenizer's), and converted to tensors.

    One example gives flat lists, or (1, length) tensors; a batch gives a list per key. Overflowing ids are kept
    only without tensors (they are ragged); in a batch every example then has them (empty where none were cut).
    """
    padding = dict(
        padding=options.padding,
        max_length=options.max_length,
        pad_to_multiple_of=options.pad_to_multiple_of,
        padding_side=options.padding_side,
        return_attention_mask=options.return_attention_mask,
        return_tensors=None,
    )
    if not batched:
        (out,) = columns
        if options.padding != "do_not_pad" or options.return_attention_mask:
            out = pad(out, **padding)
        if options.return_length:
            out["length"] = len(out["input_ids"])
        out = BatchEncoding(out)
        if options.return_tensors is not None:
            out = BatchEncoding({key: [value] for key, value in out.items()})  # the batch axis
        return out.convert_to_tensors(options.return_tensors)
    if any(OVERFLOW_KEYS[0] in c for c in columns):  # where nothing was cut: no ids, none cut
        columns = [{OVERFLOW_KEYS[0]: [], OVERFLOW_KEYS[1]: 0} | c for c in columns]
    batch = {key: [c[key] for c in columns] for key in columns[0]} if columns else {"input_ids": []}
    out = BatchEncoding(pad(batch, **padding))
    return out.convert_to_tensors(options.return_tensors)
