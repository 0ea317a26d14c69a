"""Kaldi fbank input features of W2v-BERT 2.0: `SeamlessM4TFeatureExtractor`, numerically the one of transformers.

The extractor runs `fbank` (the signal processing, whose docstring draws the pipeline) on a whole batch at once,
on the device of the caller's choice, then pads to an even frame count and stacks frame pairs: (frames // 2, 160),
one step per 20 ms. Statistics are taken per clip over its own valid frames, so a clip gives the same numbers
alone and in a batch. Differences from transformers, all deliberate: clips shorter than one window (400 samples)
give zero frames instead of an error; a clip of one frame gives zeros instead of NaN (its ddof=1 variance is
undefined); a 2-D (channels, samples) clip is mixed to mono instead of keeping channel 0; a 2-D tensor is a
batch, as a 2-D array is.

Streaming: per-clip statistics need the whole clip, so a model that streams is trained and run with fixed per-bin
statistics instead (`mel_mean`, `mel_std`, saved in preprocessor_config.json; `with_fixed_statistics` measures
them over training audio). The fbank is frame-local, so `FeatureStream` then gives, block by block, the steps
the extractor gives for the whole clip.

In order: the config file names; `SeamlessM4TFeatureExtractor` (construction, `__call__` as waveforms (`clips`) ->
fbank -> layout -> stacked steps, `pad` for collators, the config files and JSON as transformers writes them,
the fixed statistics and `stream`); `FeatureStream`;
`config_text`; `default_feature_extractor` and `feature_extractor_for` (a checkpoint's own extractor, or W2v-BERT
2.0's); the helpers of `pad`.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vbert.audio.clips import batch_waveforms, check_finite_features
from w2vbert.audio.decode import SAMPLING_RATE, check_sampling_rate
from w2vbert.audio.fbank import (
    HOP_LENGTH,
    NORM_EPSILON,
    FbankTables,
    log_mel_fbank,
    normalize_per_bin,
    num_frames,
)
from w2vbert.loading.hub import DEFAULT_HUB, HubOptions, resolve_optional_file
from w2vbert.utils.batch import BatchFeature, as_columns, holds_numbers, padding_plan, with_other_columns
from w2vbert.utils.files import atomic_write_text, read_json_object
from w2vbert.utils.padding import lengths_to_mask

logger = logging.getLogger("w2vbert")

PREPROCESSOR_CONFIG_NAME = "preprocessor_config.json"
PROCESSOR_CONFIG_NAME = "processor_config.json"  # transformers >= 5 nests the extractor config in here
# The dtype of the attention_mask `__call__` makes, as transformers' extractor makes it; the ONNX graph's mask
# input takes the same, so the extractor's output feeds it as it comes.
ATTENTION_MASK_DTYPE = torch.int32


# ------------------------------------------------------------------------------------------- the extractor
class SeamlessM4TFeatureExtractor:
    """80-bin Kaldi fbank, normalised per utterance and bin, frame pairs stacked: what W2v-BERT 2.0 takes as input.

    Drop-in for `transformers.SeamlessM4TFeatureExtractor` (same arguments, same `preprocessor_config.json`, same
    numbers to 1e-4), computed for the whole batch at once in PyTorch. `original=True` gives the behaviour of the
    original fairseq2 front end instead: no epsilon under the square root (a constant mel bin gives NaN/inf, as
    there), the trailing odd frame dropped instead of padded, and padding value 1 unless one is given.

    Args:
        feature_size: mel bins per frame before stacking (80); kept as in transformers, must equal num_mel_bins.
        sampling_rate: the rate inputs must have (16000); anything else must be resampled first (`load_audio`).
        num_mel_bins: mel filters (80).
        padding_value: the value of padded frames in `input_features` (the base checkpoint's config has 1.0).
        stride: frames stacked per model step (2 -> 160-dim steps of 20 ms).
        padding_side: "right" (default) or "left".
        return_attention_mask: default of the argument of the same name in `__call__`.
        original: reproduce the fairseq2 front end's choices listed above.
        mel_mean, mel_std: fixed per-bin statistics (num_mel_bins floats each) that normalise every frame as
            (x - mean) / std instead of each clip's own: what a streaming model takes (None: per clip).
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 80,
        sampling_rate: int = SAMPLING_RATE,
        num_mel_bins: int = 80,
        padding_value: float | None = None,
        stride: int = 2,
        *,
        padding_side: str = "right",
        return_attention_mask: bool = True,
        original: bool = False,
        mel_mean: Sequence[float] | None = None,
        mel_std: Sequence[float] | None = None,
        **extra: Any,
    ) -> None:
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        # bool is a number to Python but never a rate or a bin count; is_integer() refuses 0.5, NaN and inf.
        is_number = isinstance(sampling_rate, numbers.Real) and not isinstance(sampling_rate, bool)
        if not (is_number and sampling_rate >= 1 and float(sampling_rate).is_integer()):
            raise ValueError(
                f"sampling_rate must be a positive whole number of Hz (16000 for W2v-BERT 2.0), got {sampling_rate!r}"
            )
        for argument, bins in (("num_mel_bins", num_mel_bins), ("feature_size", feature_size)):
            if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
                raise ValueError(f"{argument} must be a positive integer (80 for W2v-BERT 2.0), got {bins!r}")
        if feature_size != num_mel_bins:
            raise ValueError(
                f"feature_size={feature_size} differs from num_mel_bins={num_mel_bins}; both are the mel bins per "
                "frame before stacking and must be equal"
            )
        self.feature_size = feature_size
        self.sampling_rate = int(sampling_rate)
        self.num_mel_bins = num_mel_bins
        self.padding_value = float(1.0 if original else 0.0) if padding_value is None else float(padding_value)
        self.stride = stride
        self.padding_side = padding_side
        self.return_attention_mask = return_attention_mask
        self.original = original
        self.mel_mean, self.mel_std = _fixed_statistics(mel_mean, mel_std, num_mel_bins)
        # Written by save_pretrained from the class; processor_class belongs to the processor that saves the file
        # (transformers drops it on load too, so a reloaded extractor equals the one saved).
        extra.pop("feature_extractor_type", None)
        extra.pop("processor_class", None)
        self.extra = extra  # other preprocessor_config.json keys (do_normalize, ...), written back unchanged
        self._tables: dict[torch.device, FbankTables] = {}
        self._warned_no_rate = False

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def _tables_on(self, device: torch.device) -> FbankTables:
        if device not in self._tables:
            self._tables[device] = FbankTables(self.num_mel_bins, self.sampling_rate, device)
        return self._tables[device]

    # ----------------------------------------------------------------------------------------------- call
    def __call__(
        self,
        raw_speech: Any,
        padding: bool | str = True,
        pad_to_multiple_of: int | None = 2,
        max_length: int | None = None,
        truncation: bool = False,
        return_tensors: str | None = None,
        sampling_rate: int | None = None,
        return_attention_mask: bool | None = None,
        do_normalize_per_mel_bins: bool = True,
        *,
        lengths: Sequence[int] | torch.Tensor | None = None,
        device: torch.device | str | None = None,
        **unused: Any,
    ) -> BatchFeature:
        """Features of one clip or a batch.

        Args:
            raw_speech: one clip (1-D array, tensor or list of floats), a list of clips, or a (batch, samples)
                array/tensor (with `lengths` when padded). A 2-D clip inside a list is (channels, samples) or
                (samples, channels) and is mixed to mono. Samples are float in [-1, 1] at `sampling_rate`.
            padding: True / "longest" (pad to the longest clip), "max_length" (pad to `max_length` frames) or
                False / "do_not_pad" (clips must then give equal frame counts).
            pad_to_multiple_of: round the padded frame count up to this (default 2, so odd clips keep their last
                frame, padded, and the step holding it is masked). None: an odd total frame count loses its last
                frame, as in transformers.
            max_length, truncation: frame counts (10 ms frames before stacking), as in transformers; a truncated
                clip is normalised over all its frames first.
            return_tensors: "pt" (tensors on the compute device), "np", or None (numpy arrays, as transformers).
            sampling_rate: the rate of the input; a rate other than the extractor's raises (resample first).
            return_attention_mask: include `attention_mask` (default: the extractor's setting).
            do_normalize_per_mel_bins: per-clip mean/variance normalisation (default True).
            lengths: samples per row when `raw_speech` is a padded (batch, samples) array or tensor.
            device: where to compute (default: the input tensor's device, else CPU).

        Returns:
            BatchFeature with `input_features` (batch, steps, num_mel_bins * stride) float32 and `attention_mask`
            (batch, steps) int32, 1 for steps whose frames are all real. A clip shorter than 400 samples (25 ms)
            has no frame: its row is all `padding_value` with an all-zero mask.
        """
        unknown = set(unused) - {"return_token_type_ids", "verbose"}
        if unknown:
            raise TypeError(f"SeamlessM4TFeatureExtractor got unexpected argument(s) {sorted(unknown)}")
        self._check_rate(sampling_rate)
        return_attention_mask = self.return_attention_mask if return_attention_mask is None else return_attention_mask
        waveforms, sample_counts = batch_waveforms(raw_speech, lengths, device)  # (B, S), (B,)
        features, frame_counts = self._fbank(waveforms, sample_counts, do_normalize_per_mel_bins)  # (B, F, mels), (B,)
        features, frame_mask = self._layout(features, frame_counts, padding, pad_to_multiple_of, max_length, truncation)
        out = self._stack(features, frame_mask, return_attention_mask)
        return out.convert_to_tensors(return_tensors or "np")

    def _fbank(
        self, waveforms: torch.Tensor, sample_counts: torch.Tensor, normalize: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) waveforms and (B,) sample counts -> (B, F, mels) log-mel frames and the (B,) frames to keep."""
        frame_counts = num_frames(sample_counts)  # (B,)
        features = log_mel_fbank(waveforms, self._tables_on(waveforms.device))  # (B, F, mels)
        check_finite_features(features, frame_counts, waveforms)
        if normalize and self.mel_mean is not None:
            features = self._normalize_fixed(features)
        elif normalize:
            features = normalize_per_bin(features, frame_counts, 0.0 if self.original else NORM_EPSILON)
        if self.original:
            # fairseq2 stacks frame pairs in the model, dropping a trailing odd frame; the statistics above did
            # include it, as there (normalisation runs in the extractor, before stacking).
            frame_counts = frame_counts - frame_counts % self.stride
        return features, frame_counts

    def _stack(self, features: torch.Tensor, frame_mask: torch.Tensor, return_attention_mask: bool) -> BatchFeature:
        """(B, F, mels) frames laid out by `_layout` -> (B, F / stride, mels * stride) steps, and their mask."""
        batch, total, bins = features.shape
        steps = total // self.stride
        out = BatchFeature(input_features=features.reshape(batch, steps, bins * self.stride))  # (B, T/2, 160)
        if return_attention_mask:
            # A step is real only when all its frames are: transformers keeps the mask of each pair's last frame.
            out["attention_mask"] = frame_mask[:, self.stride - 1 :: self.stride].to(ATTENTION_MASK_DTYPE)  # (B, steps)
        return out

    def _check_rate(self, sampling_rate: int | None) -> None:
        if sampling_rate is None:
            if not self._warned_no_rate:
                logger.warning(
                    "%s called without sampling_rate: assuming %d Hz. Pass sampling_rate=... to catch audio at "
                    "another rate.",
                    type(self).__name__,
                    self.sampling_rate,
                )
                self._warned_no_rate = True
            return
        check_sampling_rate("sampling_rate", sampling_rate)
        if sampling_rate != self.sampling_rate:
            raise ValueError(
                f"audio at {sampling_rate} Hz given to a feature extractor for {self.sampling_rate} Hz: resample it "
                f"first, e.g. w2vbert.load_audio(path_or_array, sampling_rate={self.sampling_rate}, "
                f"source_sampling_rate={sampling_rate})"
            )

    def _layout(
        self,
        features: torch.Tensor,
        frame_counts: torch.Tensor,
        padding: bool | str,
        pad_to_multiple_of: int | None,
        max_length: int | None,
        truncation: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Truncate, pad and place the frames as transformers' `SequenceFeatureExtractor.pad` does.

        Returns features (B, total, bins) with padded frames set to padding_value, and the frame mask (B, total),
        where total is a multiple of the stride (a remainder is cut from the end, as in transformers).
        """
        cut, total = padding_plan(
            frame_counts.tolist(),
            padding,
            max_length,
            None if self.original else pad_to_multiple_of,  # original: the odd frame is dropped, never padded
            truncation,
            unit="10 ms frames",
        )
        if cut is not None:
            frame_counts = frame_counts.clamp(max=cut)
        counts = frame_counts.tolist()
        if total is None:
            if len(set(counts)) > 1:
                raise ValueError(
                    f"padding=False needs clips of equal frame counts, got {counts}; pass padding=True to pad them"
                )
            total = counts[0] if counts else 0
        elif max(counts, default=0) > total:
            raise ValueError(
                f"a clip has {max(counts)} frames, more than max_length={total}; pass truncation=True to cut it"
            )
        total -= total % self.stride
        batch, available, bins = features.shape
        if available < total:  # padding beyond the longest clip: extend with (masked) zeros
            features = torch.nn.functional.pad(features, (0, 0, 0, total - available))
        features = features[:, :total]
        frame_counts = frame_counts.clamp(max=total)
        positions = torch.arange(total, device=features.device)[None, :]  # (1, total)
        if self.padding_side == "right":
            frame_mask = lengths_to_mask(frame_counts, total)
            for row, count in enumerate(frame_counts.tolist()):  # features is ours: pad the short rows in place
                if count < total:
                    features[row, count:] = self.padding_value
        else:
            shift = total - frame_counts[:, None]  # (B, 1): frames move right by this many
            frame_mask = positions >= shift
            source = (positions - shift).clamp(min=0)[..., None].expand(batch, total, bins)
            features = torch.gather(features, 1, source)
            features = torch.where(frame_mask[..., None], features, self.padding_value)
        return features, frame_mask

    # ----------------------------------------------------------------------------------------------- pad
    def pad(
        self,
        processed_features: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
    ) -> BatchFeature:
        """Pad already extracted features, e.g. in a data collator: the `SequenceFeatureExtractor.pad` of transformers.

        `processed_features` is a list of dicts with "input_features" (steps, dims) (and optionally
        "attention_mask"), or a dict of such lists; each item a numpy array, a tensor or nested lists (as a
        `datasets` column holds them). Cuts (truncation) and pads along the first axis as `padding_plan` says, with
        `padding_value` and a mask value of 0, on `padding_side`. Returns "pt" tensors if the inputs were tensors,
        else numpy, unless `return_tensors` says otherwise. Lengths left apart (padding=False, or "max_length"
        below the longest without truncation) give, as in transformers, a 1-D object array of the examples' arrays
        for "np", and a ValueError for "pt". Dtypes follow transformers: float64 (nested lists)
        becomes float32, other dtypes stay; a mask made here is int32, a given one keeps its dtype. Other keys
        are passed through, one value per example.
        """
        columns = _feature_columns(processed_features)
        return_attention_mask = self.return_attention_mask if return_attention_mask is None else return_attention_mask
        if len(columns["input_features"]) == 0:
            return BatchFeature(input_features=[], **({"attention_mask": []} if return_attention_mask else {}))
        if return_tensors is None:  # the inputs' kind, as in transformers
            return_tensors = "pt" if isinstance(columns["input_features"][0], torch.Tensor) else "np"
        arrays, masks = _feature_arrays(columns)
        cut, target = padding_plan(
            [len(a) for a in arrays], padding, max_length, pad_to_multiple_of, truncation, unit="feature steps"
        )
        padded = [self._pad_example(array, mask, cut, target) for array, mask in zip(arrays, masks, strict=True)]
        out = BatchFeature(input_features=[features for features, _ in padded])
        if return_attention_mask:
            out["attention_mask"] = [mask for _, mask in padded]
        others = {key: values for key, values in columns.items() if key not in ("input_features", "attention_mask")}
        numeric = {
            key: [_numeric_array(v, key, i) for i, v in enumerate(values)]
            for key, values in others.items()
            if holds_numbers(values[0])
        }
        return with_other_columns(out, numeric, others, return_tensors, ragged=True)  # texts, ids: as given

    def _pad_example(
        self, array: np.ndarray, mask: np.ndarray, cut: int | None, target: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One example's (steps, ...) features and (steps,) mask, cut to `cut` steps and padded to `target`."""
        if cut is not None:
            array, mask = array[:cut], mask[:cut]
        missing = 0 if target is None else max(0, target - len(array))
        before, after = (missing, 0) if self.padding_side == "left" else (0, missing)
        widths = [(before, after)] + [(0, 0)] * (array.ndim - 1)
        return np.pad(array, widths, constant_values=self.padding_value), np.pad(mask, (before, after))

    # ------------------------------------------------------------------------------------- config files
    def to_dict(self) -> dict[str, Any]:
        """The `preprocessor_config.json` dictionary, in the layout transformers writes (sorted keys)."""
        out = dict(self.extra)
        out.update(
            feature_extractor_type=type(self).__name__,
            feature_size=self.feature_size,
            num_mel_bins=self.num_mel_bins,
            padding_side=self.padding_side,
            padding_value=self.padding_value,
            return_attention_mask=self.return_attention_mask,
            sampling_rate=self.sampling_rate,
            stride=self.stride,
        )
        if self.original:  # written only when set, so that files stay identical to those of transformers
            out["original"] = True
        if self.mel_mean is not None:  # likewise
            out["mel_mean"], out["mel_std"] = self.mel_mean, self.mel_std
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return config_text(self.to_dict())

    def to_json_file(self, json_file_path: str | os.PathLike) -> None:
        """Write `to_json_string()` to `json_file_path` (any name; `save_pretrained` picks the standard one)."""
        atomic_write_text(Path(json_file_path), self.to_json_string())

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[str]:
        """Write `preprocessor_config.json` into `save_directory`; returns the written path(s)."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.to_json_file(path / PREPROCESSOR_CONFIG_NAME)
        return [str(path / PREPROCESSOR_CONFIG_NAME)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> SeamlessM4TFeatureExtractor:
        values = dict(values) | overrides
        kind = values.get("feature_extractor_type", cls.__name__)
        if kind != cls.__name__:
            raise OtherFeatureExtractorError(
                kind,
                f"this preprocessor config is for {kind!r}, expected {cls.__name__!r} (the W2v-BERT 2.0 front end)",
            )
        return cls(**values)

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike) -> SeamlessM4TFeatureExtractor:
        """The extractor a `to_json_file` (or any preprocessor_config.json) describes."""
        return cls.from_dict(read_json_object(Path(json_file)))

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        subfolder: str = "",
        **overrides: Any,
    ) -> SeamlessM4TFeatureExtractor:
        """Read `preprocessor_config.json` (or the "feature_extractor" entry of a transformers 5
        `processor_config.json`) from a directory or hub repo id; keyword overrides replace stored values."""
        hub = HubOptions(revision, cache_dir, local_files_only, token, subfolder)
        return cls.from_hub(path_or_repo_id, hub, **overrides)

    @classmethod
    def from_hub(
        cls, path_or_repo_id: str | os.PathLike, hub: HubOptions, **overrides: Any
    ) -> SeamlessM4TFeatureExtractor:
        """`from_pretrained` with the hub options already gathered."""
        # transformers' Auto classes add flags of their own (`_from_auto`, ...): they describe the call, not the
        # extractor, and are not kept (nor saved)
        overrides = {key: value for key, value in overrides.items() if not key.startswith("_")}
        path = resolve_optional_file(path_or_repo_id, PREPROCESSOR_CONFIG_NAME, hub)
        if path is not None:
            return cls.from_dict(read_json_object(path), **overrides)
        path = resolve_optional_file(path_or_repo_id, PROCESSOR_CONFIG_NAME, hub)
        if path is not None and isinstance(read_json_object(path).get("feature_extractor"), dict):
            return cls.from_dict(read_json_object(path)["feature_extractor"], **overrides)
        raise FileNotFoundError(
            f"{path_or_repo_id} has no {PREPROCESSOR_CONFIG_NAME} (nor a {PROCESSOR_CONFIG_NAME} with a "
            "'feature_extractor' entry); for W2v-BERT 2.0's front end use "
            "w2vbert.audio.features.default_feature_extractor()"
        )


    # ------------------------------------------------------------------------------------- streaming
    def _normalize_fixed(self, features: torch.Tensor) -> torch.Tensor:
        """(..., frames, mels) -> (x - mel_mean) / mel_std, frame by frame."""
        mean = torch.tensor(self.mel_mean, dtype=torch.float64, device=features.device)
        std = torch.tensor(self.mel_std, dtype=torch.float64, device=features.device)
        return ((features.to(torch.float64) - mean) / std).to(features.dtype)

    def with_fixed_statistics(self, clips: Sequence[Any], batch: int = 16) -> SeamlessM4TFeatureExtractor:
        """This extractor with fixed per-bin statistics: the mean and standard deviation (ddof=1, plus the
        per-clip epsilon under the root) of the log-mel fbank over every frame of `clips` (1-D waveforms at
        `sampling_rate`, e.g. a training set's)."""
        total = torch.zeros(self.num_mel_bins, dtype=torch.float64)
        squares = torch.zeros(self.num_mel_bins, dtype=torch.float64)
        count = 0
        for start in range(0, len(clips), batch):
            waveforms, sample_counts = batch_waveforms(list(clips[start : start + batch]), None, None)
            features, frame_counts = self._fbank(waveforms, sample_counts, normalize=False)  # (B, F, mels)
            for row, frames in enumerate(frame_counts.tolist()):
                x = features[row, :frames].to(torch.float64)
                total += x.sum(0)
                squares += x.square().sum(0)
                count += frames
        if count < 2:
            raise ValueError(f"fixed statistics need at least 2 fbank frames of audio, got {count}")
        mean = total / count
        variance = (squares - count * mean.square()) / (count - 1)
        std = (variance.clamp(min=0) + NORM_EPSILON).sqrt()
        return type(self).from_dict(self.to_dict(), mel_mean=mean.tolist(), mel_std=std.tolist())

    def stream(self) -> FeatureStream:
        """Features of audio that comes in blocks (`FeatureStream`); needs fixed statistics."""
        return FeatureStream(self)


class FeatureStream:
    """Audio blocks in, feature steps out: the steps `extractor(whole_clip)` gives, as soon as their samples came.

    Kaldi's frames are local (25 ms windows every 10 ms, no dither) and fixed statistics normalise each frame on
    its own, so frame i is final once samples 160 i .. 160 i + 399 arrived, and a step once its two frames are.
    Per-clip statistics would need the whole clip: an extractor without fixed ones is refused. `flush` drops a
    last odd frame, whose step the extractor pads and masks.
    """

    def __init__(self, extractor: SeamlessM4TFeatureExtractor) -> None:
        if extractor.mel_mean is None:
            raise ValueError(
                "streaming features need fixed statistics (mel_mean and mel_std in preprocessor_config.json): "
                "per-clip normalisation needs the whole clip; a streaming model is trained with them "
                "(w2vbert finetune --streaming)"
            )
        if extractor.original:
            raise ValueError("streaming features follow transformers' front end, not original=True")
        self.extractor = extractor
        self.samples = torch.zeros(0, dtype=torch.float32)  # from the first sample of the next frame on
        self.frames = torch.zeros(0, extractor.num_mel_bins)  # normalised frames not yet stacked into a step

    def feed(self, samples: Any) -> torch.Tensor:
        """Mono float samples in [-1, 1] at the extractor's rate -> the new steps (steps, mels * stride)."""
        block = torch.as_tensor(np.asarray(samples, dtype=np.float32)).reshape(-1)
        self.samples = torch.cat([self.samples, block])
        count = num_frames(self.samples.shape[0])
        if count:
            fbank = log_mel_fbank(self.samples[None], self.extractor._tables_on(torch.device("cpu")))[0, :count]
            self.frames = torch.cat([self.frames, self.extractor._normalize_fixed(fbank)])
            self.samples = self.samples[count * HOP_LENGTH :]
        return self._steps()

    def flush(self) -> torch.Tensor:
        """The stream ends: no further step (an odd last frame is dropped); the stream starts anew."""
        self.samples = self.samples[:0]
        self.frames = self.frames[:0]
        return torch.zeros(0, self.extractor.num_mel_bins * self.extractor.stride)

    def _steps(self) -> torch.Tensor:
        stride, bins = self.extractor.stride, self.extractor.num_mel_bins
        whole = self.frames.shape[0] // stride * stride
        steps = self.frames[:whole].reshape(whole // stride, bins * stride)  # (steps, 160)
        self.frames = self.frames[whole:]
        return steps


def _fixed_statistics(
    mean: Sequence[float] | None, std: Sequence[float] | None, bins: int
) -> tuple[list[float] | None, list[float] | None]:
    """mel_mean and mel_std checked: both or neither, `bins` finite values each, std > 0."""
    if mean is None and std is None:
        return None, None
    if mean is None or std is None:
        raise ValueError("mel_mean and mel_std come together (fixed feature statistics): got only one of them")
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != bins or len(std) != bins:
        raise ValueError(f"mel_mean and mel_std need {bins} values each (one per mel bin), got {len(mean)} and "
                         f"{len(std)}")
    if not all(np.isfinite(mean)) or not all(np.isfinite(v) and v > 0 for v in std):
        raise ValueError("mel_mean must be finite and mel_std finite and > 0")
    return mean, std


class OtherFeatureExtractorError(ValueError):
    """A preprocessor config written for another feature extractor class (`kind`, e.g. transformers'
    Wav2Vec2FeatureExtractor): the processor hands such a folder to transformers when the user works with it."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def config_text(values: dict[str, Any]) -> str:
    """A config dictionary as transformers writes its JSON files: indented by 2, keys sorted, a final newline."""
    return json.dumps(values, indent=2, sort_keys=True) + "\n"


def default_feature_extractor() -> SeamlessM4TFeatureExtractor:
    """W2v-BERT 2.0's front end as its published preprocessor_config.json sets it (padding value 1, stride 2)."""
    return SeamlessM4TFeatureExtractor(padding_value=1.0)


def feature_extractor_for(
    path_or_repo_id: str | os.PathLike, hub: HubOptions = DEFAULT_HUB
) -> SeamlessM4TFeatureExtractor:
    """The checkpoint's own feature extractor, or W2v-BERT 2.0's (with a warning) when it has no preprocessor config.

    Only a missing file falls back: a config that is present but unreadable, or a hub that cannot be reached, is
    an error (a fallback there would silently change the model's inputs).
    """
    try:
        return SeamlessM4TFeatureExtractor.from_hub(path_or_repo_id, hub)
    except FileNotFoundError:
        logger.warning(
            "%s has no %s: using the W2v-BERT 2.0 feature extractor defaults", path_or_repo_id, PREPROCESSOR_CONFIG_NAME
        )
        return default_feature_extractor()


# ------------------------------------------------------------------------------------------- pad helpers
def _feature_columns(processed_features: Any) -> dict[str, list]:
    """`pad`'s examples as columns, with "input_features" among them and one value per example in each."""
    columns = as_columns(processed_features, "input_features", "each as {'input_features': features}")
    if "input_features" not in columns:
        raise ValueError(f"pad needs 'input_features', got keys {sorted(columns)}")
    sizes = {key: len(values) for key, values in columns.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"pad needs one value per example in every key, got these counts: {sizes}")
    return columns


def _feature_arrays(columns: dict[str, list]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each example's features (steps, ...) and mask (steps,) as arrays: the given mask, else ones (int32)."""
    arrays = [_numeric_array(v, "input_features", i) for i, v in enumerate(columns["input_features"])]
    for index, array in enumerate(arrays):
        if array.ndim == 0:
            raise ValueError(f"example {index}: 'input_features' must be (steps, dims), got a scalar")
    if "attention_mask" not in columns:
        return arrays, [np.ones(len(array), dtype=np.int32) for array in arrays]
    masks = [_numeric_array(m, "attention_mask", i) for i, m in enumerate(columns["attention_mask"])]
    for index, (array, mask) in enumerate(zip(arrays, masks, strict=True)):
        if mask.shape != (len(array),):
            raise ValueError(f"example {index}: attention_mask of shape {mask.shape} for {len(array)} feature steps")
    return arrays, masks


def _numeric_array(value: Any, key: str, index: int) -> np.ndarray:
    """One example's value of `key` as a numpy array of numbers."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"example {index}: {key!r} must hold numbers, got {array.dtype} from {type(value)}")
    # transformers casts float64 (what nested Python lists become) to float32, and keeps other dtypes
    return array.astype(np.float32) if array.dtype == np.float64 else array
