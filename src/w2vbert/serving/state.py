"""What every route of one app shares: a `ServerState` on `app.state.server`, read with `ServerState.of(request)`.

In order: `Metrics` (the Prometheus series of one app, in its own registry so that two apps in one process do not
mix; the model's series carry a `model` label), then `ServerState`: the settings, the served models by name, the
metrics and the count of requests in flight, with the checks every route makes against them: `authorize` (the API
key, 401), `model` (the model a request names, 404 listing the names), `admit` / `release` (the bound on requests in
flight, 503 with Retry-After; 503 too once the server drains), `idle` (until none is in flight, for the drain),
`needs` (a pipeline the model has, 400), `timed` (the request timeout, 504).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import HTTPConnection

from w2vbert.inference.engine import Pipeline
from w2vbert.serving.batcher import BatchReport
from w2vbert.serving.errors import ApiError, shutting_down
from w2vbert.serving.served import Served, ServeSettings


class Metrics:
    """The Prometheus series of one app (its own registry, so two apps in one process do not mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("w2vbert_requests", "requests answered", ["endpoint", "status"],
                                registry=self.registry)
        self.errors = Counter("w2vbert_errors", "requests answered with an error", ["endpoint", "code"],
                              registry=self.registry)
        self.in_flight = Gauge("w2vbert_requests_in_flight", "requests being served", registry=self.registry)
        self.queued = Gauge("w2vbert_queued_windows", "windows waiting for the model", ["model"],
                            registry=self.registry)
        self.batch_windows = Histogram("w2vbert_batch_windows", "windows per model batch", ["model"],
                                       buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.audio = Counter("w2vbert_audio_seconds", "seconds of audio through the model", ["model"],
                             registry=self.registry)
        self.latency = Histogram("w2vbert_request_seconds", "request latency", ["endpoint"],
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=self.registry)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        """One answered request (or one whose client left: 499) of `endpoint`, one of a fixed set of paths."""
        self.requests.labels(endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def serving(self, model: str) -> None:
        """The model's series, at zero until its first batch (a labelled series exists once its label is used)."""
        self.queued.labels(model)
        self.batch_windows.labels(model)
        self.audio.labels(model)

    def batch(self, model: str, report: BatchReport) -> None:
        """One batch of the model named `model` (serving.served.load_models' `on_batch`)."""
        self.batch_windows.labels(model).observe(report.windows)
        self.audio.labels(model).inc(report.audio_seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class ServerState:
    """One app's settings, models, metrics and requests in flight (HTTP requests on /v1/audio/ and live streams)."""

    settings: ServeSettings
    models: dict[str, Served]  # by name, the first model (requests naming none get it) first
    metrics: Metrics
    in_flight: int = 0  # changed on the event loop only, so no lock
    open_requests: int = 0  # HTTP requests inside the middleware, answered or not yet (the event loop only)
    draining: bool = False  # the server is stopping: only the requests in flight are served (app.DrainingServer)

    @property
    def served(self) -> Served:
        """The first model: requests that name none get it."""
        return next(iter(self.models.values()))

    def model(self, requested: str | None) -> Served:
        """The model a request names by its name or an alias (none: the first); another name is a 404 listing every
        name this server answers to."""
        if not requested:
            return self.served
        catalog = self.settings.catalog
        if requested not in catalog:
            names = ", ".join(name if name == model else f"{name} (for {model})" for name, model in catalog.items())
            raise ApiError(404, f"no model {requested!r} here: this server serves {names} (w2vbert serve "
                           "--model-alias ALIAS=NAME answers to another name)", "model", "model_not_found")
        return self.models[catalog[requested]]

    @staticmethod
    def of(connection: HTTPConnection) -> ServerState:
        """The state of the app a request or a WebSocket came to (create_app puts it on `app.state.server`)."""
        return connection.app.state.server

    def authorize(self, header: str | None, query_key: str | None = None) -> None:
        """The API key of an `Authorization: Bearer KEY` header, or else of `query_key` (browsers cannot set headers
        on a WebSocket), compared in constant time; no key configured: everyone may call."""
        api_key = self.settings.api_key
        if api_key is None:
            return
        given = query_key if header is None else header.removeprefix("Bearer ").strip()
        if given is None or not secrets.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "a valid API key is needed: send 'Authorization: Bearer KEY'"
                           if given is None else "the API key is not valid", code="invalid_api_key")

    def admit(self) -> None:
        """Count one more request in flight, or refuse it with 503 when `max_queue` are or the server is draining;
        `release` when done."""
        if self.draining:
            raise shutting_down()
        if self.in_flight >= self.settings.max_queue:
            raise ApiError(503, f"the server is busy: {self.in_flight} requests in flight (limit "
                           f"{self.settings.max_queue}, w2vbert serve --max-queue); retry shortly", code="server_busy",
                           headers={"Retry-After": "1"})
        self.in_flight += 1
        self.metrics.in_flight.inc()

    def release(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.dec()

    async def idle(self, timeout: float) -> int:
        """Until no request is in flight, for at most `timeout` seconds; the requests still in flight then. A
        replica on Ray Serve drains with it (ray_app.py), as `app.DrainingServer` does on its ticks."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.in_flight

    async def all_answered(self, timeout: float) -> None:
        """Until every HTTP request has left the middleware (its answer written), for at most `timeout` seconds: at
        shutdown, uvicorn cancels the requests still waiting and, without this wait, could end the process before
        their 503s are written."""
        deadline = time.monotonic() + timeout
        while self.open_requests and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def needs(self, pipe: Pipeline | None, what: str, served: Served | None = None) -> Pipeline:
        """`pipe` (of `served`, default the first model), or a 400 naming the model's class when the model has no
        head for `what`."""
        if pipe is None:
            served = served or self.served
            raise ApiError(400, f"{what} need a model with that head; the model {served.name!r} is a "
                           f"{type(served.model).__name__}", code="unsupported_by_model")
        return pipe

    async def timed(self, coroutine: Awaitable[Any]) -> Any:
        """`coroutine`'s result, or a 504 once it has run longer than the request timeout."""
        limit = self.settings.request_timeout_s
        try:
            return await asyncio.wait_for(coroutine, limit)
        except (TimeoutError, asyncio.TimeoutError):
            raise ApiError(504, f"the request took longer than this server's limit of {limit:g} s",
                           code="timeout") from None
