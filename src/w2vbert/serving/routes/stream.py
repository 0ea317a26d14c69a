"""WS /v1/audio/stream: live transcription, audio in as it arrives, serving/live.py's messages out.

Query: `format` (pcm16, the default, or encoded: the bytes of a file in any format FFmpeg reads), `sample_rate`
(of pcm16; default 16000), `api_key` (browsers cannot set headers on a WebSocket). Binary messages are audio; the
text message {"type": "end"} ends the stream. A stream counts as a request in flight, may stay silent for at most
the request timeout, and may send at most the duration limit in audio (and, encoded, the upload limit in bytes).
The query's `model` picks a served model by name or alias, as an upload's field does (none: the first).

Refusals before the handshake are HTTP answers in OpenAI's error shape (`open_stream`); failures after it are an
{"type": "error", "error": {...}} message and a close code: 1003 a text message that is not the end, 1007
undecodable audio, 1008 silence past the timeout, 1009 past a limit, 1011 a model failure.

In order: the route, `open_stream` (the checks before the handshake), `relay` (messages until the end), helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from w2vbert.audio.decode import SAMPLING_RATE
from w2vbert.inference.pipelines import AutomaticSpeechRecognitionPipeline
from w2vbert.serving.batcher import TooLong
from w2vbert.serving.errors import ApiError, error_response
from w2vbert.serving.live import Encoded, Pcm16, Transcript, live_transcript
from w2vbert.serving.state import ServerState

FORMATS = ("pcm16", "encoded")

router = APIRouter()


@router.websocket("/v1/audio/stream")
async def live(websocket: WebSocket) -> None:
    """One live stream, from the handshake to its last message (see the module map for what goes in and out)."""
    state = ServerState.of(websocket)
    try:
        pipe, fmt, decoder = open_stream(websocket, state)
    except ApiError as error:
        await websocket.send_denial_response(error_response(error))
        return
    try:  # a chunked model streams chunk by chunk (live.py)
        transcript = live_transcript(pipe, state.model(websocket.query_params.get("model")).batcher)
    except ValueError as error:  # a chunked model saved without fixed feature statistics
        decoder.close()
        state.release()
        await websocket.send_denial_response(error_response(ApiError(500, str(error), code="model_error")))
        return
    await websocket.accept()
    try:
        await relay(websocket, state, transcript, decoder, fmt)
    except WebSocketDisconnect:
        return
    except TooLong as error:
        await fail(websocket, ApiError(413, str(error), code="audio_too_long"), 1009)
    except ValueError as error:  # undecodable encoded audio
        await fail(websocket, ApiError(400, str(error), code="invalid_audio"), 1007)
    except RuntimeError as error:  # the model failed, or the server is shutting down
        await fail(websocket, ApiError(500, str(error), code="model_error"), 1011)
    finally:
        decoder.close()
        state.release()


def open_stream(
    websocket: WebSocket, state: ServerState
) -> tuple[AutomaticSpeechRecognitionPipeline, str, Pcm16 | Encoded]:
    """(the pipeline, the format, its decoder) of a stream that may open; checked in order: the API key, a model
    that transcribes, the format, the sample rate, room in flight (taken here: the caller releases it). A refusal
    is an ApiError."""
    params = websocket.query_params
    state.authorize(websocket.headers.get("authorization"), params.get("api_key"))
    served = state.model(params.get("model"))  # the query's `model`, as uploads name it (none: the first)
    pipe = state.needs(served.transcriber, "live transcriptions", served)
    fmt = params.get("format", "pcm16")
    if fmt not in FORMATS:
        raise ApiError(400, f"format must be pcm16 or encoded, got {fmt!r}", "format")
    try:
        rate = int(params.get("sample_rate", SAMPLING_RATE))
        decoder = Pcm16(rate) if fmt == "pcm16" else Encoded(state.settings.max_audio_seconds)
    except ValueError as error:
        raise ApiError(400, str(error), "sample_rate") from None
    try:
        state.admit()
    except ApiError:
        decoder.close()
        raise
    return pipe, fmt, decoder


async def relay(
    websocket: WebSocket, state: ServerState, transcript: Transcript, decoder: Pcm16 | Encoded, fmt: str
) -> None:
    """Audio messages into `transcript` and its messages back, until the end message (then the last words and
    `done`), the client leaving, or a refusal (answered here, with its close code)."""
    settings = state.settings
    # Bytes: PCM is held by the duration limit (2 bytes a sample); an encoded stream by the upload limit.
    received = 0
    limit = int(settings.max_upload_mb * 2**20) if fmt == "encoded" else None
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), settings.request_timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            return await fail(websocket, ApiError(408, f"no message for {settings.request_timeout_s:g} s",
                                                  code="timeout"), 1008)
        if message["type"] == "websocket.disconnect":
            return  # the client left mid-stream: nothing to answer
        if message.get("bytes") is not None:
            received += len(message["bytes"])
            if limit is not None and received > limit:
                return await fail(websocket, ApiError(413, f"the stream sent more than this server's limit of "
                                                      f"{settings.max_upload_mb:g} MB", code="upload_too_large"), 1009)
            await feed(websocket, state, transcript, decoder.decode(message["bytes"]))
            continue
        text = (message.get("text") or "")[:200]
        if not is_end(text):
            return await fail(websocket, ApiError(400, 'expected binary audio messages, or the text message '
                                                  f'{{"type": "end"}} to end the stream; got the text {text[:60]!r}',
                                                  code="invalid_message"), 1003)
        audio = await asyncio.to_thread(decoder.decode, b"", True)  # waits for FFmpeg's last blocks
        await feed(websocket, state, transcript, audio)
        async for reply in transcript.finish():
            await websocket.send_json(reply)
        await websocket.close()
        return


async def feed(websocket: WebSocket, state: ServerState, transcript: Transcript, audio: np.ndarray) -> None:
    """`audio` into the transcript, its messages to the client; a stream past the duration limit is TooLong."""
    limit = state.settings.max_audio_seconds
    if transcript.seconds + len(audio) / SAMPLING_RATE > limit:
        raise TooLong.past(limit, "the stream")
    async for reply in transcript.feed(audio):
        await websocket.send_json(reply)


def is_end(text: str) -> bool:
    """Whether a text message is {"type": "end"}."""
    try:
        return json.loads(text).get("type") == "end"
    except (ValueError, AttributeError):
        return False


async def fail(websocket: WebSocket, error: ApiError, close_code: int) -> None:
    """`error` as the stream's last message, then the close with `close_code`."""
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the client may be gone already
        await websocket.send_json({"type": "error", **error.body()})
        await websocket.close(close_code)
