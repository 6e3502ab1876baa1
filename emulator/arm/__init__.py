"""Azure Resource Manager: one dispatcher for every ARM path, doing what ARM's front door does
before a resource provider sees the request: authentication (audience management.azure.com),
then the token bucket per subscription (tenant for /subscriptions) and caller, with the
remaining-requests header on every response, then routing (case-insensitive paths)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from emulator.arm import (
    activitylog,
    diagnostics,
    registries,
    resourcegraph,
    subscriptions,
    workspaces,
)
from emulator.arm.common import DELETE, READ, WRITE, Ctx, charge, request_headers, world_of
from emulator.identity import ARM_AUDIENCE, require_token
from emulator.web import ApiError

Handler = Callable[..., Awaitable[Response]]
MAX_PATH = 8192  # ARM refuses longer URLs


@dataclass(frozen=True)
class ArmRoute:
    method: str
    pattern: re.Pattern[str]
    kind: str  # READ / WRITE / DELETE: which bucket pays
    scope: str  # "subscription", "tenant" or "graph" (Resource Graph has its own quota)
    handler: Handler


def _route(method: str, pattern: str, kind: str, scope: str, handler: Handler) -> ArmRoute:
    return ArmRoute(method, re.compile(pattern, re.IGNORECASE), kind, scope, handler)


_SUB = r"/subscriptions/(?P<subscription>[^/]+)"
_RG = _SUB + r"/resourceGroups/(?P<group>[^/]+)"
_RES = r"^(?P<resource>/subscriptions/.+)/providers/microsoft\.insights"
_SETTING = _RES + r"/diagnosticSettings/(?P<name>[^/]+)$"
_CATEGORIES = _RES + r"/diagnosticSettingsCategories"

ROUTES: tuple[ArmRoute, ...] = (
    # Diagnostic settings first: their resource part contains other providers' paths.
    _route("GET", _RES + r"/diagnosticSettings$", READ, "subscription", diagnostics.list_settings),
    _route("GET", _SETTING, READ, "subscription", diagnostics.get_setting),
    _route("PUT", _SETTING, WRITE, "subscription", diagnostics.put_setting),
    _route("DELETE", _SETTING, DELETE, "subscription", diagnostics.delete_setting),
    _route("GET", _CATEGORIES + "$", READ, "subscription", diagnostics.list_categories),
    _route("GET", _CATEGORIES + r"/(?P<name>[^/]+)$", READ, "subscription",
           diagnostics.get_category),
    _route("GET", f"^{_SUB}/providers/Microsoft\\.Insights/eventtypes/management/values$", READ,
           "subscription", activitylog.list_events),
    _route("GET", r"^/subscriptions$", READ, "tenant", subscriptions.list_subscriptions),
    _route("GET", f"^{_SUB}$", READ, "subscription", subscriptions.get_subscription),
    _route("GET", f"^{_SUB}/providers/Microsoft\\.ContainerRegistry/registries$", READ,
           "subscription", registries.list_registries),
    _route("GET", f"^{_RG}/providers/Microsoft\\.ContainerRegistry/registries$", READ,
           "subscription", registries.list_registries_in_group),
    _route("GET", f"^{_RG}/providers/Microsoft\\.ContainerRegistry/registries/(?P<name>[^/]+)$",
           READ, "subscription", registries.get_registry),
    _route("GET", f"^{_RG}/providers/Microsoft\\.OperationalInsights/workspaces/(?P<name>[^/]+)$",
           READ, "subscription", workspaces.get_workspace),
    _route("POST", r"^/providers/Microsoft\.ResourceGraph/resources$", READ, "graph",
           resourcegraph.query_resources),
)  # fmt: skip
_SLASHES = re.compile(r"/{2,}")
_SUB_OF = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)


def _path(request: Request) -> str:
    path = request.scope.get("path") or "/"
    if len(path) > MAX_PATH:
        raise ApiError(414, "RequestUriTooLong", f"The request URI exceeds {MAX_PATH} characters.")
    # The SDKs build "/{resourceUri}/..." from ids that already start with "/".
    return _SLASHES.sub("/", path).rstrip("/") or "/"


def _unknown(path: str, method: str, path_matched: bool) -> ApiError:
    if path_matched:
        return ApiError(
            405,
            "MethodNotAllowed",
            f"The requested resource does not support http method '{method}'.",
        )
    if "/providers/" in path.lower():
        return ApiError(
            404,
            "InvalidResourceType",
            f"The resource type for '{path[:300]}' could not be found (not emulated).",
        )
    return ApiError(404, "NotFound", f"The path '{path[:300]}' is not an emulated ARM path.")


async def dispatch(request: Request) -> Response:
    caller = require_token(request, ARM_AUDIENCE)
    path = _path(request)
    method = request.method.upper()
    path_matched = False
    for route in ROUTES:
        match = route.pattern.match(path)
        if match is None:
            continue
        path_matched = True
        if route.method == method:
            return await _handle(request, route, match.groupdict(), caller)
    raise _unknown(path, method, path_matched)


async def _handle(
    request: Request, route: ArmRoute, params: dict[str, Any], caller: str
) -> Response:
    world = world_of(request)
    headers = request_headers()
    try:
        if route.scope != "graph":
            sub = params.get("subscription")
            if sub is None and params.get("resource"):
                found = _SUB_OF.match(params["resource"])
                sub = found.group(1) if found else None
            target = sub if route.scope == "subscription" else None
            headers.update(charge(request, caller, route.kind, subscription_id=target))
        client = request.client.host if request.client else "127.0.0.1"
        response = await route.handler(request, Ctx(world, caller, client), **params)
    except ApiError as err:
        response = err.response()
    response.headers.update(headers)
    return response
