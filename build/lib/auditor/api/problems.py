"""RFC 7807 problem responses (`application/problem+json`) for every error the API returns.

`type` values are URNs, stable for clients to match on:
`urn:acr-auditor:problem:invalid-parameter` (400; `detail` and `invalidParams` name the
parameter), `...:not-found` (404), `...:method-not-allowed` (405), `...:storage-unavailable`
(503) and `...:internal-error` (500). Bodies never echo storage errors, which stay in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from auditor.storage import InvalidContinuationToken, StorageError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
_TYPE = "urn:acr-auditor:problem:"
RETRY_AFTER_SECONDS = 30


class NotFound(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidParameter(Exception):
    def __init__(self, name: str, location: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name, self.location, self.reason = name, location, reason


def problem(
    status: int,
    kind: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": _TYPE + kind,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def invalid(params: Sequence[tuple[str, str, str]]) -> JSONResponse:
    """400 for (name, location, reason) triples; `detail` names them all."""
    detail = "; ".join(f"parameter '{name}' ({where}): {why}" for name, where, why in params)
    return problem(
        400,
        "invalid-parameter",
        f"Invalid {detail}",
        invalidParams=[{"name": n, "in": where, "reason": why} for n, where, why in params],
    )


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    params = []
    for error in exc.errors():
        location = error.get("loc", ())
        where = str(location[0]) if location else "request"
        name = ".".join(str(part) for part in location[1:]) or where
        # pydantic's message only; the rejected input is not echoed back.
        params.append((name, where, str(error.get("msg", "invalid value"))))
    return invalid(params or [("request", "request", "invalid request")])


def _invalid_parameter(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidParameter)
    return invalid([(exc.name, exc.location, exc.reason)])


def _bad_token(_: Request, exc: Exception) -> JSONResponse:
    return invalid([("continuation", "query", str(exc))])


def _not_found(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotFound)
    return problem(404, "not-found", exc.detail)


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return problem(404, "not-found", "No such route; the API is described at /api/docs.")
    if exc.status_code == 405:
        # Starlette's exception carries `Allow` (the route's methods); RFC 9110 requires it.
        return problem(
            405, "method-not-allowed", "The route does not allow this method.", headers=exc.headers
        )
    return problem(exc.status_code, "http-error", str(exc.detail), headers=exc.headers)


def _storage(request: Request, exc: Exception) -> JSONResponse:
    # The message names the operation and HTTP status only; still, it goes to the log.
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return problem(
        503,
        "storage-unavailable",
        "The results store is unavailable; try again later.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal-error", "The request failed; the error has been logged.")


def install(app: FastAPI) -> None:
    """Replace FastAPI's default handlers (422 validation, plain JSON errors)."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(InvalidParameter, _invalid_parameter)
    app.add_exception_handler(InvalidContinuationToken, _bad_token)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(StorageError, _storage)
    app.add_exception_handler(Exception, _internal)
