"""What Log Analytics shows about the registries, as plain immutable values.

`auditor.evidence.build` makes them from query rows; the log judgement, the evidence
documents, storage and alerts read them. This module sits just above `facts` and `kql`, so
anything may import it without a loop.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from auditor import kql
from auditor.facts import Reason
from auditor.kql import Purpose

Row = Mapping[str, Any]

# UNVERIFIED (azure-facts §1): how an anonymous pull names its caller. Compared casefolded.
DEFAULT_ANONYMOUS_IDENTITIES: tuple[str, ...] = ("", "anonymous", "<anonymous>", "$anonymous")
# UNVERIFIED: the admin user logs in under the registry name; `{name}` is the registry name.
DEFAULT_ADMIN_IDENTITIES: tuple[str, ...] = ("{name}", "{name}.azurecr.io")


@dataclass(frozen=True, slots=True)
class EvidenceOptions:
    """Thresholds of the analysis (validated where they are set: the logs settings, or
    `auditor.logs_audit.LogOptions` for the ones no setting gives)."""

    burst_failures: int = 10
    burst_window: timedelta = timedelta(minutes=5)
    burst_step: timedelta = kql.DEFAULT_BURST_STEP
    anonymous_identities: tuple[str, ...] = DEFAULT_ANONYMOUS_IDENTITIES
    admin_identities: tuple[str, ...] = DEFAULT_ADMIN_IDENTITIES


class Operation(enum.StrEnum):
    PUSH = "push"
    PULL = "pull"
    DELETE = "delete"
    UNTAG = "untag"
    PURGE = "purge"
    OTHER = "other"


# Checked in this order: "PurgeManifest" is a purge, not a delete.
_OPERATION_ORDER = (
    Operation.PURGE,
    Operation.UNTAG,
    Operation.DELETE,
    Operation.PUSH,
    Operation.PULL,
)


def classify_operation(name: str) -> Operation:
    """ContainerRegistryRepositoryEvents.OperationName to an operation; the exact strings are
    UNVERIFIED, so this matches fragments, as Microsoft's sample queries do."""
    folded = name.casefold()
    for op in _OPERATION_ORDER:
        if op.value in folded:
            return op
    return Operation.OTHER


class ActivityKind(enum.StrEnum):
    SETTING_WRITE = "setting_write"
    SETTING_DELETE = "setting_delete"
    REGISTRY_WRITE = "registry_write"
    REGISTRY_DELETE = "registry_delete"


@dataclass(frozen=True, slots=True)
class QueryRows:
    """What one query returned: its rows, or why it has none. `registry_keys` are the
    registries the query selected (empty for the subscription-wide activity query)."""

    workspace_id: str
    purpose: Purpose
    registry_keys: frozenset[str]
    rows: tuple[Row, ...] = ()
    error: str | None = None  # the query failed: no rows to trust
    partial_error: str | None = None  # rows kept, but some may be missing
    capped: bool = False  # a listing hit its `top N`

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class TableFreshness:
    table: str
    last_event: datetime | None
    events: int  # in the current window
    previous_events: int  # in the window before it


@dataclass(frozen=True, slots=True)
class WorkspaceFreshness:
    """Whether this registry's routed tables receive events in this workspace."""

    workspace_id: str
    tables: frozenset[str]
    per_table: tuple[TableFreshness, ...] = ()
    unknown: str | None = None  # why arrival could not be checked
    partial: bool = False  # rows came from a PartialError result

    @property
    def last_event(self) -> datetime | None:
        times = [t.last_event for t in self.per_table if t.last_event is not None]
        return max(times, default=None)

    @property
    def events(self) -> int:
        return sum(t.events for t in self.per_table)


@dataclass(frozen=True, slots=True)
class LoginSummary:
    """Login attempts of one identity from one IP in the current window."""

    identity: str
    caller_ip: str
    attempts: int
    failures: int
    first_seen: datetime | None = None
    last_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class LoginTotals:
    """Attempts and failures per identity, or per caller IP."""

    key: str
    attempts: int
    failures: int


@dataclass(frozen=True, slots=True)
class FailureBurst:
    """At least the threshold of failed logins from one IP or identity within the burst
    window: `failures` is the most seen in any such window, between `start` and `end`."""

    kind: str  # "ip" or "identity"
    key: str
    failures: int
    start: datetime
    end: datetime
    total_failures: int  # in the whole current window


@dataclass(frozen=True, slots=True)
class FirstSeen:
    """An identity or caller IP that logged in now but not in the previous window."""

    kind: str  # "identity" or "ip"
    value: str
    first_seen: datetime | None
    attempts: int
    failures: int


@dataclass(frozen=True, slots=True)
class AnonymousPull:
    repository: str
    count: int
    failures: int
    caller_ips: tuple[str, ...]
    first_seen: datetime | None
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class TrailCount:
    """Repository operations of one identity on one repository in the current window."""

    operation: Operation
    operation_name: str
    identity: str
    repository: str
    count: int
    failures: int
    caller_ips: tuple[str, ...] = ()
    first_seen: datetime | None = None
    last_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class TrailEntry:
    """One delete, untag or purge: who, what, when, from where."""

    at: datetime | None
    operation: Operation
    operation_name: str
    identity: str
    caller_ip: str
    repository: str
    tag: str
    digest: str
    result: str


@dataclass(frozen=True, slots=True)
class ActivityEvent:
    """A successful activity-log record about a registry or one of its diagnostic settings."""

    at: datetime | None
    kind: ActivityKind
    operation: str
    registry_key: str
    resource_id: str
    caller: str
    caller_ip: str
    status: str

    @property
    def setting_name(self) -> str | None:
        marker = "/providers/microsoft.insights/diagnosticsettings/"
        rid = self.resource_id.lower()
        if marker not in rid:
            return None
        start = rid.index(marker) + len(marker)
        return self.resource_id[start:].strip("/") or None


@dataclass(frozen=True, slots=True)
class LogEvidence:
    """What Log Analytics shows about one registry in one run."""

    registry_key: str
    window_start: datetime
    window_end: datetime
    workspaces: tuple[WorkspaceFreshness, ...] = ()
    logins: tuple[LoginSummary, ...] = ()
    bursts: tuple[FailureBurst, ...] = ()
    first_seen: tuple[FirstSeen, ...] = ()
    admin_logins: tuple[LoginSummary, ...] = ()
    anonymous_pulls: tuple[AnonymousPull, ...] = ()
    trail: tuple[TrailCount, ...] = ()
    deletions: tuple[TrailEntry, ...] = ()
    activity: tuple[ActivityEvent, ...] = ()
    # Security observations as catalog reasons; they never change the verdict's status.
    observations: tuple[Reason, ...] = ()
    # Queries that failed, came back partial or hit their cap for this registry.
    problems: tuple[str, ...] = ()

    @property
    def last_event(self) -> datetime | None:
        times = [w.last_event for w in self.workspaces if w.last_event is not None]
        return max(times, default=None)

    @property
    def by_identity(self) -> tuple[LoginTotals, ...]:
        return _totals(self.logins, lambda s: s.identity)

    @property
    def by_ip(self) -> tuple[LoginTotals, ...]:
        return _totals(self.logins, lambda s: s.caller_ip)

    @property
    def operation_counts(self) -> Mapping[Operation, int]:
        counts: dict[Operation, int] = defaultdict(int)
        for entry in self.trail:
            counts[entry.operation] += entry.count
        return dict(counts)


def _totals(
    logins: Iterable[LoginSummary], key: Callable[[LoginSummary], str]
) -> tuple[LoginTotals, ...]:
    attempts: dict[str, int] = defaultdict(int)
    failures: dict[str, int] = defaultdict(int)
    for summary in logins:
        attempts[key(summary)] += summary.attempts
        failures[key(summary)] += summary.failures
    return tuple(
        LoginTotals(k, attempts[k], failures[k])
        for k in sorted(attempts, key=lambda k: (-attempts[k], k))
    )
