"""Audio in: any file FFmpeg decodes (through PyAV, whose wheel ships FFmpeg), any array, to 16 kHz mono float32.

Decoding is PyAV's, resampling soxr's (high quality, the resampler SoX is known for); both are maintained
libraries, so nothing here hand-writes codecs or filters. Files can be read whole (`load_audio`) or as a stream
of blocks (`stream_audio`), which keeps memory flat for recordings of hours.

Both check the whole file: NaN/inf samples raise with their count over the file, and a file that holds less audio
than its header announces (cut while being written or copied) is decoded as far as it goes, with one warning.
`wav_bytes` goes the other way: samples to the bytes of a 16-bit WAV file (what a client posts to the server).
"""

from __future__ import annotations

import io
import logging
import os
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import av
import numpy as np
import soxr
import torch

SAMPLING_RATE = 16000  # Hz: what W2v-BERT 2.0 was trained on
# The rates (Hz) a clip may be at or be resampled to. soxr takes any, but outside these a rate is a mistake, not
# audio: from 10**9 Hz a second resamples to no sample at all; at 1 Hz to SAMPLING_RATE samples per input sample
# (a 16000-sample array became 256M). 384 kHz is the highest rate of studio formats (DXD); 1 kHz is far below any
# speech format (telephony is 8 kHz).
SAMPLING_RATES = (1000, 384_000)
MAX_CHANNELS = 8  # an array axis this short is taken for channels, the other for samples
INTEGER_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31, np.dtype(np.int8): 2.0**7}
# A decoded file this much shorter than its header says is reported as truncated. 0.1 s is above the codec delay and
# padding of normal files (AAC priming is 2112 samples, under 0.1 s from 22.05 kHz up; the Opus and Vorbis test clips
# fall 13 ms short); 5% leaves room for durations FFmpeg estimates from the bitrate when a header has none.
TRUNCATION_SLACK_S = 0.1
TRUNCATION_SLACK_FRACTION = 0.05
WAV_HEAD_BYTES = 1 << 16  # read to find a WAV's data chunk size; chunks before it (fmt, LIST, bext) are far smaller
# Writers that cannot seek back (espeak-ng --stdout, ffmpeg to a pipe) leave a placeholder data size of about 2 or
# 4 GiB (0x7ffff000, 0xffffffff); sizes from here up are taken as "unknown", not as a promise of hours of audio.
WAV_PLACEHOLDER_SIZE = 0x7FFF0000

logger = logging.getLogger("w2vbert")

AudioSource = str | os.PathLike | bytes | IO[bytes] | np.ndarray | torch.Tensor | list[float] | tuple[float, ...]


def load_audio(
    source: AudioSource, sampling_rate: int = SAMPLING_RATE, *, source_sampling_rate: int | None = None
) -> np.ndarray:
    """Decode or take audio as (samples,) float32 mono at `sampling_rate`.

    `source` is a file path, the bytes of a file, a binary file object, or samples: an array, a tensor (any float
    dtype, bfloat16 included) or a list of floats (as a `datasets` row holds them), of shape (samples,),
    (samples, channels) or (channels, samples), floats in [-1, 1] or int16/int32 PCM. Samples are taken to be at
    `sampling_rate` unless `source_sampling_rate` says otherwise. Channels are averaged.
    """
    check_sampling_rate("sampling_rate", sampling_rate)
    if isinstance(source, (np.ndarray, torch.Tensor, list, tuple)):
        if source_sampling_rate is not None:
            check_sampling_rate("source_sampling_rate", source_sampling_rate)
        audio = to_mono(_as_float_array(source))
        rate = sampling_rate if source_sampling_rate is None else source_sampling_rate
        name = "audio array"
    else:
        if source_sampling_rate is not None:
            raise ValueError("source_sampling_rate is for arrays; a file states its own rate")
        blocks = list(_decode(source))
        name = _name(source)
        rate = blocks[0][1] if blocks else sampling_rate
        audio = np.concatenate([b for b, _ in blocks]) if blocks else np.zeros(0, np.float32)
        if not len(audio):
            raise ValueError(f"{name}: contains no audio samples")
    bad, first = _count_nonfinite(audio)
    if bad:
        raise _nonfinite_error(name, bad, first / rate)
    return resample(audio, rate, sampling_rate)


def stream_audio(
    source: str | os.PathLike | bytes | IO[bytes], block_seconds: float, sampling_rate: int = SAMPLING_RATE
) -> Iterator[np.ndarray]:
    """Decode a file block by block: float32 mono arrays of about `block_seconds` at `sampling_rate`.

    Only one block (plus the decoder's own buffers) is in memory at a time. The resampler keeps its state across
    blocks, so the concatenated blocks equal `load_audio` of the whole file up to the resampler's edge effects
    (none when no resampling is needed). NaN/inf samples raise at the end of the file with the file's count: the
    blocks before the first bad one have been yielded, none after it.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be > 0, got {block_seconds}")
    check_sampling_rate("sampling_rate", sampling_rate)
    name, total = _name(source), 0
    resampler: soxr.ResampleStream | None = None
    pending: list[np.ndarray] = []
    pending_samples, block = 0, int(block_seconds * sampling_rate)
    bad, first_bad, decoded = 0, 0.0, 0  # non-finite samples, the time of the first, source samples so far
    for chunk, rate in _decode(source):
        count, first = _count_nonfinite(chunk)
        if count and not bad:
            first_bad = (decoded + first) / rate
        bad, decoded = bad + count, decoded + len(chunk)
        if bad:
            continue  # decode on without yielding, so that the error counts the whole file
        if rate != sampling_rate:
            if resampler is None:
                resampler = soxr.ResampleStream(rate, sampling_rate, 1, dtype="float32", quality="HQ")
            chunk = resampler.resample_chunk(chunk)
        pending.append(chunk)
        pending_samples += len(chunk)
        if pending_samples >= block:
            out = np.concatenate(pending)
            total += len(out)
            yield out
            pending, pending_samples = [], 0
    if bad:
        raise _nonfinite_error(name, bad, first_bad)
    if resampler is not None:
        pending.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    if pending and sum(len(p) for p in pending):
        out = np.concatenate(pending)
        total += len(out)
        yield out
    if total == 0:
        raise ValueError(f"{name}: contains no audio samples")


def resample(audio: np.ndarray, source_sampling_rate: int, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """(samples,) float32 from `source_sampling_rate` to `sampling_rate` with soxr's high-quality filter (the
    names `load_audio` uses)."""
    check_sampling_rate("source_sampling_rate", source_sampling_rate)
    check_sampling_rate("sampling_rate", sampling_rate)
    if source_sampling_rate == sampling_rate:
        return np.ascontiguousarray(audio, dtype=np.float32)
    resampled = soxr.resample(np.asarray(audio, np.float32), source_sampling_rate, sampling_rate, quality="HQ")
    return resampled.astype(np.float32)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(samples,) stays; (samples, channels) or (channels, samples) is averaged over the channel axis.

    The channel axis is the one of at most 8 entries; when both or neither axis is that short the layout is
    ambiguous, and guessing would silently swap time and channels, so it is an error.
    """
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(
            f"expected audio of shape (samples,), (samples, channels) or (channels, samples), got {audio.shape}"
        )
    short = [axis for axis in (0, 1) if audio.shape[axis] <= MAX_CHANNELS]
    if len(short) != 1:
        if audio.shape[0] == audio.shape[1] == 1:
            return audio.reshape(1)
        raise ValueError(
            f"cannot tell channels from samples in audio of shape {audio.shape}: expected one axis of at most "
            f"{MAX_CHANNELS} channels; pass a 1-D array per channel layout you mean"
        )
    return audio.mean(axis=short[0], dtype=np.float32)


def check_audio_file(path: str | os.PathLike) -> Path:
    """The path of an existing, non-empty file; the error names the path and what is wrong with it."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected an audio file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    return path


def _as_float_array(source: np.ndarray | torch.Tensor | list | tuple) -> np.ndarray:
    if isinstance(source, torch.Tensor):
        tensor = source.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
            tensor = tensor.float()  # numpy has no bfloat16; bfloat16 and float16 widen to float32 exactly
        array = tensor.numpy()
    elif isinstance(source, (list, tuple)):
        try:
            array = np.asarray(source)
        except ValueError:  # rows of different lengths
            raise ValueError(
                "expected a list of samples (floats) or of equal-length channels, got a ragged list; pass one "
                "channel per call or an array"
            ) from None
    else:
        array = np.asarray(source)
    if array.dtype in INTEGER_SCALE:
        return (array / INTEGER_SCALE[array.dtype]).astype(np.float32)
    if array.dtype == np.uint8:  # 8-bit WAV PCM is unsigned, centred on 128
        return ((array.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if array.dtype.kind != "f":
        raise TypeError(f"expected float samples in [-1, 1] or int16/int32 PCM, got an array of {array.dtype}")
    if array.size == 0:
        raise ValueError("the audio array is empty (zero samples)")
    return array.astype(np.float32, copy=False)


def check_sampling_rate(argument: str, rate: Any) -> None:
    """A ValueError naming `argument` unless `rate` is a number of Hz in `SAMPLING_RATES`."""
    # `not low <= rate` also refuses NaN; bool is an int to Python but never a rate.
    low, high = SAMPLING_RATES
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or not low <= rate <= high:
        raise ValueError(f"{argument} must be a positive number of Hz from {low} to {high} (e.g. 16000), got {rate!r}")


def _count_nonfinite(audio: np.ndarray) -> tuple[int, int]:
    """(NaN/inf samples in `audio`, index of the first); (0, 0) when all are finite."""
    finite = np.isfinite(audio)
    if finite.all():
        return 0, 0
    return int(finite.size - np.count_nonzero(finite)), int(np.argmin(finite))


def _nonfinite_error(name: str, count: int, first_seconds: float) -> ValueError:
    return ValueError(
        f"{name}: {count} samples are NaN or infinite (the first at {first_seconds:.2f} s), expected finite "
        "samples; replace them (e.g. np.nan_to_num) or re-export the recording"
    )


def _name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def _decode(source: str | os.PathLike | bytes | IO[bytes]) -> Iterator[tuple[np.ndarray, int]]:
    """(mono float32 block, its sampling rate) for each decoded frame of the file's first audio stream."""
    name = _name(source)
    if isinstance(source, (str, os.PathLike)):
        target: Any = str(check_audio_file(source))
    elif isinstance(source, (bytes, bytearray)):
        if not source:
            raise ValueError("the audio bytes are empty")
        target = io.BytesIO(source)
    elif isinstance(source, io.TextIOBase):
        raise TypeError(
            f"{name}: the file object is open in text mode, but audio is binary; open it with open(path, 'rb')"
        )
    elif hasattr(source, "read"):
        target = source
    else:
        raise TypeError(f"expected a path, bytes, a binary file object or an array, got {type(source).__name__}")
    wav_seconds = _wav_header_seconds(target)
    try:
        with av.open(target, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise ValueError(f"{name}: has no audio stream (format {container.format.name})")
            stream = container.streams.audio[0]
            decoded, rate = 0, 0  # samples per channel decoded so far, at the file's rate
            converter = av.AudioResampler(format="flt")  # any sample format -> packed float32
            for frame in container.decode(stream):
                for converted in converter.resample(frame):
                    block = _mono_block(converted)
                    decoded, rate = decoded + len(block), converted.rate
                    yield block, converted.rate
            for converted in converter.resample(None):
                block = _mono_block(converted)
                decoded, rate = decoded + len(block), converted.rate
                yield block, converted.rate
            announced = wav_seconds if wav_seconds is not None else _header_seconds(container, stream)
            if rate and announced is not None:
                _warn_if_truncated(name, announced, decoded / rate)
    except av.error.FFmpegError as error:
        raise ValueError(f"{name}: not a readable audio file ({error.strerror or type(error).__name__})") from None


def _mono_block(frame: av.AudioFrame) -> np.ndarray:
    """(samples,) float32: the channel mean of a packed float32 frame.

    The samples are read from the frame's one buffer as (samples, channels), not through `to_ndarray()`: PyAV
    18.1 crashes the process (SIGSEGV) converting frames of 8 or more channels, planar ones in particular, so
    any channel count goes through this one path.
    """
    channels = frame.layout.nb_channels
    packed = np.frombuffer(frame.planes[0], dtype=np.float32, count=frame.samples * channels)
    return packed.reshape(frame.samples, channels).mean(axis=1, dtype=np.float32) if channels > 1 else packed.copy()


def _header_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    """The duration the container states for `stream` (or for the whole file), in seconds; None if it has none."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _wav_header_seconds(target: Any) -> float | None:
    """Seconds a RIFF WAV header announces (data chunk size / byte rate); None for other files or unknown sizes.

    PyAV cannot tell: when the data chunk runs past the end of the file, FFmpeg's WAV demuxer drops the size and
    estimates the duration from the file's length, i.e. the truncated one. So the header is read here, before
    decoding; a file object is put back where it was.
    """
    if isinstance(target, str):
        with open(target, "rb") as handle:
            head = handle.read(WAV_HEAD_BYTES)
    elif isinstance(target, io.IOBase) and target.seekable():
        position = target.tell()
        head = target.read(WAV_HEAD_BYTES)
        target.seek(position)
    else:
        return None
    if not isinstance(head, bytes) or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, byte_rate = 12, 0
    while offset + 8 <= len(head):  # chunks: 4-byte tag, 4-byte little-endian size, data padded to even length
        tag, size = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8], "little")
        if tag == b"fmt " and offset + 20 <= len(head):
            byte_rate = int.from_bytes(head[offset + 16 : offset + 20], "little")  # after format, channels, rate
        elif tag == b"data":
            return size / byte_rate if byte_rate and 0 < size < WAV_PLACEHOLDER_SIZE else None
        offset += 8 + size + (size & 1)
    return None


def _warn_if_truncated(name: str, announced: float, decoded: float) -> None:
    shortfall = announced - decoded
    if shortfall > max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRACTION * announced):
        logger.warning(
            "%s: the header announces %.2f s but only %.2f s could be decoded (truncated file?); using the %.2f s",
            name,
            announced,
            decoded,
            decoded,
        )


def audio_seconds(path: str | os.PathLike) -> float:
    """Duration of an audio file from its header, without decoding (decodes only when the header has none).

    A WAV header is read directly (0.02 ms; opening any file with FFmpeg costs about 3 ms, which a corpus of
    a million files would feel)."""
    path = check_audio_file(path)
    seconds = _wav_header_seconds(str(path))
    if seconds is not None:
        return seconds
    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: has no audio stream")
        seconds = _header_seconds(container, container.streams.audio[0])
    return seconds if seconds is not None else len(load_audio(path)) / SAMPLING_RATE


def wav_bytes(audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> bytes:
    """(samples,) floats in [-1, 1] -> the bytes of a mono 16-bit PCM WAV file (samples beyond +-1 are clipped)."""
    check_sampling_rate("sampling_rate", sampling_rate)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sampling_rate)
        handle.writeframes((np.clip(np.asarray(audio, np.float32), -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()
