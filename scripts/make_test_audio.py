"""Regenerate tests/data: short English speech from espeak-ng, and the same speech in other formats and rates.

    .venv/bin/python scripts/make_test_audio.py

espeak-ng writes 22.05 kHz mono WAV; soxr resamples it to 16 kHz; PyAV (FFmpeg) encodes the other formats.
The sentences, voices and speeds are fixed, so the files are reproducible with the same espeak-ng version.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

from w2vbert.audio.decode import load_audio, resample

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
CLIPS = {  # name: (text, voice, words per minute)
    "hello": ("hello world", "en-us", 170),
    "numbers": ("one two three four five six seven", "en-gb", 150),
    "quick": ("the quick brown fox jumps over the lazy dog", "en-us+f3", 185),
    "short": ("yes", "en", 175),
}


def espeak(text: str, voice: str, speed: int) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
        return load_audio(wav, sampling_rate=22050), 22050


def encode(audio: np.ndarray, rate: int, path: Path, codec: str, channels: int = 1, **options: str) -> None:
    """Write `audio` (mono float) with PyAV; stereo files get a quieter copy in the right channel."""
    layout = "stereo" if channels == 2 else "mono"
    planes = np.stack([audio, audio * 0.5]) if channels == 2 else audio[None]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        for key, value in options.items():
            stream.options[key] = value
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes, np.float32), format="fltp", layout=layout)
        frame.rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_wav16(audio: np.ndarray, path: Path) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for name, (text, voice, speed) in CLIPS.items():
        audio, rate = espeak(text, voice, speed)
        write_wav16(resample(audio, rate, 16000), DATA / f"{name}.wav")
    audio, rate = espeak(*CLIPS["quick"])
    encode(resample(audio, rate, 44100), 44100, DATA / "quick_44k.flac", "flac")
    encode(resample(audio, rate, 22050), 22050, DATA / "quick_22k.mp3", "libmp3lame")
    encode(resample(audio, rate, 48000), 48000, DATA / "quick_48k_stereo.ogg", "libopus", channels=2)
    encode(resample(audio, rate, 24000), 24000, DATA / "quick_24k.m4a", "aac")
    encode(resample(audio, rate, 48000), 48000, DATA / "quick_48k.webm", "libopus")
    (DATA / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    (DATA / "not_audio.txt").write_text("this is text, not audio\n")
    for path in sorted(DATA.iterdir()):
        print(f"{path.name:24s} {path.stat().st_size:8d} bytes")


if __name__ == "__main__":
    main()
