"""The one contract of every forward's inputs: what `check_inputs` accepts, and the `Padding` it makes of a mask.

In order: `Padding` (which frames of a batch are real), `check_inputs` (the features, then the mask), and the two
checks it is made of, `check_features` and `mask_padding`.

An attention mask is any 0/1 (or bool) tensor of the features' (batch, frames), as transformers takes it. The
usual one, each clip's frames first and then padding (what the feature extractor pads), is told apart by one
comparison and keeps the fast path: lengths, and the adapter reading each clip's frames as it had them alone. Any
other mask (holes, left padding) is computed as transformers computes it: attention and the convolutions skip
the frames the mask zeroes, and the lengths the heads and the adapter count are the mask's sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from w2vbert.utils.padding import lengths_to_mask


@dataclass(frozen=True)
class Padding:
    """Which frames of a batch are real, as a forward reads them."""

    lengths: torch.Tensor  # (B,) long: real frames per clip, the mask's sums (what transformers' heads count)
    valid: torch.Tensor  # (B, T) bool: True on real frames; attention and the convolutions read only these
    right_padded: bool  # valid == lengths_to_mask(lengths): each clip's frames, then padding (the fast path)


def check_inputs(
    input_features: torch.Tensor, attention_mask: torch.Tensor | None, dim: int, dtype: torch.dtype
) -> Padding | None:
    """Validate a forward's inputs (features of `dim` channels in `dtype`); the mask's `Padding`, or None when
    nothing is padded (no mask, or one of all ones: the masking work is then skipped)."""
    check_features(input_features, dim, dtype)
    if attention_mask is not None and not isinstance(attention_mask, torch.Tensor):
        raise TypeError(
            f"attention_mask must be a torch.Tensor of shape (batch, frames), got {type(attention_mask).__name__}: "
            "use the feature extractor's return_tensors='pt', or torch.as_tensor(mask)"
        )
    batch, frames, _ = input_features.shape
    if torch.onnx.is_in_onnx_export():
        # A traced graph keeps no value checks (export/onnx.py checks its example inputs before tracing) and
        # always masks, right-padded: whether a batch is padded is only known at run time.
        if attention_mask is None:
            return None
        lengths = attention_mask.long().sum(-1)
        return Padding(lengths, lengths_to_mask(lengths, frames), right_padded=True)
    if batch == 0 or frames == 0:
        raise ValueError(f"input_features is empty: shape {tuple(input_features.shape)}")
    if not torch.isfinite(input_features).all():
        bad = (~torch.isfinite(input_features)).flatten(1).any(-1).nonzero().flatten().tolist()
        raise ValueError(f"input_features has NaN or inf values (batch rows {bad})")
    return None if attention_mask is None else mask_padding(attention_mask, input_features)


def check_features(input_features: torch.Tensor, dim: int, dtype: torch.dtype) -> None:
    """A floating (batch, frames, dim) tensor in the model's `dtype` (or under autocast)."""
    if not isinstance(input_features, torch.Tensor):
        raise TypeError(f"input_features must be a torch.Tensor, got {type(input_features).__name__}")
    if input_features.ndim != 3 or input_features.shape[-1] != dim:
        hint = ""
        if input_features.ndim == 2 and input_features.shape[-1] == dim:
            hint = ": add the batch dimension with input_features[None]"
        elif input_features.shape[-1] == dim // 2:
            hint = f": did you pass the {dim // 2}-bin fbank before stacking pairs of frames?"
        elif input_features.ndim <= 2:
            hint = ": pass features from the feature extractor, not raw audio"
        raise ValueError(
            f"expected input_features of shape (batch, frames, {dim}), got {tuple(input_features.shape)}{hint}"
        )
    if not input_features.is_floating_point():
        raise TypeError(f"input_features must be floating point, got {input_features.dtype}")
    if input_features.dtype != dtype and not torch.is_autocast_enabled(input_features.device.type):
        raise TypeError(
            f"input_features are {input_features.dtype} but the model computes in {dtype}: pass "
            "input_features.to(model.dtype) (the pipelines do)"
        )


def mask_padding(attention_mask: torch.Tensor, input_features: torch.Tensor) -> Padding | None:
    """The `Padding` of a 0/1 mask of the features' (batch, frames); None when it pads nothing."""
    batch, frames, _ = input_features.shape
    if tuple(attention_mask.shape) != (batch, frames):
        raise ValueError(
            f"attention_mask must have shape (batch, frames) = {(batch, frames)} like input_features, "
            f"got {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.to(input_features.device)
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError("attention_mask must hold only 0/1 (or False/True)")
    lengths = mask.long().sum(-1)
    if (lengths == 0).any():
        rows = (lengths == 0).nonzero().flatten().tolist()
        raise ValueError(f"attention_mask rows {rows} are all padding: every clip needs at least one frame")
    if bool((lengths == frames).all()):
        return None
    valid = mask.bool()
    return Padding(lengths, valid, right_padded=torch.equal(lengths_to_mask(lengths, frames), valid))
