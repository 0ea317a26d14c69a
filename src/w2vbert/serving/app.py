"""`w2vbert serve`: one or several models behind HTTP, on FastAPI + uvicorn (the `serve` extra).

Routes (one router each, in serving/routes/):
    POST /v1/audio/transcriptions   OpenAI's, as its clients send it (json, text, srt, vtt, verbose_json; word and
                                    segment times; server-sent events with `stream`)          routes/audio.py
    POST /v1/audio/classifications  `file`, `top_k`: the labels and scores of a classification model   routes/audio.py
    POST /v1/audio/embeddings       `file`, `layer`, `pool` (mean or none), `encoding_format`           routes/audio.py
    WS   /v1/audio/stream           live transcription: PCM or encoded audio in, serving/live.py's messages out
                                                                                              routes/stream.py
    GET  /v1/models, /health, /metrics (Prometheus text)                                      routes/status.py
    GET  /                          the web page                                              routes/page.py

Requests name a model by its name or an alias in `model` (none: the first; another: 404 listing them). Every call of
a model goes through its one `batcher.Batcher` (served.py), so concurrent requests share batches and the event
loop never waits on the model; decoding and features run in a small thread pool. Limits a public endpoint needs,
all in `ServeSettings`: upload size, audio duration and per-frame answer size (413, naming the limit), a body
timeout (408), a request timeout (504), a bound on requests in flight, counted once the body is read (503 with
Retry-After), an optional API key (`Authorization: Bearer`, compared in constant time;
401), CORS off unless origins are given (middleware.py, state.py). Errors have OpenAI's shape: `{"error":
{"message", "type", "param", "code"}}` (errors.py). On SIGINT/SIGTERM `DrainingServer` drains: the requests in flight
get a grace period to finish while new ones are answered 503 with Retry-After; then uvicorn stops accepting, those
still waiting are cancelled and answered 503 (middleware.py), and `lifespan` waits until those answers are written
(uvicorn ends the process right after it), then stops the model threads. Replicas on Ray Serve run this same app,
one per replica, and drain through the same `ServerState.draining` when `w2vbert serve --ray` stops (ray_app.py).

Here: `create_app`, which puts one `ServerState` on `app.state.server` and assembles the middleware, the error
handlers and the routers around it, `uvicorn_config`, `DrainingServer`, and `lifespan`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

try:  # the `serve` extra: fastapi and uvicorn, prometheus_client for the metrics (state.py), wsproto for uvicorn's
    import prometheus_client  # noqa: F401
    import uvicorn
    import wsproto  # noqa: F401 - uvicorn's WebSocket protocol here (WEBSOCKET_PROTOCOL)
    from fastapi import FastAPI
except ImportError:
    from w2vbert.utils.extras import require_extra

    require_extra("serve", "the server (w2vbert.serving)")  # one line naming the missing module and the extra
    raise  # all there, but one of them fails to import: its own error

from w2vbert.serving.errors import install_error_handlers
from w2vbert.serving.middleware import install_middleware
from w2vbert.serving.routes import audio, page, status, stream
from w2vbert.serving.served import ModelLoadError, Served, ServeSettings, load_models
from w2vbert.serving.state import Metrics, ServerState

__all__ = ["DrainingServer", "ModelLoadError", "ServeSettings", "Served", "create_app", "uvicorn_config"]

# uvicorn's WebSocket protocol. Its default on `websockets` (websockets-sansio, uvicorn 0.54) sends a refusal before
# the handshake (401, 400, 503: routes/stream.py) yet logs "ASGI callable returned without completing handshake";
# wsproto's protocol completes the refusal.
WEBSOCKET_PROTOCOL = "wsproto"


def create_app(settings: ServeSettings, served: Served | None = None) -> FastAPI:
    """The FastAPI app serving the models of `settings`, loaded now (`served`: the first, loaded already). A name
    given twice or an alias of no model is a ValueError; a model that fails to load a ModelLoadError naming it."""
    settings.catalog  # noqa: B018 - the names checked before any model loads
    metrics = Metrics()
    models = load_models(settings, metrics.batch, served)
    for name in models:
        metrics.serving(name)
    app = FastAPI(title="w2vbert", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = ServerState(settings, models, metrics)
    install_middleware(app, app.state.server)
    install_error_handlers(app)
    for routes in (audio, stream, status, page):
        app.include_router(routes.router)
    return app


def uvicorn_config(app: FastAPI, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for `app` (`options`: host, port, timeout_graceful_shutdown...), as `w2vbert serve` and the
    tests run it: quiet unless something fails."""
    # asyncio and h11, not uvicorn's "auto": Ray Serve's install brings uvloop and httptools, which "auto" would pick,
    # and the shutdown and limit behaviour here is what the tests run on asyncio and h11.
    return uvicorn.Config(app, ws=WEBSOCKET_PROTOCOL, loop="asyncio", http="h11", log_level="warning", **options)


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain before its shutdown. On the first SIGINT/SIGTERM it keeps its port open while
    the requests in flight finish, for at most the shutdown grace (`timeout_graceful_shutdown`): new requests are
    answered 503 with Retry-After (middleware.py) and /health 503, so that clients and balancers go elsewhere. Once
    none is in flight, or the grace is spent, uvicorn's own shutdown runs with what is left of the grace (it stops
    accepting, then cancels what still runs: those requests are answered 503); a second signal shuts down at once."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state, self.grace = state, config.timeout_graceful_shutdown or 0.0
        self.drain_signal: int | None = None
        self.drain_deadline = 0.0

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.drain_signal is not None or not self.started:
            return super().handle_exit(sig, frame)
        self.drain_signal, self.drain_deadline = sig, time.monotonic() + self.grace
        self.state.draining = True

    async def on_tick(self, counter: int) -> bool:
        if self.drain_signal is not None and not self.should_exit:
            left = self.drain_deadline - time.monotonic()
            if self.state.in_flight == 0 or left <= 0:
                self.config.timeout_graceful_shutdown = max(left, 0.1)  # for what is not answered yet
                super().handle_exit(self.drain_signal, None)  # uvicorn re-raises it once shut down
        return await super().on_tick(counter)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await app.state.server.all_answered(timeout=2.0)  # the 503s of the requests uvicorn cancelled, written first
    for served in app.state.server.models.values():  # after uvicorn has let the requests in flight finish
        await asyncio.to_thread(served.close)
