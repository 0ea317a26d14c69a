"""Audio as the feature extractor takes it -> one zero-padded (batch, samples) float32 waveform batch.

Accepted: one clip (a 1-D array, tensor or list of floats), a list of clips (each 1-D, or 2-D and mixed to mono),
a (batch, channels, samples) array, or a padded (batch, samples) array or tensor with optional `lengths`.
Samples must be float in [-1, 1]; every refusal says what came and what to do.

In order: `batch_waveforms` (the entry) and its two paths (`_from_padded`, `_from_clips`); the clip helpers
(`_as_clip_list`, `_to_mono_tensor`); the checks of non-finite samples (`_check_finite`) and of features that
overflowed (`check_finite_features`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from w2vbert.audio.decode import to_mono
from w2vbert.loading.devices import resolve_device
from w2vbert.utils.padding import lengths_to_mask


def batch_waveforms(
    raw_speech: Any, lengths: Sequence[int] | torch.Tensor | None, device: torch.device | str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, samples) float32 zero-padded waveforms and (batch,) sample counts, on the compute device.

    The device is `device`, else that of the input tensor (the first tensor clip of a list), else the CPU.
    """
    if device is not None:
        # Checked here, in one line, rather than met as an assertion from inside torch's CUDA initialisation.
        device = resolve_device(device)
    if isinstance(raw_speech, (np.ndarray, torch.Tensor)) and raw_speech.ndim == 2:
        return _from_padded(raw_speech, lengths, device)
    if lengths is not None:
        raise ValueError("lengths= goes with a padded (batch, samples) array or tensor, not with a list of clips")
    return _from_clips(_as_clip_list(raw_speech), device)


def _from_padded(
    raw_speech: np.ndarray | torch.Tensor, lengths: Sequence[int] | torch.Tensor | None, device: torch.device | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A (batch, samples) array or tensor, each row valid up to its `lengths` entry (all of it without lengths)."""
    if raw_speech.shape[0] == 0:
        raise ValueError(f"no clips: got a batch of shape {tuple(raw_speech.shape)}; pass at least one clip")
    if raw_speech.shape[1] == 0:  # most likely one clip's (samples, channels) with no channel, not empty clips
        raise ValueError(f"raw_speech of shape {tuple(raw_speech.shape)} is a batch of clips of 0 samples, expected "
                         "(batch, samples) with samples >= 1 (a (samples, channels) clip goes in a list: [clip])")
    padded = torch.as_tensor(raw_speech)
    if not padded.is_floating_point():
        raise TypeError(f"expected float samples in [-1, 1], got a {padded.dtype} array: convert it first")
    device = torch.device(device) if device is not None else padded.device
    padded = padded.to(device=device, dtype=torch.float32)
    batch, length = padded.shape
    if lengths is None:
        counts = torch.full((batch,), length, dtype=torch.long, device=device)
    else:
        counts = torch.as_tensor(lengths, dtype=torch.long).to(device).reshape(-1)
        if counts.shape[0] != batch or bool((counts < 0).any()) or bool((counts > length).any()):
            raise ValueError(
                f"lengths must hold {batch} sample counts in [0, {length}] for input of shape "
                f"{tuple(padded.shape)}, got {counts.tolist()}"
            )
        padded = torch.where(lengths_to_mask(counts, length), padded, 0.0)  # padding must not leak into frames
    _check_finite(padded)
    return padded, counts


def _from_clips(clips: list[Any], device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of any lengths, each mixed to mono, copied into one zero-padded batch."""
    if device is None:
        tensors = [c for c in clips if isinstance(c, torch.Tensor)]
        device = tensors[0].device if tensors else torch.device("cpu")
    device = torch.device(device)
    mono = [_to_mono_tensor(clip, index) for index, clip in enumerate(clips)]
    counts = torch.tensor([m.shape[0] for m in mono], dtype=torch.long)
    padded = torch.empty(len(mono), int(counts.max()) if len(mono) else 0, dtype=torch.float32)
    for row, clip in enumerate(mono):  # each sample written once: a zero fill first would double the passes
        padded[row, : clip.shape[0]] = clip
        padded[row, clip.shape[0] :] = 0.0
    padded, counts = padded.to(device), counts.to(device)
    _check_finite(padded)
    return padded, counts


def _as_clip_list(raw_speech: Any) -> list[Any]:
    """One clip or a list of clips -> a list of clips (each still an array, tensor or list)."""
    if isinstance(raw_speech, (np.ndarray, torch.Tensor)):
        if raw_speech.ndim == 1:
            return [raw_speech]
        if raw_speech.ndim == 3:
            if raw_speech.shape[0] == 0:
                raise ValueError(f"no clips: got a batch of shape {tuple(raw_speech.shape)}; pass at least one clip")
            return list(raw_speech)  # (batch, channels, samples) or (batch, samples, channels)
        raise ValueError(
            f"expected audio of shape (samples,), (batch, samples) or (batch, channels, samples), "
            f"got {tuple(raw_speech.shape)}"
        )
    if isinstance(raw_speech, (list, tuple)):
        if len(raw_speech) == 0:
            raise ValueError("no clips: got an empty list; pass at least one clip")
        if isinstance(raw_speech[0], (int, float, np.number)):
            return [raw_speech]  # a list of samples is one clip, as in transformers
        return list(raw_speech)
    raise TypeError(
        f"expected audio as a numpy array, a torch tensor, a list of floats or a list of clips, got "
        f"{type(raw_speech).__name__}; decode files with w2vbert.load_audio first"
    )


def _to_mono_tensor(clip: Any, index: int) -> torch.Tensor:
    """One clip -> (samples,) float32 CPU tensor; a 2-D clip is mixed to mono (see `decode.to_mono`)."""
    if isinstance(clip, torch.Tensor):
        clip = clip.detach().cpu()
        if clip.ndim == 1 and clip.is_floating_point():
            return clip.float()
        clip = clip.numpy()
    array = np.asarray(clip)
    if array.dtype.kind not in "fiu" or array.dtype.kind in "iu" and array.size and array.ndim > 0:
        if array.dtype.kind in "iu":
            raise TypeError(
                f"clip {index}: expected float samples in [-1, 1], got {array.dtype}; divide 16-bit integer "
                "audio by 32768 or use w2vbert.load_audio"
            )
        raise TypeError(f"raw_speech clip {index}: expected float samples, got an array of dtype {array.dtype}: pass "
                        "each clip as a float array (a ragged batch as a list of arrays)")
    if array.ndim == 2:
        array = to_mono(array)
    elif array.ndim != 1:
        raise ValueError(f"clip {index}: expected a 1-D waveform (or 2-D multi-channel), got shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _check_finite(padded: torch.Tensor) -> None:
    # min and max propagate NaN and are +-inf when any sample is: one pass, where isfinite(...).all() takes several.
    if padded.numel() == 0 or all(math.isfinite(v) for v in torch.aminmax(padded)):
        return
    finite = torch.isfinite(padded)
    if not bool(finite.all()):
        bad_rows = (~finite).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(
            f"audio clip(s) {bad_rows} contain NaN or infinite samples; clean or drop them (e.g. np.nan_to_num) "
            "before extracting features"
        )


def check_finite_features(features: torch.Tensor, frame_counts: torch.Tensor, waveforms: torch.Tensor) -> None:
    """Refuse clips whose log-mel overflowed although their samples are finite (`_check_finite` saw to those).

    features: (batch, frames, mels) before normalisation; frames past a clip's count are ignored (they are padding).
    For samples in [-1, 1] the float32 power spectrum stays below ~1e15 and the log is floored at FLT_EPSILON, so
    features can only become inf (and NaN after normalisation) for samples beyond ~1e12 in magnitude.
    """
    # One aminmax pass, as in `_check_finite`; the per-clip search runs only when something is wrong.
    if features.numel() == 0 or all(math.isfinite(v) for v in torch.aminmax(features)):
        return
    counts = frame_counts.tolist()
    bad = [row for row, count in enumerate(counts) if not bool(torch.isfinite(features[row, :count]).all())]
    if bad:
        peaks = ", ".join(f"{float(waveforms[row].abs().max()):.3g}" for row in bad)
        raise ValueError(
            f"audio clip(s) {bad} give inf/NaN features: their samples reach a magnitude of {peaks}, far outside "
            "[-1, 1], and overflow the float32 power spectrum; scale the audio to [-1, 1] (divide 16-bit PCM by "
            "32768) or decode it with w2vbert.load_audio"
        )
