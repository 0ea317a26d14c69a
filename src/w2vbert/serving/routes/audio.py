"""The upload routes, OpenAI's audio API as its clients send it: a multipart form with the audio in `file`
and, in `model`, the name or alias of a served model (none: the first; another name: 404 listing them).

    POST /v1/audio/transcriptions   `model`, `response_format` (json, text, srt, vtt, verbose_json),
                                    `timestamp_granularities[]` (word, segment), `stream` (server-sent events
                                    `transcript.text.delta` / `.done`); `language`, `prompt` and `temperature` are
                                    accepted and ignored (CTC has no prompt, no sampling, and the model writes the
                                    language it was trained on)
    POST /v1/audio/classifications  `top_k`: the labels and scores of a classification model
    POST /v1/audio/embeddings       `layer`, `pool` (mean or none), `encoding_format` (float or base64); per-frame
                                    answers past the response limit are refused while decoding (413)

In order: reading the form (`upload`, `form_int`, `choice`), the transcriptions route with its event stream and
OpenAI's verbose_json, then classifications and embeddings. A bad field is a 400 naming it (`param`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import FormData, UploadFile

from w2vbert.audio.decode import SAMPLING_RATE
from w2vbert.inference.engine import ReadyWindow, Recording
from w2vbert.inference.pipelines import AutomaticSpeechRecognitionPipeline, FeatureExtractionPipeline
from w2vbert.serving.batcher import TooLong
from w2vbert.serving.errors import ApiError, result_of
from w2vbert.serving.live import settled
from w2vbert.serving.served import Served
from w2vbert.serving.state import ServerState
from w2vbert.text.writers import segments, to_srt, to_txt, to_vtt

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
JSON_FLOAT_BYTES = 25  # a float32 value as a JSON float at most: "-1.2345678901234567e-05, "
BASE64_BYTES = 16 / 3  # a float32 value in base64: 4 bytes, 4 characters for every 3

router = APIRouter()


# ------------------------------------------------------------------------------------------------ the form
async def upload(request: Request) -> tuple[FormData, bytes, str, Served]:
    """The multipart form's text fields, the audio bytes of its `file` field, the file's name, and the model its
    `model` field names (none: the first; another name: 404)."""
    try:
        form = await request.form()
    except Exception as error:  # noqa: BLE001 - a malformed multipart body
        raise ApiError(400, f"expected a multipart/form-data body with a 'file' field: {error}") from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        got = "no 'file' field" if file is None else "'file' as a text field"
        raise ApiError(400, f"expected the audio as a file in the multipart field 'file', got {got}", "file")
    data = await file.read()
    fields = FormData([(key, value) for key, value in form.multi_items() if isinstance(value, str)])
    await form.close()  # its spooled temporary file, now
    if not data:
        raise ApiError(400, f"the uploaded file {file.filename or ''} is empty (0 bytes)".replace("  ", " "),
                       "file", "invalid_audio")
    return fields, data, file.filename or "<upload>", ServerState.of(request).model(fields.get("model"))


def form_int(form: FormData, name: str, default: int) -> int:
    value = form.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"expected an integer for '{name}', got {value!r}", name) from None


def choice(form: FormData, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = form.get(name) or default
    if value not in allowed:
        raise ApiError(400, f"'{name}' must be one of {', '.join(allowed)}; got {value!r}", name)
    return value


# ---------------------------------------------------------------------------------------- transcriptions
@router.post("/v1/audio/transcriptions", response_model=None)
async def transcriptions(request: Request) -> Response:
    state = ServerState.of(request)
    form, data, name, served = await upload(request)
    pipe = state.needs(served.transcriber, "transcriptions", served)
    response_format = choice(form, "response_format", "json", RESPONSE_FORMATS)
    granularities = set(form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities"))
    if granularities - {"word", "segment"}:
        raise ApiError(400, f"timestamp_granularities[] takes word and segment, got {sorted(granularities)}",
                       "timestamp_granularities[]")
    stream = (form.get("stream") or "false").lower() == "true"
    if stream:  # bad audio is still a 4xx: the events start once the audio is read
        prepared = await served.prepare(pipe, data, name)
        return StreamingResponse(stream_transcript(state, served, pipe, *prepared), media_type="text/event-stream")
    result, seconds = await state.timed(served.run(pipe, data, name, return_timestamps="word"))
    usage = {"type": "duration", "seconds": round(seconds, 3)}
    if response_format == "json":
        return JSONResponse({"text": result["text"], "usage": usage})
    if response_format == "text":
        return PlainTextResponse(to_txt(result))
    if response_format in ("srt", "vtt"):
        return PlainTextResponse((to_srt if response_format == "srt" else to_vtt)(result))
    return JSONResponse(verbose_json(result, seconds, form.get("language"), "word" in granularities, usage))


async def stream_transcript(
    state: ServerState, served: Served, pipe: AutomaticSpeechRecognitionPipeline, recording: Recording,
    ready: list[ReadyWindow],
) -> AsyncIterator[str]:
    """Server-sent events: a `transcript.text.delta` as each window settles words, then `.done`; a failure
    after the events began is an event in OpenAI's error shape."""

    def event(payload: dict) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    sent, text = "", ""
    for position, window in enumerate(ready or [None]):
        try:
            future = await served.submit(pipe, recording, [] if window is None else [window])
            result = await state.timed(result_of(future))
        except ApiError as error:
            yield event(error.body())
            return
        text = result["text"]
        now = text if position == len(ready) - 1 else settled(text)
        if now.startswith(sent) and len(now) > len(sent):
            yield event({"type": "transcript.text.delta", "delta": now[len(sent):]})
            sent = now
    yield event({"type": "transcript.text.done", "text": text})


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


# ------------------------------------------------------------------------------ classifications, embeddings
@router.post("/v1/audio/classifications")
async def classifications(request: Request) -> JSONResponse:
    state = ServerState.of(request)
    form, data, name, served = await upload(request)
    pipe = state.needs(served.classifier, "classifications", served)
    top_k = form_int(form, "top_k", 1)
    if top_k < 1:
        raise ApiError(400, f"top_k must be >= 1, got {top_k}", "top_k")
    labels, seconds = await state.timed(served.run(pipe, data, name, top_k=top_k))
    return JSONResponse({"model": served.name, "duration": round(seconds, 3), "labels": labels})


@router.post("/v1/audio/embeddings")
async def embeddings(request: Request) -> Response:
    state = ServerState.of(request)
    form, data, name, served = await upload(request)
    layer = form_int(form, "layer", -1)
    try:
        pipe = served.embedder(layer)
    except ValueError as error:
        raise ApiError(400, str(error), "layer") from None
    pool = choice(form, "pool", "mean", ("mean", "none"))
    encoding = choice(form, "encoding_format", "float", ("float", "base64"))
    array, seconds = await state.timed(embed(state, served, pipe, data, name, pool, encoding))

    def body() -> bytes:  # an hour of frames is millions of floats: written beside the event loop
        values = np.ascontiguousarray(array, dtype="<f4")
        embedding = base64.b64encode(values.tobytes()).decode() if encoding == "base64" else values.tolist()
        return json.dumps({
            "object": "list", "model": served.name, "layer": pipe.layer, "pool": pool,
            "data": [{"object": "embedding", "index": 0, "embedding": embedding, "shape": list(values.shape)}],
            "usage": {"type": "duration", "seconds": round(seconds, 3)},
        }).encode()

    return Response(await asyncio.to_thread(body), media_type="application/json")


async def embed(
    state: ServerState, served: Served, pipe: FeatureExtractionPipeline, data: bytes, name: str, pool: str,
    encoding: str,
) -> tuple[np.ndarray, float]:
    """(the embedding, seconds of audio) of an upload. Per-frame embeddings have a duration limit of their own, the
    audio whose answer fits the response limit: a 413 as soon as decoding passes it, before features and the model
    (an 18 KB upload of 50 min of silence is 150,000 frames)."""
    too_long = None
    if pool == "none":
        width, limit_mb = pipe.model.config.hidden_size, state.settings.max_response_mb
        value_bytes = BASE64_BYTES if encoding == "base64" else JSON_FLOAT_BYTES
        fit_s = limit_mb * 2**20 / (width * value_bytes) * pipe.frame_samples() / SAMPLING_RATE
        if fit_s < state.settings.max_audio_seconds:
            too_long = fit_s, TooLong(
                f"pool=none answers {width} values for every {1000 * pipe.frame_samples() / SAMPLING_RATE:g} ms of "
                f"audio: past {fit_s:.0f} s of audio the answer passes this server's limit of {limit_mb:g} MB a "
                f"response as {encoding} (w2vbert serve --max-response-mb); send shorter audio, pool=mean, or "
                "encoding_format=base64", "pool", "response_too_large")
    recording, ready = await served.prepare(pipe, data, name, too_long)
    future = await served.submit(pipe, recording, ready, pool=pool)
    return await result_of(future), recording.samples / SAMPLING_RATE
