"""The subscription's Activity Log (azure-mgmt-monitor 6.0.2 ``activity_logs.list(filter,
select)``): ``GET /subscriptions/{id}/providers/Microsoft.Insights/eventtypes/management/values``,
api-version 2015-04-01, paged by nextLink (the ``activity_log.page_size`` knob).

Events come from the world's activity records (`emulator.activity`): every change the world
makes (diagnostic setting PUT/DELETE, registry added/removed through the admin API or a test)
and the scenario's ``activity:`` entries. An event is listed once its submissionTimestamp has
come (eventTimestamp + the ``activity_log.ingestion_delay_seconds`` knob), as Azure lists an
event only after ingesting it. Newest first.

``$filter`` takes only the documented patterns: ``eventTimestamp ge '<t>'`` (required),
optionally ``and eventTimestamp le '<t>'`` (else now), and at most one of ``resourceGroupName``,
``resourceUri``, ``resourceProvider`` or ``correlationId`` ``eq '<v>'``, joined by ``and``;
anything else, a start more than 90 days back or a range over 90 days is a 400 with the API's
ErrorResponse shape (a bare ``{"code", "message"}``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from emulator import activity
from emulator.arm.common import (
    Ctx,
    base_url,
    decode_token,
    encode_token,
    iso,
    require_api_version,
    subscription_not_found,
)
from emulator.state import ActivityRecord
from emulator.web import ApiError, json_response

API_VERSION = "2015-04-01"
RESOURCE_TYPE = "microsoft.insights/eventtypes"
RETENTION = timedelta(days=90)
SELECTABLE = (
    "authorization", "caller", "category", "claims", "correlationId", "description",
    "eventDataId", "eventName", "eventTimestamp", "httpRequest", "id", "level", "operationId",
    "operationName", "properties", "resourceGroupName", "resourceId", "resourceProviderName",
    "resourceType", "status", "subStatus", "submissionTimestamp", "subscriptionId", "tenantId",
)  # fmt: skip
_NARROWING = ("resourcegroupname", "resourceuri", "resourceprovider", "correlationid")
_CLAUSE = re.compile(
    r"\s*(?P<field>[A-Za-z]+)\s+(?P<op>[A-Za-z]+)\s+'(?P<value>(?:[^']|'')*)'\s*", re.ASCII
)
_AND = re.compile(r"and\s+", re.IGNORECASE)
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def _bad(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message, shape="insights")


@dataclass(frozen=True)
class EventFilter:
    start: datetime
    end: datetime
    field: str | None = None  # lower-cased narrowing field
    value: str = ""


def _clauses(text: str) -> list[tuple[str, str, str]]:
    """(field lower-cased, operator lower-cased, unescaped value) of `a op 'v' and ...`."""
    out: list[tuple[str, str, str]] = []
    pos = 0
    while True:
        m = _CLAUSE.match(text, pos)
        if m is None:
            raise _bad(
                f'The $filter is not valid near position {pos}: only "<property> '
                "<ge|le|eq> '<value>'\" clauses joined by 'and' are supported."
            )
        out.append((m["field"].lower(), m["op"].lower(), m["value"].replace("''", "'")))
        pos = m.end()
        if pos == len(text):
            return out
        joined = _AND.match(text, pos)
        if joined is None:
            raise _bad(
                f"The $filter is not valid near position {pos}: clauses are joined by 'and'."
            )
        pos = joined.end()


def _instant(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"The value '{value[:100]}' of eventTimestamp is not a valid date.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_filter(text: str | None, now: datetime) -> EventFilter:
    """The filter's time range and narrowing clause; the API's 400 for anything else."""
    if not text or not text.strip():
        raise _bad(
            "The $filter query parameter is required and must give at least the start "
            "time: eventTimestamp ge '<start>'."
        )
    found: dict[tuple[str, str], str] = {}
    for field, op, value in _clauses(text.strip()):
        allowed = (field == "eventtimestamp" and op in ("ge", "le")) or (
            field in (*_NARROWING, "eventchannels") and op == "eq"
        )
        if not allowed or (field, op) in found:
            raise _bad(f"The $filter clause '{field} {op}' is not supported here.")
        found[(field, op)] = value
    narrowing = [(f, v) for (f, _), v in found.items() if f in _NARROWING]
    if len(narrowing) > 1:
        raise _bad(
            "The $filter may narrow by one of resourceGroupName, resourceUri, "
            "resourceProvider or correlationId, not several."
        )
    if ("eventtimestamp", "ge") not in found:
        raise _bad("The $filter must give the start time: eventTimestamp ge '<start>'.")
    start = _instant(found[("eventtimestamp", "ge")])
    end = _instant(found[("eventtimestamp", "le")]) if ("eventtimestamp", "le") in found else now
    _check_range(start, end, now)
    if not narrowing:
        return EventFilter(start, end)
    return EventFilter(start, end, narrowing[0][0], narrowing[0][1])


def _check_range(start: datetime, end: datetime, now: datetime) -> None:
    if end < start:
        raise _bad("The end time of the $filter is before its start time.")
    if end - start > RETENTION or start < now - RETENTION:
        raise _bad(
            "The $filter's time range must lie within the last 90 days (the activity "
            "log keeps 90 days of events)."
        )


def _matches(rec: ActivityRecord, f: EventFilter) -> bool:
    if f.field is None:
        return True
    want = f.value.strip().lower()
    if f.field == "resourceuri":
        return rec.resource_id.lower() == want.rstrip("/")
    rg, provider, _ = activity.segments(rec.resource_id)
    if f.field == "resourcegroupname":
        return rg.lower() == want
    if f.field == "resourceprovider":
        return provider.lower() == want
    return True  # correlationId: compared per event in `_events`


def _localized(value: str) -> dict[str, str]:
    return {"value": value, "localizedValue": value}


def event_json(
    rec: ActivityRecord, phase: activity.Phase, tenant: str, delay: timedelta
) -> dict[str, Any]:
    """One EventData as the 2015-04-01 API returns it."""
    rg, provider, _ = activity.segments(rec.resource_id)
    op = rec.operation.upper()
    failed = phase.status in ("Failed", "Failure")
    ticks = int((phase.at - datetime(1, 1, 1, tzinfo=UTC)).total_seconds() * 10_000_000)
    rtype = rec.resource_id.split("/providers/")[-1].split("/")
    operation = activity.OPERATION_VALUES.get(op, op)
    return {
        "authorization": {"action": operation, "scope": rec.resource_id},
        "caller": rec.caller,
        "channels": "Operation",
        "claims": {
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": rec.caller,
            "ipaddr": rec.caller_ip,
        },
        "correlationId": phase.correlation_id,
        "description": "",
        "eventDataId": phase.event_data_id,
        "eventName": {"value": "EndRequest" if phase.final else "BeginRequest",
                      "localizedValue": "End request" if phase.final else "Begin request"},
        "category": _localized("Administrative"),
        "httpRequest": {
            "clientRequestId": activity.guid("request", phase.correlation_id),
            "clientIpAddress": rec.caller_ip,
            "method": "DELETE" if op.endswith("/DELETE") else "PUT",
        },
        "id": f"{rec.resource_id}/events/{phase.event_data_id}/ticks/{ticks}",
        "level": "Error" if failed else "Informational",
        "resourceGroupName": rg,
        "resourceProviderName": _localized(provider),
        "resourceId": rec.resource_id,
        "resourceType": _localized(f"{rtype[0]}/{rtype[1]}" if len(rtype) > 1 else provider),
        "operationId": phase.operation_id,
        "operationName": {"value": operation,
                          "localizedValue": activity.ACTIVITY_NAMES.get(op, op)},
        "properties": {"statusCode": "OK"} if phase.final and not failed else {},
        "status": _localized(phase.status),
        "subStatus": _localized("OK" if phase.final and not failed else ""),
        "eventTimestamp": iso(phase.at),
        "submissionTimestamp": iso(phase.at + delay),
        "subscriptionId": rec.subscription_id,
        "tenantId": tenant,
    }  # fmt: skip


def _selected(event: dict[str, Any], select: str | None) -> dict[str, Any]:
    if not select:
        return event
    wanted = {s.strip().lower() for s in select.split(",")}
    return {k: v for k, v in event.items() if k.lower() in wanted}


@dataclass(frozen=True)
class _Listing:
    """What the first page fixed, so later pages page the same list: the records that existed
    then (the world only appends) and the instant events had to be submitted by."""

    records: int
    cutoff: datetime
    offset: int = 0


def _listing(request: Request, ctx: Ctx, key: str) -> _Listing:
    token = request.query_params.get("$skiptoken") or request.query_params.get("$skipToken")
    if not token:
        return _Listing(len(ctx.world.activity_records()), ctx.world.now())
    data = decode_token(token, what="$skiptoken")
    try:
        if data.get("k") != key:
            raise ValueError("made for another list")
        return _Listing(int(data["n"]), datetime.fromisoformat(data["c"]), int(data["o"]))
    except (KeyError, TypeError, ValueError):
        raise _bad(f"The $skiptoken '{token[:100]}' is invalid.") from None


def _events(ctx: Ctx, sub: str, f: EventFilter, listing: _Listing) -> list[dict[str, Any]]:
    delay = timedelta(seconds=ctx.world.knobs.activity_log.ingestion_delay_seconds)
    spec = ctx.world.subscription(sub)
    tenant = spec.tenant_id if spec else ctx.world.tenant_id
    out: list[dict[str, Any]] = []
    for rec in ctx.world.activity_records()[: listing.records]:
        if rec.subscription_id != sub.lower() or not _matches(rec, f):
            continue
        for phase in activity.phases(rec):
            if not f.start <= phase.at <= f.end or phase.at + delay > listing.cutoff:
                continue
            if f.field == "correlationid" and phase.correlation_id != f.value.strip().lower():
                continue
            out.append(event_json(rec, phase, tenant, delay))
    out.sort(key=lambda e: (e["eventTimestamp"], e["eventDataId"]), reverse=True)
    return out


async def list_events(request: Request, ctx: Ctx, subscription: str) -> Response:
    version = require_api_version(request, (API_VERSION,), resource_type=RESOURCE_TYPE)
    sub = ctx.world.subscription(subscription)
    if sub is None:
        raise subscription_not_found(subscription)
    params = request.query_params
    text, select = params.get("$filter"), params.get("$select")
    key = hashlib.sha256(f"{sub.id}|{text}|{select}".encode()).hexdigest()[:16]
    listing = _listing(request, ctx, key)
    events = _events(ctx, sub.id, parse_filter(text, listing.cutoff), listing)
    size = ctx.world.knobs.activity_log.page_size
    page = events[listing.offset : listing.offset + size]
    body: dict[str, Any] = {"value": [_selected(e, select) for e in page]}
    if listing.offset + size < len(events):
        token = encode_token(
            {"k": key, "n": listing.records, "c": listing.cutoff.isoformat(),
             "o": listing.offset + size}
        )  # fmt: skip
        query = f"api-version={version}&$filter={quote(text or '', safe='')}"
        if select:
            query += f"&$select={quote(select, safe='')}"
        body["nextLink"] = (
            f"{base_url(request)}/subscriptions/{sub.id}/providers/Microsoft.Insights"
            f"/eventtypes/management/values?{query}&$skiptoken={token}"
        )
    return json_response(body)
