"""SpecAugment span masks (Park et al., 2019), as the Wav2Vec2 family applies them in training.

The number of spans per clip follows the Hugging Face rule (`mask_prob * length / mask_length`, rounded with a
random offset, at least `min_masks`), so training behaves as with `transformers`. Masks are drawn with torch's
random generator instead of NumPy's so that a training run's RNG state is one thing to save and restore.
"""

from __future__ import annotations

import torch


def compute_mask_indices(
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    lengths: torch.Tensor | None = None,
    min_masks: int = 0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Random spans to mask: a bool tensor of `shape` (batch, axis_length), True where masked.

    `lengths` (batch,) limits each row's spans to its valid prefix (right padding); spans never start past
    `length - mask_length`. Overlapping spans make the masked fraction smaller than `mask_prob`.
    """
    batch_size, axis_length = shape
    if mask_length < 1:
        raise ValueError(f"mask_length must be >= 1, got {mask_length}")
    if mask_length > axis_length:
        raise ValueError(
            f"mask_length={mask_length} is longer than the axis to mask ({axis_length}); "
            "lower mask_time_length / mask_feature_length or use longer clips"
        )
    mask = torch.zeros(shape, dtype=torch.bool)
    offset = torch.rand((), generator=generator).item()  # probabilistic rounding of the span count
    row_lengths = [axis_length] * batch_size if lengths is None else [int(n) for n in lengths.tolist()]
    for row, length in enumerate(row_lengths):
        num_spans = max(int(mask_prob * length / mask_length + offset), min_masks)
        num_spans = min(num_spans, axis_length // mask_length, max(length - (mask_length - 1), 0))
        if num_spans == 0:
            continue
        starts = torch.randperm(length - (mask_length - 1), generator=generator)[:num_spans]
        positions = (starts[:, None] + torch.arange(mask_length)).flatten()
        mask[row, positions] = True
    return mask.to(device)
