"""Errors as RFC 9457 problem details: every refusal, from a missing token to a malformed parameter, is a
``application/problem+json`` body with its status, a title and what to do about it."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import duckdb
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from fleetmeter.sql.catalog import WarehouseEmpty
from fleetmeter.sql.serve import Busy
from fleetmeter.web.models import Problem

log = structlog.get_logger(__name__)

MEDIA_TYPE = "application/problem+json"


class Refusal(Exception):
    """A request answered with a problem instead of data."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def problem(status: int, detail: str | None, instance: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail, instance=instance)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, media_type=MEDIA_TYPE,
                        headers=headers)


def install(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refusal)
        return problem(exc.status, exc.detail, request.url.path, exc.headers)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return problem(exc.status_code, str(exc.detail), request.url.path, dict(exc.headers or {}))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                           for error in exc.errors()[:10])
        return problem(422, detail[:2000], request.url.path)

    async def no_data(request: Request, exc: Exception) -> JSONResponse:
        return problem(503, f"no data to answer from yet: {exc}", request.url.path, {"Retry-After": "60"})

    async def busy(request: Request, exc: Exception) -> JSONResponse:
        return problem(503, str(exc), request.url.path, {"Retry-After": "2"})

    async def out_of_memory(request: Request, exc: Exception) -> JSONResponse:
        log.error("an answer ran out of memory", path=request.url.path, error=str(exc).splitlines()[0])
        return problem(503, "the answers being computed need more memory than http.api_memory_limit: try again "
                       "shortly", request.url.path, {"Retry-After": "5"})

    async def too_slow(request: Request, exc: Exception) -> JSONResponse:
        return problem(503, "the answer took longer than http.timeout_s: narrow the window or try again",
                       request.url.path, {"Retry-After": "5"})

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", path=request.url.path, error=repr(exc))
        return problem(500, "the server failed to answer; its log says why", request.url.path)

    app.add_exception_handler(Refusal, refused)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(WarehouseEmpty, no_data)
    app.add_exception_handler(duckdb.InterruptException, too_slow)
    app.add_exception_handler(Busy, busy)
    app.add_exception_handler(duckdb.OutOfMemoryException, out_of_memory)
    app.add_exception_handler(Exception, failed)


#: The problems every endpoint may answer, for the OpenAPI document.
PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": HTTPStatus(status).phrase, "content": {MEDIA_TYPE: {}}}
    for status in (401, 403, 404, 422, 503)
}
