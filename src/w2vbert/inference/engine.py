"""The one inference engine: audio blocks -> windows (with VAD) -> features, computed and checked alone -> batches
-> the model -> frames kept per recording -> the result. Written once here; four callers feed it and keep only what
is theirs:

    the pipelines (`Pipeline.iterate`)   a list of inputs: `input_windows` -> `in_order` in batches of `batch_size`
    corpus runs (corpus.py)              features in DataLoader workers (`featured_windows`), then `checked_windows`
                                         -> `in_order` under a cap of padded seconds, one loader batch at a time
    the server's batcher (serving/)      a request prepared on its thread (`windows_of` -> `checked_windows`); its
                                         queue batched under the same cap (`fits`) -> `run_windows` -> `result`
    live transcription (serving/)        windows cut as the audio arrives -> `featured_windows` -> `checked`, run
                                         on the server's batcher

An input that cannot run (unreadable, too short, features that come out non-finite) fails alone, named, and the
others go on: each window's features are computed and checked on their own before windows of several inputs meet
in a padded batch, and each recording gets the same result alone or in a batch (the model is batch invariant).

In order: the inputs (`as_clip`); a recording and its checked windows (`Recording`, `ReadyWindow`); windows and
their features (`window_features`, `featured_windows`, `windows_of`, `checked_windows`); the `Pipeline` base (the
hooks a task defines, then the stages that call them: `checked`, `run_windows`, `result`); the loop (`fits`,
`check_batch_size`, `Batches`, `input_windows`, `in_order`).
"""

from __future__ import annotations

import collections
import numbers
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from w2vbert.audio.decode import SAMPLING_RATE, check_audio_file, load_audio, stream_audio
from w2vbert.audio.fbank import FRAME_LENGTH, HOP_LENGTH
from w2vbert.audio.features import SeamlessM4TFeatureExtractor, default_feature_extractor
from w2vbert.audio.vad import VadOptions, speech_windows
from w2vbert.audio.windows import Window, WindowPlan
from w2vbert.inference.names import AUTO_CHUNK_S
from w2vbert.model.base import Wav2Vec2BertPreTrainedModel

STREAM_BLOCK_S = 10.0  # seconds decoded at a time from a file
MIN_SAMPLES = FRAME_LENGTH + HOP_LENGTH  # 35 ms: two fbank frames, the one 20 ms step the model needs

AudioInput = str | os.PathLike | bytes | np.ndarray | torch.Tensor | dict
Features = tuple[torch.Tensor, torch.Tensor]  # a window's input_features (steps, dim) and attention mask (steps,)


# ----------------------------------------------------------------------------------------------------- inputs
@dataclass
class Clip:
    """One input, named for error messages. In-memory inputs hold `audio`; files are decoded as a stream."""

    name: str
    audio: np.ndarray | None = None
    path: Path | None = None

    def blocks(self) -> Iterator[np.ndarray]:
        if self.audio is not None:
            yield self.audio
        else:
            yield from stream_audio(self.path, STREAM_BLOCK_S, sampling_rate=SAMPLING_RATE)


def as_clip(source: AudioInput) -> Clip:
    """Normalise one pipeline input; a file is checked now and decoded when its turn comes."""
    if isinstance(source, dict):
        array = source.get("array", source.get("raw"))
        if array is None and "path" in source:
            return as_clip(source["path"])
        if array is None or "sampling_rate" not in source:
            raise ValueError(f"a dict input needs 'array' (or 'raw') and 'sampling_rate', got keys {sorted(source)}")
        audio = load_audio(array, sampling_rate=SAMPLING_RATE, source_sampling_rate=int(source["sampling_rate"]))
        return Clip(str(source.get("path") or "<array>"), audio=audio)
    if isinstance(source, (str, os.PathLike)):
        path = check_audio_file(source)  # now, so a bad file fails before its turn comes
        return Clip(str(path), path=path)
    if isinstance(source, (bytes, bytearray)):
        return Clip("<bytes>", audio=load_audio(bytes(source), sampling_rate=SAMPLING_RATE))
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return Clip("<array>", audio=load_audio(source, sampling_rate=SAMPLING_RATE))
    raise TypeError(
        "expected a path, bytes, a 16 kHz array or tensor, or a dict with 'array' and 'sampling_rate'; "
        f"got {type(source).__name__}"
    )


# ------------------------------------------------------------------------------------------------- recordings
@dataclass
class Recording:
    """An input whose windows are in flight: its kept outputs so far, or the error that stopped it."""

    name: str
    pieces: list[torch.Tensor] = field(default_factory=list)
    done: bool = False
    error: Exception | None = None
    samples: int = 0  # audio read so far (progress)

    def frames(self) -> torch.Tensor:
        """The recording's output frames, its windows' kept frames in order: (frames, D) float32."""
        return torch.cat(self.pieces)

    def frame_count(self) -> int:
        """Output frames gathered so far: where the next kept frame goes in the recording's frame sequence."""
        return sum(len(piece) for piece in self.pieces)

    def fail(self, error: Exception) -> None:
        message = str(error)
        self.error = type(error)(message if message.startswith(self.name) else f"{self.name}: {message}")

    def fork(self) -> Recording:
        """A copy of the frames and progress so far, which later windows extend without touching this one (what
        live transcription decodes for its partial text)."""
        return Recording(self.name, pieces=list(self.pieces), samples=self.samples)


@dataclass
class ReadyWindow:
    """A window with its features, checked and ready to be batched."""

    recording: Recording
    window: Window  # its audio dropped: the model side reads the features
    features: torch.Tensor  # (steps, feature dim), on the model's device, in its dtype
    mask: torch.Tensor  # (steps,) 1 on valid steps
    new_samples: int  # audio this window adds to its recording's progress


# --------------------------------------------------------------------------------------------------- features
def window_features(
    extractor: SeamlessM4TFeatureExtractor, window: Window, device: torch.device | str = "cpu"
) -> Features | None:
    """One window's model input, computed alone: features (steps, dim) and mask (steps,); None when the window
    holds no 25 ms fbank frame. A non-finite result (samples far outside [-1, 1]) is the extractor's error."""
    if len(window.audio) < FRAME_LENGTH:
        return None
    inputs = extractor(window.audio, sampling_rate=SAMPLING_RATE, return_tensors="pt", padding=True,
                       return_attention_mask=True, device=device)
    return inputs["input_features"][0], inputs["attention_mask"][0]


def featured_windows(
    extractor: SeamlessM4TFeatureExtractor, windows: Iterable[Window], device: torch.device | str = "cpu"
) -> Iterator[tuple[Window, Features | None]]:
    """Each window, its audio dropped, with its features: all the model side reads of it (what a corpus run's
    worker processes send, and what a request holds while it waits for its batch)."""
    for window in windows:
        yield window.without_audio(), window_features(extractor, window, device)


def windows_of(
    pipe: Pipeline, blocks: Iterable[np.ndarray], plan: WindowPlan
) -> Iterator[tuple[Window, Features | None]]:
    """The windows of `plan` over a stream of audio blocks (of the speech only, when `pipe` has a `vad`), with
    their features computed on the model's device."""
    return featured_windows(pipe.feature_extractor, speech_windows(blocks, plan, pipe.vad), pipe.device)


def checked_windows(
    pipe: Pipeline, recording: Recording, featured: Iterable[tuple[Window, Features | None]]
) -> Iterator[ReadyWindow]:
    """The windows of one recording checked for the model, in order (`Pipeline.checked`): those that give no
    output frame are left out; a ValueError when the whole recording gives none."""
    for window, features in featured:
        ready = pipe.checked(recording, window, features)
        if ready is not None:
            yield ready


# ---------------------------------------------------------------------------------------------- the pipelines
class Pipeline:
    """Shared machinery: inputs -> checked windows with features -> padded batches -> the model -> results.

    Subclasses (pipelines.py) name the model classes they serve (`model_classes`), and say what the model computes
    per window (`forward`), how many samples an output frame covers (`frame_samples`) and how a recording's
    outputs become a result (`postprocess`).
    """

    task = ""
    model_classes: tuple[type[Wav2Vec2BertPreTrainedModel], ...] = (Wav2Vec2BertPreTrainedModel,)
    vad: VadOptions | None = None  # speech recognition may skip non-speech (audio/vad.py); other tasks see every sample

    def __init__(
        self,
        model: Wav2Vec2BertPreTrainedModel,
        feature_extractor: SeamlessM4TFeatureExtractor | None = None,
        *,
        batch_size: int = 1,
        chunk_length_s: float | None = None,
        stride_length_s: float | tuple[float, float] | None = None,
    ) -> None:
        if not isinstance(model, self.model_classes):
            names = " or ".join(cls.__name__ for cls in self.model_classes)
            raise ValueError(f"the {self.task} pipeline needs a {names}, got {type(model).__name__}")
        check_batch_size(batch_size)
        self.model = model.eval()
        self.feature_extractor = feature_extractor or default_feature_extractor()
        self.batch_size = batch_size
        self.chunk_length_s = chunk_length_s
        self.stride_length_s = stride_length_s
        self.plan(chunk_length_s, stride_length_s)  # bad window settings fail now, not at the first input

    @property
    def device(self) -> torch.device:
        return self.model.device

    def __call__(self, inputs: AudioInput | list[AudioInput], **options: Any) -> Any:
        """One input gives one result; a list gives a list in the same order. Any failure raises."""
        single = not isinstance(inputs, (list, tuple))
        results = []
        for result in self.iterate([inputs] if single else inputs, **options):
            if isinstance(result, Exception):
                raise result
            results.append(result)
        return results[0] if single else results

    def iterate(
        self,
        inputs: Iterable[AudioInput],
        *,
        batch_size: int | None = None,
        chunk_length_s: float | None = None,
        stride_length_s: float | tuple[float, float] | None = None,
        progress: Callable[[float], None] | None = None,
        **options: Any,
    ) -> Iterator[Any]:
        """Results in input order, as they complete; an input that fails yields its exception (naming it) and
        the others go on, which is what a command processing many files needs. Batch and window settings given
        here override the pipeline's for this call; `progress(seconds)` is told the audio each batch has done."""
        plan = self.plan(chunk_length_s or self.chunk_length_s, stride_length_s or self.stride_length_s)
        batches = Batches(size=self.batch_size if batch_size is None else check_batch_size(batch_size))
        for recording in in_order(self, input_windows(self, inputs, plan), batches, progress):
            yield self.result(recording, **options)

    # -------------------------------------------------------------------------------------- what tasks define
    def frame_samples(self) -> int:
        """Input samples per output frame of `forward`: 320 (20 ms), times the adapter's strides."""
        return self.model.config.inputs_to_logits_ratio

    def output_frames(self, steps: int) -> int:
        """Output frames of `forward` for a window of `steps` valid 20 ms steps."""
        return int(self.model.get_feat_extract_output_lengths(steps))

    def plan(self, chunk_length_s: float | None, stride_length_s: float | tuple[float, float] | None) -> WindowPlan:
        if chunk_length_s is None:
            return WindowPlan.from_seconds(AUTO_CHUNK_S, None, self.frame_samples(), SAMPLING_RATE)
        return WindowPlan.from_seconds(chunk_length_s, stride_length_s, self.frame_samples(), SAMPLING_RATE)

    def default_plan(self) -> WindowPlan:
        """The windows of the pipeline's own `chunk_length_s` and `stride_length_s`."""
        return self.plan(self.chunk_length_s, self.stride_length_s)

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Padded features -> one (frames, D) output per row, valid frames only."""
        raise NotImplementedError

    def postprocess(self, frames: torch.Tensor, **options: Any) -> Any:
        raise NotImplementedError

    def skipped_frames(self, count: int) -> torch.Tensor:
        """What `count` output frames of audio the voice-activity detector skipped stand for: (count, D)."""
        raise NotImplementedError(f"the {self.task} pipeline runs every frame of the audio; it skips none")

    # ---------------------------------------------------------------------------------- the stages they drive
    def checked(self, recording: Recording, window: Window, features: Features | None) -> ReadyWindow | None:
        """A window with its (features, mask) as `window_features` gave them, checked for this model: None for a
        tail that gives no output frame; an error when the whole recording is such a window. Counts the audio the
        window adds to its recording."""
        new_samples = window.start + window.samples - recording.samples
        recording.samples += new_samples
        only = window.start == 0 and window.keep_until is None  # the whole recording is this one window
        if features is None:
            return None  # no fbank frame: a tail of silence-length, or (alone) a clip reported as too short
        steps = int(features[1].sum())
        if steps == 0 or self.output_frames(steps) < 1:
            if only and steps > 0:
                raise ValueError(
                    f"the audio is too short for this model: {1000 * window.samples / SAMPLING_RATE:.0f} ms give "
                    f"{steps} step(s) of 20 ms, which its adapter reduces to no output frame"
                )
            return None
        device_features = features[0].to(device=self.device, dtype=self.model.dtype)
        return ReadyWindow(recording, window, device_features, features[1].to(self.device), new_samples)

    def run_windows(self, batch: list[ReadyWindow], progress: Callable | None = None) -> None:
        """The model on a batch of checked windows; each window's kept frames go to its recording."""
        batch = [ready for ready in batch if ready.recording.error is None]
        if not batch:
            return
        features = pad_sequence([r.features for r in batch], batch_first=True,
                                padding_value=self.feature_extractor.padding_value)
        mask = pad_sequence([r.mask for r in batch], batch_first=True, padding_value=0)
        outputs = self.forward(features, mask)
        for ready, output in zip(batch, outputs, strict=True):
            if not bool(torch.isfinite(output).all()):
                ready.recording.fail(RuntimeError(
                    "the model's output is NaN or infinite (are its weights finite? a checkpoint of NaNs does this)"
                ))
                continue
            kept = output[ready.window.drop_left : ready.window.keep_until]
            if kept.numel():
                skipped = ready.window.first_frame - ready.recording.frame_count()  # > 0 only past a vad gap
                if skipped > 0:
                    ready.recording.pieces.append(self.skipped_frames(skipped))
                ready.recording.pieces.append(kept.float().cpu())
        if progress is not None:
            progress(sum(ready.new_samples for ready in batch) / SAMPLING_RATE)

    def result(self, recording: Recording, **options: Any) -> Any:
        """A finished recording's result, or the exception (naming it) that stopped it."""
        if recording.error is not None:
            return recording.error
        if not recording.pieces and self.vad is not None:  # the detector heard no speech: nothing was said
            return self.postprocess(self.skipped_frames(0), **options)
        if not recording.pieces:
            return ValueError(
                f"{recording.name}: the audio is too short: {1000 * recording.samples / SAMPLING_RATE:.0f} ms, "
                f"the model needs at least {1000 * MIN_SAMPLES // SAMPLING_RATE} ms"
            )
        try:
            return self.postprocess(recording.frames(), **options)
        except (ValueError, RuntimeError) as error:
            return type(error)(f"{recording.name}: {error}")


# --------------------------------------------------------------------------------------------------- the loop
def fits(count: int, longest: int, max_batch_seconds: float) -> bool:
    """Whether `count` windows, the longest of `longest` samples, stay within `max_batch_seconds` of padded audio."""
    return count * longest / SAMPLING_RATE <= max_batch_seconds


def check_batch_size(batch_size: Any) -> int:
    """`batch_size` if it is a whole number >= 1, else a ValueError naming it (bool is an int to Python, never a
    size; a size of 0 or below once ran every window as one batch)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    return int(batch_size)


class Batches:
    """Checked windows gathered in arrival order into the batches the model runs: at most `size` windows, and at
    most `max_seconds` of padded audio (one window longer than that runs alone)."""

    def __init__(self, size: int | None = None, max_seconds: float | None = None) -> None:
        self.size, self.max_seconds = size, max_seconds
        self.windows: list[ReadyWindow] = []
        self.longest = 0  # samples of the longest window gathered

    def add(self, ready: ReadyWindow) -> list[list[ReadyWindow]]:
        """Gather `ready`; the batches complete now, to run in order: the one it would overfill, the one it fills."""
        complete = []
        if self.windows and not self.has_room(ready):
            complete.append(self.take())
        self.windows.append(ready)
        self.longest = max(self.longest, ready.window.samples)
        if len(self.windows) == self.size:
            complete.append(self.take())
        return complete

    def has_room(self, ready: ReadyWindow) -> bool:
        """Whether `ready` joins the windows gathered within the cap of padded seconds."""
        longest = max(self.longest, ready.window.samples)
        return self.max_seconds is None or fits(len(self.windows) + 1, longest, self.max_seconds)

    def take(self) -> list[ReadyWindow]:
        """The windows gathered so far (possibly none), as one batch."""
        batch, self.windows, self.longest = self.windows, [], 0
        return batch

    def holds(self, recording: Recording) -> bool:
        return any(ready.recording is recording for ready in self.windows)


def input_windows(
    pipe: Pipeline, inputs: Iterable[AudioInput], plan: WindowPlan
) -> Iterator[tuple[Recording, ReadyWindow | None]]:
    """(recording, checked window) pairs across all inputs; (recording, None) marks its end or its failure."""
    for source in inputs:
        recording = Recording(str(source)[:80])
        try:
            clip = as_clip(source)
            recording.name = clip.name
            for ready in checked_windows(pipe, recording, windows_of(pipe, clip.blocks(), plan)):
                yield recording, ready
        except (OSError, ValueError, TypeError) as error:
            recording.fail(error)
        yield recording, None


def in_order(
    pipe: Pipeline,
    stream: Iterable[tuple[Recording, ReadyWindow | None]],
    batches: Batches,
    progress: Callable | None = None,
) -> Iterator[Recording]:
    """Run the checked windows of `stream` in `batches`, the last one when the stream ends; hand out each recording,
    in stream order, once all its windows have run. (recording, None) in the stream marks a recording's end."""
    waiting: collections.deque[Recording] = collections.deque()  # in stream order, not yet handed out
    with torch.inference_mode():
        for recording, ready in stream:
            if not waiting or waiting[-1] is not recording:
                waiting.append(recording)
            if ready is None:
                recording.done = True
            else:
                for batch in batches.add(ready):
                    pipe.run_windows(batch, progress)
            while waiting and waiting[0].done and not batches.holds(waiting[0]):
                yield waiting.popleft()
        pipe.run_windows(batches.take(), progress)
    yield from waiting
