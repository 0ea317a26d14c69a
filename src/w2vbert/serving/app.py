"""`w2vbert serve`: one model behind HTTP, on FastAPI + uvicorn (the `serve` extra).

Routes:
    POST /v1/audio/transcriptions   OpenAI's, as its clients send it: multipart `file`, `model`, `response_format`
                                    (json, text, srt, vtt, verbose_json), `timestamp_granularities[]` (word,
                                    segment), `stream` (server-sent events `transcript.text.delta` / `.done`);
                                    `language`, `prompt` and `temperature` are accepted and ignored (CTC has no
                                    prompt, no sampling, and the model writes the language it was trained on)
    POST /v1/audio/classifications  `file`, `top_k`: the labels and scores of a classification model
    POST /v1/audio/embeddings       `file`, `layer`, `pool` (mean or none), `encoding_format` (float or base64)
    WS   /v1/audio/stream           live transcription: PCM or encoded audio in, serving/live.py's messages out
    GET  /v1/models, /health, /metrics (Prometheus text), / (the web page)

Every model call goes through one `batching.Batcher`, so concurrent requests share batches and the event loop
never waits on the model; decoding and features run in a small thread pool. Limits a public endpoint needs, all
in `ServeSettings`: upload size and audio duration (413, naming the limit), a request timeout (504), a bound on
requests in flight (503 with Retry-After), an optional API key (`Authorization: Bearer`, compared in constant
time; 401), CORS off unless origins are given. Errors have OpenAI's shape: `{"error": {"message", "type",
"param", "code"}}`. On SIGINT/SIGTERM uvicorn stops accepting, lets the requests in flight finish, then the
model thread stops.

In order: settings, errors, the served model, the request limits, the app and its routes, the command line.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import logging
import secrets
import time
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

try:  # the `serve` extra
    from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from starlette.datastructures import FormData, UploadFile
    from starlette.exceptions import HTTPException
except ImportError as missing:
    raise ImportError("the server runs on FastAPI and uvicorn: pip install 'w2vbert[serve]'") from missing

from w2vbert.audio.decode import SAMPLING_RATE
from w2vbert.audio.features import feature_extractor_for
from w2vbert.audio.vad import VadOptions
from w2vbert.inference.pipelines import (
    AudioClassificationPipeline,
    AutomaticSpeechRecognitionPipeline,
    FeatureExtractionPipeline,
    Pipeline,
    ReadyWindow,
    Recording,
    load_task_model,
)
from w2vbert.loading.devices import max_batch_seconds
from w2vbert.model.auto import model_class_for
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.heads import Wav2Vec2BertForCTC, Wav2Vec2BertForSequenceClassification
from w2vbert.serving.batcher import Batcher, BatchReport, TooLong, prepare
from w2vbert.serving.live import Encoded, LiveTranscript, Pcm16, settled
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
from w2vbert.text.writers import segments, to_srt, to_txt, to_vtt

logger = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
ROUTES = ("/v1/audio/transcriptions", "/v1/audio/classifications", "/v1/audio/embeddings", "/v1/models",
          "/health", "/metrics", "/")
HTTP_PREPARE_THREADS = 2  # decoding and features beside the model thread (the CPU machines here have 2 cores)


@dataclass(frozen=True)
class ServeSettings:
    model: str  # model directory or hub repo id
    model_id: str | None = None  # the name /v1/models gives and requests may name (default: the folder's name)
    device: str | None = None  # cpu, cuda, cuda:1 (None: cuda when available)
    dtype: str = "float32"
    quantize: str | None = None  # "int8": the rest of the model in `dtype` (CPU: float32 or bfloat16)
    chunk_length_s: float | None = None  # long-audio window length (None: the pipelines' 30 s for longer audio)
    max_batch_seconds: float | None = None  # padded audio per batch (None: by device, devices.MAX_BATCH_SECONDS)
    max_wait_ms: float = 10.0  # how long the oldest queued request waits for others to batch with
    api_key: str | None = None  # when set, every request but / and /health needs "Authorization: Bearer KEY"
    max_upload_mb: float = 100.0  # larger request bodies get 413
    max_audio_seconds: float = 3600.0  # longer audio gets 413
    request_timeout_s: float = 600.0  # a request still unanswered after this gets 504
    max_queue: int = 64  # requests in flight at once; one more gets 503 with Retry-After
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (none: CORS off)
    vad: VadOptions | None = None  # transcriptions: only the speech of an upload goes to the model (not /stream)

    @property
    def name(self) -> str:
        return self.model_id or Path(str(self.model).rstrip("/")).name


# ------------------------------------------------------------------------------------------------ errors
class ApiError(Exception):
    """An error answered in OpenAI's shape with `status`."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"  # OpenAI's 401 too
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def _bad_input(error: Exception, param: str = "file") -> ApiError:
    if isinstance(error, TooLong):
        return ApiError(413, str(error), param, "audio_too_long")
    return ApiError(400, str(error), param, "invalid_audio")


async def result_of(future: concurrent.futures.Future) -> Any:
    """A batcher future's result; a too-short input is a 400, a model failure a 500."""
    try:
        return await asyncio.wrap_future(future)
    except ValueError as error:  # too short for the model
        raise _bad_input(error) from None
    except RuntimeError as error:  # the model's output was not finite, or its batch failed
        raise ApiError(500, str(error), code="model_error") from None


# -------------------------------------------------------------------------------------------- the model
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

    async def prepare(self, pipe: Pipeline, data: bytes, name: str) -> tuple[Recording, list[ReadyWindow]]:
        """An upload decoded and cut into checked windows beside the event loop; bad audio is an ApiError."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self.prepare_pool, prepare, pipe, data, name, self.settings.max_audio_seconds)
        except (ValueError, OSError, TypeError) as error:
            raise _bad_input(error) from None

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


# ---------------------------------------------------------------------------------------- request limits
class UploadLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 (from its Content-Length before anything is read,
    or as soon as a streamed body passes the limit)."""

    class TooLarge(Exception):
        pass

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send)
        received, started = 0, False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadLimit.TooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except UploadLimit.TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        limit = self.max_bytes / 2**20
        error = ApiError(413, f"the upload is larger than this server's limit of {limit:g} MB", "file",
                         "upload_too_large")
        body = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class Metrics:
    """The Prometheus series of one app (its own registry, so two apps in one process do not mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("w2vbert_requests", "requests answered", ["endpoint", "status"],
                                registry=self.registry)
        self.errors = Counter("w2vbert_errors", "requests answered with an error", ["endpoint", "code"],
                              registry=self.registry)
        self.in_flight = Gauge("w2vbert_requests_in_flight", "requests being served", registry=self.registry)
        self.queued = Gauge("w2vbert_queued_windows", "windows waiting for the model", registry=self.registry)
        self.batch_windows = Histogram("w2vbert_batch_windows", "windows per model batch",
                                       buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.audio = Counter("w2vbert_audio_seconds", "seconds of audio through the model", registry=self.registry)
        self.latency = Histogram("w2vbert_request_seconds", "request latency", ["endpoint"],
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=self.registry)

    def batch(self, report: BatchReport) -> None:
        self.batch_windows.observe(report.windows)
        self.audio.inc(report.audio_seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


# ------------------------------------------------------------------------------------------ the app
def create_app(settings: ServeSettings, served: Served | None = None) -> Any:
    """The FastAPI app serving `settings.model` (loaded now unless `served` is given)."""
    metrics = Metrics()
    served = served or Served(settings, on_batch=metrics.batch)
    if served.batcher.on_batch is None:
        served.batcher.on_batch = metrics.batch
    in_flight = 0

    async def lifespan(app: Any) -> Any:
        yield
        await asyncio.to_thread(served.close)  # after uvicorn has let the requests in flight finish

    app = FastAPI(title="w2vbert", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(UploadLimit, max_bytes=int(settings.max_upload_mb * 2**20))

    def error_response(error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = {404: f"no route {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(error.status_code, error.detail)
        return error_response(ApiError(error.status_code, message))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return error_response(ApiError(500, f"the server failed on this request: {type(error).__name__}: {error}",
                                       code="server_error"))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(ApiError(400, str(error)))

    def authorize(header: str | None, query_key: str | None = None) -> None:
        if settings.api_key is None:
            return
        given = query_key if header is None else header.removeprefix("Bearer ").strip()
        if given is None or not secrets.compare_digest(given.encode(), settings.api_key.encode()):
            raise ApiError(401, "a valid API key is needed: send 'Authorization: Bearer KEY'"
                           if given is None else "the API key is not valid", code="invalid_api_key")

    @app.middleware("http")
    async def account(request: Request, call_next: Any) -> Response:
        nonlocal in_flight
        path = request.url.path
        endpoint = path if path in ROUTES else "other"  # a fixed set of series, whatever paths clients send
        started = time.perf_counter()
        try:
            if path not in ("/", "/health") and request.method != "OPTIONS":
                authorize(request.headers.get("authorization"))
            limited = path.startswith("/v1/audio/")
            if limited and in_flight >= settings.max_queue:
                raise ApiError(503, f"the server is busy: {in_flight} requests in flight (limit "
                               f"{settings.max_queue}); retry shortly", code="server_busy",
                               headers={"Retry-After": "1"})
            if limited:
                in_flight += 1
                metrics.in_flight.inc()
            try:
                response = await call_next(request)
            finally:
                if limited:
                    in_flight -= 1
                    metrics.in_flight.dec()
        except ApiError as error:
            response = error_response(error)
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        if response.status_code >= 400:
            metrics.errors.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    if settings.cors_origins:  # outermost, so that preflights and error answers carry its headers
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"])

    async def upload(request: Request) -> tuple[Any, bytes, str]:
        """The multipart form, the audio bytes of its `file` field, and the file's name."""
        try:
            form = await request.form()
        except UploadLimit.TooLarge:
            raise
        except Exception as error:  # noqa: BLE001 - a malformed multipart body
            raise ApiError(400, f"expected a multipart/form-data body with a 'file' field: {error}") from None
        file = form.get("file")
        if not isinstance(file, UploadFile):
            got = "no 'file' field" if file is None else "'file' as a text field"
            raise ApiError(400, f"expected the audio as a file in the multipart field 'file', got {got}", "file")
        data = await file.read()
        fields = FormData([(key, value) for key, value in form.multi_items() if isinstance(value, str)])
        await form.close()  # its spooled temporary file, now
        form = fields
        if not data:
            raise ApiError(400, f"the uploaded file {file.filename or ''} is empty (0 bytes)".replace("  ", " "),
                           "file", "invalid_audio")
        requested = form.get("model")
        if requested not in (None, "", settings.name):
            raise ApiError(404, f"this server serves the model {settings.name!r}, not {requested!r}", "model",
                           "model_not_found")
        return form, data, file.filename or "<upload>"

    def needs(pipe: Pipeline | None, what: str) -> Pipeline:
        if pipe is None:
            raise ApiError(400, f"{what} need a model with that head; this server's model is a "
                           f"{type(served.model).__name__}", code="unsupported_by_model")
        return pipe

    async def timed(coroutine: Any) -> Any:
        try:
            return await asyncio.wait_for(coroutine, settings.request_timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            raise ApiError(504, f"the request took longer than this server's limit of "
                           f"{settings.request_timeout_s:g} s", code="timeout") from None

    def form_int(form: Any, name: str, default: int) -> int:
        value = form.get(name)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except ValueError:
            raise ApiError(400, f"expected an integer for '{name}', got {value!r}", name) from None

    def choice(form: Any, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = form.get(name) or default
        if value not in allowed:
            raise ApiError(400, f"'{name}' must be one of {', '.join(allowed)}; got {value!r}", name)
        return value

    # ------------------------------------------------------------------------------------------ routes
    @app.post("/v1/audio/transcriptions", response_model=None)
    async def transcriptions(request: Request) -> Response:
        pipe = needs(served.transcriber, "transcriptions")
        form, data, name = await upload(request)
        response_format = choice(form, "response_format", "json", RESPONSE_FORMATS)
        granularities = set(form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities"))
        if granularities - {"word", "segment"}:
            raise ApiError(400, f"timestamp_granularities[] takes word and segment, got {sorted(granularities)}",
                           "timestamp_granularities[]")
        stream = (form.get("stream") or "false").lower() == "true"
        if stream:  # bad audio is still a 4xx: the events start once the audio is read
            prepared = await served.prepare(pipe, data, name)
            return StreamingResponse(stream_transcript(pipe, *prepared), media_type="text/event-stream")
        result, seconds = await timed(served.run(pipe, data, name, return_timestamps="word"))
        usage = {"type": "duration", "seconds": round(seconds, 3)}
        if response_format == "json":
            return JSONResponse({"text": result["text"], "usage": usage})
        if response_format == "text":
            return PlainTextResponse(to_txt(result))
        if response_format in ("srt", "vtt"):
            return PlainTextResponse((to_srt if response_format == "srt" else to_vtt)(result))
        return JSONResponse(verbose_json(result, seconds, form.get("language"), "word" in granularities, usage))

    async def stream_transcript(pipe: AutomaticSpeechRecognitionPipeline, recording: Any, ready: list) -> Any:
        """Server-sent events: a `transcript.text.delta` as each window settles words, then `.done`; a failure
        after the events began is an event in OpenAI's error shape."""

        def event(payload: dict) -> str:
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        sent, text = "", ""
        for position, window in enumerate(ready or [None]):
            try:
                future = await served.submit(pipe, recording, [] if window is None else [window])
                result = await timed(result_of(future))
            except ApiError as error:
                yield event(error.body())
                return
            text = result["text"]
            now = text if position == len(ready) - 1 else settled(text)
            if now.startswith(sent) and len(now) > len(sent):
                yield event({"type": "transcript.text.delta", "delta": now[len(sent):]})
                sent = now
        yield event({"type": "transcript.text.done", "text": text})

    @app.post("/v1/audio/classifications")
    async def classifications(request: Request) -> JSONResponse:
        pipe = needs(served.classifier, "classifications")
        form, data, name = await upload(request)
        top_k = form_int(form, "top_k", 1)
        if top_k < 1:
            raise ApiError(400, f"top_k must be >= 1, got {top_k}", "top_k")
        labels, seconds = await timed(served.run(pipe, data, name, top_k=top_k))
        return JSONResponse({"model": settings.name, "duration": round(seconds, 3), "labels": labels})

    @app.post("/v1/audio/embeddings")
    async def embeddings(request: Request) -> Response:
        form, data, name = await upload(request)
        layer = form_int(form, "layer", -1)
        try:
            pipe = served.embedder(layer)
        except ValueError as error:
            raise ApiError(400, str(error), "layer") from None
        pool = choice(form, "pool", "mean", ("mean", "none"))
        encoding = choice(form, "encoding_format", "float", ("float", "base64"))
        array, seconds = await timed(served.run(pipe, data, name, pool=pool))

        def body() -> bytes:  # an hour of frames is millions of floats: written beside the event loop
            values = np.ascontiguousarray(array, dtype="<f4")
            embedding = base64.b64encode(values.tobytes()).decode() if encoding == "base64" else values.tolist()
            return json.dumps({
                "object": "list", "model": settings.name, "layer": pipe.layer, "pool": pool,
                "data": [{"object": "embedding", "index": 0, "embedding": embedding, "shape": list(values.shape)}],
                "usage": {"type": "duration", "seconds": round(seconds, 3)},
            }).encode()

        return Response(await asyncio.to_thread(body), media_type="application/json")

    @app.websocket("/v1/audio/stream")
    async def live(websocket: WebSocket) -> None:
        """Binary messages: audio (16-bit PCM at `sample_rate`, or with `format=encoded` the bytes of a file in any
        format FFmpeg reads); the text message {"type": "end"} ends the stream; serving/live.py's messages back. A
        stream counts as a request in flight, may stay silent for at most the request timeout, and may send at
        most the duration limit in audio (and, encoded, the upload limit in bytes)."""
        nonlocal in_flight
        params = websocket.query_params
        try:
            authorize(websocket.headers.get("authorization"), params.get("api_key"))
            pipe = needs(served.transcriber, "live transcriptions")
            fmt = params.get("format", "pcm16")
            if fmt not in ("pcm16", "encoded"):
                raise ApiError(400, f"format must be pcm16 or encoded, got {fmt!r}", "format")
            try:
                rate = int(params.get("sample_rate", SAMPLING_RATE))
                decoder = Pcm16(rate) if fmt == "pcm16" else Encoded(settings.max_audio_seconds)
            except ValueError as error:
                raise ApiError(400, str(error), "sample_rate") from None
            if in_flight >= settings.max_queue:
                decoder.close()
                raise ApiError(503, f"the server is busy: {in_flight} requests in flight (limit "
                               f"{settings.max_queue}); retry shortly", code="server_busy",
                               headers={"Retry-After": "1"})
        except ApiError as error:
            await websocket.send_denial_response(error_response(error))
            return
        in_flight += 1
        metrics.in_flight.inc()
        await websocket.accept()
        transcript = LiveTranscript(pipe, served.batcher)
        # Bytes: PCM is held by the duration limit (2 bytes a sample); an encoded stream by the upload limit.
        received = 0
        limit = int(settings.max_upload_mb * 2**20) if fmt == "encoded" else None

        async def fail(error: ApiError, close_code: int) -> None:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the client may be gone already
                await websocket.send_json({"type": "error", **error.body()})
                await websocket.close(close_code)

        try:
            while True:
                try:
                    message = await asyncio.wait_for(websocket.receive(), settings.request_timeout_s)
                except (TimeoutError, asyncio.TimeoutError):
                    return await fail(ApiError(408, f"no message for {settings.request_timeout_s:g} s",
                                               code="timeout"), 1008)
                if message["type"] == "websocket.disconnect":
                    return  # the client left mid-stream: nothing to answer
                if message.get("bytes") is not None:
                    received += len(message["bytes"])
                    if limit is not None and received > limit:
                        return await fail(ApiError(413, f"the stream sent more than this server's limit of "
                                                   f"{settings.max_upload_mb:g} MB", code="upload_too_large"), 1009)
                    audio = decoder.decode(message["bytes"])
                    await check_length(transcript, audio)
                    async for reply in transcript.feed(audio):
                        await websocket.send_json(reply)
                    continue
                text = (message.get("text") or "")[:200]
                try:
                    ended = json.loads(text).get("type") == "end"
                except (ValueError, AttributeError):
                    ended = False
                if not ended:
                    return await fail(ApiError(400, 'expected binary audio messages, or the text message '
                                               f'{{"type": "end"}} to end the stream; got the text {text[:60]!r}',
                                               code="invalid_message"), 1003)
                audio = await asyncio.to_thread(decoder.decode, b"", True)  # waits for FFmpeg's last blocks
                await check_length(transcript, audio)
                async for reply in transcript.feed(audio):
                    await websocket.send_json(reply)
                async for reply in transcript.finish():
                    await websocket.send_json(reply)
                await websocket.close()
                return
        except WebSocketDisconnect:
            return
        except TooLong as error:
            await fail(ApiError(413, str(error), code="audio_too_long"), 1009)
        except ValueError as error:  # undecodable encoded audio
            await fail(ApiError(400, str(error), code="invalid_audio"), 1007)
        except RuntimeError as error:  # the model failed, or the server is shutting down
            await fail(ApiError(500, str(error), code="model_error"), 1011)
        finally:
            decoder.close()
            in_flight -= 1
            metrics.in_flight.dec()

    async def check_length(transcript: LiveTranscript, audio: np.ndarray) -> None:
        if transcript.seconds + len(audio) / SAMPLING_RATE > settings.max_audio_seconds:
            raise TooLong.past(settings.max_audio_seconds, "the stream")

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [
            {"id": settings.name, "object": "model", "created": int(time.time()), "owned_by": "w2vbert",
             "task": served.task}]})

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "model": settings.name, "requests_in_flight": in_flight,
                             "queued_windows": served.batcher.queued_windows})

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.queued.set(served.batcher.queued_windows)
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("w2vbert.serving").joinpath("web/index.html").read_text(encoding="utf-8"))

    app.state.served = served
    return app


def verbose_json(
    result: dict[str, Any], seconds: float, language: str | None, words: bool, usage: dict[str, Any]
) -> dict[str, Any]:
    """OpenAI's verbose_json from a transcript with word times. A CTC model has no sampling temperature, token
    log-probabilities or no-speech score: `temperature` is 0 and `avg_logprob`, `no_speech_prob` are 0."""
    pieces = segments(result["chunks"])
    out = {
        "task": "transcribe", "language": language or "unknown", "duration": round(seconds, 3),
        "text": result["text"],
        "segments": [
            {"id": i, "seek": 0, "start": s["start"], "end": s["end"], "text": s["text"], "tokens": [],
             "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": _compression_ratio(s["text"]),
             "no_speech_prob": 0.0}
            for i, s in enumerate(pieces)
        ],
        "usage": usage,
    }
    if words:
        out["words"] = [{"word": w["text"], "start": w["timestamp"][0], "end": w["timestamp"][1]}
                        for w in result["chunks"]]
    return out


def _compression_ratio(text: str) -> float:
    """Whisper's repetition check: the text's bytes over their zlib-compressed bytes."""
    data = text.encode()
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0
