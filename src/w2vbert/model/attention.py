"""Self-attention with a per-pair position bias in memory linear in the clip: what `Wav2Vec2BertSelfAttention` calls.

In this file, in order:
- `ShawPosition`, `RelativePosition`: the position term of each scheme, as the attention module hands it over.
- `attend`: picks the path for a call: plain fused attention, the bias path, or the key-regions path (or, under
  `torch.onnx.export`, the form `w2vbert.export.attention` installs in `EXPORT_FORM`; the model never imports
  the exporter). A chunked model's call (`chunks`, model/chunking.py) takes the fused path with a mask or the bias
  path, whose row blocks add the chunk mask; the key-regions and export forms take no chunk mask.
- `attend_in_chunks` (the bias path): chunks of query rows, each with its position bias built from the few
  distinct distances, never as a (frames, frames, head_dim) tensor.
- `attend_by_regions`: Shaw attention on long CPU clips, where most keys lie beyond the clamped distances.
- `attend_recent`: the queries of the newest frames against cached keys (streaming, model/streaming.py).
- `position_bias`: the (B, H, rows, keys) bias of a chunk of rows, read through strided views.
- `shifted_rows`: the relative-shift view those biases are made of.

Contract of every function: query, key, value are (B, H, T, d); `valid` is (B, T) bool, True on real frames, or
None. Padded keys get the most negative finite score (as transformers), so no row is ever all -inf and padded
query rows stay finite. Outputs are (B, H, T, d), and the probabilities (B, H, T, T) when asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from w2vbert.loading.devices import cpu_features
from w2vbert.model.chunking import Chunking

# Query rows per chunk are chosen so one chunk's (batch, heads, rows, frames) bias stays under this many elements
# (128 MB in fp32): attention memory then grows linearly with the clip, not quadratically.
ATTENTION_CHUNK_ELEMENTS = 2**25
# ... and on CPU at most this many rows: a smaller bias stays in cache between being built and read
# (benchmarks/NOTES.md, "attention chunks").
ATTENTION_CHUNK_ROWS_CPU = 256
# CPU flash attention that also returns each row's log-sum-exp, which merging partial attentions needs (an aten
# op of PyTorch >= 2.2 behind F.scaled_dot_product_attention on CPU); without it the bias path serves alone.
FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
# The attention a traced graph can hold (no length-dependent Python, no strided views): set by
# w2vbert.export.attention while `export_onnx` traces, None otherwise.
EXPORT_FORM: Callable[..., torch.Tensor] | None = None


@dataclass(frozen=True)
class ShawPosition:
    """Shaw et al. (2018), W2v-BERT 2.0's scheme: pair (i, j) adds q_i . table[clamp(j - i, -left, right) + left].

    The term's query is the attention query itself, which is what lets far keys fold their one embedding into the
    key (`attend_by_regions`).
    """

    table: torch.Tensor  # (left + right + 1, d): one embedding per clamped distance -left .. +right, unscaled
    left: int  # distances further left than -left read table[0]; further right than +right read table[-1]

    @staticmethod
    def column(distance: torch.Tensor, left: int, distances: int) -> torch.Tensor:
        """The table column of distance j - i: clamp(distance, -left, right) + left, where right = distances-1-left."""
        return distance.clamp(-left, distances - 1 - left) + left


@dataclass(frozen=True)
class RelativePosition:
    """Transformer-XL (Dai et al., 2019): pair (i, j) adds (q_i + v) . table[(T - 1) - i + j]."""

    table: torch.Tensor  # (H, 2T - 1, d): projected sinusoids of the distances T-1 down to -(T-1)
    query: torch.Tensor  # (B, H, T, d): q + v, the query of the position term (the content term's is q + u)


Position = ShawPosition | RelativePosition


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    position: Position | None = None,
    valid: torch.Tensor | None = None,
    scale: float,
    dropout_p: float = 0.0,
    output_attentions: bool = False,
    explicit: bool = False,
    chunks: Chunking | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention of every query over the valid keys, plus the position term: (output, probabilities or None).

    `explicit` computes the softmax in plain ops (attn_implementation="eager") instead of the fused kernels;
    `output_attentions` returns the probabilities (and implies one chunk of all rows); `chunks` keeps each query to
    the keys of its chunk and the chunks left of it (model/chunking.py).
    """
    if torch.onnx.is_in_onnx_export():  # a traced graph: no length-dependent Python, no strided views
        if chunks is not None:
            raise RuntimeError("a chunked (streaming) model cannot be exported to ONNX: its attention mask is not "
                               "in the exported form; export a full-context model")
        if EXPORT_FORM is None:
            raise RuntimeError(
                "W2v-BERT attention is traced for ONNX only through w2vbert.export.onnx.export_onnx (or inside "
                "w2vbert.export.attention.installed()), which gives it a form a graph can hold"
            )
        return EXPORT_FORM(query, key, value, position=position, valid=valid, scale=scale), None
    if position is None and not output_attentions and not explicit:
        if chunks is not None:
            mask = chunk_penalty(chunks, valid, 0, query.shape[2], query.shape[2], query)  # (B|1, 1, T, T)
            return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout_p), None
        key_mask = None if valid is None else valid[:, None, None, :]  # (B, 1, 1, T): padded keys out
        return F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, dropout_p=dropout_p), None
    rows = chunk_rows(query, output_attentions)
    if chunks is None and uses_key_regions(query, position, rows, dropout_p=dropout_p,
                                           output_attentions=output_attentions, explicit=explicit):
        return attend_by_regions(query, key, value, position=position, valid=valid, scale=scale, rows=rows), None
    return attend_in_chunks(query, key, value, position=position, valid=valid, scale=scale, rows=rows,
                            dropout_p=dropout_p, output_attentions=output_attentions, explicit=explicit,
                            chunks=chunks)


def chunk_rows(query: torch.Tensor, output_attentions: bool = False) -> int:
    """Query rows per chunk: all of them when the probabilities are returned, else as ATTENTION_CHUNK_* allow."""
    batch, heads, frames, _ = query.shape
    if output_attentions:
        return frames
    rows = max(1, ATTENTION_CHUNK_ELEMENTS // (batch * heads * frames))
    return min(rows, ATTENTION_CHUNK_ROWS_CPU) if query.device.type == "cpu" else rows


def uses_key_regions(
    query: torch.Tensor,
    position: Position | None,
    rows: int,
    *,
    dropout_p: float = 0.0,
    output_attentions: bool = False,
    explicit: bool = False,
) -> bool:
    """Whether Shaw attention splits the keys into regions (`attend_by_regions`): CPU inference, fused kernels,
    and clips long enough that most keys lie beyond the clamped distances of a chunk: from 2 x (rows +
    distances) frames on (658 for W2v-BERT 2.0, 13 s), where it starts paying (benchmarks/NOTES.md, "key regions").
    Training (autograd), dropout and returned probabilities keep the bias path."""
    return (
        isinstance(position, ShawPosition) and FLASH_CPU is not None and query.device.type == "cpu"
        and not explicit and not output_attentions and dropout_p == 0.0
        and not (torch.is_grad_enabled() and query.requires_grad)
        and query.shape[2] >= 2 * (rows + position.table.shape[0])
    )


def plain_softmax_pays(query: torch.Tensor, dropout_p: float) -> bool:
    """Whether the bias path runs softmax(q k^T + bias) v as two matmuls and a softmax instead of the fused kernel:
    bfloat16 inference on CPU, where the fused kernel ran the bias path's attention at 90-112 GFLOP/s and each of
    the two bf16 matmuls runs at 330-370 (AVX512-BF16, 10 s clips): the encoder 5-6% faster at 1 and 4 clips,
    agreeing with float32 as well (benchmarks/NOTES.md, "bf16 attention").
    float32 keeps the fused kernel, which is as fast there and holds no (rows, keys) score tensor; so do CPUs with
    AMX, where the fused kernel can run its products on the AMX tiles and this was not measured."""
    return (
        query.device.type == "cpu" and query.dtype == torch.bfloat16 and dropout_p == 0.0
        and not (torch.is_grad_enabled() and query.requires_grad)
        and not cpu_features()["amx_bf16"]
    )


def key_penalty(valid: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, 1, 1, T) additive score mask: 0 on valid keys, the most negative finite value on padded ones."""
    if valid is None:
        return None
    penalty = torch.zeros(valid.shape, dtype=dtype, device=valid.device)
    return penalty.masked_fill(~valid, torch.finfo(dtype).min)[:, None, None, :]


def chunk_penalty(
    chunks: Chunking, valid: torch.Tensor | None, start: int, stop: int, keys: int, like: torch.Tensor
) -> torch.Tensor:
    """(B or 1, 1, stop - start, keys) additive score mask of query rows start..stop-1: 0 where a row may read a
    key (its chunk or one of the chunks it sees to the left, and a valid key), the most negative finite value
    elsewhere. One mask for both rules: two added minima would overflow to -inf and a row of -inf gives NaN."""
    allowed = chunks.allowed(start, stop, keys, like.device)[None, None]  # (1, 1, rows, keys)
    if valid is not None:
        allowed = allowed & valid[:, None, None, :]  # (B, 1, rows, keys)
    penalty = torch.zeros(allowed.shape, dtype=like.dtype, device=like.device)
    return penalty.masked_fill(~allowed, torch.finfo(like.dtype).min)


def attend_in_chunks(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    position: Position | None = None,
    valid: torch.Tensor | None = None,
    scale: float,
    rows: int,
    dropout_p: float = 0.0,
    output_attentions: bool = False,
    explicit: bool = False,
    chunks: Chunking | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The bias path: `rows` query rows at a time against all keys, each chunk with its own (B, H, rows, T) bias
    (the chunk mask of those rows added where `chunks` is given)."""
    frames = query.shape[2]
    penalty = key_penalty(valid, query.dtype) if chunks is None else None
    bias_query = position.query if isinstance(position, RelativePosition) else query
    outputs, probabilities = [], []
    plain = None  # the bias path's softmax in plain ops, its keys (transposed) and values laid out once for all rows
    if not (output_attentions or explicit) and plain_softmax_pays(query, dropout_p):
        plain = key.transpose(2, 3).contiguous(), value.contiguous()
    for start in range(0, frames, rows):
        stop = min(start + rows, frames)
        bias = None
        if position is not None:
            bias = position_bias(position, bias_query[:, :, start:stop], row_offset=start, keys=frames, scale=scale)
        if chunks is not None:
            penalty = chunk_penalty(chunks, valid, start, stop, frames, query)  # (B|1, 1, rows, T)
        if penalty is not None:
            bias = penalty if bias is None else bias + penalty  # not in place: bias may be a view
        if plain is not None:
            scores = torch.matmul(query[:, :, start:stop] * scale, plain[0])
            if bias is not None:
                scores += bias
            outputs.append(torch.matmul(scores.softmax(dim=-1), plain[1]))
        elif output_attentions or explicit:
            scores = torch.matmul(query[:, :, start:stop], key.transpose(2, 3)) * scale
            if bias is not None:
                scores = scores + bias
            weights = F.dropout(scores.softmax(dim=-1), p=dropout_p, training=dropout_p > 0)
            outputs.append(torch.matmul(weights, value))
            probabilities.append(weights)
        else:
            outputs.append(F.scaled_dot_product_attention(
                query[:, :, start:stop], key, value, attn_mask=bias, dropout_p=dropout_p, scale=scale
            ))
    output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    if not output_attentions:
        return output, None
    # One chunk (always, when the probabilities are asked for): returned as computed, so that their gradient is
    # the one the output propagates (a copy made by torch.cat would be outside the graph: .grad stays None).
    return output, probabilities[0] if len(probabilities) == 1 else torch.cat(probabilities, dim=2)


def attend_by_regions(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    position: ShawPosition,
    valid: torch.Tensor | None = None,
    scale: float,
    rows: int,
) -> torch.Tensor:
    """Shaw attention without a (rows, T) bias, for inference on long clips (CPU flash attention).

    For a chunk of query rows, every key further left than `left` from all of its rows reads the same distance
    embedding e_left. Shaw's position term uses the attention query itself, so that key's score q.k + q.e_left is
    q.(k + e_left): those keys are plain attention over keys shifted by e_left (under Transformer-XL the term's
    query q + v differs from the content's q + u, and this would not hold). Likewise right of the band with
    e_right. Only the band between them, rows + distances - 1 keys, gets a bias. The three partial attentions
    merge by their log-sum-exp, exactly: each part's share of a row's probability is its softmax weight.
    """
    frames = query.shape[2]
    left, table = position.left, position.table
    right = table.shape[0] - 1 - left
    penalty = key_penalty(valid, query.dtype)
    key_far_left, key_far_right = key + table[0], key + table[-1]  # (B, H, T, d)

    def penalty_of(first: int, end: int) -> torch.Tensor | None:
        return None if penalty is None else penalty[..., first:end]

    outputs = []
    for start in range(0, frames, rows):
        stop = min(start + rows, frames)
        chunk = query[:, :, start:stop]  # (B, H, rows, d)
        # Keys band_start .. band_stop - 1 are within the clamped distances of some row of the chunk.
        band_start, band_stop = max(0, start - left), min(frames, stop + right)
        bias = position_bias(position, chunk, row_offset=start - band_start, keys=band_stop - band_start, scale=scale)
        if penalty is not None:
            bias = bias + penalty_of(band_start, band_stop)
        band = slice(band_start, band_stop)
        parts = [FLASH_CPU(chunk, key[:, :, band], value[:, :, band], attn_mask=bias, scale=scale)]
        if band_start > 0:
            parts.append(FLASH_CPU(chunk, key_far_left[:, :, :band_start], value[:, :, :band_start],
                                   attn_mask=penalty_of(0, band_start), scale=scale))
        if band_stop < frames:
            parts.append(FLASH_CPU(chunk, key_far_right[:, :, band_stop:], value[:, :, band_stop:],
                                   attn_mask=penalty_of(band_stop, frames), scale=scale))
        log_sums = torch.stack([log_sum for _, log_sum in parts])  # (parts, B, H, rows), float32
        weights = torch.softmax(log_sums, dim=0)[..., None]  # each part's share of the row's probability
        merged = sum(weight * part.float() for weight, (part, _) in zip(weights, parts, strict=True))
        outputs.append(merged.to(query.dtype))
    return torch.cat(outputs, dim=2)


def attend_recent(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, position: Position | None, scale: float
) -> torch.Tensor:
    """The newest frames' queries (B, H, n, d) over keys (B, H, K, d) whose last n are those frames' own (the
    earlier ones cached): every key is readable, Shaw's distances counted from each query's place among the keys.
    A chunked model's chunk reads exactly its cached left context and itself (model/streaming.py)."""
    rows, keys = query.shape[2], key.shape[2]
    bias = None
    if isinstance(position, ShawPosition):
        bias = position_bias(position, query, row_offset=keys - rows, keys=keys, scale=scale)  # (B, H, n, K)
    elif position is not None:
        raise ValueError("streaming attention takes Shaw's clamped distances or no position term")
    return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scale)


def position_bias(
    position: Position, query: torch.Tensor, *, row_offset: int, keys: int, scale: float
) -> torch.Tensor:
    """Score bias of a chunk of query rows against `keys` consecutive keys: (B, H, rows, keys).

    `query` is the position term's query for the chunk's rows (B, H, rows, d); `row_offset` is the index of the
    chunk's first row minus the index of the first key (so key k of the result is `row_offset` frames after or
    before row 0 of the chunk). Each query is projected on the distinct distance embeddings once
    (B, H, rows, distances); the pairs then read those scores through strided views, with no (rows, keys) index
    tensor: a gather through an expanded int64 index cost more than the attention itself (benchmarks/NOTES.md).

    Shaw: pair (row r, key k) reads distance clamp(k - row_offset - r, -left, right): per row, the left-most
    distance for every key left of a band of `distances` keys, the band, then the right-most distance. Stored
    skewed, row r shifted right by rows - 1 - r, those three parts fill the same columns in every row, so the
    buffer is three broadcast copies (a torch.where over the (rows, keys) pattern cost 10x more), and the bias is
    its unskewing view. For left = 2, right = 1 (table columns 0..3), 3 rows from row_offset 0, 6 keys; each cell
    names the table column it holds (the scores differ per row, the columns do not):

        skewed column:  0 1 2 3 4 5 6 7 8 9 10     band = row_offset + rows - 1 = 2
        every row:      0 0 0 1 2 3 3 3 3 3 3      width = keys + distances - 1 + rows - 1 = 11
        row 0 reads columns 4..9 -> 2 3 3 3 3 3    (keys 0..5 at distances 0..5, clamped to 1 from 1 on)
        row 1 reads columns 3..8 -> 1 2 3 3 3 3    (distances -1..4)
        row 2 reads columns 2..7 -> 0 1 2 3 3 3    (distances -2..3)

    Row r starts at column rows - 1 - r + left: `shifted_rows`.
    """
    # Scale the (distances, d) table, not the (B, H, rows, distances) product: far less to multiply.
    per_distance = torch.matmul(query, (position.table * scale).transpose(-1, -2))  # (B, H, rows, distances)
    *outer, rows, distances = per_distance.shape
    if isinstance(position, RelativePosition):
        # The table runs over distances T-1 down to -(T-1) (T = keys), and pair (i, j) reads column
        # (T-1) - i + j: stepping one row down shifts the row by one column (the relative-shift view).
        return shifted_rows(per_distance, keys, keys - 1 - row_offset)
    band = row_offset + rows - 1  # skewed column where every row's band starts
    width = keys + distances - 1 + rows - 1
    skewed = per_distance.new_empty(*outer, rows, width)  # (B, H, rows, width)
    skewed[..., :band] = per_distance[..., :1]  # broadcast copies (torch.cat of expanded parts is 20x slower)
    skewed[..., band : band + distances] = per_distance
    skewed[..., band + distances :] = per_distance[..., -1:]
    return shifted_rows(skewed, keys, rows - 1 + position.left)


def shifted_rows(table: torch.Tensor, columns: int, first: int) -> torch.Tensor:
    """(..., rows, columns) whose row r is `table`'s row r from column `first - r` on: each row starts one
    column further left than the row above (the relative-shift view, no copy on CPU).

    CUDA's attention kernels fail on a mask with rows so unaligned (H100, bf16: cudaErrorMisalignedAddress), so
    GPUs get a contiguous copy, cheap there; CPU kernels read the view as it is.
    """
    *outer, rows, _ = table.shape
    strides = table.stride()
    view = table.as_strided(
        (*outer, rows, columns), (*strides[:-2], strides[-2] - strides[-1], strides[-1]),
        table.storage_offset() + first * strides[-1],
    )
    return view if view.device.type == "cpu" else view.contiguous()
