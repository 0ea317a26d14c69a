"""Batches of model inputs as transformers hands them out, shared by the feature extractor and the tokenizer.

In order: `BatchFeature`, the dict both return (attribute access, `.to(device)`, `convert_to_tensors`);
`as_columns`, a collator's examples (a list of dicts or a dict of lists) as one list per key; `padding_plan`, the
length arithmetic of transformers' `pad` (padding strategy, max_length, pad_to_multiple_of, truncation); and the
columns a `pad` passes through (`holds_numbers`, `with_other_columns`).
Contract: the same arguments give the lengths transformers gives, whatever is padded (frames or ids).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


class BatchFeature(dict):
    """A batch of model inputs: a dict (`out["input_features"]`, `**out`) with attribute access and `.to(...)`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchFeature has no {name!r}; it holds {sorted(self)}") from None

    def to(self, *args: Any, **kwargs: Any) -> BatchFeature:
        """Move tensors to a device; a dtype given casts the floating-point tensors only (as transformers does)."""
        device = kwargs.get("device")
        if device is None and args and not isinstance(args[0], torch.dtype):
            device = args[0]
        out = BatchFeature()
        for key, value in self.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                value = value.to(*args, **kwargs)
            elif isinstance(value, torch.Tensor) and device is not None:
                value = value.to(device=device, non_blocking=kwargs.get("non_blocking", False))
            out[key] = value
        return out

    def convert_to_tensors(self, tensor_type: str | None, *, ragged: bool = False) -> BatchFeature:
        """Convert every entry to "pt" tensors or "np" arrays in place (None leaves them); returns self.

        Examples of different lengths are a ValueError, unless `ragged` asks for what transformers makes of them
        for "np": a 1-D object array holding each example's own array ("pt" stays an error: a tensor cannot be
        ragged). The feature extractor's `pad` asks for it; the tokenizer does not (yet)."""
        if tensor_type is None:
            return self
        for key, value in self.items():
            self[key] = _as_tensor_type(value, str(tensor_type), key, ragged)
        return self


def _as_tensor_type(value: Any, tensor_type: str, key: str, ragged: bool) -> Any:
    if tensor_type == "pt":
        if isinstance(value, torch.Tensor):
            return value
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
            return torch.stack(list(value))
        return torch.from_numpy(_stack_numpy(value, key))
    if tensor_type == "np":
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
            return np.stack([v.detach().cpu().numpy() for v in value])
        if ragged and _is_ragged(value):  # as transformers: a 1-D object array holding each example's own array
            out = np.empty(len(value), dtype=object)
            for index, item in enumerate(value):
                out[index] = np.asarray(item)
            return out
        return _stack_numpy(value, key)
    raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {tensor_type!r}")


def _is_ragged(value: Any) -> bool:
    """Whether `value` is a list of sequences (lists, tuples or arrays of 1 dimension or more) of different lengths."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    sequences = all(isinstance(v, (list, tuple)) or isinstance(v, np.ndarray) and v.ndim > 0 for v in value)
    return sequences and len({len(item) for item in value}) > 1


def _stack_numpy(value: Any, key: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError as error:
        raise ValueError(
            f"cannot make one array of {key!r}: its items have different lengths; pad them first (padding=True)"
        ) from error


PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")  # the values of transformers' PaddingStrategy


def as_columns(examples: Any, key: str, wrap: str) -> dict[str, list]:
    """A collator's examples -> one list per key: a list of dicts (one per example) or a dict of lists, as the
    `pad` methods of transformers take them; anything else is a TypeError saying how to `wrap` each example."""
    if isinstance(examples, (list, tuple)):
        if not examples:
            raise ValueError(f"pad got an empty list; expected one dict with {key!r} per example")
        if not all(isinstance(item, Mapping) for item in examples):
            kinds = "/".join(sorted({type(item).__name__ for item in examples}))
            raise TypeError(
                f"pad takes a list of dicts, one per example, with {key!r}, or a dict of lists; got a list of "
                f"{kinds}: wrap {wrap}"
            )
        return {name: [item[name] for item in examples] for name in examples[0]}
    if not isinstance(examples, Mapping):
        raise TypeError(f"pad takes a list of dicts with {key!r} or a dict of lists, got {type(examples).__name__}")
    return dict(examples)


def padding_plan(
    lengths: Sequence[int],
    padding: bool | str = True,
    max_length: int | None = None,
    pad_to_multiple_of: int | None = None,
    truncation: bool = False,
    *,
    unit: str = "items",
) -> tuple[int | None, int | None]:
    """Where a batch of sequences of `lengths` is cut and to what length it is padded, as transformers' `pad`.

    Returns (cut, target): with truncation, every sequence is first cut to `cut` (max_length rounded up to
    pad_to_multiple_of), else cut is None; then the shorter ones are padded to `target`: the longest (cut) length
    for padding=True / "longest", max_length for "max_length", both rounded up to pad_to_multiple_of, or None
    for padding=False / "do_not_pad". A sequence longer than target is left as it is (the caller decides).
    `unit` names what the lengths count, for the error messages.
    """
    strategy = "longest" if padding is True else "do_not_pad" if padding is False else padding
    if strategy not in PADDING_STRATEGIES:
        raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
    if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1):
        raise ValueError(f"pad_to_multiple_of must be a positive integer or None, got {pad_to_multiple_of!r}")

    def round_up(n: int) -> int:
        return -(-n // pad_to_multiple_of) * pad_to_multiple_of if pad_to_multiple_of else n

    cut = None
    if truncation:
        if max_length is None:
            raise ValueError(f"truncation=True needs max_length (in {unit})")
        cut = round_up(max_length)
        lengths = [min(n, cut) for n in lengths]
    if strategy == "longest":
        return cut, round_up(max(lengths, default=0))
    if strategy == "max_length":
        if max_length is None:
            raise ValueError(f"padding='max_length' needs max_length (in {unit})")
        return cut, round_up(max_length)
    return cut, None


def holds_numbers(value: Any) -> bool:
    """Whether a passed-through column whose first value is `value` is converted with the batch: a tensor, or
    what numpy reads as booleans or numbers (texts and other objects stay as given)."""
    return isinstance(value, torch.Tensor) or np.asarray(value).dtype.kind in "biuf"


def with_other_columns(
    out: BatchFeature,
    numeric: dict[str, Any],
    others: dict[str, Any],
    return_tensors: str | None,
    *,
    ragged: bool = False,
) -> BatchFeature:
    """`out` (the padded columns) with the `numeric` columns added and all converted to `return_tensors` (with
    `ragged` as `convert_to_tensors` takes it), then the rest of `others` added as given: the last step of both
    `pad` methods."""
    out.update(numeric)
    out.convert_to_tensors(return_tensors, ragged=ragged)
    out.update({key: values for key, values in others.items() if key not in numeric})
    return out
