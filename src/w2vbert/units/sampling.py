"""Which frames of a corpus go into the k-means sample.

Each frame gets a key in [0, 1), a hash of (file id, frame index, seed): a frame is sampled when its key is below
the corpus's keep fraction, and the sample is cut to its size by keeping the smallest keys. Nothing depends on
which process saw the file, in which order or shard: torchrun ranks, a resumed run and one process draw the same
frames, and a shard holds only its own sampled frames (memory bounded by the sample, not the corpus).

In order: `frame_keys`, `keep_fraction`, `sampled_frames`, `smallest_keys`, `SampleCut` (the sample kept as frames
arrive, from a corpus run's shards or from Ray's actors).
"""

from __future__ import annotations

import hashlib

import numpy as np

FRAMES_PER_SECOND = 50  # one hidden state per 20 ms step of the front end
OVERDRAW = 1.02  # the keep fraction draws 2% more than the sample's size (durations are estimates), cut back after

# splitmix64's constants (Steele, Lea and Flood 2014, "Fast splittable pseudorandom number generators")
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def frame_keys(file_id: str, frames: int, seed: int) -> np.ndarray:
    """(frames,) float64 keys in [0, 1), uniform and independent across files, frames and seeds."""
    base = np.uint64(int.from_bytes(hashlib.blake2b(f"{seed}\0{file_id}".encode(), digest_size=8).digest(), "little"))
    z = base + (np.arange(1, frames + 1, dtype=np.uint64) * _GOLDEN)  # uint64 arithmetic wraps, as splitmix64's
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53  # the top 53 bits: exact in a float64


def keep_fraction(max_frames: int, total_seconds: float) -> float:
    """The fraction of frames to keep so that a corpus of `total_seconds` gives about `max_frames` (all when it
    has fewer)."""
    total = total_seconds * FRAMES_PER_SECOND
    return 1.0 if total <= 0 else min(1.0, OVERDRAW * max_frames / total)


def sampled_frames(file_id: str, frames: int, seed: int, fraction: float) -> np.ndarray:
    """The indices of one file's sampled frames, ascending."""
    return np.flatnonzero(frame_keys(file_id, frames, seed) < fraction)


def smallest_keys(keys: np.ndarray, max_frames: int) -> np.ndarray:
    """Positions of the `max_frames` smallest keys (all when fewer), ascending: the sample cut to its size the same
    way whichever process gathered it."""
    if len(keys) <= max_frames:
        return np.arange(len(keys))
    return np.sort(np.argpartition(keys, max_frames - 1)[:max_frames])


class SampleCut:
    """The frames of smallest keys among those added, `max_frames` at most, in the order of their `order` values
    (input, then frame). Cut as frames arrive, whenever more than twice the sample is held: memory stays within
    about three times the sample, however large the corpus."""

    def __init__(self, max_frames: int) -> None:
        self.max_frames = max_frames
        self.keys: list[np.ndarray] = []
        self.order: list[np.ndarray] = []
        self.parts: list[np.ndarray] = []
        self.held = 0

    def add(self, keys: np.ndarray, order: np.ndarray, frames: np.ndarray) -> None:
        """One input's sampled frames (frames, hidden), their keys and order values."""
        if not len(keys):
            return
        self.keys.append(keys)
        self.order.append(np.asarray(order, np.int64))
        self.parts.append(frames)
        self.held += len(keys)
        if self.held > 2 * self.max_frames:
            self._cut()

    def frames(self) -> np.ndarray:
        """The sample, (frames, hidden) float32 in order; (0, 0) when nothing was added."""
        if not self.parts:
            return np.zeros((0, 0), np.float32)
        self._cut()
        order, frames = self.order[0], self.parts[0]
        if len(order) > 1 and not np.all(order[1:] > order[:-1]):  # added out of order (Ray's batches)
            frames = frames[np.argsort(order, kind="stable")]
        return frames

    def _cut(self) -> None:
        """Everything held made one part: the `max_frames` of smallest keys, in the order they were added."""
        every = np.concatenate(self.keys)
        keep = smallest_keys(every, self.max_frames)  # ascending positions in the concatenation
        out = np.empty((len(keep), self.parts[0].shape[1]), np.float32)
        offset, filled = 0, 0
        for part in self.parts:
            lo, hi = np.searchsorted(keep, [offset, offset + len(part)])  # the kept positions inside this part
            out[filled : filled + hi - lo] = part[keep[lo:hi] - offset]
            offset, filled = offset + len(part), filled + hi - lo
        self.keys, self.order, self.parts = [every[keep]], [np.concatenate(self.order)[keep]], [out]
        self.held = len(keep)
