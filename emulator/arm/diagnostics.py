"""Diagnostic settings on a registry (azure-mgmt-monitor 6.0.2
``diagnostic_settings.list/get/create_or_update/delete`` and
``diagnostic_settings_category.list/get``), api-version 2021-05-01-preview; 2017-05-01-preview
(what older tools such as Cloud Custodian send) is served as that version shows it: no
category groups, so an ``allLogs`` entry arrives as ``{"enabled": true}`` with no category.

Validation follows ARM: at most 5 settings per resource, category groups XOR categories, at
least one destination, only the resource type's categories, and a destination may not receive
the same category from two settings of one resource.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from emulator.arm.common import Ctx, require_api_version, subscription_not_found
from emulator.scenario import CATEGORY_GROUPS, LOG_CATEGORIES, METRIC_CATEGORIES, RegistrySpec
from emulator.web import ApiError, json_response, read_json

SETTINGS_TYPE = "Microsoft.Insights/diagnosticSettings"
CATEGORIES_TYPE = "microsoft.insights/diagnosticSettingsCategories"
V2021 = "2021-05-01-preview"
V2017 = "2017-05-01-preview"
API_VERSIONS = (V2017, V2021)
MAX_SETTINGS = 5
DESTINATIONS = (
    "workspaceId",
    "storageAccountId",
    "eventHubAuthorizationRuleId",
    "marketplacePartnerId",
)
_RESOURCE_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)(?:/resourceGroups/(?P<rg>[^/]+)"
    r"(?:/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+))?)?",
    re.IGNORECASE,
)
_WORKSPACE_ID_RE = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.OperationalInsights"
    r"/workspaces/[^/]+$",
    re.IGNORECASE,
)
_NAME_RE = re.compile(r"^[^/\\?#%&*:<>+\x00-\x1f]{1,260}$")


def _bad(message: str, code: str = "BadRequest") -> ApiError:
    return ApiError(400, code, message)


def resolve(ctx: Ctx, resource_uri: str) -> RegistrySpec:
    """The registry a resource URI names (case-insensitive), or ARM's 404."""
    m = _RESOURCE_RE.match(resource_uri)
    if m is None:
        raise ApiError(400, "InvalidResourceId", f"The resource id '{resource_uri}' is not valid.")
    if ctx.world.subscription(m["sub"]) is None:
        raise subscription_not_found(m["sub"])
    reg = ctx.world.registry(resource_uri)
    if reg is None:
        rtype = f"{m['ns']}/{m['type']}" if m["ns"] else "resource"
        raise ApiError(
            404,
            "ResourceNotFound",
            f"The Resource '{rtype}/{m['name'] or resource_uri}' under resource group "
            f"'{m['rg'] or ''}' was not found. For more details please go to "
            f"https://aka.ms/ARMResourceNotFoundFix",
        )
    return reg


def setting_json(
    reg: RegistrySpec, name: str, properties: dict[str, Any], version: str
) -> dict[str, Any]:
    props = dict(properties)
    if version == V2017:
        props.pop("marketplacePartnerId", None)
        props["logs"] = [
            {k: v for k, v in entry.items() if k != "categoryGroup"}
            for entry in props.get("logs", [])
        ]
    return {
        "id": f"{reg.id}/providers/microsoft.insights/diagnosticSettings/{name}",
        "type": SETTINGS_TYPE,
        "name": name,
        "properties": props,
    }


# --------------------------------------------------------------------------- settings


async def list_settings(request: Request, ctx: Ctx, resource: str) -> Response:
    version = require_api_version(request, API_VERSIONS, resource_type=SETTINGS_TYPE)
    reg = resolve(ctx, resource)
    return json_response(
        {"value": [setting_json(reg, s.name, s.properties, version) for s in reg.settings]}
    )


async def get_setting(request: Request, ctx: Ctx, resource: str, name: str) -> Response:
    version = require_api_version(request, API_VERSIONS, resource_type=SETTINGS_TYPE)
    reg = resolve(ctx, resource)
    for s in reg.settings:
        if s.name.lower() == name.lower():
            return json_response(setting_json(reg, s.name, s.properties, version))
    raise ApiError(404, "ResourceNotFound", f"The diagnostic setting '{name}' doesn't exist.")


async def put_setting(request: Request, ctx: Ctx, resource: str, name: str) -> Response:
    version = require_api_version(request, API_VERSIONS, resource_type=SETTINGS_TYPE)
    resolve(ctx, resource)
    if not _NAME_RE.match(name) or name != name.strip():
        raise _bad(
            f"The diagnostic setting name '{name[:300]}' is not valid.", "InvalidResourceName"
        )
    body = await read_json(request, ctx.world.knobs.max_body_bytes)
    properties = validate(body, version)
    # Checks and write under one lock: two concurrent PUTs must not make a sixth setting, and
    # the registry may have been removed while the body was read.
    with ctx.world.lock:
        reg = resolve(ctx, resource)
        others = [s for s in reg.settings if s.name.lower() != name.lower()]
        if len(others) >= MAX_SETTINGS:
            raise _bad(
                f"Diagnostic settings for resource '{reg.id}' already reach the maximum of "
                f"{MAX_SETTINGS}; a resource can have at most {MAX_SETTINGS} diagnostic settings."
            )
        for other in others:
            _check_sink_reuse(properties, other.name, other.properties)
        stored, _ = ctx.world.put_setting(
            reg.id, name, properties, caller=ctx.caller, caller_ip=ctx.caller_ip
        )
    return json_response(setting_json(reg, stored.name, stored.properties, version))


async def delete_setting(request: Request, ctx: Ctx, resource: str, name: str) -> Response:
    require_api_version(request, API_VERSIONS, resource_type=SETTINGS_TYPE)
    with ctx.world.lock:
        reg = resolve(ctx, resource)
        deleted = ctx.world.delete_setting(reg.id, name, caller=ctx.caller, caller_ip=ctx.caller_ip)
    return Response(status_code=200 if deleted else 204)


def validate(body: Any, version: str) -> dict[str, Any]:
    """The request body's properties in stored REST shape; ARM's 400 if invalid."""
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise _bad(
            "The request content must be an object with a 'properties' object.",
            "InvalidRequestContent",
        )
    src = body["properties"]
    props: dict[str, Any] = {}
    for key in (*DESTINATIONS, "eventHubName"):
        value = src.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise _bad(f"The property '{key}' must be a string.", "InvalidRequestContent")
        props[key] = value
    if version == V2017:
        props.pop("marketplacePartnerId", None)
    if "eventHubName" in props and "eventHubAuthorizationRuleId" not in props:
        raise _bad("'eventHubName' requires 'eventHubAuthorizationRuleId'.")
    if not any(k in props for k in DESTINATIONS):
        raise _bad(
            "At least one destination (workspaceId, storageAccountId, "
            "eventHubAuthorizationRuleId or marketplacePartnerId) must be specified."
        )
    if "workspaceId" in props and not _WORKSPACE_ID_RE.match(props["workspaceId"]):
        raise _bad(
            f"'{props['workspaceId'][:300]}' is not a valid Log Analytics workspace id.",
            "LinkedInvalidPropertyId",
        )
    dest_type = src.get("logAnalyticsDestinationType")
    if dest_type is not None and (
        not isinstance(dest_type, str) or dest_type.lower() not in ("dedicated", "azurediagnostics")
    ):
        raise _bad("'logAnalyticsDestinationType' must be 'Dedicated' or null.")
    # ARM reports the AzureDiagnostics mode as null.
    dedicated = isinstance(dest_type, str) and dest_type.lower() == "dedicated"
    props["logAnalyticsDestinationType"] = "Dedicated" if dedicated else None
    props["logs"] = _logs(src.get("logs"), version)
    props["metrics"] = _metrics(src.get("metrics"))
    return props


def _entries(value: Any, key: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise _bad(f"'{key}' must be a list of objects.", "InvalidRequestContent")
    return value


def _retention(entry: dict[str, Any], where: str) -> dict[str, Any]:
    rp = entry.get("retentionPolicy")
    if rp is None:
        return {"enabled": False, "days": 0}
    days = rp.get("days", 0) if isinstance(rp, dict) else None
    if (
        not isinstance(rp, dict)
        or not isinstance(rp.get("enabled"), bool)
        or (isinstance(days, bool) or not isinstance(days, int) or days < 0 or days > 365)
    ):
        raise _bad(f"{where}: 'retentionPolicy' needs 'enabled' (bool) and 'days' (0-365).")
    return {"enabled": rp["enabled"], "days": days}


def _enabled(entry: dict[str, Any], where: str) -> bool:
    if not isinstance(entry.get("enabled"), bool):
        raise _bad(
            f"{where}: 'enabled' is required and must be true or false.", "InvalidRequestContent"
        )
    return bool(entry["enabled"])


def _logs(value: Any, version: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, e in enumerate(_entries(value, "logs")):
        where = f"logs[{i}]"
        category, group = e.get("category"), e.get("categoryGroup")
        if group is not None and version == V2017:
            raise _bad(f"{where}: 'categoryGroup' is not supported in api-version {V2017}.")
        if (category is None) == (group is None):
            raise _bad(f"{where}: specify exactly one of 'category' or 'categoryGroup'.")
        entry: dict[str, Any]
        if category is not None:
            known = {c.lower(): c for c in LOG_CATEGORIES}
            if not isinstance(category, str) or category.lower() not in known:
                raise _bad(f"Category '{category}' is not supported.")
            entry = {"category": known[category.lower()]}
        else:
            known = {g.lower(): g for g in CATEGORY_GROUPS}
            if not isinstance(group, str) or group.lower() not in known:
                raise _bad(f"Category group '{group}' is not supported.")
            entry = {"categoryGroup": known[group.lower()]}
        key = next(iter(entry.values())).lower()
        if key in seen:
            raise _bad(f"{where}: '{next(iter(entry.values()))}' is listed more than once.")
        seen.add(key)
        entry["enabled"] = _enabled(e, where)
        entry["retentionPolicy"] = _retention(e, where)
        out.append(entry)
    if any("category" in x for x in out) and any("categoryGroup" in x for x in out):
        raise _bad("Diagnostic settings does not support mixing categories and category groups.")
    return out


def _metrics(value: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, e in enumerate(_entries(value, "metrics")):
        where = f"metrics[{i}]"
        category = e.get("category", METRIC_CATEGORIES[0])
        known = {c.lower(): c for c in METRIC_CATEGORIES}
        if not isinstance(category, str) or category.lower() not in known:
            raise _bad(f"Category '{category}' is not supported.")
        entry: dict[str, Any] = {"category": known[category.lower()], "enabled": _enabled(e, where)}
        if isinstance(e.get("timeGrain"), str):
            entry["timeGrain"] = e["timeGrain"]
        entry["retentionPolicy"] = _retention(e, where)
        out.append(entry)
    return out


def enabled_categories(properties: dict[str, Any]) -> set[str]:
    """Every log and metric category a setting sends (groups expanded)."""
    cats: set[str] = set()
    for e in properties.get("logs", []):
        if e.get("enabled"):
            if "categoryGroup" in e:
                cats.update(CATEGORY_GROUPS.get(e["categoryGroup"], ()))
            elif e.get("category"):
                cats.add(e["category"])
    for e in properties.get("metrics", []):
        if e.get("enabled"):
            cats.add(e.get("category") or METRIC_CATEGORIES[0])
    return cats


def _sinks(properties: dict[str, Any]) -> dict[str, str]:
    sinks = {k: str(properties[k]).lower() for k in DESTINATIONS if properties.get(k)}
    if "eventHubAuthorizationRuleId" in sinks:
        sinks["eventHubAuthorizationRuleId"] += (
            "|" + str(properties.get("eventHubName") or "").lower()
        )
    return sinks


def _check_sink_reuse(new: dict[str, Any], other_name: str, other: dict[str, Any]) -> None:
    shared = {k for k, v in _sinks(new).items() if _sinks(other).get(k) == v}
    if not shared:
        return
    overlap = enabled_categories(new) & enabled_categories(other)
    if overlap:
        sink = new[sorted(shared)[0]]
        raise _bad(
            f"Data sink '{sink}' is already used in diagnostic setting '{other_name}' for category "
            f"'{sorted(overlap)[0]}'. Data sinks can't be reused in different settings on the same "
            f"category for the same resource."
        )


# --------------------------------------------------------------------------- categories


def _category_json(reg: RegistrySpec, name: str, version: str) -> dict[str, Any]:
    props: dict[str, Any]
    if name in LOG_CATEGORIES:
        props = {"categoryType": "Logs"}
        if version == V2021:
            props["categoryGroups"] = [g for g, cats in CATEGORY_GROUPS.items() if name in cats]
    else:
        props = {"categoryType": "Metrics"}
    return {
        "id": f"{reg.id}/providers/microsoft.insights/diagnosticSettingsCategories/{name}",
        "type": CATEGORIES_TYPE,
        "name": name,
        "properties": props,
    }


async def list_categories(request: Request, ctx: Ctx, resource: str) -> Response:
    version = require_api_version(request, API_VERSIONS, resource_type=CATEGORIES_TYPE)
    reg = resolve(ctx, resource)
    names = (*LOG_CATEGORIES, *METRIC_CATEGORIES)
    return json_response({"value": [_category_json(reg, n, version) for n in names]})


async def get_category(request: Request, ctx: Ctx, resource: str, name: str) -> Response:
    version = require_api_version(request, API_VERSIONS, resource_type=CATEGORIES_TYPE)
    reg = resolve(ctx, resource)
    for n in (*LOG_CATEGORIES, *METRIC_CATEGORIES):
        if n.lower() == name.lower():
            return json_response(_category_json(reg, n, version))
    raise ApiError(
        404, "ResourceNotFound", f"The diagnostic settings category '{name}' doesn't exist."
    )
