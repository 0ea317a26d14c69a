"""The served models: `ServeSettings` (what `w2vbert serve` was asked for, its models by name in `catalog`), `Served`
(one model, its pipelines and the one batcher they share) and `load_models` (a `Served` for each, or a
`ModelLoadError` naming the one that failed).

Every model call goes through `Served.batcher`, so concurrent requests share batches and the event loop never waits
on the model; decoding and features run in a small thread pool beside it, one window a turn (`Served.prepare`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
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
    model: str  # the first model (requests naming none get it): directory or hub repo id
    model_id: str | None = None  # the first model's name in the API (default: the folder's name)
    more_models: tuple[str, ...] = ()  # the other models, each "NAME=DIR" or a directory or repo id (named by it)
    model_aliases: tuple[str, ...] = ()  # "ALIAS=NAME": more names requests may give (OpenAI apps hard-code e.g.
    #                                      "whisper-1"); a plain "ALIAS" names the first model when it is the only one
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
        """The first model's name."""
        return self.model_id or folder_name(self.model)

    @functools.cached_property  # read on every request: worked out once (a frozen dataclass still has a __dict__)
    def sources(self) -> dict[str, str]:
        """{name: directory or repo id} of every model, the first first; two models of one name are a ValueError."""
        sources = {self.name: self.model}
        for spec in self.more_models:
            name, source = model_spec(spec)
            if name in sources:
                raise ValueError(f"two models are named {name!r}: give each its own name, NAME=DIR")
            sources[name] = source
        return sources

    @functools.cached_property
    def catalog(self) -> dict[str, str]:
        """{every name requests may give: the name of the model it means}, each model's own name first, then the
        aliases; a ValueError for an alias of no model, or of a name taken."""
        models = list(self.sources)
        catalog = {name: name for name in models}
        for alias in self.model_aliases:
            alias, _, target = alias.partition("=")
            if not target:
                if len(models) > 1:
                    raise ValueError(f"the alias {alias!r} names no model: with several models served, give "
                                     f"ALIAS=NAME, NAME one of {', '.join(models)}")
                target = models[0]
            if target not in models:
                raise ValueError(f"the alias {alias}={target} names no served model: expected one of "
                                 f"{', '.join(models)}")
            if catalog.get(alias, target) != target:
                raise ValueError(f"the name {alias!r} is taken by the model {catalog[alias]!r}")
            catalog[alias] = target
        return catalog

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the server answers to (/v1/models lists them all)."""
        return tuple(self.catalog)


def folder_name(source: str) -> str:
    """A model's default name: its folder's (or hub repo's) last part."""
    return Path(str(source).rstrip("/")).name


def model_spec(spec: str) -> tuple[str, str]:
    """(name, directory or repo id) of "NAME=DIR" or a plain "DIR" (named by its folder). A path that exists is
    taken whole, "=" and all; a NAME has no "/"."""
    name, equals, source = spec.partition("=")
    if not equals or "/" in name or not name or not source or Path(spec).exists():
        return folder_name(spec), spec
    return name, source


class ModelLoadError(RuntimeError):
    """A served model that could not be loaded; the message names it and says why."""


class Served:
    """One model, its pipelines and the batcher they share (`name`: which of the settings' models; default the
    first)."""

    def __init__(self, settings: ServeSettings, on_batch: Any = None, name: str | None = None) -> None:
        self.settings, self.name = settings, name or settings.name
        source = settings.sources[self.name]
        saved = model_class_for(Wav2Vec2BertConfig.from_pretrained(source))
        task = ("automatic-speech-recognition" if issubclass(saved, Wav2Vec2BertForCTC) else
                "audio-classification" if issubclass(saved, Wav2Vec2BertForSequenceClassification) else
                "feature-extraction")
        self.model = load_task_model(task, source, settings.device, settings.dtype, settings.quantize)
        self.extractor = feature_extractor_for(source)
        options = dict(chunk_length_s=settings.chunk_length_s)
        self.transcriber = self.classifier = None
        if task == "automatic-speech-recognition":
            tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(source)
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


def load_models(settings: ServeSettings, on_batch: Any = None, first: Served | None = None) -> dict[str, Served]:
    """{name: Served} of every model of `settings` (`first`: the first, loaded already); `on_batch(name, report)`
    hears each batch. A model that fails to load closes those loaded and is a ModelLoadError naming it."""
    loaded: dict[str, Served] = {}
    for name, source in settings.sources.items():
        hears = None if on_batch is None else functools.partial(on_batch, name)
        try:
            loaded[name] = first if first is not None and not loaded else Served(settings, hears, name)
        except Exception as error:  # noqa: BLE001 - any failure of one model is said with its name
            for served in loaded.values():
                served.close()
            raise ModelLoadError(f"the model {name!r} ({source}) failed to load: {type(error).__name__}: "
                                 f"{error}") from error
        if loaded[name].batcher.on_batch is None:
            loaded[name].batcher.on_batch = hears
    return loaded
