"""Azure Resource Graph ``POST /providers/Microsoft.ResourceGraph/resources``
(azure-mgmt-resourcegraph ``ResourceGraphClient.resources(QueryRequest(...))``).

The emulator does not run KQL. It accepts exactly the inventory query shape and refuses
anything else with ARG's 400 (``BadRequest`` with an ``InvalidQuery`` detail) rather than return
wrong data. Accepted (keywords, table name and whitespace in any case/amount; quotes ' or "):

    resources
    | where type =~ 'microsoft.containerregistry/registries'   (or == with the lower-case literal)
    [| project <columns>]                                       (default: every column)
    [| order by <column> [asc|desc]]              (also `sort by`; default desc, as in KQL)

Columns: id, name, type, tenantId, kind, location, resourceGroup, subscriptionId, managedBy,
sku, plan, properties, tags, identity, zones, extendedLocation, systemData (case-sensitive, as
in KQL). Only string columns can be ordered by. Without order by, rows come in id order.

Paging: ``options.$top`` (1-1000, default 100) is the page size; ``$skipToken`` continues;
``$skip`` offsets. ``resultFormat`` objectArray (default) or table. ``subscriptions`` limits
the scope (empty or absent: every subscription; unknown ones are ignored). Quota: 15 queries
per 5 s window per caller (knob ``resourcegraph``), reported in ``x-ms-user-quota-remaining``
and ``x-ms-user-quota-resets-after``; beyond it 429 with Retry-After.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from emulator.arm.common import Ctx, encode_token, require_api_version, token_offset
from emulator.arm.registries import registry_properties, system_data
from emulator.scenario import RegistrySpec
from emulator.state import World
from emulator.throttle import hhmmss, retry_after_header
from emulator.web import ApiError, json_response, read_json

RESOURCE_TYPE = "Microsoft.ResourceGraph/resources"
# azure-mgmt-resourcegraph 8.0.1 sends 2021-03-01.
API_VERSIONS = (
    "2018-09-01-preview", "2019-04-01", "2020-04-01-preview", "2020-09-01-preview",
    "2021-03-01", "2021-06-01-preview", "2022-10-01", "2024-04-01",
)  # fmt: skip
REGISTRY_TYPE = "microsoft.containerregistry/registries"
MAX_TOP = 1000
# KQL column -> ARG table-format type; string columns can be ordered by.
COLUMNS = {
    "id": "string", "name": "string", "type": "string", "tenantId": "string", "kind": "string",
    "location": "string", "resourceGroup": "string", "subscriptionId": "string",
    "managedBy": "string", "sku": "object", "plan": "object", "properties": "object",
    "tags": "object", "identity": "object", "zones": "object", "extendedLocation": "object",
    "systemData": "object",
}  # fmt: skip
SHAPE_HELP = (
    "The emulator accepts only: resources | where type =~ "
    "'microsoft.containerregistry/registries' [| project <columns>]"
    " [| order by <column> [asc|desc]]"
)
_WHERE_RE = re.compile(r"^where\s+type\s*(?P<op>=~|==)\s*(?P<q>['\"])(?P<lit>[^'\"]*)(?P=q)$", re.I)
_PROJECT_RE = re.compile(r"^project\s+(?P<cols>.+)$", re.I | re.S)
_ORDER_RE = re.compile(r"^(?:order|sort)\s+by\s+(?P<col>\w+)(?:\s+(?P<dir>asc|desc))?$", re.I)
_CACHE_SIZE = 16


class QueryShape:
    def __init__(
        self, columns: list[str], order: str | None, descending: bool, empty: bool
    ) -> None:
        self.columns = columns
        self.order = order
        self.descending = descending
        self.empty = empty  # `==` with a literal that differs in case: a valid query, no rows

    def key(self) -> str:
        return f"{','.join(self.columns)}|{self.order}|{self.descending}|{self.empty}"


def _invalid(reason: str) -> ApiError:
    return ApiError(
        400,
        "BadRequest",
        "Please provide below info when asking for support: the query is invalid.",
        details=[
            {
                "code": "InvalidQuery",
                "message": "Query is invalid. Please refer to the documentation for the Azure "
                "Resource Graph service and fix the error before retrying.",
            },
            {"code": "UnsupportedQueryShape", "message": f"{reason} {SHAPE_HELP}"},
        ],
    )


def parse_query(query: str) -> QueryShape:
    stages = [s.strip() for s in query.strip().split("|")]
    if not stages or stages[0].lower() != "resources":
        raise _invalid("The query must start with the 'resources' table.")
    if len(stages) < 2:
        raise _invalid("The query must filter on the registry type.")
    where = _WHERE_RE.match(stages[1])
    if where is None:
        raise _invalid(f"Unsupported stage '{stages[1][:200]}'.")
    literal = where["lit"]
    if literal.lower() != REGISTRY_TYPE:
        raise _invalid(f"Only the type '{REGISTRY_TYPE}' is emulated, not '{literal[:200]}'.")
    empty = where["op"] == "==" and literal != REGISTRY_TYPE
    columns = list(COLUMNS)
    order: str | None = None
    descending = False
    rest = stages[2:]
    if rest and (project := _PROJECT_RE.match(rest[0])):
        columns = [c.strip() for c in project["cols"].split(",")]
        for c in columns:
            if c not in COLUMNS:
                raise _invalid(
                    f"Unknown column '{c[:100]}' in project (column names are case-sensitive)."
                )
        if len(set(columns)) != len(columns):
            raise _invalid("A column is projected twice.")
        rest = rest[1:]
    if rest and (ordering := _ORDER_RE.match(rest[0])):
        order = ordering["col"]
        if order not in columns or COLUMNS[order] != "string":
            raise _invalid(f"Cannot order by '{order}': it must be a projected string column.")
        # KQL sorts descending unless told otherwise.
        descending = (ordering["dir"] or "desc").lower() == "desc"
        rest = rest[1:]
    if rest:
        raise _invalid(f"Unsupported stage '{rest[0][:200]}'.")
    return QueryShape(columns, order, descending, empty)


# Columns read off the registry alone; the rest need the world (see _value).
_REGISTRY_COLUMNS: dict[str, Callable[[RegistrySpec], Any]] = {
    "id": lambda reg: reg.id,
    "name": lambda reg: reg.name,
    "type": lambda reg: REGISTRY_TYPE,
    "location": lambda reg: reg.location.lower(),
    "resourceGroup": lambda reg: reg.resource_group.lower(),  # Resource Graph lower-cases them
    "subscriptionId": lambda reg: reg.subscription,
    "kind": lambda reg: "",
    "managedBy": lambda reg: "",
    "sku": lambda reg: {"name": reg.sku, "tier": reg.sku},
    "tags": lambda reg: dict(reg.tags),
    "systemData": system_data,
}


def _value(reg: RegistrySpec, column: str, world: World) -> Any:
    own = _REGISTRY_COLUMNS.get(column)
    if own is not None:
        return own(reg)
    match column:
        case "tenantId":
            sub = world.subscription(reg.subscription)
            return sub.tenant_id if sub else world.tenant_id
        case "properties":
            return registry_properties(reg, world)
        case _:
            return None


def _matching(world: World, subs: frozenset[str] | None, shape: QueryShape) -> list[RegistrySpec]:
    """Matching registries in result order, cached per (scope, order, inventory version)."""
    cache: dict[tuple[Any, ...], list[RegistrySpec]] = world.cache.setdefault("resourcegraph", {})
    key = (subs, shape.order, shape.descending, shape.empty, world.inventory_version)
    with world.lock:
        hit = cache.get(key)
        if hit is not None:
            return hit
        regs = [] if shape.empty else world.registries_sorted(None)
        if subs is not None:
            regs = [r for r in regs if r.subscription in subs]
        if shape.order and shape.order != "id":
            regs = sorted(regs, key=lambda r: _value(r, shape.order or "id", world))
        if shape.descending:
            regs = list(reversed(regs))
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[key] = regs
        return regs


def _quota(request: Request, ctx: Ctx) -> dict[str, str]:
    limits = ctx.world.knobs.resourcegraph
    if not limits.enabled:
        return {}
    decision, resets = ctx.world.graph_windows.take(ctx.caller, limits.quota, limits.window_seconds)
    headers = {
        "x-ms-user-quota-remaining": str(decision.remaining),
        "x-ms-user-quota-resets-after": hhmmss(resets),
    }
    if not decision.allowed:
        raise ApiError(
            429,
            "RateLimiting",
            "Please provide below info when asking for support: too many requests. "
            f"Please retry after {hhmmss(resets)}.",
            headers={**headers, "Retry-After": retry_after_header(decision.retry_after_s)},
        )
    return headers


async def query_resources(request: Request, ctx: Ctx) -> Response:
    quota_headers = _quota(request, ctx)
    try:
        response = await _query(request, ctx)
    except ApiError as err:
        err.headers.update(quota_headers)
        raise
    response.headers.update(quota_headers)
    return response


def _options(body: dict[str, Any]) -> dict[str, Any]:
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "BadRequest", "'options' must be an object.")
    return options


def _int_option(options: dict[str, Any], key: str, lo: int, hi: int | None) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi and value > hi):
        bound = f"between {lo} and {hi}" if hi else f"at least {lo}"
        raise ApiError(400, "BadRequest", f"The '{key}' option must be an integer {bound}.")
    return value


async def _query(request: Request, ctx: Ctx) -> Response:
    require_api_version(request, API_VERSIONS, resource_type=RESOURCE_TYPE)
    body = await read_json(request, ctx.world.knobs.max_body_bytes)
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise ApiError(400, "BadRequest", "The request needs a 'query' string.")
    subs_raw = body.get("subscriptions")
    if subs_raw is not None and (
        not isinstance(subs_raw, list) or not all(isinstance(s, str) for s in subs_raw)
    ):
        raise ApiError(400, "BadRequest", "'subscriptions' must be a list of strings.")
    options = _options(body)
    top = _int_option(options, "$top", 1, MAX_TOP)
    skip = _int_option(options, "$skip", 0, None) or 0
    fmt = options.get("resultFormat", "objectArray")
    if fmt not in ("objectArray", "table"):
        raise ApiError(400, "BadRequest", "'resultFormat' must be objectArray or table.")
    shape = parse_query(body["query"])
    subs = frozenset(s.lower() for s in subs_raw) if subs_raw else None
    scope = hashlib.sha256(f"{shape.key()}|{sorted(subs or [])}".encode()).hexdigest()[:16]
    token = options.get("$skipToken")
    if token is not None and not isinstance(token, str):
        raise ApiError(400, "BadRequest", "'$skipToken' must be a string.")
    offset = token_offset(token, q=scope) + skip
    size = top or ctx.world.knobs.paging.resourcegraph_default_top
    rows = _matching(ctx.world, subs, shape)
    page = rows[offset : offset + size]
    data: Any
    if fmt == "objectArray":
        data = [{c: _value(r, c, ctx.world) for c in shape.columns} for r in page]
    else:
        data = {
            "columns": [{"name": c, "type": COLUMNS[c]} for c in shape.columns],
            "rows": [[_value(r, c, ctx.world) for c in shape.columns] for r in page],
        }
    result: dict[str, Any] = {
        "totalRecords": len(rows),
        "count": len(page),
        "resultTruncated": "false",
        "facets": [],
        "data": data,
    }
    if offset + size < len(rows):
        result["$skipToken"] = encode_token({"o": offset + size, "q": scope})
    return json_response(result)
