"""How the attention of every Conformer block knows where frames are: the three position schemes' shared inputs.

In order: `ClampedDistances` (Shaw's "relative_key", W2v-BERT 2.0's), `Sinusoids` (Transformer-XL's "relative"),
`RotaryAngles` ("rotary"), `PositionInputs` (any of them), `position_inputs` (what the encoder computes once per
forward for the config's scheme), `apply_rotary`, and `relative_sinusoids`. The attention module picks its
position term by the type of what it is handed (model/conformer.py), so the scheme's name is read once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from w2vbert.model.config import Wav2Vec2BertConfig


@dataclass(frozen=True)
class ClampedDistances:
    """Shaw's scheme ("relative_key"): each layer embeds the distances, clamped to [-left, right]; nothing shared."""

    left: int


@dataclass(frozen=True)
class Sinusoids:
    """Transformer-XL's scheme ("relative"): sinusoids of the distances T-1 down to -(T-1), projected per layer."""

    table: torch.Tensor  # (2T - 1, C)


@dataclass(frozen=True)
class RotaryAngles:
    """The rotary scheme ("rotary"): the cos and sin of each frame's angles, applied per layer."""

    cos: torch.Tensor  # (T, head_dim)
    sin: torch.Tensor  # (T, head_dim)


PositionInputs = ClampedDistances | Sinusoids | RotaryAngles


def position_inputs(config: Wav2Vec2BertConfig, hidden_states: torch.Tensor) -> PositionInputs | None:
    """What the attention of every layer shares for the config's position scheme: the one place its name is read
    on the way through the model (the attention picks its term by the type of this)."""
    kind, frames, device = config.position_embeddings_type, hidden_states.shape[1], hidden_states.device
    if kind == "relative_key":
        return ClampedDistances(config.left_max_position_embeddings)
    if kind == "relative":
        return Sinusoids(relative_sinusoids(frames, config.hidden_size, device).to(hidden_states.dtype))
    if kind == "rotary":
        head_dim = config.hidden_size // config.num_attention_heads
        exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
        inv_freq = 1.0 / (config.rotary_embedding_base**exponents)
        angles = torch.arange(frames, device=device).float()[:, None] * inv_freq  # (T, d/2)
        angles = torch.cat((angles, angles), dim=-1)  # (T, d)
        return RotaryAngles(angles.cos().to(hidden_states.dtype), angles.sin().to(hidden_states.dtype))
    return None


def apply_rotary(hidden_states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rotate each head's halves of (B, T, C) by position-dependent angles; cos/sin are (T, head_dim)."""
    batch, frames, channels = hidden_states.shape
    heads = hidden_states.view(batch, frames, num_heads, channels // num_heads)
    first, second = heads.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    heads = heads * cos[None, :, None, :] + rotated * sin[None, :, None, :]
    return heads.reshape(batch, frames, channels)


def relative_sinusoids(frames: int, channels: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sinusoids of the distances frames-1, ..., 0, ..., -(frames-1): (2*frames - 1, channels), float32."""
    distance = torch.arange(frames - 1, -frames, -1, device=device, dtype=torch.int64).float()[:, None]
    div_term = torch.exp(
        torch.arange(0, channels, 2, dtype=torch.int64, device=device).float() * -(math.log(10000.0) / channels)
    )
    table = torch.zeros(2 * frames - 1, channels, device=device)
    table[:, 0::2] = torch.sin(distance * div_term)
    table[:, 1::2] = torch.cos(distance * div_term)
    return table
