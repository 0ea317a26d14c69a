"""Batches by length: similar-length clips together, each batch capped by padded seconds of audio, not by count.

A batch of ten 2 s clips costs what a batch of one 20 s clip costs, so the cap is what keeps memory flat. Used by
training (the epoch's batches, shared out over ranks) and by corpus runs (inputs sorted into batches).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch


class LengthGroupedBatchSampler(torch.utils.data.Sampler):
    """Batches of similar-length clips, each holding at most `max_batch_seconds` of padded audio.

    Padded seconds = clips x longest clip, which is what memory and compute scale with. Per epoch: lengths are
    jittered by +-`jitter` (so batches differ between epochs), sorted, packed greedily under the cap, and the
    batch order shuffled. Each epoch's batches depend only on (seed, epoch), so a resumed run can skip to a
    position. With `world_size` > 1 every rank sees the same global batches and takes its share
    (`batch[rank::world_size]`); batches then hold at least `world_size` clips, so no rank is ever idle.
    A single clip longer than the cap gets a batch of its own (or of `world_size` clips).
    """

    def __init__(
        self,
        seconds: Sequence[float],
        max_batch_seconds: float,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        jitter: float = 0.1,
    ) -> None:
        if max_batch_seconds <= 0:
            raise ValueError(f"max_batch_seconds must be > 0, got {max_batch_seconds}")
        if max_batch_size is not None and max_batch_size < world_size:
            raise ValueError(f"max_batch_size={max_batch_size} is below world_size={world_size}: ranks would idle")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if len(seconds) < world_size:
            raise ValueError(f"{len(seconds)} examples cannot feed {world_size} ranks")
        self.seconds = [float(s) for s in seconds]
        self.max_batch_seconds = max_batch_seconds
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.jitter = jitter
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's batches; `start_batch` skips the first ones (resuming mid-epoch)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def global_batches(self, epoch: int) -> list[list[int]]:
        """Every rank's batches of `epoch`, whole (before the split between ranks)."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        if self.shuffle:
            keys = [s * (1 + self.jitter * (2 * rng.random() - 1)) for s in self.seconds]
        else:
            keys = self.seconds
        order = sorted(range(len(self.seconds)), key=lambda i: (keys[i], i))
        batches, current, longest = [], [], 0.0
        for index in order:
            length = max(longest, self.seconds[index])
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            over = length * (len(current) + 1) > self.max_batch_seconds
            if current and len(current) >= self.world_size and (full or over):
                batches.append(current)
                current, length = [], self.seconds[index]
            current.append(index)
            longest = length
        short = self.world_size - len(current)
        if current and short > 0:  # too few for every rank: borrow from the previous batch, or join it
            previous = batches[-1]
            if len(previous) - short >= self.world_size:
                current = previous[-short:] + current
                del previous[-short:]
                batches.append(current)
            else:  # the joined batch holds fewer than 2 x world_size clips
                previous.extend(current)
        elif current:
            batches.append(current)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches(self.epoch)[self.start_batch :]:
            yield batch[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self.global_batches(self.epoch)) - self.start_batch


def padded_seconds(batch: Sequence[int], seconds: Sequence[float]) -> float:
    return len(batch) * max(seconds[i] for i in batch)
