"""What wraps every HTTP request, from the outside in: CORS (only when origins are given), `account` (the API key,
the bound on requests in flight, and each request's series in /metrics), `UploadLimit` (413 for a body over the
upload limit). `install_middleware` adds them in that order; the routes run inside.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response

from w2vbert.serving.errors import ApiError, error_response
from w2vbert.serving.served import ServeSettings
from w2vbert.serving.state import ServerState

# The paths /metrics names; any other path a client sends is counted as "other", so the series stay a fixed set.
ROUTES = ("/v1/audio/transcriptions", "/v1/audio/classifications", "/v1/audio/embeddings", "/v1/models",
          "/health", "/metrics", "/")
OPEN_PATHS = ("/", "/health")  # answered without an API key


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


async def account(request: Request, call_next: Any) -> Response:
    """Every HTTP request: its API key checked (not for the page, /health or a CORS preflight), counted in flight
    when it is for /v1/audio/ (503 past the bound), and its status and latency recorded."""
    state = ServerState.of(request)
    path = request.url.path
    endpoint = path if path in ROUTES else "other"  # a fixed set of series, whatever paths clients send
    started = time.perf_counter()
    try:
        if path not in OPEN_PATHS and request.method != "OPTIONS":
            state.authorize(request.headers.get("authorization"))
        limited = path.startswith("/v1/audio/")
        if limited:
            state.admit()
        try:
            response = await call_next(request)
        finally:
            if limited:
                state.release()
    except ApiError as error:
        response = error_response(error)
    metrics = state.metrics
    metrics.requests.labels(endpoint, str(response.status_code)).inc()
    if response.status_code >= 400:
        metrics.errors.labels(endpoint, str(response.status_code)).inc()
    metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
    return response


def install_middleware(app: FastAPI, settings: ServeSettings) -> None:
    """The request limits and accounting of `app`; each one added wraps those added before it."""
    app.add_middleware(UploadLimit, max_bytes=int(settings.max_upload_mb * 2**20))
    app.middleware("http")(account)
    if settings.cors_origins:  # outermost, so that preflights and error answers carry its headers
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"])
