"""`pipeline(task, model=...)`: audio in, text / labels / embeddings out, as the documented API shapes them.

Three tasks: "automatic-speech-recognition" (`{"text": ...}`, plus `"chunks"` with timestamps),
"audio-classification" (`[{"label": ..., "score": ...}, ...]`, best first) and "feature-extraction" (one
embedding array per input). An input is a path, bytes, a 16 kHz NumPy array or tensor, a dict
`{"array"|"raw": ..., "sampling_rate": ...}` (as `datasets` rows give them), or a list of these.

Inputs are batched together (`batch_size`), and each gets the same result alone or in a batch (the model is
batch invariant). Recordings longer than the chunk length run as overlapping windows (chunking.py); a file is
decoded as a stream, so an hour of audio is never in memory at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audio import SAMPLING_RATE, check_audio_file, load_audio, stream_audio
from .chunking import Window, WindowPlan, windows
from .features import FRAME_LENGTH, SeamlessM4TFeatureExtractor, default_feature_extractor, feature_extractor_for
from .pretrained import Wav2Vec2BertPreTrainedModel

logger = logging.getLogger("w2vbert")

AUTO_CHUNK_S = 30.0  # without chunk_length_s, recordings longer than this run as windows of this length
STREAM_BLOCK_S = 10.0  # seconds decoded at a time from a file

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
class _Pending:
    """A recording whose windows are in flight: its kept outputs so far, or the error that stopped it."""

    clip: Clip | None
    pieces: list[torch.Tensor] = field(default_factory=list)
    done: bool = False
    error: Exception | None = None


class Pipeline:
    """Shared machinery: inputs -> windows -> padded batches of features -> the model -> per-recording outputs.

    Subclasses say what the model computes per window (`forward`), how many samples an output frame covers
    (`frame_samples`) and how a recording's outputs become a result (`postprocess`).
    """

    task = ""

    def __init__(
        self,
        model: Wav2Vec2BertPreTrainedModel,
        feature_extractor: SeamlessM4TFeatureExtractor | None = None,
        *,
        batch_size: int = 1,
        chunk_length_s: float | None = None,
        stride_length_s: float | tuple[float, float] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.feature_extractor = feature_extractor or default_feature_extractor()
        self.batch_size = batch_size
        self.chunk_length_s = chunk_length_s
        self.stride_length_s = stride_length_s

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
        **options: Any,
    ) -> Iterator[Any]:
        """Results in input order, as they complete; an input that fails yields its exception (naming it) and
        the others go on, which is what a command processing many files needs. Batch and window settings given
        here override the pipeline's for this call."""
        plan = self.plan(chunk_length_s or self.chunk_length_s, stride_length_s or self.stride_length_s)
        for pending in self._outputs(inputs, batch_size or self.batch_size, plan):
            if pending.error is not None:
                yield pending.error
            elif not pending.pieces:
                yield ValueError(f"{pending.clip.name}: the audio is empty (no 25 ms of samples)")
            else:
                try:
                    yield self.postprocess(torch.cat(pending.pieces), **options)
                except (ValueError, RuntimeError) as error:
                    yield type(error)(f"{pending.clip.name}: {error}")

    # ------------------------------------------------------------------------------------ what tasks define
    def frame_samples(self) -> int:
        """Input samples per output frame of `forward`: 320 (20 ms), times the adapter's strides."""
        return self.model.config.inputs_to_logits_ratio

    def plan(self, chunk_length_s: float | None, stride_length_s: float | tuple[float, float] | None) -> WindowPlan:
        if chunk_length_s is None:
            return WindowPlan.from_seconds(AUTO_CHUNK_S, None, self.frame_samples(), SAMPLING_RATE)
        return WindowPlan.from_seconds(chunk_length_s, stride_length_s, self.frame_samples(), SAMPLING_RATE)

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Padded features -> one (frames, D) output per row, valid frames only."""
        raise NotImplementedError

    def postprocess(self, frames: torch.Tensor, **options: Any) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------- machinery
    def _windows(self, inputs: Iterable[AudioInput], plan: WindowPlan) -> Iterator[tuple[_Pending, Window | None]]:
        """(recording, window) pairs across all inputs; (recording, None) marks its end (or its failure)."""
        for source in inputs:
            pending = _Pending(None)
            try:
                pending.clip = as_clip(source)
                for window in windows(pending.clip.blocks(), plan):
                    yield pending, window
            except (OSError, ValueError, TypeError) as error:
                name = pending.clip.name if pending.clip else str(source)[:80]
                message = str(error)
                pending.error = type(error)(message if message.startswith(name) else f"{name}: {message}")
            yield pending, None

    def _outputs(self, inputs: Iterable[AudioInput], batch_size: int, plan: WindowPlan) -> Iterator[_Pending]:
        """Run windows `batch_size` at a time; hand out each recording once all its windows have run."""
        queue: list[_Pending] = []  # recordings in input order, not yet handed out
        batch: list[tuple[_Pending, Window]] = []
        with torch.inference_mode():
            for pending, window in self._windows(inputs, plan):
                if not queue or queue[-1] is not pending:
                    queue.append(pending)
                if window is None:
                    pending.done = True
                else:
                    batch.append((pending, window))
                if len(batch) == batch_size:
                    self._run(batch)
                    batch = []
                while queue and queue[0].done and not any(p is queue[0] for p, _ in batch):
                    yield queue.pop(0)
            self._run(batch)
        yield from queue

    def _run(self, batch: list[tuple[_Pending, Window]]) -> None:
        """Features and model for a batch of windows; each window's kept frames go to its recording."""
        usable = [(p, w) for p, w in batch if len(w.audio) >= FRAME_LENGTH]
        if not usable:
            return  # windows shorter than one 25 ms analysis frame hold no speech
        inputs = self.feature_extractor(
            [w.audio for _, w in usable],
            sampling_rate=SAMPLING_RATE,
            return_tensors="pt",
            padding=True,
            return_attention_mask=True,
            device=self.device,
        )
        features = inputs["input_features"].to(self.model.dtype)
        outputs = self.forward(features, inputs["attention_mask"])
        for (pending, window), output in zip(usable, outputs, strict=True):
            kept = output[window.drop_left : window.keep_until]
            if kept.numel():
                pending.pieces.append(kept.float().cpu())


class AutomaticSpeechRecognitionPipeline(Pipeline):
    """CTC speech recognition: greedy, or beam search (optionally with a KenLM n-gram) given a `decoder`."""

    task = "automatic-speech-recognition"

    def __init__(
        self,
        model: Wav2Vec2BertPreTrainedModel,
        feature_extractor: SeamlessM4TFeatureExtractor | None = None,
        tokenizer: Any = None,
        *,
        decoder: Any = None,
        **options: Any,
    ) -> None:
        if not hasattr(model, "lm_head"):
            raise ValueError(f"speech recognition needs a CTC model (Wav2Vec2BertForCTC), got {type(model).__name__}")
        if tokenizer is None:
            raise ValueError("speech recognition needs a tokenizer (vocab.json) to turn CTC tokens into text")
        super().__init__(model, feature_extractor, **options)
        self.tokenizer = tokenizer
        self.decoder = decoder

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        logits = self.model(input_features, attention_mask=attention_mask).logits
        lengths = self.model.get_feat_extract_output_lengths(attention_mask.sum(-1))
        return [row[:length] for row, length in zip(logits.log_softmax(-1), lengths.tolist(), strict=True)]

    def postprocess(self, frames: torch.Tensor, return_timestamps: str | bool | None = None) -> dict[str, Any]:
        from .decoding import ctc_transcribe

        if return_timestamps is True:
            return_timestamps = "word"
        if return_timestamps not in (None, False, "char", "word"):
            raise ValueError(f"return_timestamps must be None, 'char' or 'word', got {return_timestamps!r}")
        seconds = self.frame_samples() / SAMPLING_RATE
        return ctc_transcribe(
            frames, self.tokenizer, seconds, timestamps=return_timestamps or None, decoder=self.decoder
        )


class AudioClassificationPipeline(Pipeline):
    """One label per recording: the `top_k` best `{"label", "score"}` (5 by default, as transformers)."""

    task = "audio-classification"

    def __init__(
        self,
        model: Wav2Vec2BertPreTrainedModel,
        feature_extractor: SeamlessM4TFeatureExtractor | None = None,
        *,
        top_k: int = 5,
        **options: Any,
    ) -> None:
        if not hasattr(model, "classifier"):
            raise ValueError(
                "audio classification needs Wav2Vec2BertForSequenceClassification (a label per clip), "
                f"got {type(model).__name__}"
            )
        super().__init__(model, feature_extractor, **options)
        self.top_k = top_k

    def plan(self, chunk_length_s: float | None, stride_length_s: float | tuple[float, float] | None) -> WindowPlan:
        # A label is for the whole clip, so by default the head pools over all of it: one window per input.
        if chunk_length_s is None:
            return WindowPlan(self.frame_samples(), 1 << 62, 0, 0)
        return super().plan(chunk_length_s, stride_length_s)

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        logits = self.model(input_features, attention_mask=attention_mask).logits
        return list(logits[:, None, :])  # one "frame" per window: the window's logits

    def postprocess(self, frames: torch.Tensor, top_k: int | None = None) -> list[dict[str, Any]]:
        # Several windows (when chunking was asked) vote by averaging their probabilities.
        scores = frames.softmax(-1).mean(0)
        top = scores.topk(min(top_k or self.top_k, scores.numel()))
        labels = self.model.config.id2label
        return [{"label": labels[int(i)], "score": float(s)} for s, i in zip(top.values, top.indices, strict=True)]


class FeatureExtractionPipeline(Pipeline):
    """Embeddings: the hidden state of `layer` (blocks above it are not run), per frame or mean-pooled."""

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
        self.encoder = model.base_model  # a head's encoder works as well
        self.encoder.layer_index(layer)  # a bad layer fails now, not at the first input
        self.layer = layer
        self.pool = _check_pool(pool)

    def frame_samples(self) -> int:
        return self.model.config.feature_projection_input_dim * 2  # encoder layers run before the adapter

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        out = self.encoder.embed(input_features, attention_mask=attention_mask, layer=self.layer)
        lengths = out.attention_mask.sum(-1).tolist()
        return [row[:length] for row, length in zip(out.hidden_state, lengths, strict=True)]

    def postprocess(self, frames: torch.Tensor, pool: str | None = None) -> np.ndarray:
        """(frames, hidden) float32, or (hidden,) with pool="mean" (the mean over the recording's frames)."""
        pool = _check_pool(pool) or self.pool
        return (frames.mean(0) if pool == "mean" else frames).numpy()


def _check_pool(pool: str | None) -> str | None:
    if pool not in (None, "none", "mean"):
        raise ValueError(f"pool must be None/'none' (every frame) or 'mean', got {pool!r}")
    return None if pool == "none" else pool


TASKS = {
    "automatic-speech-recognition": AutomaticSpeechRecognitionPipeline,
    "audio-classification": AudioClassificationPipeline,
    "feature-extraction": FeatureExtractionPipeline,
}


def pipeline(
    task: str,
    model: str | os.PathLike | Wav2Vec2BertPreTrainedModel | None = None,
    *,
    feature_extractor: SeamlessM4TFeatureExtractor | str | None = None,
    tokenizer: Any = None,
    device: str | torch.device | int | None = None,
    torch_dtype: torch.dtype | str | None = None,
    batch_size: int = 1,
    chunk_length_s: float | None = None,
    stride_length_s: float | tuple[float, float] | None = None,
    decoder: Any = None,
    model_kwargs: dict[str, Any] | None = None,
    **task_options: Any,
) -> Pipeline:
    """Build the pipeline for `task` from a model directory / hub repo id, or from loaded objects.

    The feature extractor and tokenizer are read from the model's directory when not given. `device` takes
    "cpu", "cuda", "cuda:1" or a GPU index (as transformers). `decoder` is a `decoding.BeamSearchDecoder` for
    beam search / KenLM; greedy CTC otherwise.
    """
    from .auto import load_model

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; w2vbert has {sorted(TASKS)}")
    if model is None:
        raise ValueError("pass model= (a model directory, a hub repo id, or a loaded w2vbert model)")
    if isinstance(device, int):
        device = f"cuda:{device}" if device >= 0 else "cpu"
    if isinstance(model, (str, os.PathLike)):
        source = model
        model = load_model(source, torch_dtype=torch_dtype, device=device, **(model_kwargs or {}))
        if feature_extractor is None:
            feature_extractor = feature_extractor_for(source)
        if tokenizer is None and task == "automatic-speech-recognition":
            from .tokenizer import Wav2Vec2CTCTokenizer

            tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(source)
    else:
        if device is not None or torch_dtype is not None:
            model = model.to(device=device, dtype=torch_dtype if isinstance(torch_dtype, torch.dtype) else None)
    if isinstance(feature_extractor, (str, os.PathLike)):
        feature_extractor = SeamlessM4TFeatureExtractor.from_pretrained(feature_extractor)
    options = dict(batch_size=batch_size, chunk_length_s=chunk_length_s, stride_length_s=stride_length_s)
    if task == "automatic-speech-recognition":
        if isinstance(tokenizer, (str, os.PathLike)):
            from .tokenizer import Wav2Vec2CTCTokenizer

            tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(tokenizer)
        return AutomaticSpeechRecognitionPipeline(
            model, feature_extractor, tokenizer, decoder=decoder, **options, **task_options
        )
    return TASKS[task](model, feature_extractor, **options, **task_options)
