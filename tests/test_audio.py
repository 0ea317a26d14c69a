"""`load_audio` / `stream_audio`: every container the test data has, channel layouts, and clear errors."""

from __future__ import annotations

import logging
import re
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from w2vbert.audio.decode import load_audio, stream_audio, to_mono

DATA = Path(__file__).parent / "data"
ENCODED = ["quick_44k.flac", "quick_22k.mp3", "quick_48k_stereo.ogg", "quick_24k.m4a", "quick_48k.webm"]


@pytest.mark.parametrize("name", ENCODED)
def test_every_format_decodes_to_the_same_16k_speech(name):
    reference = load_audio(DATA / "quick.wav")
    audio = load_audio(DATA / name)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # Lossy codecs add delay and padding; the length is within 0.1 s and the speech lines up.
    assert abs(len(audio) - len(reference)) < 1600
    n = min(len(audio), len(reference))
    lag = np.argmax(np.correlate(audio[:n], reference[:n], mode="full")) - (n - 1)
    shifted = np.roll(audio[:n], -lag)
    assert np.corrcoef(shifted, reference[:n])[0, 1] > 0.9, name


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """(samples, channels) int16 -> a PCM WAV file, written by Python's `wave` module (no FFmpeg involved)."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(samples.shape[1])
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.astype("<i2").tobytes())
    return path


def test_files_of_any_channel_count_decode_to_the_channel_mean_without_crashing_the_process(tmp_path):
    # PyAV 18.1 segfaulted converting frames of 8+ channels (issue 32): decode in a child process, so that a
    # regression fails this test instead of killing the test run.
    counts = [1, 2, 7, 8, 9, 16, 64]
    rng = np.random.default_rng(32)
    expected = {}
    for count in counts:
        samples = rng.integers(-8000, 8000, (4000, count)).astype(np.int16)
        write_wav(tmp_path / f"ch{count}.wav", samples)
        expected[count] = (samples / 32768.0).mean(axis=1)
    script = (
        "import sys, numpy as np\n"
        "from w2vbert.audio.decode import load_audio, stream_audio\n"
        f"for count in {counts}:\n"
        f"    path = r'{tmp_path}' + f'/ch{{count}}.wav'\n"
        "    np.save(path + '.npy', load_audio(path))\n"
        "    np.save(path + '.stream.npy', np.concatenate(list(stream_audio(path, 0.1))))\n"
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    for count in counts:
        for suffix in (".npy", ".stream.npy"):
            decoded = np.load(tmp_path / f"ch{count}.wav{suffix}")
            np.testing.assert_allclose(decoded, expected[count], atol=1e-6, err_msg=f"{count} channels {suffix}")


def test_bytes_and_file_objects_decode_like_paths():
    path = DATA / "quick_44k.flac"
    expected = load_audio(path)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), expected)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(load_audio(handle), expected)


def test_resampling_keeps_a_tone_at_its_frequency():
    rate, seconds = 44100, 1.0
    t = np.arange(int(rate * seconds)) / rate
    audio = load_audio(np.sin(2 * np.pi * 440 * t).astype(np.float32), source_sampling_rate=rate)
    assert len(audio) == 16000
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins for a 1 s clip


@pytest.mark.parametrize("layout", ["samples_channels", "channels_samples"])
def test_stereo_arrays_are_averaged_whichever_axis_holds_the_channels(layout):
    left = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    stereo = np.stack([left, np.zeros_like(left)], axis=1 if layout == "samples_channels" else 0)
    np.testing.assert_allclose(load_audio(stereo), left / 2, atol=1e-7)


def test_integer_pcm_and_tensors_are_scaled_to_plus_minus_one():
    pcm = np.array([0, 16384, -32768], dtype=np.int16)
    np.testing.assert_allclose(load_audio(pcm), [0.0, 0.5, -1.0])
    np.testing.assert_allclose(load_audio(torch.tensor([0.25, -0.25])), [0.25, -0.25])


def test_streamed_blocks_equal_the_whole_file():
    whole = load_audio(DATA / "quick_44k.flac")
    blocks = list(stream_audio(DATA / "quick_44k.flac", block_seconds=0.5))
    assert len(blocks) >= 5 and all(len(b) <= 0.6 * 16000 + 4096 for b in blocks[:-1])
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        (DATA / "corrupt.wav", ValueError, "corrupt.wav: not a readable audio file"),
        (DATA / "not_audio.txt", ValueError, "not_audio.txt: not a readable audio file"),
        (DATA / "missing.wav", FileNotFoundError, "missing.wav: no such file"),
        (DATA, IsADirectoryError, "is a directory"),
        (b"", ValueError, "empty"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(source, error, message):
    with pytest.raises(error, match=message):
        load_audio(source)


def test_an_empty_file_is_reported(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.wav: the file is empty"):
        load_audio(tmp_path / "empty.wav")


def test_nan_samples_and_ambiguous_layouts_are_refused():
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_audio(np.array([0.0, np.nan, 0.1], dtype=np.float32))
    with pytest.raises(ValueError, match="cannot tell channels from samples"):
        to_mono(np.zeros((100, 200), dtype=np.float32))
    with pytest.raises(TypeError, match="expected float samples"):
        load_audio(np.array(["a", "b"]))


@settings(max_examples=30, deadline=None)
@given(samples=st.integers(1, 4000), channels=st.integers(1, 8), channels_first=st.booleans())
def test_any_channel_layout_gives_one_mono_sample_per_frame(samples, channels, channels_first):
    if samples <= 8 and channels > 1:
        return  # both axes short: ambiguous by design (tested above)
    audio = np.random.default_rng(0).uniform(-1, 1, (samples, channels)).astype(np.float32)
    arranged = audio.T if channels_first else audio
    mono = load_audio(arranged if channels > 1 else arranged.reshape(-1))
    np.testing.assert_allclose(mono, audio.mean(axis=1), atol=1e-6)


# ------------------------------------------------------------------------------ argument and input-type checks
@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"source_sampling_rate": 0}, "source_sampling_rate"),  # `0 or sampling_rate` once took 0 for "not given"
        ({"source_sampling_rate": -16000}, "source_sampling_rate"),
        ({"source_sampling_rate": float("nan")}, "source_sampling_rate"),
        ({"sampling_rate": 0}, "sampling_rate"),
    ],
)
def test_a_rate_that_is_not_positive_is_refused_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"^{argument} must be a positive number of Hz"):
        load_audio(np.zeros(1000, np.float32), **kwargs)


@settings(max_examples=40, deadline=None)
@given(rate=st.one_of(st.integers(max_value=999), st.integers(min_value=384_001), st.floats(max_value=999.9),
                      st.floats(min_value=384_000.1), st.text(max_size=3)),
       argument=st.sampled_from(["source_sampling_rate", "sampling_rate"]))
def test_a_rate_outside_1_to_384_khz_is_refused_naming_the_argument(rate, argument):
    # 10**9 Hz once resampled a second of audio to an empty array; 1 Hz to 256M samples.
    with pytest.raises(ValueError, match=f"^{argument} must be a positive number of Hz from 1000 to 384000"):
        load_audio(np.zeros(1000, np.float32), **{argument: rate})


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tensors_are_widened_to_float32(dtype):
    samples = [0.5, -0.25, 0.125]  # exact in both half formats
    audio = load_audio(torch.tensor(samples, dtype=dtype))
    assert audio.dtype == np.float32
    np.testing.assert_array_equal(audio, samples)


def test_a_text_mode_file_object_is_refused_with_a_hint_to_open_it_binary():
    hint = re.escape(
        "quick.wav: the file object is open in text mode, but audio is binary; open it with open(path, 'rb')"
    )
    with open(DATA / "quick.wav") as handle, pytest.raises(TypeError, match=hint):
        load_audio(handle)
    with open(DATA / "quick.wav") as handle, pytest.raises(TypeError, match=hint):
        next(stream_audio(handle, block_seconds=1.0))


def test_a_list_of_samples_loads_like_an_array():
    # What a `datasets` row holds once converted to Python objects: {"array": [floats], "sampling_rate": rate}.
    samples = np.sin(np.linspace(0, 200, 22050)).astype(np.float32)
    row = {"array": samples.tolist(), "sampling_rate": 22050}
    expected = load_audio(samples, source_sampling_rate=22050)
    np.testing.assert_array_equal(load_audio(row["array"], source_sampling_rate=row["sampling_rate"]), expected)
    np.testing.assert_array_equal(load_audio(tuple(row["array"]), source_sampling_rate=22050), expected)
    stereo = [[0.5, 0.25], [-0.5, 0.25]] * 10  # (samples, channels) = (20, 2)
    np.testing.assert_array_equal(load_audio(stereo), np.tile([0.375, -0.125], 10))


# ------------------------------------------------------------------------------------- whole-file checks
def write_float_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    """A mono 32-bit float WAV (format 3, IEEE float): the one PCM layout that can hold NaN and inf."""
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    path.write_bytes(
        b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )


def test_nan_samples_are_counted_over_the_whole_file(tmp_path):
    # 3 NaNs at 0.2 s and an inf and a NaN at 4.5 s, tens of decoded blocks apart: the count is the file's, 5.
    samples = np.zeros(5 * 16000, np.float32)
    samples[3200:3203] = np.nan
    samples[72000], samples[72500] = np.inf, np.nan
    write_float_wav(tmp_path / "nan.wav", samples)
    message = re.escape(f"{tmp_path / 'nan.wav'}: 5 samples are NaN or infinite (the first at 0.20 s)")
    with pytest.raises(ValueError, match=message):
        load_audio(tmp_path / "nan.wav")
    yielded = []
    with pytest.raises(ValueError, match=message):
        for block in stream_audio(tmp_path / "nan.wav", block_seconds=0.1):
            yielded.append(block)
    assert sum(map(len, yielded)) <= 3200  # nothing from the first bad block on


def cut(path: Path, tmp_path: Path, keep: float = 0.4) -> Path:
    """A copy of `path` cut after `keep` of its bytes, as a copy or download that stopped midway leaves it."""
    data = path.read_bytes()
    out = tmp_path / f"cut_{path.name}"
    out.write_bytes(data[: int(len(data) * keep)])
    return out


@pytest.mark.parametrize("name", ["quick.wav", "quick_22k.mp3"])
def test_a_truncated_file_is_decoded_as_far_as_it_goes_with_one_warning(name, tmp_path, caplog):
    truncated = cut(DATA / name, tmp_path)
    for decode in (load_audio, lambda path: np.concatenate(list(stream_audio(path, block_seconds=0.25)))):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="w2vbert"):
            audio = decode(truncated)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings
        seconds = len(audio) / 16000
        assert 0.9 < seconds < 1.2  # 40% of the 2.74 s
        assert warnings[0].startswith(f"{truncated}: the header announces 2.74 s but only {seconds:.2f} s")
        assert "(truncated file?)" in warnings[0]


def test_complete_files_never_warn(caplog):
    files = [p for p in sorted(DATA.iterdir()) if p.name not in ("corrupt.wav", "not_audio.txt")]
    files += sorted((Path(__file__).parents[1] / "examples" / "audio").glob("*.wav"))
    assert len(files) >= 11
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        for path in files:
            load_audio(path)
            load_audio(path.read_bytes())
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_wav_bytes_decode_back_to_the_samples_within_two_16_bit_steps():
    from w2vbert.audio.decode import wav_bytes

    audio = np.random.default_rng(0).uniform(-1.2, 1.2, 8000).astype(np.float32)
    for rate in (16000, 8000):
        back = load_audio(wav_bytes(audio, rate), sampling_rate=rate)
        # one step for the cast to int16, one for writing x * 32767 (so that 1.0 fits) and reading x / 32768
        np.testing.assert_allclose(back, np.clip(audio, -1, 1), atol=2.01 / 32768)
