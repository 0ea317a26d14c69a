"""The Kaldi fbank of W2v-BERT 2.0's front end, batched in PyTorch: the signal processing only, no I/O.

Pipeline, per clip (the Hugging Face `SeamlessM4TFeatureExtractor`, itself a numpy port of Kaldi's fbank):
    waveform * 2**15 -> 25 ms frames every 10 ms (snip edges) -> remove DC -> pre-emphasis 0.97 -> povey window
    -> |rfft(512)|^2 -> 80 triangular mel filters (20 Hz .. Nyquist, Kaldi mel scale) -> log (floor FLT_EPSILON)
    -> per mel bin: (x - mean) / sqrt(var(ddof=1) + 1e-7) over the clip's frames
(`features.SeamlessM4TFeatureExtractor` then pads to an even frame count and stacks frame pairs: (frames // 2, 160).)

In order: the constants (units in their comments); the tables (`povey_window`, `kaldi_mel_filters`, `num_frames`,
`FbankTables`, one set per device); `log_mel_fbank`, (batch, samples) -> (batch, frames, mels); and
`normalize_per_bin`, the per-clip statistics over each clip's own valid frames, so that a clip gives the same
numbers alone and in a batch.
"""

from __future__ import annotations

import math

import torch

from w2vbert.audio.decode import SAMPLING_RATE

FRAME_LENGTH = 400  # samples: Kaldi's 25 ms window at 16 kHz
HOP_LENGTH = 160  # samples: Kaldi's 10 ms frame shift at 16 kHz
FFT_LENGTH = 512  # Kaldi rounds the window up to a power of two
NUM_FREQUENCY_BINS = FFT_LENGTH // 2 + 1  # 257 one-sided rfft bins
PREEMPHASIS = 0.97  # Kaldi default preemphasis-coefficient
INT16_SCALE = 2.0**15  # Kaldi reads 16-bit integer samples; float audio in [-1, 1] is scaled up to that range
MEL_FLOOR = 1.192092955078125e-07  # FLT_EPSILON: Kaldi's floor before the log (value as written in transformers)
LOW_FREQUENCY = 20.0  # Hz, Kaldi default low-freq of the mel filters; the high edge is Nyquist
NORM_EPSILON = 1e-7  # transformers adds this under the square root of the variance; fairseq2 adds nothing
FRAMES_PER_BLOCK = 1024  # frames of the whole batch per step: ~4 MB of float64 frames, which stay in cache


def povey_window(length: int = FRAME_LENGTH, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Kaldi's povey window, a symmetric Hann window to the power 0.85: (length,) float64. Zero at both ends."""
    n = torch.arange(length, dtype=torch.float64, device=device)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))) ** 0.85


def kaldi_mel_filters(
    num_mel_bins: int = 80,
    sampling_rate: int = SAMPLING_RATE,
    *,
    low_frequency: float = LOW_FREQUENCY,
    high_frequency: float | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Kaldi's triangular mel filters over the 257 rfft bins: (257, num_mel_bins) float64.

    Triangles are linear in the mel domain (mel = 1127 ln(1 + f / 700)), with edges equally spaced in mel from
    `low_frequency` to `high_frequency` (Nyquist by default), as Kaldi's MelBanks and transformers' "kaldi" scale.
    """
    high_frequency = sampling_rate / 2 if high_frequency is None else high_frequency

    def mel(hz: torch.Tensor) -> torch.Tensor:
        return 1127.0 * torch.log1p(hz / 700.0)

    edges = torch.linspace(
        float(mel(torch.tensor(low_frequency, dtype=torch.float64))),
        float(mel(torch.tensor(float(high_frequency), dtype=torch.float64))),
        num_mel_bins + 2,
        dtype=torch.float64,
        device=device,
    )
    bin_hz = torch.arange(NUM_FREQUENCY_BINS, dtype=torch.float64, device=device) * (sampling_rate / FFT_LENGTH)
    bin_mel = mel(bin_hz)[:, None]  # (257, 1)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel - left) / (center - left)
    falling = (right - bin_mel) / (right - center)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)  # (257, num_mel_bins)


def num_frames(num_samples: int | torch.Tensor) -> int | torch.Tensor:
    """Kaldi frames (snip edges) in `num_samples`: 0 below one 400-sample window, else 1 + (n - 400) // 160."""
    if isinstance(num_samples, torch.Tensor):
        return torch.where(num_samples >= FRAME_LENGTH, 1 + (num_samples - FRAME_LENGTH).clamp(min=0) // HOP_LENGTH, 0)
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // HOP_LENGTH


class FbankTables:
    """The constant tensors of the fbank on one device (built once per device, then reused)."""

    def __init__(self, num_mel_bins: int, sampling_rate: int, device: torch.device) -> None:
        # The povey window is 0 at sample 0, so a frame's first sample never counts: frames are built from sample 1
        # on. The 2**15 sample scale is folded in (a power of two: exact), so power comes out in Kaldi's units.
        self.window = (povey_window(device=device) * INT16_SCALE)[1:]  # (399,) float64
        mel_filters = kaldi_mel_filters(num_mel_bins, sampling_rate, device=device).float()  # (257, mels)
        self.mel_filters_interleaved = mel_filters.repeat_interleave(2, dim=0)  # (514, mels): re, im rows


def log_mel_fbank(waveforms: torch.Tensor, tables: FbankTables) -> torch.Tensor:
    """Kaldi log-mel fbank of equal-length float waveforms in [-1, 1]: (batch, samples) -> (batch, frames, mels).

    Frames whose window runs past a shorter clip's end are computed from whatever follows it; the caller masks them.
    The frames, DC offsets and rfft are float64, as in transformers (its float32 rounding of the spectrum is
    harmless here): in float32 the rfft's error is relative to the frame's total energy, which puts errors of 1e-3
    and more into the log of quiet bins (the lowest, which pre-emphasis empties, and a resampler's empty top band).
    The power spectrum is then accurate to float32 per bin, so the mel matmul and the log run in float32.

    The work runs in blocks of about FRAMES_PER_BLOCK frames of the whole batch, so that a block's buffers stay in
    the CPU caches: each step (frames, rfft, power, mel) is memory-bound on a whole batch, and one pass per step over
    hundreds of MB cost more than the arithmetic. Returns float32.
    """
    batch, length = waveforms.shape
    total = num_frames(length)
    mels = tables.mel_filters_interleaved.shape[1]
    out = torch.empty(batch, total, mels, dtype=torch.float32, device=waveforms.device)
    per_clip = max(1, FRAMES_PER_BLOCK // max(batch, 1))  # frames of each clip in one block
    # Zero-padded to the FFT length once: the rfft then runs on contiguous 512-sample rows, and only samples
    # 1..399 of each row are rewritten per block (sample 0 and the tail stay zero).
    frames = torch.zeros(batch, min(per_clip, total), FFT_LENGTH, dtype=torch.float64, device=waveforms.device)
    power = torch.empty(batch, min(per_clip, total), 2 * NUM_FREQUENCY_BINS, device=waveforms.device)
    for first in range(0, total, per_clip):
        count = min(per_clip, total - first)
        start = first * HOP_LENGTH
        x = waveforms[:, start : start + (count - 1) * HOP_LENGTH + FRAME_LENGTH].to(torch.float64)  # (B, S)
        # DC offset m of every frame, times (1 - 0.97): a frame is 5 pieces of 80 samples, and pieces start every
        # 80 samples (a frame every 2 pieces), so frame sums are sums of piece sums.
        pieces = x.reshape(batch, 2 * count + 3, FRAME_LENGTH // 5).sum(-1)  # (B, 2 count + 3)
        offsets = pieces.unfold(1, 5, 2).sum(-1).mul_((1.0 - PREEMPHASIS) / FRAME_LENGTH)  # (B, count)
        # Kaldi removes m from the frame and then pre-emphasises it: (x[t] - m) - 0.97 (x[t-1] - m)
        # = x[t] - 0.97 x[t-1] - 0.03 m, so the pre-emphasis runs once on the whole signal (a frame's sample 0,
        # whose pre-emphasis differs, has window weight 0).
        emphasised = torch.sub(x[:, 1:], x[:, :-1], alpha=PREEMPHASIS)  # (B, S - 1): sample t + 1 of the signal
        block = frames[:, :count, 1:FRAME_LENGTH]  # (B, count, 399)
        torch.sub(emphasised.unfold(1, FRAME_LENGTH - 1, HOP_LENGTH), offsets[..., None], out=block)
        block.mul_(tables.window)
        spectrum = torch.fft.rfft(frames[:, :count])  # (B, count, 257) complex128
        # |X|^2 = re^2 + im^2, with the sum over (re, im) folded into the mel matmul (each filter row appears
        # twice): one contiguous square and one matmul, where torch's complex abs/pow kernels are several times slower.
        parts = torch.view_as_real(spectrum).reshape(batch, count, 2 * NUM_FREQUENCY_BINS).square_()  # (B, count, 514)
        squares = power[:, :count]
        squares.copy_(parts)  # float32 from here: each term is accurate to float32, and all are >= 0
        mel = torch.matmul(squares, tables.mel_filters_interleaved)  # (B, count, mels)
        torch.log(mel.clamp_(min=MEL_FLOOR), out=out[:, first : first + count])
    return out


def normalize_per_bin(
    features: torch.Tensor, frame_counts: torch.Tensor, epsilon: float = NORM_EPSILON
) -> torch.Tensor:
    """Per clip and per mel bin: (x - mean) / sqrt(var(ddof=1) + epsilon) over its first `frame_counts` frames.

    features: (batch, frames, bins) float32; frame_counts: (batch,) int. Frames past a clip's count do not enter
    its statistics (their output values are meaningless; the caller overwrites them with padding). Statistics are
    float64 (two-pass) so that a clip alone and in a batch agree. A clip of fewer than 2 frames has no ddof=1
    variance; it is taken as 0 (transformers gives NaN), so its single frame normalises to 0.
    """
    x = features.to(torch.float64)  # (B, F, bins)
    counts = frame_counts.tolist()
    count = frame_counts.to(torch.float64)[:, None, None]
    _zero_frames_past(x, counts)
    mean = x.sum(1, keepdim=True) / count.clamp(min=1)
    x -= mean
    _zero_frames_past(x, counts)
    var = torch.linalg.vector_norm(x, dim=1, keepdim=True).square_() / (count - 1).clamp(min=1)  # (B, 1, bins)
    return x.mul_(torch.rsqrt(var + epsilon)).to(features.dtype)


def _zero_frames_past(x: torch.Tensor, counts: list[int]) -> None:
    """Zero each clip's frames past its count, in place: slices of the few padded rows, not a mask over all."""
    for row, count in enumerate(counts):
        if count < x.shape[1]:
            x[row, count:] = 0.0
