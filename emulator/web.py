"""HTTP helpers shared by every emulated API: error responses in each API's real shape, and
a bounded JSON body reader so hostile bodies give 4xx, never a crash or unbounded memory."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

# ARM refuses request bodies over 4 MB; the Log Analytics query API has a similar cap.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

# "arm" and "resourcegraph" use ARM's {"error": {code, message, details}}; "logs" is the Log
# Analytics data plane's {"error": {code, message, correlationId, innererror}}; "identity" is
# the App Service token endpoint's {"statusCode", "message", "correlationId"}; "insights" is
# the Activity Log API's ErrorResponse (2015-04-01 spec): a bare {"code", "message"}.
SHAPES = ("arm", "resourcegraph", "logs", "identity", "insights")


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(
        content, status_code=status, headers=dict(headers or {}), media_type="application/json"
    )


def error_body(
    shape: str,
    status: int,
    code: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    inner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    correlation = str(uuid.uuid4())
    if shape == "identity":
        return {"statusCode": status, "message": message, "correlationId": correlation}
    if shape == "insights":
        return {"code": code, "message": message}
    error: dict[str, Any] = {"code": code, "message": message}
    if shape == "logs":
        error["correlationId"] = correlation
        if inner:
            error["innererror"] = inner
    elif details:
        error["details"] = details
    return {"error": error}


class ApiError(Exception):
    """Raised anywhere inside a handler; the app turns it into the API's error response.

    ``require_token`` and the ARM handlers raise it; so can the Log Analytics routes."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        shape: str = "arm",
        details: list[dict[str, Any]] | None = None,
        inner: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.shape = shape
        self.details = details
        self.inner = inner
        self.headers = dict(headers or {})

    def response(self) -> Response:
        body = error_body(
            self.shape, self.status, self.code, self.message, details=self.details, inner=self.inner
        )
        return json_response(body, self.status, self.headers)


async def read_body(
    request: Request, limit: int = DEFAULT_MAX_BODY_BYTES, shape: str = "arm"
) -> bytes:
    """The request body, refusing more than `limit` bytes without buffering them (413)."""
    too_large = ApiError(
        413,
        "RequestEntityTooLarge",
        f"The request content size exceeds the maximum of {limit} bytes.",
        shape=shape,
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large
        except ValueError:
            raise ApiError(
                400, "InvalidRequestContent", "Invalid Content-Length header.", shape=shape
            ) from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(
    request: Request, limit: int = DEFAULT_MAX_BODY_BYTES, shape: str = "arm"
) -> Any:
    """The JSON request body; bad UTF-8 or JSON gives ARM's 400 InvalidRequestContent."""
    raw = await read_body(request, limit, shape)
    if not raw.strip():
        raise ApiError(400, "InvalidRequestContent", "The request content was empty.", shape=shape)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ApiError(
            400,
            "InvalidRequestContent",
            f"The request content was invalid and could not be deserialized: {exc}",
            shape=shape,
        ) from None
