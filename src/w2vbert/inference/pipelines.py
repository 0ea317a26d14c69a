"""`pipeline(task, model=...)`: audio in, text / labels / embeddings out, as the documented API shapes them.

Six tasks, each a subclass of the engine's `Pipeline` (engine.py runs them: windows, features, batches, the
model): "automatic-speech-recognition" (`{"text": ...}`, plus `"chunks"` with timestamps), "audio-classification"
(`[{"label": ..., "score": ...}, ...]`, best first), "feature-extraction" (one embedding array per input), and three
transformers has no pipeline for: "audio-frame-classification" (labelled segments `[{"label", "start", "end",
"score"}, ...]` in time order, from a frame classifier), "speaker-embedding" (one x-vector per input, for
`data/verification.py`) and "speech-units" (`{"units": ...}` per input: each frame of a codebook's layer as the
index of its nearest centroid, `w2vbert.units`; with `deduplicate=True` runs of a unit merged, with `"durations"`).
An input is a path, bytes, a 16 kHz NumPy array or tensor, a dict `{"array"|"raw": ...,
"sampling_rate": ...}` (as `datasets` rows give them), or a list of these.

A long input runs as windows (audio/windows.py; a file is decoded as a stream, so an hour of audio is never in
memory at once); with `vad=`, speech recognition cuts windows of the speech only and fills the skipped frames with
CTC blanks (audio/vad.py). An input that cannot run fails alone, named, and the others go on (engine.py).

In order: the six task pipelines, `TASKS`, loading a checkpoint for a task, `pipeline`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch

from w2vbert.audio.decode import SAMPLING_RATE
from w2vbert.audio.features import SeamlessM4TFeatureExtractor, feature_extractor_for
from w2vbert.audio.vad import VadOptions, detector
from w2vbert.audio.windows import WindowPlan
from w2vbert.inference.engine import (
    AudioInput,
    Batches,
    Pipeline,
    in_order,
    input_windows,
)
from w2vbert.loading.devices import resolve_device, resolve_dtype, warn_if_emulated
from w2vbert.loading.hub import HubOptions
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
from w2vbert.text.processor import Wav2Vec2BertProcessor
from w2vbert.text.segments import merge_frames
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
from w2vbert.units.codebook import Codebook, load_codebook, run_lengths

__all__ = [
    "AudioClassificationPipeline",
    "AudioFrameClassificationPipeline",
    "AutomaticSpeechRecognitionPipeline",
    "FeatureExtractionPipeline",
    "SpeakerEmbeddingPipeline",
    "SpeechUnitsPipeline",
    "TASKS",
    "check_head_fits_tokenizer",
    "load_for_task",
    "load_task_model",
    "pipeline",
]

logger = logging.getLogger("w2vbert")


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
        windows = input_windows(self, [source], self.default_plan())
        (recording,) = in_order(self, windows, Batches(size=self.batch_size))
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


class SpeechUnitsPipeline(FeatureExtractionPipeline):
    """Speech units: each 20 ms frame of the codebook's layer, normalised as the codebook says, as the index of its
    nearest centroid: `{"units": (frames,) int16 (int32 past 32767 units)}`, or with `deduplicate` the runs of a
    unit as `{"units", "durations": frames each run lasts}`.

    The work is `feature-extraction`'s with one step more on the model's device (an argmin against the centroids),
    and what crosses back to the CPU is one id per frame instead of the hidden state.
    """

    task = "speech-units"

    def __init__(
        self,
        model: Wav2Vec2BertPreTrainedModel,
        feature_extractor: SeamlessM4TFeatureExtractor | None = None,
        *,
        codebook: Codebook | str | os.PathLike | None = None,
        layer: int | None = None,
        deduplicate: bool = False,
        **options: Any,
    ) -> None:
        if codebook is None:
            raise ValueError("the speech-units pipeline needs codebook= (a folder of w2vbert units fit, or a .npy)")
        codebook = codebook if isinstance(codebook, Codebook) else load_codebook(codebook)
        layer = codebook.layer if layer is None else layer
        if layer is None:
            raise ValueError("the codebook does not say which layer it was fitted on (a .npy of centroids): pass "
                             "layer=")
        super().__init__(model, feature_extractor, layer=layer, **options)
        codebook.check_dim(model.config.hidden_size, f"layer {layer} of the model (its hidden size)")
        self.codebook = codebook.to(self.device)
        self.deduplicate = deduplicate

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        out = self.encoder.embed(input_features, attention_mask=attention_mask, layer=self.layer)
        hidden = out.hidden_state  # (B, T, hidden)
        units = self.codebook.units(hidden.flatten(0, 1)).view(hidden.shape[:2]).float()  # (B, T)
        # A frame that is not finite has no nearest centroid: NaN, which the engine reports as the input's failure.
        units[~torch.isfinite(hidden).all(-1)] = float("nan")
        lengths = out.attention_mask.sum(-1).tolist()
        # As (frames, 1) floats, the engine's frame format: ids below 2**24 are exact in a float32.
        return [row[:length, None] for row, length in zip(units, lengths, strict=True)]

    def postprocess(self, frames: torch.Tensor, deduplicate: bool | None = None) -> dict[str, np.ndarray]:
        units = frames[:, 0].numpy().astype(self.codebook.unit_dtype)
        if not (self.deduplicate if deduplicate is None else deduplicate):
            return {"units": units}
        units, durations = run_lengths(units)
        return {"units": units, "durations": durations}


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
    "speech-units": SpeechUnitsPipeline,
}


def load_for_task(
    task: str, source: str | os.PathLike, **load_options: Any
) -> tuple[Wav2Vec2BertPreTrainedModel, dict[str, list]]:
    """The checkpoint at `source` as the model class `task` serves, with the loading report.

    A base encoder checkpoint becomes a classifier with a fresh head (transformers does the same, and warns); a
    checkpoint saved with a head the task cannot serve is refused, naming the classes that fit.
    """
    hub = {name: load_options[name] for name in HubOptions.keys() if name in load_options}
    config = Wav2Vec2BertConfig.from_pretrained(source, **hub)  # read once: from_pretrained takes it as config=
    saved = model_class_for(config)
    target = saved
    if task == "audio-classification" and saved is Wav2Vec2BertModel:
        target = Wav2Vec2BertForSequenceClassification
        logger.warning("%s is a base encoder: its classification head starts untrained (as in transformers)", source)
    accepted = TASKS[task].model_classes
    if not issubclass(target, accepted):
        names = ", ".join(cls.__name__ for cls in accepted)
        raise ValueError(f"the {task} pipeline serves {names}; {source} is a {saved.__name__} checkpoint")
    return target.from_pretrained(source, config=config, output_loading_info=True, **load_options)


def load_task_model(
    task: str, source: str, device: str | None = None, dtype: str = "float32", quantize: str | None = None
) -> Any:
    """The model for a task (of the command line or the server), refused if loading had to start any of its
    tensors fresh: a checkpoint without its trained head would print random text. Device, `dtype` ("auto": the
    fastest mode the device runs natively) and `quantize` are resolved once, by `Placement.for_inference`."""
    placement = Placement.for_inference(device, dtype, quantize)
    model, info = load_for_task(task, source, **placement.keywords())
    if info["missing_keys"] or info["mismatched_keys"]:
        names = sorted(info["missing_keys"]) + sorted(name for name, _, _ in info["mismatched_keys"])
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
    dtype: torch.dtype | str | None = None,
    processor: Wav2Vec2BertProcessor | str | os.PathLike | None = None,
    device_map: str | torch.device | int | dict | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    **task_options: Any,
) -> Pipeline:
    """Build the pipeline for `task` from a model directory / hub repo id, or from loaded objects.

    The feature extractor and tokenizer are read from the model's directory when not given (or from `processor`,
    a `Wav2Vec2BertProcessor` or its directory). `device` takes "cpu", "cuda", "cuda:1" or a GPU index, and
    `device_map` a single device, as transformers. `dtype` (transformers 5's name; `torch_dtype` is the older
    one, and `dtype` wins when both are given, as there) is float32 unless given; "auto" takes the checkpoint's.
    `revision` and `token` go to the hub. `decoder` is a `decoding.BeamSearchDecoder` for beam search / KenLM;
    greedy CTC otherwise. A model class the task cannot serve is refused here, with the classes that fit.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; w2vbert has {sorted(TASKS)}")
    if model is None:
        raise ValueError("pass model= (a model directory, a hub repo id, or a loaded w2vbert model)")
    torch_dtype = dtype if dtype is not None else torch_dtype
    feature_extractor, tokenizer = _processor_parts(processor, feature_extractor, tokenizer)
    load_options = dict(model_kwargs or {})
    load_options.update({k: v for k, v in (("revision", revision), ("token", token)) if v is not None})
    target = None if device is None and device_map is None else resolve_device(device_map if device is None else device)
    if isinstance(model, (str, os.PathLike)):
        source = model
        model, _ = load_for_task(task, source, torch_dtype=torch_dtype, device=target, **load_options)
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


def _processor_parts(
    processor: Wav2Vec2BertProcessor | str | os.PathLike | None,
    feature_extractor: SeamlessM4TFeatureExtractor | str | None,
    tokenizer: Wav2Vec2CTCTokenizer | str | None,
) -> tuple[SeamlessM4TFeatureExtractor | str | None, Wav2Vec2CTCTokenizer | str | None]:
    """The feature extractor and tokenizer a pipeline uses: those given, else the processor's (as transformers)."""
    if isinstance(processor, (str, os.PathLike)):
        processor = Wav2Vec2BertProcessor.from_pretrained(processor)
    if processor is None:
        return feature_extractor, tokenizer
    return (processor.feature_extractor if feature_extractor is None else feature_extractor,
            processor.tokenizer if tokenizer is None else tokenizer)
