"""Log evidence as JSON documents: camelCase keys, times ISO 8601 or null, one shape
wherever they appear.

- `logins_document`: the login side of one run's `LogEvidence` (attempts and failures per
  identity and IP, totals per identity and per IP, failure bursts, first-seen identities and
  IPs, admin-user logins, anonymous pulls, the login observations);
- `activity_document`: the repository side (counts per operation, identity and repository,
  every delete/untag/purge, the activity-log events, the other observations);
- `logs_document`: a compact per-registry digest for `audit --format json`.

Storage keeps the first two per run and registry; `python -m auditor trail` shows the
activity document of a trail read live (`auditor.trail`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from auditor.evidence.model import (
    ActivityEvent,
    AnonymousPull,
    FailureBurst,
    FirstSeen,
    LogEvidence,
    LoginSummary,
    LoginTotals,
    Operation,
    TrailCount,
    TrailEntry,
    WorkspaceFreshness,
)
from auditor.facts import Reason
from auditor.summary import LOGIN_OBSERVATIONS, iso

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


def _when(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def login_item(s: LoginSummary) -> dict[str, Any]:
    return {
        "identity": s.identity,
        "callerIp": s.caller_ip,
        "attempts": s.attempts,
        "failures": s.failures,
        "firstSeen": _when(s.first_seen),
        "lastSeen": _when(s.last_seen),
    }


def totals_item(t: LoginTotals) -> dict[str, Any]:
    return {"key": t.key, "attempts": t.attempts, "failures": t.failures}


def burst_item(b: FailureBurst) -> dict[str, Any]:
    return {
        "kind": b.kind,
        "key": b.key,
        "failures": b.failures,
        "start": _when(b.start),
        "end": _when(b.end),
        "totalFailures": b.total_failures,
    }


def first_seen_item(f: FirstSeen) -> dict[str, Any]:
    return {
        "kind": f.kind,
        "value": f.value,
        "firstSeen": _when(f.first_seen),
        "attempts": f.attempts,
        "failures": f.failures,
    }


def anonymous_item(p: AnonymousPull) -> dict[str, Any]:
    return {
        "repository": p.repository,
        "count": p.count,
        "failures": p.failures,
        "callerIps": list(p.caller_ips),
        "firstSeen": _when(p.first_seen),
        "lastSeen": _when(p.last_seen),
    }


def trail_item(t: TrailCount) -> dict[str, Any]:
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


def deletion_item(d: TrailEntry) -> dict[str, Any]:
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


def activity_item(a: ActivityEvent) -> dict[str, Any]:
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


def workspace_item(w: WorkspaceFreshness) -> dict[str, Any]:
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


def _reasons(reasons: Iterable[Reason]) -> list[dict[str, str]]:
    return [{"code": r.code, "detail": r.detail} for r in reasons]


def _newest_first(at: datetime | None) -> float:
    return -(at.timestamp() if at is not None else float("-inf"))


def _common(e: LogEvidence, lists: Sequence[str]) -> dict[str, Any]:
    return {
        "window": {"start": iso(e.window_start), "end": iso(e.window_end)},
        "lastEvent": _when(e.last_event),
        "workspaces": [workspace_item(w) for w in e.workspaces],
        "problems": list(e.problems),
        # Entries left out of each list to fit storage; 0 wherever nothing was cut.
        "omitted": dict.fromkeys(lists, 0),
    }


def logins_document(e: LogEvidence) -> dict[str, Any]:
    """Logins of one registry in one window; lists busiest first."""
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


def activity_document(e: LogEvidence) -> dict[str, Any]:
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


def logs_document(e: LogEvidence | None) -> dict[str, Any] | None:
    """The per-registry `logs` digest of `audit --format json` (docs/cli-json.md); None when
    the registry's logs were not checked."""
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
            "identities": len(e.by_identity),
            "callerIps": len(e.by_ip),
        },
        "operations": {op.value: counts.get(op, 0) for op in Operation},
        "deletions": len(e.deletions),
        "activityEvents": len(e.activity),
        "observations": list(dict.fromkeys(r.code for r in e.observations)),
        "problems": list(e.problems),
    }
