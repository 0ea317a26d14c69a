"""GET /: the web page (serving/web/index.html), which calls the API from the browser."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()


@router.get("/")
async def page() -> HTMLResponse:
    return HTMLResponse(resources.files("w2vbert.serving").joinpath("web/index.html").read_text(encoding="utf-8"))
