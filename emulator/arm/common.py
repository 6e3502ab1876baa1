"""What every ARM handler shares: api-version checks with ARM's real error shapes, the token
bucket per subscription (or tenant) and caller, opaque paging tokens, timestamps."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from emulator.state import World
from emulator.throttle import retry_after_header
from emulator.web import ApiError

READ, WRITE, DELETE = "read", "write", "delete"
_HEADER_KIND = {READ: "reads", WRITE: "writes", DELETE: "deletes"}


@dataclass
class Ctx:
    """What the dispatcher established before calling a handler."""

    world: World
    caller: str
    caller_ip: str


def world_of(request: Request) -> World:
    world: World = request.app.state.world
    return world


def base_url(request: Request) -> str:
    """Scheme and authority the client used, for nextLink URLs it will follow."""
    return f"{request.url.scheme}://{request.url.netloc}"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def require_api_version(
    request: Request, supported: Iterable[str], *, resource_type: str | None, location: str = ""
) -> str:
    """The request's api-version if `supported` has it (case-insensitive), else ARM's 400:
    MissingApiVersionParameter, NoRegisteredProviderFound (provider resource types) or
    InvalidApiVersionParameter (ARM's own, e.g. /subscriptions)."""
    versions = tuple(supported)
    value = request.query_params.get("api-version")
    if not value:
        raise ApiError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    for v in versions:
        if v.lower() == value.lower():
            return v
    listed = ", ".join(sorted(versions, reverse=True))
    if resource_type is None:
        raise ApiError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{value}' is invalid. The supported versions are '{listed}'.",
        )
    namespace, _, rtype = resource_type.partition("/")
    raise ApiError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for location '{location or 'global'}' and API "
        f"version '{value}' for type '{rtype}'. The supported api-versions are '{listed}'. "
        f"The supported locations are 'global, westeurope, northeurope, eastus, westus'.",
        details=[{"code": "NoRegisteredProviderFound", "target": namespace}],
    )


def charge(
    request: Request, caller: str, kind: str, *, subscription_id: str | None
) -> dict[str, str]:
    """Take one token from the caller's bucket for this subscription (tenant when None).
    Returns the headers to add to the response, or raises ARM's 429."""
    world = world_of(request)
    knobs = world.knobs.arm_throttle
    scope = "subscription" if subscription_id else "tenant"
    header = f"x-ms-ratelimit-remaining-{scope}-{_HEADER_KIND[kind]}"
    if not knobs.enabled:
        return {}
    if kind == READ:
        burst, rate = knobs.burst, knobs.refill_per_second
    else:
        burst, rate = knobs.write_burst, knobs.write_refill_per_second
    target = (subscription_id or world.tenant_id).lower()
    decision = world.arm_buckets.take(
        (_HEADER_KIND[kind], scope, target, caller), burst, rate * knobs.clock_scale
    )
    if decision.allowed:
        return {header: str(decision.remaining)}
    wait = retry_after_header(decision.retry_after_s)
    code = "SubscriptionRequestsThrottled" if subscription_id else "TenantRequestsThrottled"
    raise ApiError(
        429,
        code,
        f"Number of '{kind}' requests for {scope} '{target}' actor '{caller}' exceeded. Please "
        f"try again after '{wait}' seconds after additional tokens are available. "
        f"Refer to https://aka.ms/arm-throttling",
        headers={"Retry-After": wait, header: "0"},
    )


def request_headers() -> dict[str, str]:
    rid = str(uuid.uuid4())
    return {"x-ms-request-id": rid, "x-ms-correlation-request-id": rid}


def encode_token(data: dict[str, Any]) -> str:
    """Opaque, URL-safe continuation token (survives the SDKs' re-quoting of nextLink)."""
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(token: str, *, what: str = "$skipToken") -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise ApiError(400, "InvalidSkipToken", f"The {what} '{token[:100]}' is invalid.")
    return data


def token_offset(token: str | None, **expect: Any) -> int:
    """The row offset a continuation token carries; 400 if it was made for another list."""
    if not token:
        return 0
    data = decode_token(token)
    offset = data.get("o")
    if (
        not isinstance(offset, int)
        or offset < 0
        or any(data.get(k) != v for k, v in expect.items())
    ):
        raise ApiError(400, "InvalidSkipToken", f"The $skipToken '{token[:100]}' is invalid.")
    return offset


def not_found(resource_type: str, name: str, resource_group: str) -> ApiError:
    return ApiError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not "
        f"found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def subscription_not_found(subscription_id: str) -> ApiError:
    return ApiError(
        404, "SubscriptionNotFound", f"The subscription '{subscription_id}' could not be found."
    )
