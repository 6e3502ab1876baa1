"""Do the registry logs arrive? Pure analysis of Log Analytics query results.

Three steps, none doing I/O:

1. `plan_routes`: from the settings-based verdicts, which registry should be filling which
   tables of which workspace. Only enabled log categories sent to a workspace in
   resource-specific (Dedicated) mode count; in AzureDiagnostics mode the ContainerRegistry*
   tables stay empty by design, and the judgement already reports that.
2. `build_evidence`: the rows of the queries built by `auditor.kql`, turned into one
   `LogEvidence` per registry (last event per workspace and table, logins, bursts, first-seen
   identities and IPs, admin-user logins, anonymous pulls, the activity trail, every
   delete/untag, activity-log events) plus observations as catalog reasons.
3. `apply_evidence`: the verdicts with the log findings added: `logs_silent` (compliant
   becomes noncompliant), `pending` (status kept), `logs_unreadable` (compliant becomes
   unknown; never silently compliant), `logging_interrupted` (status kept).

Row values are read tolerantly (None or "" for a missing string, datetimes as objects or ISO
text, dynamic columns as lists or JSON text), because the service, the SDK and the emulator
do not agree on those details.
"""

from __future__ import annotations

import enum
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from auditor import kql
from auditor.facts import CategoryInfo, Reason, Registry, Status, Verdict, normalize_id
from auditor.judgement import enabled_log_categories, is_resource_specific, unknown_kind
from auditor.kql import Purpose, Window
from auditor.reasons import catalog
from auditor.reasons.catalog import reason

Row = Mapping[str, Any]

# UNVERIFIED (azure-facts §1): how an anonymous pull names its caller. Compared casefolded.
DEFAULT_ANONYMOUS_IDENTITIES: tuple[str, ...] = ("", "anonymous", "<anonymous>", "$anonymous")
# UNVERIFIED: the admin user logs in under the registry name; `{name}` is the registry name.
DEFAULT_ADMIN_IDENTITIES: tuple[str, ...] = ("{name}", "{name}.azurecr.io")


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


_ACTIVITY_KINDS = {
    kql.SETTING_WRITE.casefold(): ActivityKind.SETTING_WRITE,
    kql.SETTING_DELETE.casefold(): ActivityKind.SETTING_DELETE,
    kql.REGISTRY_WRITE.casefold(): ActivityKind.REGISTRY_WRITE,
    kql.REGISTRY_DELETE.casefold(): ActivityKind.REGISTRY_DELETE,
}


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Route:
    """A registry should be filling `tables` of this workspace (ARM id, normalized)."""

    registry_key: str
    workspace_id: str
    tables: frozenset[str]
    settings: tuple[str, ...] = ()


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class TableFreshness:
    table: str
    last_event: datetime | None
    events: int  # in the current window
    previous_events: int  # in the window before it


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class LoginSummary:
    """Login attempts of one identity from one IP in the current window."""

    identity: str
    caller_ip: str
    attempts: int
    failures: int
    first_seen: datetime | None = None
    last_seen: datetime | None = None


@dataclass(frozen=True)
class LoginTotals:
    """Attempts and failures per identity, or per caller IP."""

    key: str
    attempts: int
    failures: int


@dataclass(frozen=True)
class FailureBurst:
    """At least the threshold of failed logins from one IP or identity within the burst
    window: `failures` is the most seen in any such window, between `start` and `end`."""

    kind: str  # "ip" or "identity"
    key: str
    failures: int
    start: datetime
    end: datetime
    total_failures: int  # in the whole current window


@dataclass(frozen=True)
class FirstSeen:
    """An identity or caller IP that logged in now but not in the previous window."""

    kind: str  # "identity" or "ip"
    value: str
    first_seen: datetime | None
    attempts: int
    failures: int


@dataclass(frozen=True)
class AnonymousPull:
    repository: str
    count: int
    failures: int
    caller_ips: tuple[str, ...]
    first_seen: datetime | None
    last_seen: datetime | None


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


# --------------------------------------------------------------------------- routes


def plan_routes(
    verdicts: Iterable[Verdict],
    *,
    categories: Sequence[CategoryInfo] = (),
    accepts_workspace: Callable[[str], bool] | None = None,
) -> tuple[Route, ...]:
    """One route per (registry, workspace) that should receive ContainerRegistry* events.

    `accepts_workspace` (e.g. `policy.accepts_workspace` when the policy has an allow-list)
    limits the check to workspaces the policy cares about, so a stray extra destination the
    auditor may not even be allowed to read cannot make a compliant registry unknown.
    """
    found: dict[tuple[str, str], tuple[set[str], list[str]]] = {}
    for verdict in verdicts:
        for setting in verdict.settings:
            workspace = setting.workspace_id
            if not workspace or not workspace.strip() or not is_resource_specific(setting):
                continue
            if accepts_workspace is not None and not accepts_workspace(workspace):
                continue
            tables = enabled_log_categories(setting, categories, kql.REGISTRY_TABLES)
            if not tables:
                continue
            key = (verdict.registry.key, normalize_id(workspace))
            entry = found.setdefault(key, (set(), []))
            entry[0].update(tables)
            entry[1].append(setting.name)
    return tuple(
        Route(registry_key=r, workspace_id=w, tables=frozenset(t), settings=tuple(names))
        for (r, w), (t, names) in sorted(found.items())
    )


# --------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class EvidenceOptions:
    """Thresholds of the analysis (validated by `auditor.logs_audit.LogOptions`)."""

    burst_failures: int = 10
    burst_window: timedelta = timedelta(minutes=5)
    burst_step: timedelta = kql.DEFAULT_BURST_STEP
    anonymous_identities: tuple[str, ...] = DEFAULT_ANONYMOUS_IDENTITIES
    admin_identities: tuple[str, ...] = DEFAULT_ADMIN_IDENTITIES


def build_evidence(
    routes: Sequence[Route],
    results: Iterable[QueryRows],
    *,
    window: Window,
    registry_keys: Iterable[str] = (),
    unavailable: Mapping[str, str] | None = None,
    options: EvidenceOptions | None = None,
) -> tuple[dict[str, LogEvidence], tuple[ActivityEvent, ...]]:
    """Evidence per registry key, and the activity events of registries not in scope
    (e.g. deleted since the inventory).

    `registry_keys` are every registry of the run (activity-log events are attached to them
    even when they route no logs); `unavailable` maps workspace ids that could not be
    resolved or read to the reason.
    """
    opts = options or EvidenceOptions()
    unavailable = {normalize_id(k): v for k, v in (unavailable or {}).items()}
    results = list(results)
    keys = {normalize_id(k) for k in registry_keys} | {r.registry_key for r in routes}
    builders = {k: _Builder(k) for k in keys}

    # Rows per purpose, with the query that produced them.
    by_purpose: dict[Purpose, list[QueryRows]] = defaultdict(list)
    for result in results:
        by_purpose[result.purpose].append(result)
        _note_problems(result, builders)

    _freshness(routes, by_purpose[Purpose.FRESHNESS], unavailable, builders)
    _logins(by_purpose[Purpose.LOGINS], builders)
    _bursts(by_purpose[Purpose.BURSTS], builders, opts)
    _repository(by_purpose[Purpose.REPOSITORY], builders)
    _deletions(by_purpose[Purpose.DELETIONS], builders)
    orphans = _activity(by_purpose[Purpose.ACTIVITY], builders)

    evidence = {key: b.build(window, opts) for key, b in sorted(builders.items()) if b.relevant}
    return evidence, orphans


@dataclass(frozen=True)
class _LoginRow:
    identity: str
    caller_ip: str
    attempts: int  # current window
    failures: int
    previous: int  # attempts in the previous window
    first_seen: datetime | None


@dataclass
class _Builder:
    key: str
    workspaces: list[WorkspaceFreshness] = field(default_factory=list)
    logins: list[LoginSummary] = field(default_factory=list)
    bursts: list[FailureBurst] = field(default_factory=list)
    trail: list[TrailCount] = field(default_factory=list)
    deletions: list[TrailEntry] = field(default_factory=list)
    activity: list[ActivityEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    login_rows: list[_LoginRow] = field(default_factory=list)

    @property
    def relevant(self) -> bool:
        return bool(self.workspaces or self.activity or self.problems)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    def build(self, window: Window, opts: EvidenceOptions) -> LogEvidence:
        logins = tuple(sorted(self.logins, key=lambda s: (-s.attempts, s.identity, s.caller_ip)))
        admin_names = {t.format(name=self.name).casefold() for t in opts.admin_identities}
        admin = tuple(s for s in logins if s.identity.strip().casefold() in admin_names)
        anonymous = _anonymous_pulls(self.trail, opts.anonymous_identities)
        first_seen = self._first_seen()
        evidence = LogEvidence(
            registry_key=self.key,
            window_start=window.start,
            window_end=window.end,
            workspaces=tuple(sorted(self.workspaces, key=lambda w: w.workspace_id)),
            logins=logins,
            bursts=tuple(sorted(self.bursts, key=lambda b: (b.kind, b.key))),
            first_seen=first_seen,
            admin_logins=admin,
            anonymous_pulls=anonymous,
            trail=tuple(
                sorted(
                    self.trail,
                    key=lambda t: (t.operation.value, t.identity, t.repository, t.operation_name),
                )
            ),
            deletions=tuple(
                sorted(self.deletions, key=lambda d: (d.at or window.start, d.repository))
            ),
            activity=tuple(sorted(self.activity, key=lambda a: (a.at or window.start, a.kind))),
            problems=tuple(dict.fromkeys(self.problems)),
        )
        return replace(evidence, observations=observations(evidence, opts))

    def _first_seen(self) -> tuple[FirstSeen, ...]:
        # Nothing is "new" for a registry without any login in the previous window: it
        # was unused or not logging then, and every caller would be flagged.
        if not any(row.previous for row in self.login_rows):
            return ()
        found: list[FirstSeen] = []
        keys: tuple[tuple[str, Callable[[_LoginRow], str]], ...] = (
            (kql.BURST_KIND_IDENTITY, lambda r: r.identity),
            (kql.BURST_KIND_IP, lambda r: r.caller_ip),
        )
        for kind, key in keys:
            groups: dict[str, list[_LoginRow]] = defaultdict(list)
            for row in self.login_rows:
                groups[key(row)].append(row)
            for value, rows in groups.items():
                attempts = sum(r.attempts for r in rows)
                if attempts == 0 or any(r.previous for r in rows):
                    continue
                found.append(
                    FirstSeen(
                        kind=kind,
                        value=value,
                        first_seen=_earliest(*(r.first_seen for r in rows)),
                        attempts=attempts,
                        failures=sum(r.failures for r in rows),
                    )
                )
        return tuple(sorted(found, key=lambda f: (f.kind, f.value)))


def _note_problems(result: QueryRows, builders: Mapping[str, _Builder]) -> None:
    purpose = result.purpose.value
    notes = []
    if result.error is not None:
        notes.append(f"{purpose} query failed in {result.workspace_id}: {result.error}")
    if result.partial_error is not None:
        notes.append(f"{purpose} query partial in {result.workspace_id}: {result.partial_error}")
    if result.capped:
        notes.append(f"{purpose} listing in {result.workspace_id} reached its cap")
    if not notes:
        return
    for key in result.registry_keys:
        builder = builders.get(key)
        if builder is not None:
            builder.problems.extend(notes)


def _freshness(
    routes: Sequence[Route],
    results: Sequence[QueryRows],
    unavailable: Mapping[str, str],
    builders: Mapping[str, _Builder],
) -> None:
    rows_by: dict[tuple[str, str], list[Row]] = defaultdict(list)
    # A registry may be covered by several queries (a window split in parts): a failure in
    # any of them makes its arrival unknown, a partial result in any makes it partial.
    covered: dict[tuple[str, str], list[QueryRows]] = defaultdict(list)
    for result in results:
        for key in result.registry_keys:
            covered[(key, result.workspace_id)].append(result)
        if result.ok:
            for row in result.rows:
                rows_by[(_key(row.get(kql.COL_RESOURCE)), result.workspace_id)].append(row)

    for route in routes:
        pair = (route.registry_key, route.workspace_id)
        builder = builders[route.registry_key]
        queries = covered.get(pair, [])
        errors = [q.error for q in queries if q.error is not None]
        why = unavailable.get(route.workspace_id)
        if why is None and errors:
            why = errors[0]
        elif why is None and not queries:
            why = "the workspace was not queried"
        if why is not None:
            builder.workspaces.append(
                WorkspaceFreshness(route.workspace_id, route.tables, unknown=why)
            )
            continue
        per_table: dict[str, TableFreshness] = {}
        for row in rows_by.get(pair, []):
            table = _str(row.get(kql.COL_TABLE))
            if table.casefold() not in {t.casefold() for t in route.tables}:
                continue  # a table this registry does not route here: not evidence of it
            seen = per_table.get(table)
            last = _datetime(row.get(kql.COL_LAST_EVENT))
            events = _int(row.get(kql.COL_EVENTS))
            before = _int(row.get(kql.COL_PREVIOUS_EVENTS))
            if seen is not None:
                last = _latest(seen.last_event, last)
                events += seen.events
                before += seen.previous_events
            per_table[table] = TableFreshness(table, last, events, before)
        partial = any(q.partial_error is not None for q in queries)
        builder.workspaces.append(
            WorkspaceFreshness(
                route.workspace_id,
                route.tables,
                per_table=tuple(per_table[t] for t in sorted(per_table)),
                partial=partial,
            )
        )


def _logins(results: Sequence[QueryRows], builders: Mapping[str, _Builder]) -> None:
    merged: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for result in results:
        if not result.ok:
            continue
        for row in result.rows:
            key = _key(row.get(kql.COL_RESOURCE))
            identity = _str(row.get(kql.COL_IDENTITY))
            ip = _str(row.get(kql.COL_IP))
            merged[(key, identity, ip)].append(row)
    for (key, identity, ip), rows in merged.items():
        builder = builders.get(key)
        if builder is None:
            continue
        attempts = sum(_int(r.get(kql.COL_ATTEMPTS)) for r in rows)
        failures = sum(_int(r.get(kql.COL_FAILURES)) for r in rows)
        previous = sum(_int(r.get(kql.COL_PREVIOUS_ATTEMPTS)) for r in rows)
        first = _earliest(*(_datetime(r.get(kql.COL_FIRST_SEEN)) for r in rows))
        last = _latest(*(_datetime(r.get(kql.COL_LAST_SEEN)) for r in rows))
        builder.login_rows.append(_LoginRow(identity, ip, attempts, failures, previous, first))
        if attempts:
            builder.logins.append(LoginSummary(identity, ip, attempts, failures, first, last))


def _bursts(
    results: Sequence[QueryRows], builders: Mapping[str, _Builder], opts: EvidenceOptions
) -> None:
    bins: dict[tuple[str, str, str], dict[datetime, int]] = defaultdict(dict)
    totals: dict[tuple[str, str, str], int] = {}
    for result in results:
        if not result.ok:
            continue
        for row in result.rows:
            group = (
                _key(row.get(kql.COL_RESOURCE)),
                _str(row.get(kql.COL_KIND)),
                _str(row.get(kql.COL_KEY)),
            )
            target = bins[group]
            for at, count in _bin_pairs(row.get(kql.COL_BINS)):
                # The same bin seen twice (overlapping split windows) counts once.
                target[at] = max(target.get(at, 0), count)
            totals[group] = max(totals.get(group, 0), _int(row.get(kql.COL_TOTAL)))
    for (key, kind, value), counts in bins.items():
        builder = builders.get(key)
        if builder is None:
            continue
        burst = find_burst(
            counts,
            threshold=opts.burst_failures,
            window=opts.burst_window,
            step=opts.burst_step,
        )
        if burst is not None:
            failures, start, end = burst
            builder.bursts.append(
                FailureBurst(
                    kind=kind,
                    key=value,
                    failures=failures,
                    start=start,
                    end=end,
                    total_failures=max(totals.get((key, kind, value), 0), sum(counts.values())),
                )
            )


def find_burst(
    bins: Mapping[datetime, int], *, threshold: int, window: timedelta, step: timedelta
) -> tuple[int, datetime, datetime] | None:
    """The busiest run of failure bins whose starts lie at most `window` apart, if it holds
    at least `threshold` failures: (failures, start, end).

    Bins are `step` wide (their start is the time floored to the step), so a true burst of N
    failures within M minutes always lies in bins whose starts are at most M apart and is
    found; failures up to M + step apart may be counted together. The resolution is the
    step, one minute by default.
    """
    times = sorted(t for t, n in bins.items() if n > 0)
    best: tuple[int, datetime, datetime] | None = None
    total = 0
    left = 0
    for at in times:
        total += bins[at]
        while at - times[left] > window:
            total -= bins[times[left]]
            left += 1
        if total >= threshold and (best is None or total > best[0]):
            best = (total, times[left], at + step)
    return best


def _bin_pairs(value: Any) -> list[tuple[datetime, int]]:
    pairs = []
    for item in _list(value):
        if isinstance(item, str):
            item = _json(item)
        if isinstance(item, (list, tuple)) and len(item) == 2:
            at = _datetime(item[0])
            if at is not None:
                pairs.append((at, _int(item[1])))
    return pairs


def _repository(results: Sequence[QueryRows], builders: Mapping[str, _Builder]) -> None:
    merged: dict[tuple[str, str, str, str], list[Row]] = defaultdict(list)
    for result in results:
        if not result.ok:
            continue
        for row in result.rows:
            group = (
                _key(row.get(kql.COL_RESOURCE)),
                _str(row.get(kql.COL_OPERATION)),
                _str(row.get(kql.COL_IDENTITY)),
                _str(row.get(kql.COL_REPOSITORY)),
            )
            merged[group].append(row)
    for (key, operation, identity, repository), rows in merged.items():
        builder = builders.get(key)
        if builder is None:
            continue
        ips: dict[str, None] = {}
        for r in rows:
            ips.update(dict.fromkeys(_str(ip) for ip in _list(r.get(kql.COL_CALLER_IPS))))
        builder.trail.append(
            TrailCount(
                operation=classify_operation(operation),
                operation_name=operation,
                identity=identity,
                repository=repository,
                count=sum(_int(r.get(kql.COL_COUNT)) for r in rows),
                failures=sum(_int(r.get(kql.COL_FAILURES)) for r in rows),
                caller_ips=tuple(sorted(ip for ip in ips if ip)),
                first_seen=_earliest(*(_datetime(r.get(kql.COL_FIRST_SEEN)) for r in rows)),
                last_seen=_latest(*(_datetime(r.get(kql.COL_LAST_SEEN)) for r in rows)),
            )
        )


def _anonymous_pulls(
    trail: Iterable[TrailCount], anonymous: Sequence[str]
) -> tuple[AnonymousPull, ...]:
    by_repo: dict[str, list[TrailCount]] = defaultdict(list)
    for entry in trail:
        if entry.operation is Operation.PULL and _is_anonymous(entry.identity, anonymous):
            by_repo[entry.repository].append(entry)
    pulls = []
    for repository, entries in sorted(by_repo.items()):
        ips = sorted({ip for e in entries for ip in e.caller_ips})
        pulls.append(
            AnonymousPull(
                repository=repository,
                count=sum(e.count for e in entries),
                failures=sum(e.failures for e in entries),
                caller_ips=tuple(ips),
                first_seen=_earliest(*(e.first_seen for e in entries)),
                last_seen=_latest(*(e.last_seen for e in entries)),
            )
        )
    return tuple(pulls)


def _is_anonymous(identity: str, anonymous: Sequence[str]) -> bool:
    folded = identity.strip().casefold()
    return any(folded == a.strip().casefold() for a in anonymous)


def _deletions(results: Sequence[QueryRows], builders: Mapping[str, _Builder]) -> None:
    seen: set[tuple[Any, ...]] = set()
    for result in results:
        if not result.ok:
            continue
        for row in result.rows:
            key = _key(row.get(kql.COL_RESOURCE))
            builder = builders.get(key)
            if builder is None:
                continue
            name = _str(row.get(kql.COL_OPERATION))
            entry = TrailEntry(
                at=_datetime(row.get(kql.COL_TIME)),
                operation=classify_operation(name),
                operation_name=name,
                identity=_str(row.get(kql.COL_IDENTITY)),
                caller_ip=_str(row.get(kql.COL_IP)),
                repository=_str(row.get(kql.COL_REPOSITORY)),
                tag=_str(row.get(kql.COL_TAG)),
                digest=_str(row.get(kql.COL_DIGEST)),
                result=_str(row.get(kql.COL_RESULT)),
            )
            # Overlapping split windows may return the same event twice.
            if (key, entry) in seen:
                continue
            seen.add((key, entry))
            builder.deletions.append(entry)


def _activity(
    results: Sequence[QueryRows], builders: Mapping[str, _Builder]
) -> tuple[ActivityEvent, ...]:
    seen: set[ActivityEvent] = set()
    orphans: list[ActivityEvent] = []
    for result in results:
        if not result.ok:
            continue
        for row in result.rows:
            operation = _str(row.get(kql.COL_ACTIVITY_OPERATION))
            kind = _ACTIVITY_KINDS.get(operation.casefold())
            registry = _key(row.get(kql.COL_REGISTRY_ID))
            if kind is None or not registry:
                continue
            event = ActivityEvent(
                at=_datetime(row.get(kql.COL_TIME)),
                kind=kind,
                operation=operation.upper(),
                registry_key=registry,
                resource_id=_str(row.get(kql.COL_ACTIVITY_RESOURCE)),
                caller=_str(row.get(kql.COL_CALLER)),
                caller_ip=_str(row.get(kql.COL_IP)),
                status=_str(row.get(kql.COL_ACTIVITY_STATUS)),
            )
            # The same subscription's activity log may reach several workspaces.
            if event in seen:
                continue
            seen.add(event)
            builder = builders.get(registry)
            if builder is None:
                orphans.append(event)
            else:
                builder.activity.append(event)
    return tuple(sorted(orphans, key=lambda e: (e.registry_key, e.at or datetime.min)))


# --------------------------------------------------------------------------- findings


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
    recent = [t for t in starts if t is not None and now - _aware(t) < window]
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


# --------------------------------------------------------------------------- text


def _when(value: datetime | None) -> str:
    if value is None:
        return "unknown time"
    return _aware(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


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


# --------------------------------------------------------------------------- row values


def _key(value: Any) -> str:
    return normalize_id(value) if isinstance(value, str) else ""


def _str(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, str) and value:
        text = value.strip().replace("Z", "+00:00")
        # Kusto writes 7 fractional digits; Python reads at most 6.
        if "." in text:
            head, _, tail = text.partition(".")
            digits = "".join(c for c in tail if c.isdigit())
            zone = tail[len(digits) :]
            text = f"{head}.{digits[:6]}{zone}"
        try:
            return _aware(datetime.fromisoformat(text))
        except ValueError:
            return None
    return None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _list(value: Any) -> list[Any]:
    """A dynamic array column: a list, or its JSON text (Log Analytics sends dynamic values
    as text)."""
    if isinstance(value, str):
        value = _json(value)
    return list(value) if isinstance(value, (list, tuple)) else []


def _earliest(*values: datetime | None) -> datetime | None:
    return min((v for v in values if v is not None), default=None)


def _latest(*values: datetime | None) -> datetime | None:
    return max((v for v in values if v is not None), default=None)
