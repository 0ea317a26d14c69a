"""The served model: `ServeSettings` (what `w2vbert serve` was asked for) and `Served` (the model, its pipelines and
the one batcher they share).

Every model call goes through `Served.batcher`, so concurrent requests share batches and the event loop never waits
on the model; decoding and features run in a small thread pool beside it, one window a turn (`Served.prepare`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2vbert.audio.decode import SAMPLING_RATE
from w2vbert.audio.features import feature_extractor_for
from w2vbert.audio.vad import VadOptions
from w2vbert.inference.engine import Pipeline, ReadyWindow, Recording
from w2vbert.inference.pipelines import (
    AudioClassificationPipeline,
    AutomaticSpeechRecognitionPipeline,
    FeatureExtractionPipeline,
    load_task_model,
)
from w2vbert.loading.devices import max_batch_seconds
from w2vbert.model.auto import model_class_for
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.heads import Wav2Vec2BertForCTC, Wav2Vec2BertForSequenceClassification
from w2vbert.serving.batcher import Batcher, TooLong, prepared_windows
from w2vbert.serving.errors import ApiError, bad_input, result_of
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer

HTTP_PREPARE_THREADS = 2  # decoding and features beside the model thread (the CPU machines here have 2 cores)


@dataclass(frozen=True)
class ServeSettings:
    model: str  # model directory or hub repo id
    model_id: str | None = None  # the name /v1/models gives and requests may name (default: the folder's name)
    model_aliases: tuple[str, ...] = ()  # more names requests may give (OpenAI apps hard-code e.g. "whisper-1")
    device: str | None = None  # cpu, cuda, cuda:1 (None: cuda when available)
    dtype: str = "float32"
    quantize: str | None = None  # "int8": the rest of the model in `dtype` (CPU: float32 or bfloat16)
    chunk_length_s: float | None = None  # long-audio window length (None: the pipelines' 30 s for longer audio)
    max_batch_seconds: float | None = None  # padded audio per batch (None: by device, devices.MAX_BATCH_SECONDS)
    max_wait_ms: float = 10.0  # how long the oldest queued request waits for others to batch with
    api_key: str | None = None  # when set, every request but / and /health needs "Authorization: Bearer KEY"
    max_upload_mb: float = 100.0  # larger request bodies get 413
    body_timeout_s: float = 30.0  # a request body still incomplete after this gets 408 (before it takes a place)
    max_audio_seconds: float = 3600.0  # longer audio gets 413
    max_response_mb: float = 100.0  # per-frame embeddings that would answer more get 413 before the model runs
    request_timeout_s: float = 600.0  # a request still unanswered after this gets 504
    max_queue: int = 64  # requests in flight at once; one more gets 503 with Retry-After
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (none: CORS off)
    vad: VadOptions | None = None  # transcriptions: only the speech of an upload goes to the model (not /stream)

    @property
    def name(self) -> str:
        return self.model_id or Path(str(self.model).rstrip("/")).name

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the model answers to, its own first (/v1/models lists them all)."""
        return (self.name, *(alias for alias in dict.fromkeys(self.model_aliases) if alias != self.name))


class Served:
    """The model, its pipelines and the batcher they share."""

    def __init__(self, settings: ServeSettings, on_batch: Any = None) -> None:
        self.settings = settings
        saved = model_class_for(Wav2Vec2BertConfig.from_pretrained(settings.model))
        task = ("automatic-speech-recognition" if issubclass(saved, Wav2Vec2BertForCTC) else
                "audio-classification" if issubclass(saved, Wav2Vec2BertForSequenceClassification) else
                "feature-extraction")
        self.model = load_task_model(task, settings.model, settings.device, settings.dtype, settings.quantize)
        self.extractor = feature_extractor_for(settings.model)
        options = dict(chunk_length_s=settings.chunk_length_s)
        self.transcriber = self.classifier = None
        if task == "automatic-speech-recognition":
            tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(settings.model)
            self.transcriber = AutomaticSpeechRecognitionPipeline(self.model, self.extractor, tokenizer,
                                                                  vad=settings.vad, **options)
        elif task == "audio-classification":
            self.classifier = AudioClassificationPipeline(self.model, self.extractor, **options)
        self.task = task
        self._embedders: dict[int, FeatureExtractionPipeline] = {}
        cap = settings.max_batch_seconds or max_batch_seconds(self.model.device)
        self.batcher = Batcher(cap, settings.max_wait_ms / 1000, on_batch)
        self.prepare_pool = concurrent.futures.ThreadPoolExecutor(HTTP_PREPARE_THREADS,
                                                                  thread_name_prefix="w2vbert-prepare")

    def embedder(self, layer: int) -> FeatureExtractionPipeline:
        index = self.model.base_model.layer_index(layer)  # -1 and 24 are one pipeline, so they batch together
        if index not in self._embedders:
            self._embedders[index] = FeatureExtractionPipeline(
                self.model, self.extractor, layer=index, chunk_length_s=self.settings.chunk_length_s)
        return self._embedders[index]

    async def prepare(
        self, pipe: Pipeline, data: bytes, name: str, too_long: tuple[float, TooLong] | None = None
    ) -> tuple[Recording, list[ReadyWindow]]:
        """An upload decoded and cut into checked windows beside the event loop, one window a turn in the prepare
        pool (so a short upload waits for a window of each long one ahead of it, not for all of them); bad audio is
        an ApiError, audio past the duration limit a 413 (`too_long`: a shorter limit for this request, and the
        error that says why)."""
        loop = asyncio.get_running_loop()
        max_seconds, error = too_long or (self.settings.max_audio_seconds, None)
        recording, windows = prepared_windows(pipe, data, name, max_seconds, error)
        ready: list[ReadyWindow] = []
        try:
            while (window := await loop.run_in_executor(self.prepare_pool, next, windows, None)) is not None:
                ready.append(window)
        except (ValueError, OSError, TypeError) as error:
            raise bad_input(error) from None
        return recording, ready

    async def submit(
        self, pipe: Pipeline, recording: Recording, ready: list[ReadyWindow], **options: Any
    ) -> concurrent.futures.Future:
        """Queue windows for the model; a shutting-down server is a 503. Queuing is quick; a request without a
        window is completed by submit itself (it decodes the frames), so that runs off the loop."""
        try:
            if ready:
                return self.batcher.submit(pipe, recording, ready, **options)
            return await asyncio.to_thread(self.batcher.submit, pipe, recording, ready, **options)
        except RuntimeError as error:
            raise ApiError(503, str(error), code="shutting_down", headers={"Retry-After": "5"}) from None

    async def run(self, pipe: Pipeline, data: bytes, name: str, **options: Any) -> tuple[Any, float]:
        """(the pipeline's result, seconds of audio) for one upload; bad audio is an ApiError."""
        recording, ready = await self.prepare(pipe, data, name)
        future = await self.submit(pipe, recording, ready, **options)
        return await result_of(future), recording.samples / SAMPLING_RATE

    def close(self) -> None:
        self.batcher.close(timeout=60)
        self.prepare_pool.shutdown(wait=False, cancel_futures=True)
