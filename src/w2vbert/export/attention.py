"""Attention as a traced graph can hold it: what `attention.attend` runs while `torch.onnx.export` traces.

The eager paths (model/attention.py) pick chunk sizes from the clip length in Python and read the Shaw bias through
`as_strided` views; a trace would freeze the first and no exporter expresses the second. Here, in order:
- `attend_for_export`: pads the queries to whole chunks of `EXPORT_CHUNK_ROWS` rows and runs `attend_chunk` on
  each inside one `scan` (an ONNX Scan), so the graph keeps any length and attention memory stays linear in it.
  The traced example must give every attention at least 2 chunks (onnx.example_inputs): torch.export fixes a
  size of 1, so a 1-chunk example would fix the length.
- `attend_chunk`: one chunk's scores against every key, plus the Shaw bias and the padding penalty.
- `shaw_bias`: that bias from the few distinct distances: one gather of the chunk's flattened distance scores
  through a (rows, keys) index (no strided view).
- `installed()`: the context in which the model's attention runs `attend_for_export` (the exporter installs its
  form in `w2vbert.model.attention.EXPORT_FORM`; the model does not import this module).

Contract as model/attention.py's: query, key, value (B, H, T, d); `valid` (B, T) bool or None; returns (B, H, T, d).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch._higher_order_ops.scan import scan

from w2vbert.model import attention
from w2vbert.model.attention import Position, ShawPosition, key_penalty

# Query rows per scanned chunk: a chunk's (B, H, rows, T) scores bound attention memory (256 as the eager CPU
# path, attention.ATTENTION_CHUNK_ROWS_CPU). Fixed in the graph: a clip shorter than this pads to one chunk.
EXPORT_CHUNK_ROWS = 256


def attend_for_export(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    position: Position | None,
    valid: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """All query rows, EXPORT_CHUNK_ROWS at a time in one scan: (B, H, T, d)."""
    if position is not None and not isinstance(position, ShawPosition):
        raise NotImplementedError(f"the ONNX export has no attention for {type(position).__name__}")
    batch, heads, frames, head_dim = query.shape
    rows = EXPORT_CHUNK_ROWS
    # Always 1 .. rows padding rows (a whole spare chunk when frames is a multiple of rows): a pad that could be 0
    # is a branch the trace would fix for every length.
    chunks = frames // rows + 1
    padded = torch.nn.functional.pad(query, (0, 0, 0, chunks * rows - frames))  # (B, H, chunks * rows, d)
    stacked = padded.view(batch, heads, chunks, rows, head_dim).permute(2, 0, 1, 3, 4)  # (chunks, B, H, rows, d)
    starts = torch.arange(chunks, device=query.device) * rows  # (chunks,): each chunk's first query row
    penalty = key_penalty(valid, query.dtype)  # (B, 1, 1, T) or None
    table = None if position is None else position.table  # (distances, d)
    left = 0 if position is None else position.left

    def step(carry: torch.Tensor, chunk: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        rows_query, start = chunk
        # scan wants no output aliasing an input: the (unused) carry goes on as a copy
        return carry.clone(), attend_chunk(rows_query, start, key, value, table, left, penalty, scale)

    _, outputs = scan(step, query.new_zeros(()), (stacked, starts))  # (chunks, B, H, rows, d)
    merged = outputs.permute(1, 2, 0, 3, 4).reshape(batch, heads, chunks * rows, head_dim)
    return merged[:, :, :frames]


def attend_chunk(
    query: torch.Tensor,
    start: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    table: torch.Tensor | None,
    left: int,
    penalty: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """Rows start .. start + rows - 1 (query (B, H, rows, d)) against all keys: (B, H, rows, d).

    `table` is the Shaw table (unscaled), or None for no position term."""
    query = query * scale  # both terms are scaled: scaling the (rows, d) query saves a pass over (rows, T) scores
    scores = torch.matmul(query, key.transpose(-1, -2))  # (B, H, rows, T)
    if table is not None:
        scores = scores + shaw_bias(torch.matmul(query, table.transpose(-1, -2)), start, key.shape[2], left)
    if penalty is not None:
        scores = scores + penalty
    return torch.matmul(scores.softmax(dim=-1), value)


def shaw_bias(per_distance: torch.Tensor, start: torch.Tensor, keys: int, left: int) -> torch.Tensor:
    """(B, H, rows, distances) scores of each row on each clamped distance -> (B, H, rows, keys) bias.

    Pair (row start + r, key j) reads column c(r, j) = clamp(j - start - r, -left, right) + left of row r: in the
    row-major flattened (rows * distances) scores that is element r * distances + c(r, j). So one gather on the
    last axis with that (rows, keys) index builds the bias, each element written once (a skewed table unskewed by
    slices wrote and copied 1.5x the bias, about half of the exported attention's time: benchmarks/NOTES.md,
    "Peers").
    """
    *outer, rows, distances = per_distance.shape
    row = torch.arange(rows, device=per_distance.device)  # (rows,)
    distance = torch.arange(keys, device=per_distance.device) - start - row[:, None]  # (rows, keys): j - (start + r)
    index = row[:, None] * distances + ShawPosition.column(distance, left, distances)  # (rows, keys)
    # index_select of the flat index (an ONNX Gather on the last axis): indexing with the 2-D index itself exports
    # as GatherND between two transposes of the bias
    flat = per_distance.reshape(*outer, rows * distances).index_select(-1, index.reshape(-1))
    return flat.reshape(*outer, rows, keys)


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Within the block, the model's attention traces as `attend_for_export`; the previous form comes back after."""
    previous, attention.EXPORT_FORM = attention.EXPORT_FORM, attend_for_export
    try:
        yield
    finally:
        attention.EXPORT_FORM = previous
