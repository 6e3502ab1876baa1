"""Log evidence as JSON documents, and a registry's activity trail read live.

Documents (camelCase keys, times ISO 8601 or null), one shape wherever they appear:

- `logins_document`: the login side of one run's `LogEvidence` (attempts and failures per
  identity and IP, totals per identity and per IP, failure bursts, first-seen identities and
  IPs, admin-user logins, anonymous pulls, the login observations);
- `activity_document`: the repository side (counts per operation, identity and repository,
  every delete/untag/purge, the activity-log events, the other observations);
- `logs_document`: a compact per-registry digest for `audit --format json`.

`AuditStore` stores the first two per run and registry; `python -m auditor trail` builds the
activity document from Log Analytics directly (`read_trail`), not from storage, so it shows
the trail as it is now for any time range.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from auditor import kql
from auditor.evidence.build import build_evidence
from auditor.evidence.model import (
    ActivityEvent,
    AnonymousPull,
    FailureBurst,
    FirstSeen,
    LogEvidence,
    LoginSummary,
    LoginTotals,
    Operation,
    QueryRows,
    TrailCount,
    TrailEntry,
    WorkspaceFreshness,
)
from auditor.evidence.routing import Route, plan_routes
from auditor.facts import DiagnosticSetting, Reason, Registry, Status, Verdict
from auditor.kql import Purpose, Window
from auditor.summary import LOGIN_OBSERVATIONS, iso

if TYPE_CHECKING:
    from auditor.azure.clients import ArmClients
    from auditor.azure.logs import LogsReader, WorkspaceRef

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
LISTED = (Operation.DELETE, Operation.UNTAG, Operation.PURGE)


def _when(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


# --------------------------------------------------------------------------- items


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


# --------------------------------------------------------------------------- documents


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


# --------------------------------------------------------------------------- time bounds

_RELATIVE = re.compile(r"(\d{1,6})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MAX_BACK = timedelta(days=3650)


def parse_time_bound(text: str, *, now: datetime) -> datetime:
    """An ISO 8601 time (naive means UTC) or a duration back from `now` (`30m`, `24h`, `7d`,
    `2w`), as an aware datetime. ValueError says what is accepted."""
    value = text.strip()
    match = _RELATIVE.fullmatch(value.lower())
    if match:
        back = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        if back > _MAX_BACK:
            raise ValueError("at most 10 years back")
        return now - back
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "expected an ISO 8601 time (2026-11-25T12:00:00Z) or a duration back from now "
            "(30m, 24h, 7d, 2w)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- live trail


class TrailError(Exception):
    """The trail cannot be shown; `exit_code` is what the CLI exits with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Trail:
    """One registry's activity trail over `window`, from the workspaces its settings send
    ContainerRegistry* events to (resource-specific mode only)."""

    registry: Registry
    window: Window
    workspaces: tuple[WorkspaceRef, ...]
    evidence: LogEvidence
    errors: tuple[str, ...] = ()  # queries failed or partial: the trail may be incomplete
    warnings: tuple[str, ...] = ()  # listings that hit their cap

    def document(self) -> dict[str, Any]:
        activity = activity_document(self.evidence)
        for key in ("workspaces", "lastEvent", "omitted"):
            activity.pop(key)  # arrival is not checked here; nothing is trimmed
        return {
            "schemaVersion": 1,
            "registry": {
                "id": self.registry.id,
                "name": self.registry.name,
                "subscriptionId": self.registry.subscription_id,
                "resourceGroup": self.registry.resource_group,
            },
            **activity,
            "workspaces": [
                {"workspaceId": w.id, "error": w.error}
                for w in sorted(self.workspaces, key=lambda w: w.id)
            ],
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }


def no_workspace_message(registry: Registry, settings: Sequence[DiagnosticSetting]) -> str:
    to_workspace = [s for s in settings if s.workspace_id]
    if not to_workspace:
        return (
            f"registry {registry.name} sends no logs to a Log Analytics workspace "
            f"({len(settings)} diagnostic settings): there is no trail to read"
        )
    names = ", ".join(sorted(s.name for s in to_workspace))
    return (
        f"registry {registry.name} sends no repository or login events to a workspace in "
        f"resource-specific mode (settings: {names}): the ContainerRegistry* tables are empty"
    )


def read_trail(
    clients: ArmClients,
    reader: LogsReader,
    registry: Registry,
    *,
    window: Window,
    list_cap: int = kql.DEFAULT_LIST_CAP,
) -> Trail:
    """Query the registry's workspaces for its repository counts, every delete/untag/purge
    and the activity-log events about it. Raises TrailError(exit 1) when no workspace
    receives its events; an Azure error reading its settings propagates."""
    from azure.core.exceptions import AzureError

    from auditor.azure.diagnostics import read_categories, read_settings
    from auditor.azure.logs import resolve_workspaces

    settings = read_settings(clients, registry.id)
    try:
        categories = read_categories(clients, registry.id)
    except AzureError:  # the documented category groups are the fallback, as in the audit
        categories = []
    verdict = Verdict(registry, Status.UNKNOWN, settings=tuple(settings))
    routes: tuple[Route, ...] = plan_routes([verdict], categories=categories)
    if not routes:
        raise TrailError(no_workspace_message(registry, settings), 1)
    refs = resolve_workspaces(clients, [r.workspace_id for r in routes])
    errors = [f"workspace {r.id}: {r.error}" for r in refs.values() if r.error is not None]

    key = registry.key
    plan: list[tuple[WorkspaceRef, kql.Query, frozenset[str]]] = []
    for ref in sorted(refs.values(), key=lambda r: r.id):
        if ref.customer_id is None:
            continue
        own = frozenset({key})
        plan += [
            (ref, kql.repository_query([key], window), own),
            (ref, kql.deletions_query([key], window, cap=list_cap), own),
            # By subscription, as in the audit; rows of other registries are dropped below.
            (ref, kql.activity_query([registry.subscription_id], window, cap=list_cap), own),
        ]
    outcomes = reader.run([(ref.customer_id or "", query) for ref, query, _ in plan])
    results: list[QueryRows] = []
    warnings: list[str] = []
    for (ref, query, keys), outcome in zip(plan, outcomes, strict=True):
        where = f"{query.purpose.value} query in workspace {ref.id}"
        if outcome.error is not None:
            errors.append(f"{where} failed: {outcome.error}")
        if outcome.partial_error is not None:
            errors.append(f"{where} returned a partial result: {outcome.partial_error}")
        capped = query.purpose in (Purpose.DELETIONS, Purpose.ACTIVITY) and (
            len(outcome.rows) >= list_cap
        )
        if capped:
            warnings.append(f"{where} reached its cap of {list_cap} rows; older entries missing")
        results.append(
            QueryRows(
                workspace_id=ref.id,
                purpose=query.purpose,
                registry_keys=keys,
                rows=outcome.rows,
                error=outcome.error,
                partial_error=outcome.partial_error,
                capped=capped,
            )
        )
    evidence, _ = build_evidence(
        routes,
        results,
        window=window,
        registry_keys=[key],
        unavailable={w: r.error for w, r in refs.items() if r.error is not None},
    )
    found = evidence.get(key) or LogEvidence(key, window.start, window.end)
    return Trail(
        registry=registry,
        window=window,
        workspaces=tuple(refs.values()),
        evidence=found,
        errors=tuple(dict.fromkeys(errors)),
        warnings=tuple(dict.fromkeys(warnings)),
    )


# --------------------------------------------------------------------------- text


def _stamp(value: str | None) -> str:
    if value is None:
        return "?"
    moment = datetime.fromisoformat(value).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _shown(value: str | None) -> str:
    # Log values are written by callers: no control characters (escape sequences) reach the
    # terminal.
    text = "".join(c if c.isprintable() else "?" for c in " ".join((value or "").split()))
    return text or "-"


def render_trail(trail: Trail, out: TextIO) -> None:
    doc = trail.document()
    window = doc["window"]
    workspaces = ", ".join(w["workspaceId"].rsplit("/", 1)[-1] for w in doc["workspaces"])
    out.write(
        f"Activity trail of {trail.registry.name} from {_stamp(window['start'])} "
        f"to {_stamp(window['end'])} (workspaces: {workspaces})\n\n"
    )
    operations = ", ".join(f"{n} {op}" for op, n in doc["operations"].items() if n)
    out.write(f"Operations: {operations or 'none'}\n")
    if doc["trail"]:
        _table(
            out,
            ("OPERATION", "IDENTITY", "REPOSITORY", "COUNT", "FAILED", "CALLER IPS"),
            [
                (
                    _shown(t["operationName"] or t["operation"]),
                    _shown(t["identity"]),
                    _shown(t["repository"]),
                    str(t["count"]),
                    str(t["failures"]),
                    _shown(", ".join(t["callerIps"])),
                )
                for t in doc["trail"]
            ],
        )
    out.write(f"\nDeletes and untags: {len(doc['deletions'])}\n")
    if doc["deletions"]:
        _table(
            out,
            ("TIME", "OPERATION", "IDENTITY", "REPOSITORY", "TAG", "DIGEST", "CALLER IP", "RESULT"),
            [
                (
                    _stamp(d["at"]),
                    _shown(d["operationName"] or d["operation"]),
                    _shown(d["identity"]),
                    _shown(d["repository"]),
                    _shown(d["tag"]),
                    _shown(d["digest"]),
                    _shown(d["callerIp"]),
                    _shown(d["result"]),
                )
                for d in doc["deletions"]
            ],
        )
    out.write(f"\nActivity log: {len(doc['activityLog'])}\n")
    if doc["activityLog"]:
        _table(
            out,
            ("TIME", "OPERATION", "SETTING", "CALLER", "CALLER IP"),
            [
                (
                    _stamp(a["at"]),
                    _shown(a["operation"]),
                    _shown(a["settingName"]),
                    _shown(a["caller"]),
                    _shown(a["callerIp"]),
                )
                for a in doc["activityLog"]
            ],
        )
    # Errors (failed queries) go to stderr with the exit code; a cap is worth a note here.
    for warning in trail.warnings:
        out.write(f"warning: {_shown(warning)}\n")
