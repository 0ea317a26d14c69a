"""`w2vbert serve`: one model behind HTTP, on FastAPI + uvicorn (the `serve` extra).

Routes (one router each, in serving/routes/):
    POST /v1/audio/transcriptions   OpenAI's, as its clients send it (json, text, srt, vtt, verbose_json; word and
                                    segment times; server-sent events with `stream`)          routes/audio.py
    POST /v1/audio/classifications  `file`, `top_k`: the labels and scores of a classification model   routes/audio.py
    POST /v1/audio/embeddings       `file`, `layer`, `pool` (mean or none), `encoding_format`           routes/audio.py
    WS   /v1/audio/stream           live transcription: PCM or encoded audio in, serving/live.py's messages out
                                                                                              routes/stream.py
    GET  /v1/models, /health, /metrics (Prometheus text)                                      routes/status.py
    GET  /                          the web page                                              routes/page.py

Every model call goes through one `batcher.Batcher` (served.py), so concurrent requests share batches and the event
loop never waits on the model; decoding and features run in a small thread pool. Limits a public endpoint needs,
all in `ServeSettings`: upload size and audio duration (413, naming the limit), a request timeout (504), a bound on
requests in flight (503 with Retry-After), an optional API key (`Authorization: Bearer`, compared in constant time;
401), CORS off unless origins are given (middleware.py, state.py). Errors have OpenAI's shape: `{"error":
{"message", "type", "param", "code"}}` (errors.py). On SIGINT/SIGTERM uvicorn stops accepting, lets the requests in
flight finish, then `lifespan` stops the model thread.

Here: `create_app`, which puts one `ServerState` on `app.state.server` and assembles the middleware, the error
handlers and the routers around it, and `lifespan`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

try:  # the `serve` extra: fastapi, and prometheus_client for the metrics (state.py)
    import prometheus_client  # noqa: F401
    from fastapi import FastAPI
except ImportError:
    from w2vbert.utils.extras import require_extra

    require_extra("serve", "the server (w2vbert.serving)")  # one line naming the missing module and the extra
    raise  # all there, but one of them fails to import: its own error

from w2vbert.serving.errors import install_error_handlers
from w2vbert.serving.middleware import install_middleware
from w2vbert.serving.routes import audio, page, status, stream
from w2vbert.serving.served import Served, ServeSettings
from w2vbert.serving.state import Metrics, ServerState

__all__ = ["ServeSettings", "Served", "create_app"]


def create_app(settings: ServeSettings, served: Served | None = None) -> FastAPI:
    """The FastAPI app serving `settings.model` (loaded now unless `served` is given)."""
    metrics = Metrics()
    served = served or Served(settings, on_batch=metrics.batch)
    if served.batcher.on_batch is None:
        served.batcher.on_batch = metrics.batch
    app = FastAPI(title="w2vbert", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = ServerState(settings, served, metrics)
    install_middleware(app, settings)
    install_error_handlers(app)
    for routes in (audio, stream, status, page):
        app.include_router(routes.router)
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await asyncio.to_thread(app.state.server.served.close)  # after uvicorn has let the requests in flight finish
