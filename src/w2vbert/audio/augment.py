"""Waveform augmentation for training: what a clip may meet outside a clean synthetic corpus.

`Augmentation` says what may happen to a clip each time it is read (a later start, a gain, a noise floor, dither);
`Augmented` wraps a training dataset and applies it. Every draw comes from torch's generator, which the trainer
seeds, saves with each checkpoint and seeds apart in each DataLoader worker, so a resumed run draws what an
uninterrupted one does.

Why: a model trained only on digitally silent pauses writes letters into any pause that is not exact zero (the
demo model read white noise at -90 dBFS as words, and a FLAC that sox had dithered gave 43% WER against 3% for
its source WAV). Time masking (model/spec_augment.py) acts on features and does not teach that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from w2vbert.audio.decode import SAMPLING_RATE

LSB_16BIT = 1.0 / 32768.0  # one step of 16-bit PCM in [-1, 1) samples


@dataclass(frozen=True)
class Augmentation:
    """Per read of a clip, each independently; levels are drawn uniformly in dB."""

    max_offset_ms: float = 40.0  # start 0..this many ms late (leading zeros): clips land anywhere on the 40 ms grid
    gain_db: tuple[float, float] = (-12.0, 6.0)  # gain range; samples are then clipped to [-1, 1] as a file would be
    noise_probability: float = 0.5  # chance of a white-noise floor under the whole clip
    noise_dbfs: tuple[float, float] = (-90.0, -35.0)  # its RMS level, dB relative to full scale
    dither_probability: float = 0.25  # chance of triangular dither of one 16-bit step (what sox adds on writing)

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be in [0, 1], got {value}"
            for name, value in (("noise_probability", self.noise_probability),
                                ("dither_probability", self.dither_probability)) if not 0 <= value <= 1
        ]
        problems += [f"{name} must be (low, high) with low <= high, got {value}"
                     for name, value in (("gain_db", self.gain_db), ("noise_dbfs", self.noise_dbfs))
                     if len(value) != 2 or value[0] > value[1]]
        if self.max_offset_ms < 0:
            problems.append(f"max_offset_ms must be >= 0, got {self.max_offset_ms}")
        if problems:
            raise ValueError("invalid Augmentation: " + "; ".join(problems))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(samples,) float32 -> (offset + samples,) float32, drawn from torch's generator."""
        offset = int(torch.randint(0, int(self.max_offset_ms * SAMPLING_RATE / 1000) + 1, ()))
        out = np.concatenate([np.zeros(offset, np.float32), audio]) * np.float32(10 ** (_uniform(self.gain_db) / 20))
        if _chance(self.noise_probability):
            rms = 10 ** (_uniform(self.noise_dbfs) / 20)
            out += rms * torch.randn(len(out)).numpy()
        if _chance(self.dither_probability):
            # triangular (TPDF) dither: the sum of two uniform draws of one step each, as sox adds it
            out += LSB_16BIT * (torch.rand(len(out)) - torch.rand(len(out))).numpy()
        return np.clip(out, -1.0, 1.0).astype(np.float32)


def _uniform(bounds: tuple[float, float]) -> float:
    low, high = bounds
    return low + (high - low) * float(torch.rand(()))


def _chance(probability: float) -> bool:
    return float(torch.rand(())) < probability


class Augmented(torch.utils.data.Dataset):
    """A dataset of {"audio", "seconds", ...} items (data.SpeechDataset) whose clips pass through `augmentation`
    at each read. Items the dataset gives as None (clips that failed to decode) stay None."""

    def __init__(self, dataset: Any, augmentation: Augmentation) -> None:
        self.dataset, self.augmentation = dataset, augmentation
        mean_offset = augmentation.max_offset_ms / 2000
        self.seconds = [s + mean_offset for s in dataset.seconds]  # for batching by length

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        item = self.dataset[index]
        if item is None:
            return None
        audio = self.augmentation(item["audio"])
        return {**item, "audio": audio, "seconds": len(audio) / SAMPLING_RATE}
