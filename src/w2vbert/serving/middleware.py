"""What wraps every HTTP request, from the outside in: CORS (only when origins are given), then `Gate`, one ASGI
middleware that keeps the order a public endpoint needs:

    draining (503)  ->  API key (401)  ->  the whole body read, within the upload limit (413) and the body timeout
      (408)  ->  a place among the requests in flight, taken only now (503)  ->  the route, cancelled when its client
      leaves or when the server's shutdown grace runs out (503)  ->  the request's series in /metrics

A place is taken after the body is read, so that clients sending slowly (or never) cannot hold the places of the
others; a client that leaves has its route cancelled, so its queued windows are dropped (batcher.py) and its place
freed. `install_middleware` adds them; the routes run inside.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from w2vbert.serving.errors import ApiError, shutting_down
from w2vbert.serving.state import ServerState

# The paths /metrics names; any other path a client sends is counted as "other", so the series stay a fixed set.
ROUTES = ("/v1/audio/transcriptions", "/v1/audio/classifications", "/v1/audio/embeddings", "/v1/models",
          "/health", "/metrics", "/")
OPEN_PATHS = ("/", "/health")  # answered without an API key
STATUS_PATHS = ("/health", "/metrics")  # still answered while the server drains (/health with 503)
CLIENT_GONE = 499  # the status /metrics counts for a client that left before its answer (nginx's code)


class ClientGone(Exception):
    """The client closed its connection before its answer."""


class Gate:
    """ASGI middleware: the checks of the module map around every HTTP request to `app`."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # WebSockets check their key and take their place in routes/stream.py
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [CLIENT_GONE]
        self.state.open_requests += 1

        async def tracking_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._checked(scope, receive, tracking_send)
        except ApiError as error:  # raised before the route began: nothing was sent yet
            await answer(tracking_send, error)
        except ClientGone:
            pass  # nobody to answer
        except asyncio.CancelledError:  # uvicorn's shutdown grace ran out: an answer, not a traceback
            if status[0] == CLIENT_GONE:
                await answer(tracking_send, shutting_down())
        finally:
            self.state.open_requests -= 1
        path = scope["path"]
        self.state.metrics.request(path if path in ROUTES else "other", status[0], time.perf_counter() - started)

    async def _checked(self, scope: dict, receive: Any, send: Any) -> None:
        path, state = scope["path"], self.state
        if state.draining and path not in STATUS_PATHS:  # a request that came after the shutdown began
            raise shutting_down()
        if path not in OPEN_PATHS and scope["method"] != "OPTIONS":
            authorization = dict(scope["headers"]).get(b"authorization")
            state.authorize(None if authorization is None else authorization.decode("latin-1"))
        body = await self._body(scope, receive)
        limited = path.startswith("/v1/audio/")
        if limited:
            state.admit()
        try:
            await run_until_gone(self.app, scope, body, receive, send)
        finally:
            if limited:
                state.release()

    async def _body(self, scope: dict, receive: Any) -> list[dict]:
        """The request's body messages, all of them: a 413 past the upload limit (from the Content-Length before
        anything is read), a 408 when the whole body has not come within the body timeout."""
        settings = self.state.settings
        limit, timeout = int(settings.max_upload_mb * 2**20), settings.body_timeout_s
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            raise too_large(settings.max_upload_mb)
        loop = asyncio.get_running_loop()
        deadline, received, messages = loop.time() + timeout, 0, []
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except (TimeoutError, asyncio.TimeoutError):
                raise ApiError(408, f"the request body did not arrive within this server's limit of {timeout:g} s "
                               "(w2vbert serve --body-timeout)", code="body_timeout",
                               headers={"Connection": "close"}) from None
            if message["type"] == "http.disconnect":
                raise ClientGone
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large(settings.max_upload_mb)
            messages.append(message)
            if not message.get("more_body", False):
                return messages


async def run_until_gone(app: Any, scope: dict, body: list[dict], receive: Any, send: Any) -> None:
    """`app` on a request whose `body` messages were read already, cancelled if the client leaves before the
    answer is complete (then ClientGone). Only this function reads `receive` from now on: the app's own receive
    replays the body, then waits for the client to leave."""
    replay, gone, complete = collections.deque(body), asyncio.Event(), asyncio.Event()

    async def app_receive() -> dict:
        if replay:
            return replay.popleft()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def app_send(message: dict) -> None:
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            complete.set()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    task, watcher = asyncio.ensure_future(app(scope, app_receive, app_send)), asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and not complete.is_set():  # the client left first: its work is dropped
            task.cancel()
            await asyncio.wait({task})
            raise ClientGone
        await task  # uvicorn's receive also says "disconnect" once the answer is complete
    finally:
        watcher.cancel()
        if not task.done():  # this request itself is cancelled (the server's shutdown grace ran out)
            task.cancel()
            await asyncio.wait({task})


def too_large(limit_mb: float) -> ApiError:
    return ApiError(413, f"the upload is larger than this server's limit of {limit_mb:g} MB (w2vbert serve "
                    "--max-upload-mb)", "file", "upload_too_large", headers={"Connection": "close"})


async def answer(send: Any, error: ApiError) -> None:
    """`error` in OpenAI's shape, sent without the app (the route never ran)."""
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(key.lower().encode(), value.encode()) for key, value in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_middleware(app: FastAPI, state: ServerState) -> None:
    """The request limits and accounting of `app`; each one added wraps those added before it."""
    app.add_middleware(Gate, state=state)
    if state.settings.cors_origins:  # outermost, so that preflights and error answers carry its headers
        app.add_middleware(CORSMiddleware, allow_origins=list(state.settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"])
