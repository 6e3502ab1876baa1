"""Query rows to evidence: one `LogEvidence` per registry.

The rows of the queries built by `auditor.kql` become, per registry, the last event per
workspace and table, logins, failure bursts, first-seen identities and IPs, admin-user
logins, anonymous pulls, the repository trail, every delete/untag, the activity-log events,
and the observations they call for (`auditor.evidence.judgement.observations`).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from auditor import kql
from auditor.evidence.judgement import observations
from auditor.evidence.model import (
    ActivityEvent,
    ActivityKind,
    AnonymousPull,
    EvidenceOptions,
    FailureBurst,
    FirstSeen,
    LogEvidence,
    LoginSummary,
    Operation,
    QueryRows,
    Row,
    TableFreshness,
    TrailCount,
    TrailEntry,
    WorkspaceFreshness,
    classify_operation,
)
from auditor.evidence.routing import Route
from auditor.evidence.rows import as_datetime, as_int, as_json, as_key, as_list, as_str, keyed
from auditor.facts import normalize_id
from auditor.kql import Purpose, Window

_ACTIVITY_KINDS = {
    kql.SETTING_WRITE.casefold(): ActivityKind.SETTING_WRITE,
    kql.SETTING_DELETE.casefold(): ActivityKind.SETTING_DELETE,
    kql.REGISTRY_WRITE.casefold(): ActivityKind.REGISTRY_WRITE,
    kql.REGISTRY_DELETE.casefold(): ActivityKind.REGISTRY_DELETE,
}


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
            for key, row in keyed(result.rows, kql.COL_RESOURCE):
                rows_by[(key, result.workspace_id)].append(row)

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
            table = as_str(row.get(kql.COL_TABLE))
            if table.casefold() not in {t.casefold() for t in route.tables}:
                continue  # a table this registry does not route here: not evidence of it
            seen = per_table.get(table)
            last = as_datetime(row.get(kql.COL_LAST_EVENT))
            events = as_int(row.get(kql.COL_EVENTS))
            before = as_int(row.get(kql.COL_PREVIOUS_EVENTS))
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
        for key, row in keyed(result.rows, kql.COL_RESOURCE):
            identity = as_str(row.get(kql.COL_IDENTITY))
            ip = as_str(row.get(kql.COL_IP))
            merged[(key, identity, ip)].append(row)
    for (key, identity, ip), rows in merged.items():
        builder = builders.get(key)
        if builder is None:
            continue
        attempts = failures = previous = 0
        first = last = None
        for r in rows:  # one row, but for a window split in parts
            attempts += as_int(r.get(kql.COL_ATTEMPTS))
            failures += as_int(r.get(kql.COL_FAILURES))
            previous += as_int(r.get(kql.COL_PREVIOUS_ATTEMPTS))
            first = _earlier(first, as_datetime(r.get(kql.COL_FIRST_SEEN)))
            last = _later(last, as_datetime(r.get(kql.COL_LAST_SEEN)))
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
        for key, row in keyed(result.rows, kql.COL_RESOURCE):
            group = (
                key,
                as_str(row.get(kql.COL_KIND)),
                as_str(row.get(kql.COL_KEY)),
            )
            target = bins[group]
            for at, count in _bin_pairs(row.get(kql.COL_BINS)):
                # The same bin seen twice (overlapping split windows) counts once.
                target[at] = max(target.get(at, 0), count)
            totals[group] = max(totals.get(group, 0), as_int(row.get(kql.COL_TOTAL)))
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
    for item in as_list(value):
        if isinstance(item, str):
            item = as_json(item)
        if isinstance(item, (list, tuple)) and len(item) == 2:
            at = as_datetime(item[0])
            if at is not None:
                pairs.append((at, as_int(item[1])))
    return pairs


def _repository(results: Sequence[QueryRows], builders: Mapping[str, _Builder]) -> None:
    merged: dict[tuple[str, str, str, str], list[Row]] = defaultdict(list)
    for result in results:
        if not result.ok:
            continue
        for key, row in keyed(result.rows, kql.COL_RESOURCE):
            group = (
                key,
                as_str(row.get(kql.COL_OPERATION)),
                as_str(row.get(kql.COL_IDENTITY)),
                as_str(row.get(kql.COL_REPOSITORY)),
            )
            merged[group].append(row)
    for (key, operation, identity, repository), rows in merged.items():
        builder = builders.get(key)
        if builder is None:
            continue
        ips: dict[str, None] = {}
        count = failures = 0
        first = last = None
        for r in rows:  # one row, but for a window split in parts
            for ip in as_list(r.get(kql.COL_CALLER_IPS)):
                ips[as_str(ip)] = None
            count += as_int(r.get(kql.COL_COUNT))
            failures += as_int(r.get(kql.COL_FAILURES))
            first = _earlier(first, as_datetime(r.get(kql.COL_FIRST_SEEN)))
            last = _later(last, as_datetime(r.get(kql.COL_LAST_SEEN)))
        builder.trail.append(
            TrailCount(
                operation=classify_operation(operation),
                operation_name=operation,
                identity=identity,
                repository=repository,
                count=count,
                failures=failures,
                caller_ips=tuple(sorted(ip for ip in ips if ip)),
                first_seen=first,
                last_seen=last,
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
        for key, row in keyed(result.rows, kql.COL_RESOURCE):
            builder = builders.get(key)
            if builder is None:
                continue
            name = as_str(row.get(kql.COL_OPERATION))
            entry = TrailEntry(
                at=as_datetime(row.get(kql.COL_TIME)),
                operation=classify_operation(name),
                operation_name=name,
                identity=as_str(row.get(kql.COL_IDENTITY)),
                caller_ip=as_str(row.get(kql.COL_IP)),
                repository=as_str(row.get(kql.COL_REPOSITORY)),
                tag=as_str(row.get(kql.COL_TAG)),
                digest=as_str(row.get(kql.COL_DIGEST)),
                result=as_str(row.get(kql.COL_RESULT)),
            )
            # Overlapping split windows may return the same event twice.
            if (key, entry) in seen:
                continue
            seen.add((key, entry))
            builder.deletions.append(entry)


def orphan_activity(
    results: Iterable[QueryRows], registry_keys: Iterable[str]
) -> tuple[ActivityEvent, ...]:
    """`build_evidence`'s orphans alone: the activity events of registries not among
    `registry_keys`, without building the evidence of those that are."""
    keys = {normalize_id(k) for k in registry_keys}
    activity = [r for r in results if r.purpose is Purpose.ACTIVITY]
    return _in_order([e for e in _activity_events(activity) if e.registry_key not in keys])


def _activity(
    results: Sequence[QueryRows], builders: Mapping[str, _Builder]
) -> tuple[ActivityEvent, ...]:
    orphans: list[ActivityEvent] = []
    for event in _activity_events(results):
        builder = builders.get(event.registry_key)
        if builder is None:
            orphans.append(event)
        else:
            builder.activity.append(event)
    return _in_order(orphans)


def _activity_events(results: Sequence[QueryRows]) -> Iterator[ActivityEvent]:
    seen: set[ActivityEvent] = set()
    for result in results:
        if not result.ok:
            continue
        for row in result.rows:
            operation = as_str(row.get(kql.COL_ACTIVITY_OPERATION))
            kind = _ACTIVITY_KINDS.get(operation.casefold())
            registry = as_key(row.get(kql.COL_REGISTRY_ID))
            if kind is None or not registry:
                continue
            event = ActivityEvent(
                at=as_datetime(row.get(kql.COL_TIME)),
                kind=kind,
                operation=operation.upper(),
                registry_key=registry,
                resource_id=as_str(row.get(kql.COL_ACTIVITY_RESOURCE)),
                caller=as_str(row.get(kql.COL_CALLER)),
                caller_ip=as_str(row.get(kql.COL_IP)),
                status=as_str(row.get(kql.COL_ACTIVITY_STATUS)),
            )
            # The same subscription's activity log may reach several workspaces.
            if event not in seen:
                seen.add(event)
                yield event


def _in_order(events: list[ActivityEvent]) -> tuple[ActivityEvent, ...]:
    return tuple(sorted(events, key=lambda e: (e.registry_key, e.at or datetime.min)))


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None or a <= b else b


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None or a >= b else b


def _earliest(*values: datetime | None) -> datetime | None:
    return functools.reduce(_earlier, values, None)


def _latest(*values: datetime | None) -> datetime | None:
    return functools.reduce(_later, values, None)
