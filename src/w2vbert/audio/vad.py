"""Voice activity: which stretches of a recording are speech, so that only those go to the model.

The detector is Silero VAD (the `vad` extra, `pip install 'w2vbert[vad]'`, as faster-whisper uses it): a 2 MB
TorchScript model inside its wheel, nothing downloaded. In order: the options (`VadOptions`), the detector (loaded
once per thread; neither importing nor running it changes torch's thread count), `speech_regions` (a 16 kHz
array -> sample ranges of speech) and `speech_windows` (a stream of audio blocks -> the long-audio windows of its
speech, in the recording's own time): the one function through which the pipeline, corpus runs and the server
skip non-speech.

The detector reads the whole recording before the first region is known, so with it a recording is held whole in
memory (230 MB per hour at 16 kHz float32) instead of one window at a time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from w2vbert.audio.decode import SAMPLING_RATE
from w2vbert.audio.windows import Window, WindowPlan, windows
from w2vbert.utils.extras import optional_import


@dataclass(frozen=True)
class VadOptions:
    """How speech is told from non-speech; the defaults are measured in benchmarks/vad.py."""

    threshold: float = 0.5  # speech probability (per 32 ms) above which audio is speech; Silero's default
    min_speech_ms: int = 250  # shorter bursts are dropped as clicks and breaths; Silero's default
    # A region ends after this much non-speech; shorter pauses stay inside it. With the padding on both sides the
    # skipped gap is at least 1000 - 2 x 100 = 800 ms of blank, more than decoding.PAUSE_S (500 ms), so the words
    # on either side of a skipped gap are always split (not run together as "catseven").
    min_silence_ms: int = 1000
    # Audio kept on each side of a region: onsets and word tails the detector misses. 60-150 ms all give the
    # demo model its clean-clip word error in benchmarks/vad.py; 200 ms of -40 dBFS noise already gets a letter.
    speech_pad_ms: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"VadOptions.threshold is a probability in (0, 1), got {self.threshold}")
        for name in ("min_speech_ms", "min_silence_ms", "speech_pad_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"VadOptions.{name} must be >= 0 ms, got {getattr(self, name)}")


# ------------------------------------------------------------------------------------------------- detector
_local = threading.local()  # the model keeps state between its 32 ms steps, so each thread needs its own


def silero() -> Any:
    """The silero_vad module, imported with torch's thread count kept: its import sets one thread for the whole
    process (silero_vad/model.py), which would make the speech model run on one core."""
    threads = torch.get_num_threads()
    try:
        return optional_import("silero_vad", "voice activity detection (--vad, Silero VAD)")
    finally:
        torch.set_num_threads(threads)


def detector() -> Any:
    """This thread's Silero model (TorchScript, from the wheel), loaded at its first use."""
    model = getattr(_local, "model", None)
    if model is None:
        model = _local.model = silero().load_silero_vad()
    return model


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """The calling thread's torch ops on one thread for the block, its count restored after. The detector runs
    one 32 ms step per call, ops so small that two threads run them 14x slower than one (20 s of audio: 2.1 s
    against 0.15 s on the 2-core Xeon); that is why silero_vad sets one thread. OpenMP keeps the count per thread,
    so a model running in another thread (the server's) keeps its threads meanwhile."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def speech_regions(audio: np.ndarray, options: VadOptions) -> list[tuple[int, int]]:
    """(start, end) sample offsets of the speech in a 16 kHz mono recording: sorted, disjoint, padded as
    `options` says; [] for a recording without speech."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected a mono 16 kHz recording of shape (samples,), got {audio.shape}")
    if not len(audio):
        return []
    with one_thread():
        speech = silero().get_speech_timestamps(
            torch.from_numpy(audio), detector(), sampling_rate=SAMPLING_RATE, threshold=options.threshold,
            min_speech_duration_ms=options.min_speech_ms, min_silence_duration_ms=options.min_silence_ms,
            speech_pad_ms=options.speech_pad_ms,
        )
    return [(int(region["start"]), int(region["end"])) for region in speech]


# -------------------------------------------------------------------------------------------------- windows
def speech_windows(blocks: Iterable[np.ndarray], plan: WindowPlan, options: VadOptions | None) -> Iterator[Window]:
    """The windows of `plan` over the speech of a stream of audio blocks, in the recording's time; every window
    of the recording (`audio.windows.windows`, one block at a time) when `options` is None.

    Each speech region is cut into windows of its own, shifted to where it starts, so a window's `first_frame`
    is its place in the whole recording's frame sequence and the frames between regions are the ones skipped
    (`Pipeline.run_windows` fills them). Regions start and end on the model's output frames (`plan.frame`):

        recording   |..silence..|== speech ==|......noise......|=== speech ===|..|
        regions                 [s0       e0)                  [s1          e1)
        windows                 [window 0)                     [window 0][w 1)
        last                                                                   [] the end, no audio

    The last window holds no audio and starts at the recording's end: it gives no frame, and counts the skipped
    tail in the recording's length (a corpus run's duration column, the server's usage).
    """
    if options is None:
        yield from windows(blocks, plan)
        return
    audio = np.concatenate([np.asarray(b, dtype=np.float32).reshape(-1) for b in blocks] or [np.zeros(0, np.float32)])
    for start, end in _on_frames(speech_regions(audio, options), plan.frame, len(audio)):
        for window in windows([audio[start:end]], plan):
            yield window.shifted(start, plan.frame)
    yield Window(np.zeros(0, np.float32), len(audio), 0, 0, len(audio) // plan.frame)


def _on_frames(regions: list[tuple[int, int]], frame: int, samples: int) -> list[tuple[int, int]]:
    """Regions widened to whole output frames (start down, end up, within the recording); two that then touch
    become one."""
    out: list[tuple[int, int]] = []
    for start, end in regions:
        start, end = start // frame * frame, min(-(-end // frame) * frame, samples)
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out
