"""Label ids in and out of the tokenizer: batches, padding, the checks of what arrives as ids.

In order: `LABEL_PAD` and `pad_labels` (label rows for the CTC loss); `BatchEncoding`, the tokenizer's output;
`pad_rows` and `mask_rows`, the padding behind `Wav2Vec2CTCTokenizer.pad`; `id_rows` and `as_id_list`, ids
given as lists, arrays or tensors read as Python ints (every refusal names the example and position that is
wrong), with `tensor_kind` (what kind they came as). What `decode` does to its text is in `ctc_text`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from w2vbert.utils.batch import BatchFeature

LABEL_PAD = -100  # label positions the CTC loss ignores


def pad_labels(labels: Sequence[Sequence[int]]) -> torch.Tensor:
    """Label id lists -> (batch, longest) LongTensor padded with -100, the value the CTC loss ignores."""
    width = max((len(row) for row in labels), default=0)
    out = torch.full((len(labels), width), LABEL_PAD, dtype=torch.long)
    for row, ids in enumerate(labels):
        out[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
    return out


class BatchEncoding(BatchFeature):
    """The tokenizer's output, as transformers' BatchEncoding: a dict with attribute access (`out.input_ids`),
    `.data`, `.to(device)` and `convert_to_tensors`. Its columns are integers: empty ones become int64 tensors
    (numpy alone would make them float64), as transformers makes them."""

    @property
    def data(self) -> dict[str, Any]:
        return dict(self)

    def convert_to_tensors(self, tensor_type: str | None, **options: Any) -> BatchEncoding:
        """`BatchFeature.convert_to_tensors` (`options` are its keywords), empty id columns made int64 first."""
        if tensor_type is not None:
            for key, value in self.items():
                if isinstance(value, list) and not np.asarray(value, dtype=object).size:  # [] or [[], ...]
                    self[key] = np.asarray(value, dtype=np.int64)
        super().convert_to_tensors(tensor_type, **options)
        return self


def pad_rows(rows: list[list[int]], target: int | None, value: int, side: str) -> list[list[int]]:
    """Rows padded with `value` to `target` (None: left as they are; a longer row is not cut) on `side` ("right"
    or "left")."""
    out = []
    for row in rows:
        missing = [value] * (0 if target is None else max(0, target - len(row)))
        out.append(row + missing if side == "right" else missing + row)
    return out


def mask_rows(columns: dict[str, Any], rows: list[list[int]]) -> list[list[int]] | None:
    """The "attention_mask" column as rows of ints, one as long as each row of ids; None when there is none."""
    if "attention_mask" not in columns:
        return None
    masks = id_rows(columns["attention_mask"], "attention_mask")[0]
    if [len(m) for m in masks] != [len(r) for r in rows]:
        raise ValueError(
            f"attention_mask lengths {[len(m) for m in masks]} differ from input_ids lengths {[len(r) for r in rows]}"
        )
    return masks


def id_rows(values: Any, key: str) -> tuple[list[list[int]], bool]:
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


def tensor_kind(values: Any) -> str | None:
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


def as_id_list(token_ids: int | Sequence[int] | np.ndarray | torch.Tensor) -> list[int]:
    """One sequence of integer ids (what `decode` takes; one id is a sequence of one) as Python ints."""
    if isinstance(token_ids, torch.Tensor):
        token_ids = token_ids.detach().cpu().numpy()
    array = np.asarray(token_ids)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"decode takes one sequence of ids (1-D), got shape {array.shape}; use batch_decode")
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(
            f"decode takes integer ids, got {array.dtype} values: pass the argmax of the logits "
            "(logits.argmax(-1)), not the logits or probabilities"
        )
    return [int(i) for i in array]
