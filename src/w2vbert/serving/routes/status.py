"""What the server serves and how it is doing: GET /v1/models (OpenAI's list: the one model, under each name it
answers to), /health (open without an API key) and /metrics (Prometheus text of the app's `Metrics`).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from w2vbert.serving.state import ServerState

router = APIRouter()


@router.get("/v1/models")
async def models(request: Request) -> JSONResponse:
    state = ServerState.of(request)
    created = int(time.time())
    return JSONResponse({"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "w2vbert", "task": state.served.task}
        for name in state.settings.names]})


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    state = ServerState.of(request)
    return JSONResponse({"status": "ok", "model": state.settings.name, "requests_in_flight": state.in_flight,
                         "queued_windows": state.served.batcher.queued_windows})


@router.get("/metrics")
async def prometheus(request: Request) -> Response:
    state = ServerState.of(request)
    state.metrics.queued.set(state.served.batcher.queued_windows)
    return Response(state.metrics.text(), media_type="text/plain; version=0.0.4")
