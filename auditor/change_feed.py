"""Which registries a change-driven run re-reads (issue #15), and from when the next one
reads the activity log. Pure: no I/O, no clock; the caller passes `now`.

The activity log (`auditor/azure/activity_log.py`) tells, per subscription, which registries
had a diagnostic setting written or deleted, or were created, updated or deleted since the
subscription's watermark: when the newest finished run that listed it started. A registry is
re-read when it changed, or when its last read failed. A subscription whose log could not be
read, one no run has listed since the last full sweep and a watermark older than the log's 90
days all mean a full read, with the reason.

The query window starts `overlap` before the watermark: an event is listed only once Azure
has ingested it (minutes after it happened), so an event that happened just before the last
run's end may appear only now. Re-reading a registry twice costs one GET; missing a change
costs a wrong verdict until the next full read.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from auditor.facts import normalize_id

# The activity log keeps 90 days and refuses a window reaching further back.
ACTIVITY_LOG_RETENTION = timedelta(days=90)
# A margin inside the retention, so a window that starts near its edge is not refused.
_RETENTION_MARGIN = timedelta(hours=1)


class ChangeKind(enum.StrEnum):
    SETTING_WRITTEN = "setting_written"  # Microsoft.Insights/diagnosticSettings/write
    SETTING_DELETED = "setting_deleted"  # Microsoft.Insights/diagnosticSettings/delete
    REGISTRY_WRITTEN = "registry_written"  # Microsoft.ContainerRegistry/registries/write
    REGISTRY_DELETED = "registry_deleted"  # Microsoft.ContainerRegistry/registries/delete


@dataclass(frozen=True)
class RegistryChange:
    """One activity-log event about a registry or one of its diagnostic settings."""

    registry_id: str  # normalized (lower case)
    kind: ChangeKind
    at: datetime  # eventTimestamp
    status: str  # Started, Succeeded, Failed (as Azure wrote it; "" when absent)
    setting_name: str | None = None
    caller: str = ""
    correlation_id: str = ""


@dataclass(frozen=True)
class ChangeLog:
    """What one subscription's activity log said between `start` and `end`, or why it could
    not be read (`error`). `skipped` counts events left out, by reason."""

    subscription_id: str
    start: datetime
    end: datetime
    changes: tuple[RegistryChange, ...] = ()
    skipped: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None


class ReadReason(enum.StrEnum):
    SETTING_WRITTEN = "setting_written"
    SETTING_DELETED = "setting_deleted"
    REGISTRY_WRITTEN = "registry_written"  # created, or its properties or tags changed
    REGISTRY_DELETED = "registry_deleted"  # confirm it is gone
    LAST_READ_FAILED = "last_read_failed"


_REASON_OF = {kind: ReadReason(kind.value) for kind in ChangeKind}


@dataclass(frozen=True)
class StoredRegistry:
    """A registry as the store last saw it."""

    id: str
    subscription_id: str
    last_read_ok: bool


@dataclass(frozen=True)
class Selection:
    """The plan of a change-driven run.

    `reads`: registry id (normalized) -> why it is re-read. `full`: subscription (lower
    case) -> why all its registries are read."""

    reads: Mapping[str, tuple[ReadReason, ...]]
    full: Mapping[str, str]


def query_window(
    watermark: datetime | None, now: datetime, overlap: timedelta
) -> tuple[datetime, datetime] | None:
    """(start, end) of the activity-log query, or None when it cannot cover the time since
    the watermark (no watermark, or one older than the log keeps)."""
    if overlap < timedelta(0):
        raise ValueError("the overlap cannot be negative")
    if watermark is None:
        return None
    start = min(watermark, now) - overlap
    if start < now - ACTIVITY_LOG_RETENTION + _RETENTION_MARGIN:
        return None
    return start, now


NO_WATERMARK = "no finished run since the last full sweep listed this subscription"
TOO_OLD = "its last listing is older than the activity log's 90 days"


def uncovered(watermark: datetime | None, now: datetime, overlap: timedelta) -> str | None:
    """Why a subscription last listed at `watermark` must be read in full; None when its
    activity log covers the time since."""
    if query_window(watermark, now, overlap) is not None:
        return None
    return NO_WATERMARK if watermark is None else TOO_OLD


def select(
    stored: Iterable[StoredRegistry],
    logs: Mapping[str, ChangeLog],
    *,
    watermarks: Mapping[str, datetime],
    now: datetime,
    overlap: timedelta,
) -> Selection:
    """What to re-read given the stored registries, each subscription's change log and when
    it was last listed (`watermarks`; all keyed by subscription id, any case). A subscription
    whose window cannot be covered, or with no readable log, is read in full."""
    registries = list(stored)
    subscriptions = {r.subscription_id.lower() for r in registries} | {s.lower() for s in logs}
    marks = {s.lower(): at for s, at in watermarks.items()}
    by_sub = {s.lower(): log for s, log in logs.items()}
    full = {
        s: bad
        for s in sorted(subscriptions)
        if (bad := uncovered(marks.get(s), now, overlap) or _unreadable(by_sub.get(s)))
    }
    reasons: dict[str, set[ReadReason]] = {}
    for r in registries:
        if not r.last_read_ok and r.subscription_id.lower() not in full:
            reasons.setdefault(normalize_id(r.id), set()).add(ReadReason.LAST_READ_FAILED)
    known = {normalize_id(r.id) for r in registries}
    for sub, log in by_sub.items():
        if sub not in full:
            _add_changes(reasons, log.changes, known)
    reads = {rid: tuple(sorted(why)) for rid, why in sorted(reasons.items())}
    return Selection(reads=reads, full=full)


def registry_events(log: ChangeLog) -> set[str]:
    """The registries (normalized ids) created, updated or deleted in `log`'s window by an
    operation that did not fail: a run that takes the inventory from its store reads them
    again from ARM."""
    return {
        normalize_id(c.registry_id)
        for c in _succeeded(log.changes)
        if c.kind in (ChangeKind.REGISTRY_WRITTEN, ChangeKind.REGISTRY_DELETED)
    }


def _unreadable(log: ChangeLog | None) -> str | None:
    if log is None:
        return "its activity log was not read"
    if log.error is not None:
        return f"its activity log could not be read: {log.error}"
    return None


def _succeeded(changes: Iterable[RegistryChange]) -> list[RegistryChange]:
    changes = list(changes)
    # An operation that failed changed nothing; its Started event shares its correlation id.
    failed = {c.correlation_id for c in changes if c.status == "Failed" and c.correlation_id}
    return [
        c
        for c in changes
        if c.status != "Failed" and not (c.correlation_id and c.correlation_id in failed)
    ]


def _add_changes(
    reasons: dict[str, set[ReadReason]], changes: Iterable[RegistryChange], known: set[str]
) -> None:
    for c in _succeeded(changes):
        rid = normalize_id(c.registry_id)
        if c.kind is ChangeKind.REGISTRY_DELETED and rid not in known:
            continue  # never stored: nothing to confirm
        reasons.setdefault(rid, set()).add(_REASON_OF[c.kind])
