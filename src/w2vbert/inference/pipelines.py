"""`pipeline(task, model=...)`: audio in, text / labels / embeddings out, as the documented API shapes them.

Five tasks: "automatic-speech-recognition" (`{"text": ...}`, plus `"chunks"` with timestamps),
"audio-classification" (`[{"label": ..., "score": ...}, ...]`, best first), "feature-extraction" (one
embedding array per input), and two transformers has no pipeline for: "audio-frame-classification" (labelled
segments `[{"label", "start", "end", "score"}, ...]` in time order, from a frame classifier) and
"speaker-embedding" (one x-vector per input, for `data/verification.py`). An input is a path, bytes, a 16 kHz NumPy
array or tensor, a dict `{"array"|"raw": ..., "sampling_rate": ...}` (as `datasets` rows give them), or a list of
these.

The way of an input: it is checked (`as_clip`), cut into windows (audio/windows.py; a file is decoded as a stream, so
an hour of audio is never in memory at once; with `vad=`, speech recognition cuts windows of the speech only and
fills the skipped frames with CTC blanks, audio/vad.py), and each window's features are computed and checked on their
own; only then do windows of several inputs meet in a padded batch. So an input that cannot run (unreadable, too
short, features that come out non-finite) fails alone, named, and the others go on; and each gets the same result
alone or in a batch (the model is batch invariant).
"""

from __future__ import annotations

import logging
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
from w2vbert.audio.features import SeamlessM4TFeatureExtractor, default_feature_extractor, feature_extractor_for
from w2vbert.audio.vad import VadOptions, detector, speech_windows
from w2vbert.audio.windows import Window, WindowPlan
from w2vbert.loading.devices import resolve_device, resolve_dtype, warn_if_emulated
from w2vbert.model.auto import model_class_for
from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.encoder import Wav2Vec2BertModel
from w2vbert.model.heads import (
    Wav2Vec2BertForAudioFrameClassification,
    Wav2Vec2BertForCTC,
    Wav2Vec2BertForSequenceClassification,
    Wav2Vec2BertForXVector,
)
from w2vbert.model.loader import Placement
from w2vbert.text.decoding import BeamSearchDecoder, ctc_transcribe
from w2vbert.text.segments import merge_frames
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer

logger = logging.getLogger("w2vbert")

AUTO_CHUNK_S = 30.0  # without chunk_length_s, recordings longer than this run as windows of this length
STREAM_BLOCK_S = 10.0  # seconds decoded at a time from a file
MIN_SAMPLES = FRAME_LENGTH + HOP_LENGTH  # 35 ms: two fbank frames, the one 20 ms step the model needs

AudioInput = str | os.PathLike | bytes | np.ndarray | torch.Tensor | dict


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


@dataclass
class ReadyWindow:
    """A window with its features, checked and ready to be batched."""

    recording: Recording
    window: Window
    features: torch.Tensor  # (steps, feature dim)
    mask: torch.Tensor  # (steps,) 1 on valid steps
    new_samples: int  # audio this window adds to its recording's progress


def window_features(
    extractor: SeamlessM4TFeatureExtractor, window: Window, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One window's model input, computed alone: features (steps, dim) and mask (steps,); None when the window
    holds no 25 ms fbank frame. A non-finite result (samples far outside [-1, 1]) is the extractor's error.
    What `Pipeline` does before batching, and what bulk runs do in their worker processes."""
    if len(window.audio) < FRAME_LENGTH:
        return None
    inputs = extractor(window.audio, sampling_rate=SAMPLING_RATE, return_tensors="pt", padding=True,
                       return_attention_mask=True, device=device)
    return inputs["input_features"][0], inputs["attention_mask"][0]


class Pipeline:
    """Shared machinery: inputs -> checked windows with features -> padded batches -> the model -> results.

    Subclasses name the model classes they serve (`model_classes`), and say what the model computes per window
    (`forward`), how many samples an output frame covers (`frame_samples`) and how a recording's outputs become
    a result (`postprocess`).
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
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
        for recording in self._outputs(inputs, batch_size or self.batch_size, plan, progress):
            yield self.result(recording, **options)

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

    # ------------------------------------------------------------------------------------ what tasks define
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

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Padded features -> one (frames, D) output per row, valid frames only."""
        raise NotImplementedError

    def postprocess(self, frames: torch.Tensor, **options: Any) -> Any:
        raise NotImplementedError

    def skipped_frames(self, count: int) -> torch.Tensor:
        """What `count` output frames of audio the voice-activity detector skipped stand for: (count, D)."""
        raise NotImplementedError(f"the {self.task} pipeline runs every frame of the audio; it skips none")

    # ------------------------------------------------------------------------------------------- machinery
    def _ready_windows(self, inputs: Iterable[AudioInput], plan: WindowPlan) -> Iterator[tuple[Recording, Any]]:
        """(recording, checked window) pairs across all inputs; (recording, None) marks its end or its failure."""
        for source in inputs:
            recording = Recording(str(source)[:80])
            try:
                clip = as_clip(source)
                recording.name = clip.name
                for window in speech_windows(clip.blocks(), plan, self.vad):
                    ready = self._prepare(recording, window)
                    if ready is not None:
                        yield recording, ready
            except (OSError, ValueError, TypeError) as error:
                recording.fail(error)
            yield recording, None

    def _prepare(self, recording: Recording, window: Window) -> ReadyWindow | None:
        """A window's features, computed and checked alone; None for a tail too short to give an output frame."""
        return self.checked(recording, window, window_features(self.feature_extractor, window, self.device))

    def checked(
        self, recording: Recording, window: Window, features: tuple[torch.Tensor, torch.Tensor] | None
    ) -> ReadyWindow | None:
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

    def _outputs(
        self, inputs: Iterable[AudioInput], batch_size: int, plan: WindowPlan, progress: Callable | None
    ) -> Iterator[Recording]:
        """Run checked windows `batch_size` at a time; hand out each recording once all its windows have run."""
        queue: list[Recording] = []  # recordings in input order, not yet handed out
        batch: list[ReadyWindow] = []
        with torch.inference_mode():
            for recording, ready in self._ready_windows(inputs, plan):
                if not queue or queue[-1] is not recording:
                    queue.append(recording)
                if ready is None:
                    recording.done = True
                else:
                    batch.append(ready)
                if len(batch) == batch_size:
                    self.run_windows(batch, progress)
                    batch = []
                while queue and queue[0].done and not any(r.recording is queue[0] for r in batch):
                    yield queue.pop(0)
            self.run_windows(batch, progress)
        yield from queue

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


class AutomaticSpeechRecognitionPipeline(Pipeline):
    """CTC speech recognition: greedy, or beam search (optionally with a KenLM n-gram) given a `decoder`.

    The tokenizer may know more ids than the CTC head has outputs (transformers' tokenizers add <s> and </s>):
    the head never produces those, and decoding is unchanged. A head wider than the tokenizer would emit ids it
    cannot spell, so that is an error when the pipeline is built.

    `vad` (a `vad.VadOptions`, or True for its defaults) runs only the speech through the model: the frames of the
    skipped audio are certain blanks, so the text is the regions' texts in order and timestamps stay in the
    recording's time; a recording without speech gives empty text.
    """

    task = "automatic-speech-recognition"
    model_classes = (Wav2Vec2BertForCTC,)

    def __init__(
        self,
        model: Wav2Vec2BertPreTrainedModel,
        feature_extractor: SeamlessM4TFeatureExtractor | None = None,
        tokenizer: Wav2Vec2CTCTokenizer | None = None,
        *,
        decoder: BeamSearchDecoder | None = None,
        vad: VadOptions | bool | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, feature_extractor, **options)
        if not isinstance(vad, (VadOptions, bool, type(None))):
            raise TypeError(f"vad takes a w2vbert.VadOptions, True (its defaults) or None, got {type(vad).__name__}")
        self.vad = VadOptions() if vad is True else vad or None
        if self.vad is not None:
            detector()  # a missing `vad` extra fails now, not at the first input
        if tokenizer is None:
            raise ValueError("speech recognition needs a tokenizer (vocab.json) to turn CTC tokens into text")
        check_head_fits_tokenizer(model.config, tokenizer)
        self.tokenizer = tokenizer
        self.decoder = decoder
        if decoder is not None:
            decoder.prepare(tokenizer, model.config.vocab_size)  # the language model is read once, now

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        logits = self.model(input_features, attention_mask=attention_mask).logits
        lengths = self.model.get_feat_extract_output_lengths(attention_mask.sum(-1))
        return [row[:length] for row, length in zip(logits.log_softmax(-1), lengths.tolist(), strict=True)]

    def log_probs(self, source: AudioInput) -> torch.Tensor:
        """One input's (frames, vocab) CTC log-probabilities, through the long-audio windows as transcription
        runs them (what forced alignment reads). Raises what a bad input raises."""
        plan = self.plan(self.chunk_length_s, self.stride_length_s)
        (recording,) = self._outputs([source], self.batch_size, plan, None)
        if recording.error is not None:
            raise recording.error
        if not recording.pieces:
            raise ValueError(f"{recording.name}: the audio is too short: it gives no output frame")
        return recording.frames()

    def postprocess(self, frames: torch.Tensor, return_timestamps: str | bool | None = None) -> dict[str, Any]:
        if return_timestamps is True:
            return_timestamps = "word"
        if return_timestamps not in (None, False, "char", "word"):
            raise ValueError(f"return_timestamps must be None, 'char' or 'word', got {return_timestamps!r}")
        seconds = self.frame_samples() / SAMPLING_RATE
        return ctc_transcribe(
            frames, self.tokenizer, seconds, timestamps=return_timestamps or None, decoder=self.decoder
        )

    def skipped_frames(self, count: int) -> torch.Tensor:
        # Certain blank, CTC's word for silence. -1e4 rather than -inf: a beam search adds and subtracts scores,
        # and -inf - -inf is NaN.
        frames = torch.full((count, self.model.config.vocab_size), -1e4)
        frames[:, self.tokenizer.pad_token_id] = 0.0
        return frames


def check_head_fits_tokenizer(config: Wav2Vec2BertConfig, tokenizer: Wav2Vec2CTCTokenizer) -> None:
    """A CTC head of `vocab_size` outputs must have a token for each id it can emit, and its blank."""
    known = tokenizer.max_token_id + 1
    if config.vocab_size > known:
        raise ValueError(
            f"the model's CTC head has {config.vocab_size} outputs but its tokenizer only {known} ids "
            f"(vocab.json and its added tokens): ids {known}..{config.vocab_size - 1} could not be written; is this "
            "the tokenizer the model was trained with?"
        )
    if tokenizer.max_vocab_id >= config.vocab_size:
        beyond = sorted(t for t, i in tokenizer.encoder.items() if i >= config.vocab_size)
        raise ValueError(
            f"vocab.json has ids up to {tokenizer.max_vocab_id} but the model's CTC head only {config.vocab_size} "
            f"outputs: {beyond[:8]} could never be written; is this the tokenizer the model was trained with?"
        )
    if config.pad_token_id is not None and config.pad_token_id != tokenizer.pad_token_id:
        raise ValueError(
            f"the model's CTC blank is id {config.pad_token_id} (pad_token_id) but the tokenizer's pad token "
            f"{tokenizer.pad_token!r} is id {tokenizer.pad_token_id}: is this the tokenizer the model was trained with?"
        )


class AudioClassificationPipeline(Pipeline):
    """One label per recording: the `top_k` best `{"label", "score"}` (5 by default, as transformers)."""

    task = "audio-classification"
    model_classes = (Wav2Vec2BertForSequenceClassification,)

    def __init__(
        self,
        model: Wav2Vec2BertPreTrainedModel,
        feature_extractor: SeamlessM4TFeatureExtractor | None = None,
        *,
        top_k: int = 5,
        **options: Any,
    ) -> None:
        super().__init__(model, feature_extractor, **options)
        self.top_k = top_k

    def plan(self, chunk_length_s: float | None, stride_length_s: float | tuple[float, float] | None) -> WindowPlan:
        return whole_recording_plan(self, chunk_length_s, stride_length_s)

    def output_frames(self, steps: int) -> int:
        return 1  # the window's logits

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        logits = self.model(input_features, attention_mask=attention_mask).logits
        return list(logits[:, None, :])  # one "frame" per window: the window's logits

    def postprocess(self, frames: torch.Tensor, top_k: int | None = None) -> list[dict[str, Any]]:
        # Several windows (when chunking was asked) vote by averaging their probabilities.
        scores = frames.softmax(-1).mean(0)
        top = scores.topk(min(top_k or self.top_k, scores.numel()))
        labels = self.model.config.id2label
        return [{"label": labels[int(i)], "score": float(s)} for s, i in zip(top.values, top.indices, strict=True)]


def whole_recording_plan(
    pipe: Pipeline, chunk_length_s: float | None, stride_length_s: float | tuple[float, float] | None
) -> WindowPlan:
    """A result for the whole clip (a label, a speaker embedding): by default the head pools over all of it, one
    window per input; windows only when `chunk_length_s` asks for them."""
    if chunk_length_s is None:
        return WindowPlan(pipe.frame_samples(), 1 << 62, 0, 0)
    return Pipeline.plan(pipe, chunk_length_s, stride_length_s)


class AudioFrameClassificationPipeline(Pipeline):
    """A label per 20 ms frame (voice activity, language or speaker turns), merged into segments: runs of one
    label as `{"label", "start", "end", "score"}` (seconds; score: the run's mean probability of its label), in
    time order, covering the recording. Long recordings run as windows, each frame from the window it is inside."""

    task = "audio-frame-classification"
    model_classes = (Wav2Vec2BertForAudioFrameClassification,)

    def output_frames(self, steps: int) -> int:
        return steps  # no adapter: one output per 20 ms step

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        logits = self.model(input_features, attention_mask=attention_mask).logits  # (B, T, labels)
        return [row[:length] for row, length in zip(logits, attention_mask.sum(-1).tolist(), strict=True)]

    def postprocess(self, frames: torch.Tensor) -> list[dict[str, Any]]:
        scores, ids = frames.softmax(-1).max(-1)
        return merge_frames(ids, scores, self.frame_samples() / SAMPLING_RATE, self.model.config.id2label)


class SpeakerEmbeddingPipeline(Pipeline):
    """One x-vector per recording: (xvector_output_dim,) float32, the head's statistics pooling over the whole
    clip (with `chunk_length_s`, the mean of the windows' embeddings)."""

    task = "speaker-embedding"
    model_classes = (Wav2Vec2BertForXVector,)

    def plan(self, chunk_length_s: float | None, stride_length_s: float | tuple[float, float] | None) -> WindowPlan:
        return whole_recording_plan(self, chunk_length_s, stride_length_s)

    def output_frames(self, steps: int) -> int:
        return 1

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model(input_features, attention_mask=attention_mask).embeddings[:, None, :])

    def postprocess(self, frames: torch.Tensor) -> np.ndarray:
        return frames.mean(0).numpy()


class FeatureExtractionPipeline(Pipeline):
    """Embeddings: the hidden state of `layer` (blocks above it are not run), per frame or mean-pooled.

    Any model of the family serves: a head's encoder is used as it is.
    """

    task = "feature-extraction"

    def __init__(
        self,
        model: Wav2Vec2BertPreTrainedModel,
        feature_extractor: SeamlessM4TFeatureExtractor | None = None,
        *,
        layer: int = -1,
        pool: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, feature_extractor, **options)
        self.encoder: Wav2Vec2BertModel = model.base_model
        self.encoder.layer_index(layer)  # a bad layer fails now, not at the first input
        self.layer = layer
        self.pool = _check_pool(pool)

    def frame_samples(self) -> int:
        return self.model.config.feature_projection_input_dim * 2  # encoder layers run before the adapter

    def output_frames(self, steps: int) -> int:
        return steps

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        out = self.encoder.embed(input_features, attention_mask=attention_mask, layer=self.layer)
        lengths = out.attention_mask.sum(-1).tolist()
        return [row[:length] for row, length in zip(out.hidden_state, lengths, strict=True)]

    def postprocess(self, frames: torch.Tensor, pool: str | None = None) -> np.ndarray:
        """(frames, hidden) float32, or (hidden,) with pool="mean" (the mean over the recording's frames)."""
        pool = self.pool if pool is None else _check_pool(pool)  # "none" here means every frame, whatever the default
        return (frames.mean(0) if pool == "mean" else frames).numpy()


def _check_pool(pool: str | None) -> str | None:
    if pool not in (None, "none", "mean"):
        raise ValueError(f"pool must be None/'none' (every frame) or 'mean', got {pool!r}")
    return None if pool == "none" else pool


TASKS: dict[str, type[Pipeline]] = {
    "automatic-speech-recognition": AutomaticSpeechRecognitionPipeline,
    "audio-classification": AudioClassificationPipeline,
    "feature-extraction": FeatureExtractionPipeline,
    "audio-frame-classification": AudioFrameClassificationPipeline,
    "speaker-embedding": SpeakerEmbeddingPipeline,
}


def load_for_task(
    task: str, source: str | os.PathLike, **load_options: Any
) -> tuple[Wav2Vec2BertPreTrainedModel, dict[str, list]]:
    """The checkpoint at `source` as the model class `task` serves, with the loading report.

    A base encoder checkpoint becomes a classifier with a fresh head (transformers does the same, and warns); a
    checkpoint saved with a head the task cannot serve is refused, naming the classes that fit.
    """
    saved = model_class_for(Wav2Vec2BertConfig.from_pretrained(source))
    target = saved
    if task == "audio-classification" and saved is Wav2Vec2BertModel:
        target = Wav2Vec2BertForSequenceClassification
        logger.warning("%s is a base encoder: its classification head starts untrained (as in transformers)", source)
    accepted = TASKS[task].model_classes
    if not issubclass(target, accepted):
        names = ", ".join(cls.__name__ for cls in accepted)
        raise ValueError(f"the {task} pipeline serves {names}; {source} is a {saved.__name__} checkpoint")
    return target.from_pretrained(source, output_loading_info=True, **load_options)


def load_task_model(
    task: str, source: str, device: str | None = None, dtype: str = "float32", quantize: str | None = None
) -> Any:
    """The model for a task (of the command line or the server), refused if loading had to start any of its
    tensors fresh: a checkpoint without its trained head would print random text. Device, `dtype` ("auto": the
    fastest mode the device runs natively) and `quantize` are resolved once, by `Placement.for_inference`."""
    placement = Placement.for_inference(device, dtype, quantize)
    model, info = load_for_task(task, source, **placement.keywords())
    if info["missing_keys"] or info["mismatched_keys"]:
        names = info["missing_keys"] + [name for name, _, _ in info["mismatched_keys"]]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise ValueError(
            f"{source}: {len(names)} tensors of the {type(model).__name__} were not in the checkpoint and would "
            f"start untrained ({shown}): it is not a trained model for {task}. Fine-tune it first (w2vbert finetune)"
        )
    return model


def pipeline(
    task: str,
    model: str | os.PathLike | Wav2Vec2BertPreTrainedModel | None = None,
    *,
    feature_extractor: SeamlessM4TFeatureExtractor | str | None = None,
    tokenizer: Wav2Vec2CTCTokenizer | str | None = None,
    device: str | torch.device | int | None = None,
    torch_dtype: torch.dtype | str | None = None,
    batch_size: int = 1,
    chunk_length_s: float | None = None,
    stride_length_s: float | tuple[float, float] | None = None,
    decoder: BeamSearchDecoder | None = None,
    model_kwargs: dict[str, Any] | None = None,
    **task_options: Any,
) -> Pipeline:
    """Build the pipeline for `task` from a model directory / hub repo id, or from loaded objects.

    The feature extractor and tokenizer are read from the model's directory when not given. `device` takes
    "cpu", "cuda", "cuda:1" or a GPU index (as transformers). `decoder` is a `decoding.BeamSearchDecoder` for
    beam search / KenLM; greedy CTC otherwise. A model class the task cannot serve is refused here, with the
    classes that fit.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; w2vbert has {sorted(TASKS)}")
    if model is None:
        raise ValueError("pass model= (a model directory, a hub repo id, or a loaded w2vbert model)")
    target = None if device is None else resolve_device(device)
    if isinstance(model, (str, os.PathLike)):
        source = model
        model, _ = load_for_task(task, source, torch_dtype=torch_dtype, device=target, **(model_kwargs or {}))
        if feature_extractor is None:
            feature_extractor = feature_extractor_for(source)
        if tokenizer is None and task == "automatic-speech-recognition":
            tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(source)
    elif target is not None or torch_dtype is not None:
        model = model.to(device=target, dtype=None if torch_dtype is None else resolve_dtype(torch_dtype))
    warn_if_emulated(model.device, model.dtype)
    if isinstance(feature_extractor, (str, os.PathLike)):
        feature_extractor = SeamlessM4TFeatureExtractor.from_pretrained(feature_extractor)
    options = dict(batch_size=batch_size, chunk_length_s=chunk_length_s, stride_length_s=stride_length_s)
    if task == "automatic-speech-recognition":
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(tokenizer)
        return AutomaticSpeechRecognitionPipeline(
            model, feature_extractor, tokenizer, decoder=decoder, **options, **task_options
        )
    return TASKS[task](model, feature_extractor, **options, **task_options)
