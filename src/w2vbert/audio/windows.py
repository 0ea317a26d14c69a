"""Long audio in bounded memory: overlapping windows in, one seamless frame sequence out.

A recording is cut into windows of `chunk` samples that overlap by `left` + `right` samples of context. Each
window runs through the model alone; of its output frames, those inside the left and right context are dropped
(except at the ends of the recording), so the kept frames of consecutive windows tile the recording exactly.
All three lengths are whole multiples of the model's samples-per-output-frame (320 samples = 20 ms, times the
adapter's strides), so window k's kept frames start where window k-1's ended: the result is one frame sequence,
as if the model had seen the whole recording with a `chunk`-long attention span, and CTC decoding runs once
over it (no words duplicated or cut at window borders).

The windows come from an iterator of audio blocks (a file decoded as a stream), so memory holds one window
of audio and the model's outputs (a few MB per hour of speech), never the whole recording.

Each window's features are normalised over the window's own frames, as transformers' chunked pipeline does and
as a stream allows (statistics of the whole recording would need a second pass over the file); what that changes
is measured in benchmarks/NOTES.md ("Long audio").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from w2vbert.audio.decode import SAMPLING_RATE


@dataclass(frozen=True)
class WindowPlan:
    """Window geometry, in samples, each a multiple of `frame` (samples per output frame of the model)."""

    frame: int  # samples per output frame (320 = 20 ms at 16 kHz; 640 with one stride-2 adapter layer)
    chunk: int  # samples a window holds, context included
    left: int  # context samples at the start of a window whose frames are dropped (kept in the first window)
    right: int  # context samples at the end of a window whose frames are dropped (kept in the last window)

    @classmethod
    def from_seconds(
        cls,
        chunk_length_s: float,
        stride_length_s: float | tuple[float, float] | None,
        frame: int,
        sampling_rate: int = SAMPLING_RATE,
    ) -> WindowPlan:
        """`chunk_length_s` windows with `stride_length_s` of context per side (default chunk/6, as transformers)."""
        if stride_length_s is None:
            stride_length_s = chunk_length_s / 6
        left_s, right_s = stride_length_s if isinstance(stride_length_s, (tuple, list)) else (stride_length_s,) * 2

        def samples(seconds: float) -> int:  # round to whole output frames
            return int(round(seconds * sampling_rate / frame)) * frame

        plan = cls(frame, samples(chunk_length_s), samples(left_s), samples(right_s))
        if chunk_length_s <= 0 or left_s < 0 or right_s < 0:
            raise ValueError(f"chunk_length_s must be > 0 and strides >= 0, got {chunk_length_s} and {stride_length_s}")
        if plan.step < frame:
            raise ValueError(
                f"chunk_length_s={chunk_length_s} leaves no audio between the strides ({left_s} s + {right_s} s): "
                "make the chunk longer than the two strides together"
            )
        return plan

    @property
    def step(self) -> int:
        """Samples between the starts of consecutive windows: what each window adds to the result."""
        return self.chunk - self.left - self.right


@dataclass(frozen=True)
class Window:
    audio: np.ndarray  # (samples,) float32: the window's audio, context included
    start: int  # sample offset of the window in the recording
    drop_left: int  # output frames to drop at the start (0 for the first window)
    keep_until: int | None  # output frames kept end here (None: to the end; the last window keeps its right edge)
    first_frame: int  # index, in the whole recording's frame sequence, of the first kept frame
    samples: int = -1  # len(audio); kept when the audio is dropped (a corpus run's workers send features only)

    def __post_init__(self) -> None:
        if self.samples < 0:
            object.__setattr__(self, "samples", len(self.audio))

    def without_audio(self) -> Window:
        """The same window with its audio dropped (its length kept): what the model side needs once the
        features are computed."""
        return dataclasses.replace(self, audio=np.zeros(0, np.float32), samples=self.samples)

    def shifted(self, samples: int, frame: int) -> Window:
        """The same window `samples` later in the recording, a whole number of `frame`s (samples per output frame):
        the windows of a stretch cut alone (vad.speech_windows) placed where the stretch starts."""
        if samples % frame:
            raise ValueError(f"a window moves by whole output frames of {frame} samples, got {samples} samples")
        return dataclasses.replace(self, start=self.start + samples, first_frame=self.first_frame + samples // frame)


def windows(blocks: Iterable[np.ndarray], plan: WindowPlan) -> Iterator[Window]:
    """Cut a stream of mono audio blocks into the overlapping windows of `plan`; nothing for an empty stream.

    Window k starts at k * step. It is the last one when the recording ends inside it; knowing that needs one
    sample beyond its end, so at most `chunk` + one block of audio is held at a time, and one window's copy.
    """
    cutter = WindowCutter(plan)
    for block in blocks:
        cutter.feed(block)
        while (window := cutter.take()) is not None:
            yield window
    yield from cutter.end()


class WindowCutter:
    """`windows` for audio that is pushed rather than pulled (a live stream): `feed` each block as it arrives and
    `take` the windows it completes, one at a time (or `push`: both, as a list); `end` gives the last ones.
    `pending()` is the window that `end` would give now (what a live transcript decodes before the stream's end
    is known)."""

    def __init__(self, plan: WindowPlan) -> None:
        self.plan = plan
        self.buffer = np.zeros(0, dtype=np.float32)  # the recording from sample `start` on
        self.start = 0
        self.samples = 0  # fed so far

    def feed(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        self.buffer = np.concatenate([self.buffer, block])
        self.samples += len(block)

    def take(self) -> Window | None:
        """The next window, once a sample past its end has arrived (so it is not the last one); else None."""
        if len(self.buffer) <= self.plan.chunk:
            return None
        window = _window(self.buffer[: self.plan.chunk], self.start, self.plan, last=False)
        self.buffer, self.start = self.buffer[self.plan.step :], self.start + self.plan.step
        return window

    def push(self, block: np.ndarray) -> list[Window]:
        self.feed(block)
        return list(iter(self.take, None))

    def pending(self) -> Window | None:
        return _window(self.buffer, self.start, self.plan, last=True) if len(self.buffer) else None

    def end(self) -> list[Window]:
        last = self.pending()
        self.buffer = self.buffer[:0]
        return [] if last is None else [last]


def _window(audio: np.ndarray, start: int, plan: WindowPlan, last: bool) -> Window:
    drop_left = 0 if start == 0 else plan.left // plan.frame
    keep_until = None if last else (plan.chunk - plan.right) // plan.frame
    return Window(audio.copy(), start, drop_left, keep_until, start // plan.frame + drop_left)
