"""What the server serves and how it is doing: GET /v1/models (OpenAI's list: every model under each name it
answers to, an alias with its model as `root`), /health (open without an API key; the process id, which tells
replicas apart; every model's queue; 503 while draining or once a model thread has stopped) and /metrics
(Prometheus text of the app's `Metrics`).
"""

from __future__ import annotations

import os
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
        {"id": name, "object": "model", "created": created, "owned_by": "w2vbert", "root": model,
         "task": state.models[model].task}
        for name, model in state.settings.catalog.items()]})


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    state = ServerState.of(request)
    queued = {name: served.batcher.queued_windows for name, served in state.models.items()}
    stopped = [name for name, served in state.models.items() if not served.batcher.running]
    status = "draining" if state.draining else "failed" if stopped else "ok"
    return JSONResponse({"status": status, "process": os.getpid(), "model": state.served.name,
                         "requests_in_flight": state.in_flight, "queued_windows": sum(queued.values()),
                         "models": {name: {"task": served.task, "queued_windows": queued[name],
                                           "running": name not in stopped} for name, served in state.models.items()}},
                        status_code=200 if status == "ok" else 503)


@router.get("/metrics")
async def prometheus(request: Request) -> Response:
    state = ServerState.of(request)
    for name, served in state.models.items():
        state.metrics.queued.labels(name).set(served.batcher.queued_windows)
    return Response(state.metrics.text(), media_type="text/plain; version=0.0.4")
