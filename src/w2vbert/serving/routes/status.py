"""What the server serves and how it is doing: GET /v1/models (OpenAI's list, of the one model), /health (open
without an API key) and /metrics (Prometheus text of the app's `Metrics`).
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
    return JSONResponse({"object": "list", "data": [
        {"id": state.settings.name, "object": "model", "created": int(time.time()), "owned_by": "w2vbert",
         "task": state.served.task}]})


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
