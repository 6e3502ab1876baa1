"""The log judgement: what the evidence adds to the settings verdicts.

`apply_evidence` adds `logs_silent` (compliant becomes noncompliant), `pending` (status
kept), `logs_unreadable` (compliant becomes unknown; never silently compliant) and
`logging_interrupted` (status kept). `remediation_pending` then makes `pending` a status for
the registries the auditor remediated itself. `observations` turns security activity (bursts,
anonymous pulls, new login sources, admin-user logins, deletions) into catalog reasons that
never change a status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from auditor import kql
from auditor.evidence.model import ActivityKind, EvidenceOptions, LogEvidence, WorkspaceFreshness
from auditor.evidence.rows import aware
from auditor.facts import Reason, Registry, Status, Verdict, normalize_id
from auditor.judgement import unknown_kind
from auditor.reasons import catalog
from auditor.reasons.catalog import reason


def observations(evidence: LogEvidence, opts: EvidenceOptions | None = None) -> tuple[Reason, ...]:
    """Security observations as catalog reasons (bursts, anonymous pulls, new identities and
    IPs, admin-user logins, deletions). They describe activity, not configuration, so
    `apply_evidence` never lets them change a status."""
    opts = opts or EvidenceOptions()
    found: list[Reason] = []
    minutes = max(1, round(opts.burst_window.total_seconds() / 60))
    for burst in evidence.bursts:
        found.append(
            reason(
                catalog.LOGIN_FAILURE_BURST,
                failures=burst.failures,
                kind="caller IP" if burst.kind == kql.BURST_KIND_IP else "identity",
                key=_shown(burst.key),
                minutes=minutes,
                start=_when(burst.start),
                end=_when(burst.end),
            )
        )
    if evidence.anonymous_pulls:
        pulls = evidence.anonymous_pulls
        found.append(
            reason(
                catalog.ANONYMOUS_PULL,
                count=sum(p.count for p in pulls),
                repositories=_some(p.repository for p in pulls),
                ips=_some(ip for p in pulls for ip in p.caller_ips) or "unknown addresses",
            )
        )
    for item in evidence.first_seen:
        found.append(
            reason(
                catalog.NEW_LOGIN_SOURCE,
                kind="Caller IP" if item.kind == kql.BURST_KIND_IP else "Identity",
                value=_shown(item.value),
                first_seen=_when(item.first_seen),
                attempts=item.attempts,
                failures=item.failures,
            )
        )
    if evidence.admin_logins:
        admin = evidence.admin_logins
        found.append(
            reason(
                catalog.ADMIN_USER_LOGIN,
                attempts=sum(s.attempts for s in admin),
                failures=sum(s.failures for s in admin),
                ips=_some(s.caller_ip for s in admin) or "unknown addresses",
            )
        )
    if evidence.deletions:
        last = max(evidence.deletions, key=lambda d: d.at or evidence.window_start)
        found.append(
            reason(
                catalog.ARTIFACT_DELETED,
                count=len(evidence.deletions),
                identity=_shown(last.identity),
                at=_when(last.at),
            )
        )
    return tuple(found)


def apply_evidence(
    verdicts: Iterable[Verdict],
    evidence: Mapping[str, LogEvidence],
    *,
    now: datetime,
    silent_after: timedelta,
    pending_window: timedelta,
    settings_changed_at: Mapping[str, datetime] | None = None,
) -> tuple[Verdict, ...]:
    """The verdicts with what the logs show added.

    Per registry, over the workspaces its settings send ContainerRegistry* events to:
    - a workspace whose arrival could not be checked (missing, unreadable, query failed)
      adds `logs_unreadable:<why>`; a compliant registry becomes UNKNOWN, never silently
      compliant;
    - a workspace without events for longer than `silent_after` adds `logs_silent` and a
      compliant registry becomes NONCOMPLIANT, unless the registry or one of its settings was
      created or changed less than `pending_window` ago (registry systemData, the activity
      log, or `settings_changed_at`: when the auditor's own history first saw the current
      settings), in which case it carries `pending` and keeps its status;
    - a diagnostic setting deleted in the window (activity log) adds `logging_interrupted`,
      status kept: logging switched off and on again between two runs still shows.
    Silence found in a partial result is not trusted: it counts as unreadable.
    """
    changed = {normalize_id(k): v for k, v in (settings_changed_at or {}).items()}
    out = []
    for verdict in verdicts:
        found = evidence.get(verdict.registry.key)
        if found is None or verdict.status is Status.REMOVED:
            out.append(verdict)
            continue
        out.append(
            _apply_one(
                verdict,
                found,
                now=now,
                silent_after=silent_after,
                pending_window=pending_window,
                changed_at=changed.get(verdict.registry.key),
            )
        )
    return tuple(out)


def remediation_pending(
    verdicts: Iterable[Verdict], remediated: Collection[str], *, logs_checked: bool = True
) -> tuple[Verdict, ...]:
    """The verdicts with `pending` as the status of the registries the auditor remediated.

    A registry in `remediated` (registry keys: a remediation applied within the pending
    window, or in this run) that is compliant but carries the `pending` reason (its events
    have not arrived yet) is `pending`: the fix is under way, not proven. Once its events
    arrive it has no `pending` reason and stays compliant; past the window without them
    `apply_evidence` has already made it noncompliant (`logs_silent`). Every other verdict
    is returned as it is, so a registry the auditor did not remediate keeps today's verdict.
    `logs_checked` False: judged on its settings alone right after a write (no log check), a
    remediated registry's events cannot have arrived, so it gets the `pending` reason first.
    """
    keys = {normalize_id(k) for k in remediated}
    out = []
    for verdict in verdicts:
        if verdict.status is Status.COMPLIANT and verdict.registry.key in keys:
            reasons = verdict.reasons
            if not logs_checked and all(r.code != catalog.PENDING for r in reasons):
                reasons = tuple(sorted((*reasons, reason(catalog.PENDING)), key=lambda r: r.code))
            if any(r.code == catalog.PENDING for r in reasons):
                verdict = replace(verdict, status=Status.PENDING, reasons=reasons)
        out.append(verdict)
    return tuple(out)


def _apply_one(
    verdict: Verdict,
    found: LogEvidence,
    *,
    now: datetime,
    silent_after: timedelta,
    pending_window: timedelta,
    changed_at: datetime | None,
) -> Verdict:
    unknown: list[tuple[str, str]] = []
    quiet: list[WorkspaceFreshness] = []
    for ws in found.workspaces:
        if ws.unknown is not None:
            unknown.append((ws.workspace_id, ws.unknown))
            continue
        last = ws.last_event
        if last is None or now - last > silent_after:
            quiet.append(ws)

    reasons = [r for r in verdict.reasons if not _is_log_reason(r.code)]
    status = verdict.status
    silent: list[WorkspaceFreshness] = []
    if quiet:
        if _pending_since(verdict.registry, found, changed_at, now, pending_window) is not None:
            # No events yet is expected; that holds for a partial result too.
            reasons.append(reason(catalog.PENDING))
        else:
            # Quiet in a partial result may only mean the rows were lost: not trusted.
            unknown += [(w.workspace_id, "partial query result") for w in quiet if w.partial]
            silent = [w for w in quiet if not w.partial]
        if silent:
            last_times = [w.last_event for w in silent if w.last_event is not None]
            reasons.append(
                reason(
                    catalog.LOGS_SILENT,
                    workspaces=_workspace_names(w.workspace_id for w in silent),
                    threshold=_duration(silent_after),
                    last_event=_when(max(last_times)) if last_times else "none found",
                )
            )
            if status is Status.COMPLIANT:
                status = Status.NONCOMPLIANT
    # One reason per kind of failure: the code carries a stable slug (as `unknown:<kind>`
    # does), the detail the full text of each failure.
    by_kind: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for workspace, why in unknown:
        by_kind[unknown_kind(why)].append((workspace, why))
    for kind, items in sorted(by_kind.items()):
        reasons.append(
            reason(
                f"{catalog.LOGS_UNREADABLE}{catalog.SEPARATOR}{kind}",
                workspaces=_workspace_names(w for w, _ in items),
                error="; ".join(dict.fromkeys(_one_line(why) for _, why in items)),
            )
        )
    if unknown and status is Status.COMPLIANT:
        status = Status.UNKNOWN

    deletes = [a for a in found.activity if a.kind is ActivityKind.SETTING_DELETE]
    if deletes:
        reasons.append(reason(catalog.LOGGING_INTERRUPTED, events=_interruptions(found)))

    return replace(verdict, status=status, reasons=tuple(sorted(reasons, key=lambda r: r.code)))


_LOG_CODES = frozenset(
    {
        catalog.LOGS_SILENT,
        catalog.PENDING,
        catalog.LOGS_UNREADABLE,
        catalog.LOGGING_INTERRUPTED,
    }
)


def _is_log_reason(code: str) -> bool:
    # Applying evidence twice must not stack reasons.
    return code.partition(catalog.SEPARATOR)[0] in _LOG_CODES


def _pending_since(
    registry: Registry,
    found: LogEvidence,
    changed_at: datetime | None,
    now: datetime,
    window: timedelta,
) -> datetime | None:
    """When the registry or its logging last started, if that is within `window` of now."""
    starts = [registry.created_at, changed_at]
    for event in found.activity:
        if event.kind is ActivityKind.SETTING_WRITE:
            starts.append(event.at)
        # A registry write is also an update; it only stands in for an unknown creation time.
        elif event.kind is ActivityKind.REGISTRY_WRITE and registry.created_at is None:
            starts.append(event.at)
    recent = [t for t in starts if t is not None and now - aware(t) < window]
    return max(recent, default=None)


def _interruptions(found: LogEvidence) -> str:
    parts = []
    events = [
        a
        for a in found.activity
        if a.kind in (ActivityKind.SETTING_DELETE, ActivityKind.SETTING_WRITE)
    ]
    for event in events:
        verb = "deleted" if event.kind is ActivityKind.SETTING_DELETE else "written"
        who = _shown(event.caller) + (f" ({event.caller_ip})" if event.caller_ip else "")
        parts.append(f"setting '{event.setting_name or '?'}' {verb} at {_when(event.at)} by {who}")
    return "; ".join(parts)


def _when(value: datetime | None) -> str:
    if value is None:
        return "unknown time"
    return aware(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(value: timedelta) -> str:
    minutes = value.total_seconds() / 60
    if minutes >= 60 and minutes % 60 == 0:
        return f"{int(minutes // 60)} h"
    return f"{minutes:g} min"


def _shown(value: str) -> str:
    return _one_line(value) or "(anonymous)"


def _one_line(value: str) -> str:
    # Values from logs end up in reason codes and details: one line, bounded.
    text = " ".join(value.split())
    return text if len(text) <= 300 else text[:299] + "…"


def _some(values: Iterable[str], limit: int = 5) -> str:
    unique = list(dict.fromkeys(v for v in values if v))
    shown = ", ".join(_one_line(v) for v in unique[:limit])
    if len(unique) > limit:
        shown += f" and {len(unique) - limit} more"
    return shown


def _workspace_names(ids: Iterable[str]) -> str:
    return ", ".join(sorted({i.rsplit("/", 1)[-1] for i in ids}))
