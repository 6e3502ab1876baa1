"""Log evidence as JSON documents: camelCase keys, times ISO 8601 or null, one shape
wherever they appear.

- `logins_document`: the login side of one run's `LogEvidence` (attempts and failures per
  identity and IP, totals per identity and per IP, failure bursts, first-seen identities and
  IPs, admin-user logins, anonymous pulls, the login observations);
- `activity_document`: the repository side (counts per operation, identity and repository,
  every delete/untag/purge, the activity-log events, the other observations);
- `logs_document`: a compact per-registry digest for `audit --format json`.

Each shape is defined once here as a `TypedDict` (`LoginsDocument`, `ActivityDocument`,
`LogsDocument` and their items): the builders are checked against it by mypy, and the API
serves `LoginEntry` and `ActivityEntry` (a stored document with its run) as its response
schema. A run builds these for every registry, and a `TypedDict` is a plain dict at run time:
10,000 logins documents take the 0.58 s of CPU they took as untyped dicts, where Pydantic
models built with `model_construct` took 1.5 s (1.8 s with the dump storage needs). The item
classes share their names (and so the OpenAPI schema's) with the `auditor.evidence.model`
values they describe, which this module reads as `model.*`.

Storage keeps the first two per run and registry; `python -m auditor trail` shows the
activity document of a trail read live (`auditor.trail`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated

from pydantic import Field
from typing_extensions import TypedDict

from auditor.evidence import model
from auditor.evidence.model import LogEvidence, Operation
from auditor.facts import Reason
from auditor.summary import LOGIN_OBSERVATIONS, ReasonItem, iso

# Lists of the two documents, in the order storage trims them when an entity would be too big.
LOGIN_LISTS: tuple[str, ...] = (
    "logins",
    "byIdentity",
    "byIp",
    "adminLogins",
    "firstSeen",
    "anonymousPulls",
    "bursts",
)
ACTIVITY_LISTS: tuple[str, ...] = ("trail", "deletions", "activityLog")

_IP_OR_IDENTITY = "ip or identity"


class Window(TypedDict):
    start: str
    end: str


class TableFreshness(TypedDict):
    table: str
    lastEvent: str | None
    events: Annotated[int, Field(description="events in the window")]
    previousEvents: Annotated[
        int, Field(description="events in the window of the same length before")
    ]


class WorkspaceFreshness(TypedDict):
    workspaceId: str
    lastEvent: str | None
    events: int
    unknown: Annotated[
        str | None, Field(description="why arrival could not be checked, if it was not")
    ]
    partial: bool
    tables: list[TableFreshness]


class EvidenceDocument(TypedDict):
    """What both evidence documents hold: the window read and how the workspaces answered."""

    window: Annotated[Window, Field(description="the time range the logs were read for")]
    lastEvent: Annotated[str | None, Field(description="newest event seen in any workspace")]
    workspaces: list[WorkspaceFreshness]
    problems: Annotated[
        list[str], Field(description="queries that failed, came back partial or capped")
    ]
    omitted: Annotated[
        dict[str, int],
        Field(description="per list, entries left out to fit storage (busiest or newest kept)"),
    ]


class LoginItem(TypedDict):
    identity: str
    callerIp: str
    attempts: int
    failures: int
    firstSeen: str | None
    lastSeen: str | None


class LoginTotals(TypedDict):
    key: Annotated[str, Field(description="the identity or caller IP")]
    attempts: int
    failures: int


class FailureBurst(TypedDict):
    kind: Annotated[str, Field(description=_IP_OR_IDENTITY)]
    key: str
    failures: Annotated[int, Field(description="the most failures within the burst window")]
    start: str | None
    end: str | None
    totalFailures: int


class FirstSeen(TypedDict):
    kind: Annotated[str, Field(description=_IP_OR_IDENTITY)]
    value: str
    firstSeen: str | None
    attempts: int
    failures: int


class AnonymousPull(TypedDict):
    repository: str
    count: int
    failures: int
    callerIps: list[str]
    firstSeen: str | None
    lastSeen: str | None


class LoginsDocument(EvidenceDocument):
    """Logins of one registry in one window; lists busiest first."""

    attempts: int
    failures: int
    observations: list[ReasonItem]
    logins: Annotated[
        list[LoginItem], Field(description="per identity and caller IP, busiest first")
    ]
    byIdentity: list[LoginTotals]
    byIp: list[LoginTotals]
    bursts: list[FailureBurst]
    firstSeen: Annotated[list[FirstSeen], Field(description="not seen in the previous window")]
    adminLogins: list[LoginItem]
    anonymousPulls: list[AnonymousPull]


class TrailCount(TypedDict):
    operation: Annotated[str, Field(description="push, pull, delete, untag, purge or other")]
    operationName: str
    identity: str
    repository: str
    count: int
    failures: int
    callerIps: list[str]
    firstSeen: str | None
    lastSeen: str | None


class Deletion(TypedDict):
    at: str | None
    operation: str
    operationName: str
    identity: str
    callerIp: str
    repository: str
    tag: str
    digest: str
    result: str


class ActivityLogEvent(TypedDict):
    at: str | None
    kind: Annotated[str, Field(description="setting_write, setting_delete, registry_write, ...")]
    operation: str
    resourceId: str
    settingName: str | None
    caller: str
    callerIp: str
    status: str


class ActivityDocument(EvidenceDocument):
    """Repository operations of one registry in one window."""

    operations: Annotated[dict[str, int], Field(description="events per operation kind")]
    observations: list[ReasonItem]
    trail: Annotated[list[TrailCount], Field(description="per operation, identity and repository")]
    deletions: Annotated[
        list[Deletion], Field(description="every delete, untag and purge, newest first")
    ]
    activityLog: Annotated[list[ActivityLogEvent], Field(description="newest first")]


class RunStamp(TypedDict):
    """Which run stored an evidence document, and when."""

    runId: str | None
    observedAt: Annotated[str | None, Field(description="when the run finished")]


# As stored per run and served by the API (`auditor.storage.entities.evidence_doc`).
class LoginEntry(RunStamp, LoginsDocument):
    """The logins of one registry as one run saw them."""


class ActivityEntry(RunStamp, ActivityDocument):
    """The repository activity of one registry as one run saw it."""


class LogTable(TypedDict):
    workspaceId: str
    table: str
    lastEvent: str | None
    events: int
    previousEvents: int


class UnreadableWorkspace(TypedDict):
    workspaceId: str
    error: str


class LoginTally(TypedDict):
    attempts: int
    failures: int
    identities: int
    callerIps: int


class LogsDocument(TypedDict):
    """The per-registry `logs` digest of `audit --format json` (docs/cli-json.md)."""

    window: Window
    lastEvent: str | None
    tables: list[LogTable]
    unreadable: list[UnreadableWorkspace]
    logins: LoginTally
    operations: dict[str, int]
    deletions: int
    activityEvents: int
    observations: list[str]
    problems: list[str]


def _when(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def login_item(s: model.LoginSummary) -> LoginItem:
    return {
        "identity": s.identity,
        "callerIp": s.caller_ip,
        "attempts": s.attempts,
        "failures": s.failures,
        "firstSeen": _when(s.first_seen),
        "lastSeen": _when(s.last_seen),
    }


def totals_item(t: model.LoginTotals) -> LoginTotals:
    return {"key": t.key, "attempts": t.attempts, "failures": t.failures}


def burst_item(b: model.FailureBurst) -> FailureBurst:
    return {
        "kind": b.kind,
        "key": b.key,
        "failures": b.failures,
        "start": _when(b.start),
        "end": _when(b.end),
        "totalFailures": b.total_failures,
    }


def first_seen_item(f: model.FirstSeen) -> FirstSeen:
    return {
        "kind": f.kind,
        "value": f.value,
        "firstSeen": _when(f.first_seen),
        "attempts": f.attempts,
        "failures": f.failures,
    }


def anonymous_item(p: model.AnonymousPull) -> AnonymousPull:
    return {
        "repository": p.repository,
        "count": p.count,
        "failures": p.failures,
        "callerIps": list(p.caller_ips),
        "firstSeen": _when(p.first_seen),
        "lastSeen": _when(p.last_seen),
    }


def trail_item(t: model.TrailCount) -> TrailCount:
    return {
        "operation": t.operation.value,
        "operationName": t.operation_name,
        "identity": t.identity,
        "repository": t.repository,
        "count": t.count,
        "failures": t.failures,
        "callerIps": list(t.caller_ips),
        "firstSeen": _when(t.first_seen),
        "lastSeen": _when(t.last_seen),
    }


def deletion_item(d: model.TrailEntry) -> Deletion:
    return {
        "at": _when(d.at),
        "operation": d.operation.value,
        "operationName": d.operation_name,
        "identity": d.identity,
        "callerIp": d.caller_ip,
        "repository": d.repository,
        "tag": d.tag,
        "digest": d.digest,
        "result": d.result,
    }


def activity_item(a: model.ActivityEvent) -> ActivityLogEvent:
    return {
        "at": _when(a.at),
        "kind": a.kind.value,
        "operation": a.operation,
        "resourceId": a.resource_id,
        "settingName": a.setting_name,
        "caller": a.caller,
        "callerIp": a.caller_ip,
        "status": a.status,
    }


def workspace_item(w: model.WorkspaceFreshness) -> WorkspaceFreshness:
    return {
        "workspaceId": w.workspace_id,
        "lastEvent": _when(w.last_event),
        "events": w.events,
        "unknown": w.unknown,
        "partial": w.partial,
        "tables": [
            {
                "table": t.table,
                "lastEvent": _when(t.last_event),
                "events": t.events,
                "previousEvents": t.previous_events,
            }
            for t in w.per_table
        ],
    }


def _reasons(reasons: Iterable[Reason]) -> list[ReasonItem]:
    return [{"code": r.code, "detail": r.detail} for r in reasons]


def _newest_first(at: datetime | None) -> float:
    return -(at.timestamp() if at is not None else float("-inf"))


def _common(e: LogEvidence, lists: Sequence[str]) -> EvidenceDocument:
    return {
        "window": {"start": iso(e.window_start), "end": iso(e.window_end)},
        "lastEvent": _when(e.last_event),
        "workspaces": [workspace_item(w) for w in e.workspaces],
        "problems": list(e.problems),
        # Entries left out of each list to fit storage; 0 wherever nothing was cut.
        "omitted": dict.fromkeys(lists, 0),
    }


def logins_document(e: LogEvidence) -> LoginsDocument:
    return {
        **_common(e, LOGIN_LISTS),
        "attempts": sum(s.attempts for s in e.logins),
        "failures": sum(s.failures for s in e.logins),
        "observations": _reasons(r for r in e.observations if r.code in LOGIN_OBSERVATIONS),
        "logins": [login_item(s) for s in e.logins],
        "byIdentity": [totals_item(t) for t in e.by_identity],
        "byIp": [totals_item(t) for t in e.by_ip],
        "bursts": [burst_item(b) for b in e.bursts],
        "firstSeen": [first_seen_item(f) for f in e.first_seen],
        "adminLogins": [login_item(s) for s in e.admin_logins],
        "anonymousPulls": [anonymous_item(p) for p in e.anonymous_pulls],
    }


def activity_document(e: LogEvidence) -> ActivityDocument:
    """Repository operations of one registry in one window: counts (busiest first), every
    delete/untag/purge and activity-log event (newest first)."""
    counts = e.operation_counts
    trail = sorted(e.trail, key=lambda t: (-t.count, t.operation.value, t.identity, t.repository))
    return {
        **_common(e, ACTIVITY_LISTS),
        "operations": {op.value: counts.get(op, 0) for op in Operation},
        "observations": _reasons(r for r in e.observations if r.code not in LOGIN_OBSERVATIONS),
        "trail": [trail_item(t) for t in trail],
        "deletions": [
            deletion_item(d) for d in sorted(e.deletions, key=lambda d: _newest_first(d.at))
        ],
        "activityLog": [
            activity_item(a) for a in sorted(e.activity, key=lambda a: _newest_first(a.at))
        ],
    }


def logs_document(e: LogEvidence | None) -> LogsDocument | None:
    """None when the registry's logs were not checked."""
    if e is None:
        return None
    counts = e.operation_counts
    return {
        "window": {"start": iso(e.window_start), "end": iso(e.window_end)},
        "lastEvent": _when(e.last_event),
        "tables": [
            {
                "workspaceId": w.workspace_id,
                "table": t.table,
                "lastEvent": _when(t.last_event),
                "events": t.events,
                "previousEvents": t.previous_events,
            }
            for w in e.workspaces
            for t in w.per_table
        ],
        "unreadable": [
            {"workspaceId": w.workspace_id, "error": w.unknown}
            for w in e.workspaces
            if w.unknown is not None
        ],
        "logins": {
            "attempts": sum(s.attempts for s in e.logins),
            "failures": sum(s.failures for s in e.logins),
            # Counted, not tallied: `by_identity` sorts every login's totals just to count them.
            "identities": len({s.identity for s in e.logins}),
            "callerIps": len({s.caller_ip for s in e.logins}),
        },
        "operations": {op.value: counts.get(op, 0) for op in Operation},
        "deletions": len(e.deletions),
        "activityEvents": len(e.activity),
        "observations": list(dict.fromkeys(r.code for r in e.observations)),
        "problems": list(e.problems),
    }
