"""Padding as lengths: the one way valid lengths become a boolean mask over frames (or samples)."""

from __future__ import annotations

import torch


def lengths_to_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B,) valid lengths -> (B, frames) bool mask, True on the first `length` frames of each row."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]
