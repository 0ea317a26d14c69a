"""Chunked attention, what lets a model stream: which keys each query frame may read.

In order: `Chunking` (a chunk size and a left bound, from the config or one training batch's draw) with the
`allowed` mask of a block of query rows, and `chunking_of` (a config's, or None for a full-context model).

Frames are cut into chunks of `size` from the clip's first frame. A query frame in chunk c reads the keys of
chunks c - left .. c (every earlier chunk when left is None) and nothing later, so a chunk's outputs are final as
soon as its last frame arrived: the convolution module only looks left, and Shaw's right distances (+8) stop at
the chunk's end with the keys. For size 2, left 1 (x: the query reads the key):

    key frame     0 1 2 3 4 5
    query 0, 1    x x . . . .     chunk 0
    query 2, 3    x x x x . .     chunk 1
    query 4, 5    . . x x x x     chunk 2: chunk 0 is more than one chunk to the left

The adapter's strided layers keep the same chunks: after a stride s a chunk holds size / s frames
(`after_stride`; config_rules.py refuses sizes the strides do not divide).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from w2vbert.model.config import Wav2Vec2BertConfig


@dataclass(frozen=True)
class Chunking:
    """Which keys a query reads: its own chunk of `size` frames and `left` chunks before it."""

    size: int  # frames per chunk (20 ms frames in the encoder; size / stride after each adapter layer)
    left: int | None = None  # chunks to the left each frame reads; None: all of them

    def allowed(self, start: int, stop: int, keys: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(stop - start, keys) bool: True where query row start + r may read key k."""
        query_chunk = torch.arange(start, stop, device=device)[:, None] // self.size  # (rows, 1)
        key_chunk = torch.arange(keys, device=device)[None, :] // self.size  # (1, keys)
        allowed = key_chunk <= query_chunk
        if self.left is not None:
            allowed &= key_chunk >= query_chunk - self.left
        return allowed

    def context_frames(self) -> int | None:
        """Frames of left context a cache must keep (None: all)."""
        return None if self.left is None else self.left * self.size

    def after_stride(self, stride: int) -> Chunking:
        """The same chunks after a strided layer: size / stride frames each."""
        return Chunking(self.size // stride, self.left)


def chunking_of(config: Wav2Vec2BertConfig) -> Chunking | None:
    """The config's chunks, or None for a full-context model (no `streaming_chunk_size`)."""
    if config.streaming_chunk_size is None:
        return None
    return Chunking(config.streaming_chunk_size, config.streaming_left_chunks)


# ----------------------------------------------------------------------------------------------------- caches
# What a chunked model keeps between chunks when it streams (model/streaming.py feeds them; the modules that
# own each part use them, so the block's recipe is written once). Each `extend` replaces its tensors rather
# than writing into them, so a shallow copy of a cache is a snapshot (the partial results of a chunk not yet
# complete are computed on one and thrown away).
@dataclass
class FrameCache:
    """The last `keep` frames a module read, (B, keep, C), prepended to the next frames it reads."""

    keep: int | None  # frames kept; None: all of them
    frames: torch.Tensor | None = None  # (B, kept, C), starting empty (or as given)
    seen: int = 0  # frames extended with so far

    def extend(self, new: torch.Tensor) -> torch.Tensor:
        """(B, kept + n, C): the kept frames, then `new`; keeps the last `keep` of them for the next call."""
        self.seen += new.shape[1]
        joined = new if self.frames is None else torch.cat([self.frames, new], dim=1)
        if self.keep is None:
            self.frames = joined
        else:
            self.frames = joined[:, joined.shape[1] - min(self.keep, joined.shape[1]):]
        return joined


@dataclass
class AttentionCache:
    """The keys and values (B, H, kept, d) of the left context one attention reads, at most `keep` frames."""

    keep: int | None  # frames of left context (left chunks x chunk size); None: every earlier frame
    key: torch.Tensor | None = None
    value: torch.Tensor | None = None

    def extend(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached keys and values followed by this chunk's (B, H, kept + n, d); keeps the last `keep`.

        Called once per whole chunk: the frames kept are then whole chunks, the ones the next chunk reads."""
        if self.key is not None:
            key, value = torch.cat([self.key, key], dim=2), torch.cat([self.value, value], dim=2)
        start = 0 if self.keep is None else max(0, key.shape[2] - self.keep)
        self.key, self.value = key[:, :, start:], value[:, :, start:]
        return key, value
