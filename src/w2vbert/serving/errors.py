"""The server's errors, all in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with a status.

In order: `ApiError` (raised anywhere in a request, answered by the handlers below), `shutting_down` (the 503 of
a stopping server), `bad_input` (an audio error as 400, or 413 when too long), `result_of` (a batcher future's
result, its failures as ApiErrors), `error_response`, and `install_error_handlers`, so that FastAPI's own 404, 405
and validation errors and any unexpected exception answer in the same shape.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from w2vbert.serving.batcher import TooLong

logger = logging.getLogger("w2vbert.serving.app")  # the name the server logged under as one module


class ApiError(Exception):
    """An error answered in OpenAI's shape with `status`."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"  # OpenAI's 401 too
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def shutting_down() -> ApiError:
    """The answer of a server that is stopping: 503, to retry on another (or on this one, restarted)."""
    return ApiError(503, "the server is shutting down; retry on another", code="shutting_down",
                    headers={"Retry-After": "5", "Connection": "close"})


def bad_input(error: Exception, param: str = "file") -> ApiError:
    """Audio that cannot be read or is too short: 400; audio over the duration limit: 413."""
    if isinstance(error, TooLong):
        return ApiError(413, str(error), error.param, error.code)
    return ApiError(400, str(error), param, "invalid_audio")


async def result_of(future: concurrent.futures.Future) -> Any:
    """A batcher future's result; a too-short input is a 400, a model failure a 500."""
    try:
        return await asyncio.wrap_future(future)
    except ValueError as error:  # too short for the model
        raise bad_input(error) from None
    except RuntimeError as error:  # the model's output was not finite, or its batch failed
        raise ApiError(500, str(error), code="model_error") from None


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return error_response(error)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    message = {404: f"no route {request.method} {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(error.status_code, error.detail)
    return error_response(ApiError(error.status_code, message))


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("%s %s failed", request.method, request.url.path)
    return error_response(ApiError(500, f"the server failed on this request: {type(error).__name__}: {error}",
                                   code="server_error"))


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return error_response(ApiError(400, str(error)))


def install_error_handlers(app: FastAPI) -> None:
    """Every error `app` answers, in OpenAI's shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(RequestValidationError, _validation_error)
