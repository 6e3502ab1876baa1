"""The log part of an audit: do the registries' events arrive in Log Analytics?

Fed by the settings judgement one verdict at a time (`EvidenceCollector`, so the queries run
while ARM's throttle paces the remaining reads), or after it with every verdict
(`collect_evidence`); then `auditor.evidence.apply_evidence` adds the findings to the
verdicts. No storage, no CLI.

Query plan: the settings say which workspaces should receive which registries' events
(`evidence.plan_routes`). Each workspace is resolved to its query GUID once, then gets one
query per purpose (`kql.Purpose`), registries selected with `_ResourceId in~ (...)` in chunks
of `chunk_size` ids, so the number of queries grows with workspaces, not registries. A query
the service finds too big (504 after retries, a timeout or an oversized result) is run again
over halves of its time range, at most `max_splits` times; the analysis merges the parts.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from auditor import kql
from auditor.azure.logs import LogsReader, QueryOutcome, WorkspaceRef, resolve_workspace
from auditor.errors import ConfigError
from auditor.evidence import (
    DEFAULT_ADMIN_IDENTITIES,
    DEFAULT_ANONYMOUS_IDENTITIES,
    ActivityEvent,
    EvidenceOptions,
    LogEvidence,
    QueryRows,
    Route,
    build_evidence,
    observations,
    plan_routes,
)
from auditor.facts import CategoryInfo, Verdict, normalize_id
from auditor.kql import Purpose, Query, Span, Window
from auditor.policy import Policy

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from auditor.azure.clients import ArmClients
    from auditor.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

_LISTINGS = frozenset({Purpose.DELETIONS, Purpose.ACTIVITY})
_NO_OVERLAP = timedelta(0)


@dataclass(frozen=True)
class LogOptions:
    """How far back to look and what counts as silent, a burst, a listing's cap..."""

    lookback: timedelta = timedelta(hours=24)
    silent_after: timedelta = timedelta(hours=24)
    pending_window: timedelta = timedelta(minutes=90)
    burst_failures: int = 10
    burst_window: timedelta = timedelta(minutes=5)
    burst_step: timedelta = kql.DEFAULT_BURST_STEP
    # How far back the freshness query looks for a registry's last event.
    reach_back: timedelta = timedelta(days=7)
    chunk_size: int = kql.DEFAULT_CHUNK_SIZE
    list_cap: int = kql.DEFAULT_LIST_CAP
    max_splits: int = 2
    anonymous_identities: tuple[str, ...] = DEFAULT_ANONYMOUS_IDENTITIES
    admin_identities: tuple[str, ...] = DEFAULT_ADMIN_IDENTITIES
    # Workspaces known to receive subscriptions' activity logs besides the registries' own.
    activity_workspaces: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = ("lookback", "silent_after", "burst_window", "burst_step", "reach_back")
        for name in positive:
            if getattr(self, name) <= timedelta(0):
                raise ConfigError(name, "must be longer than zero")
        if self.pending_window < timedelta(0):
            raise ConfigError("pending_window", "must not be negative")
        if self.burst_failures < 1:
            raise ConfigError("burst_failures", "must be at least 1")
        if self.burst_window < self.burst_step:
            raise ConfigError("burst_window", "must be at least one burst step (1 minute)")
        if not 1 <= self.chunk_size <= 1000:
            raise ConfigError("chunk_size", "must be between 1 and 1000")
        if not 1 <= self.list_cap <= 100_000:
            raise ConfigError("list_cap", "must be between 1 and 100000")
        if not 0 <= self.max_splits <= 4:
            raise ConfigError("max_splits", "must be between 0 and 4")
        if not self.burst_step.total_seconds().is_integer():
            raise ConfigError("burst_step", "must be a whole number of seconds")

    @classmethod
    def from_settings(cls, settings: Settings) -> LogOptions:
        return cls(
            lookback=timedelta(hours=settings.logs_lookback_hours),
            silent_after=timedelta(hours=settings.silent_after_hours),
            pending_window=timedelta(minutes=settings.pending_minutes),
            burst_failures=settings.burst_failures,
            burst_window=timedelta(minutes=settings.burst_minutes),
        )

    @property
    def evidence(self) -> EvidenceOptions:
        return EvidenceOptions(
            burst_failures=self.burst_failures,
            burst_window=self.burst_window,
            burst_step=self.burst_step,
            anonymous_identities=self.anonymous_identities,
            admin_identities=self.admin_identities,
        )

    def reach(self) -> timedelta:
        """The freshness query's reach: at least far enough to judge silence."""
        return max(self.reach_back, self.silent_after, 2 * self.lookback)


def build_logs_reader(settings: Settings, credential: TokenCredential) -> LogsReader:
    """The Log Analytics reader for a run, from the validated settings."""
    return LogsReader(
        credential,
        endpoint=settings.logs_endpoint,
        audience=settings.logs_audience,
        max_concurrency=settings.logs_concurrency,
        retries=settings.http_retries,
    )


@dataclass(frozen=True)
class EvidenceResult:
    window: Window
    evidence: Mapping[str, LogEvidence]  # by registry key
    routes: tuple[Route, ...] = ()
    workspaces: Mapping[str, WorkspaceRef] = field(default_factory=dict)
    # Activity-log events of registries not in this run (deleted since, or out of scope).
    orphan_activity: tuple[ActivityEvent, ...] = ()
    # For the run record: workspaces unreadable, queries failed, partial or capped.
    errors: tuple[str, ...] = ()
    queries: int = 0  # queries sent (splits included), retries not counted
    # Registries `EvidenceCollector.settle` handed out whose evidence changed since (activity
    # found by a query sent after they settled).
    revised: frozenset[str] = frozenset()


@dataclass
class _Request:
    workspace_id: str
    customer_id: str
    registry_keys: frozenset[str]
    build: Callable[[Span | None], Query]
    query: Query
    splits_left: int
    overlap: timedelta = timedelta(0)


def collect_evidence(
    arm_clients: ArmClients,
    logs_reader: LogsReader,
    verdicts: Sequence[Verdict],
    *,
    now: datetime,
    options: LogOptions | None = None,
    categories: Sequence[CategoryInfo] = (),
    policy: Policy | None = None,
    progress: Progress | None = None,
) -> EvidenceResult:
    """Query every workspace that should receive registry logs and analyse the rows.

    Never raises for an Azure failure: unreadable workspaces and failed queries become
    errors on the result and `unknown` log findings for the registries concerned.
    `policy` with an allow-list of workspaces limits the check to those workspaces.
    """
    subscriptions = {v.registry.subscription_id for v in verdicts}
    with EvidenceCollector(
        arm_clients,
        logs_reader,
        now=now,
        subscriptions=subscriptions,
        options=options,
        categories=categories,
        policy=policy,
        progress=progress,
    ) as collector:
        for verdict in verdicts:
            collector.add(verdict)
        return collector.finish(verdicts)


@dataclass(eq=False)
class _Chunk:
    """One chunk's queries in flight, and how many of its registries still need its rows."""

    future: Future[tuple[list[QueryRows], int]]
    remaining: int


class EvidenceCollector:
    """`collect_evidence` fed one verdict at a time, so the log queries run while the rest
    of the fleet's settings are still being read (paced by ARM, mostly waiting).

    A workspace is resolved when it is first routed to, and gets its activity query then;
    registry queries go out each time a workspace has `chunk_size` registries waiting (or
    has kept some waiting for `max_wait`), and `finish` sends the remainders.

    `settle` hands out the evidence of the registries whose queries have all returned, so
    their results can be stored before the last settings are read; the rows of a chunk are
    dropped once all its registries are settled. Activity queries cover every registry: a
    registry settles only when every activity query sent so far has returned, and `finish`
    adds what a later one found (a workspace first seen late) to evidence already settled,
    naming those registries in `EvidenceResult.revised`.
    """

    def __init__(
        self,
        arm_clients: ArmClients,
        logs_reader: LogsReader,
        *,
        now: datetime,
        subscriptions: Iterable[str],
        options: LogOptions | None = None,
        categories: Sequence[CategoryInfo] = (),
        policy: Policy | None = None,
        progress: Progress | None = None,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._arm = arm_clients
        self._reader = logs_reader
        self._opts = options or LogOptions()
        self._window = Window.ending(now, self._opts.lookback)
        self._categories = categories
        self._accepts = policy.accepts_workspace if policy and policy.accepted_workspaces else None
        self._subscriptions = sorted({s.lower() for s in subscriptions})
        self._progress = progress
        self._max_wait = max_wait
        self._clock = clock
        self._routes: dict[str, tuple[Route, ...]] = {}  # of registries not settled yet
        self._all_routes: list[Route] = []
        self._evidence: dict[str, LogEvidence] = {}
        self._waiting: dict[str, list[str]] = {}
        self._waiting_since: dict[str, float] = {}
        self._refs: dict[str, Future[WorkspaceRef]] = {}
        self._chunks: dict[str, list[_Chunk]] = {}  # by registry key
        self._unsettled: dict[str, None] = {}  # registry keys, in the order they came
        self._settled: set[str] = set()
        self._activity: list[Future[tuple[list[QueryRows], int]]] = []
        # Registries handed out by `settle`, by how many activity queries had been sent then.
        self._settled_after: dict[int, list[str]] = {}
        self._errors: list[str] = []
        self._sent = 0
        # Workspace reads are ARM calls (paced elsewhere); queries are bounded by the reader.
        self._resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="logs-ws")
        self._pool = ThreadPoolExecutor(
            max_workers=getattr(logs_reader, "max_concurrency", 5), thread_name_prefix="logs-q"
        )
        for workspace in self._opts.activity_workspaces:
            self._workspace(normalize_id(workspace))

    def __enter__(self) -> EvidenceCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._resolver.shutdown(wait=True, cancel_futures=True)

    def add(self, verdict: Verdict) -> None:
        """Route one judged registry; sends a chunk's queries when one fills up."""
        key = verdict.registry.key
        self._unsettled[key] = None
        routes = plan_routes(
            [verdict], categories=self._categories, accepts_workspace=self._accepts
        )
        self._routes[key] = routes
        self._all_routes.extend(routes)
        for route in routes:
            waiting = self._waiting.setdefault(route.workspace_id, [])
            if not waiting:
                self._workspace(route.workspace_id)
                self._waiting_since[route.workspace_id] = self._clock()
            waiting.append(route.registry_key)
            if len(waiting) >= self._opts.chunk_size:
                self._send(route.workspace_id)
        self._send_overdue()

    def settle(self) -> tuple[list[str], dict[str, LogEvidence]]:
        """Registries whose evidence is complete now (keys, in the order they came) and
        their evidence (registries without any have no entry); each is handed out once."""
        self._send_overdue()
        if not all(f.done() for f in self._activity):
            return [], {}
        waiting = {k for keys in self._waiting.values() for k in keys}
        ready = [
            k
            for k in self._unsettled
            if k not in waiting and all(c.future.done() for c in self._chunks.get(k, ()))
        ]
        if not ready:
            return [], {}
        evidence = self._build(ready, self._activity_results())
        self._settled_after.setdefault(len(self._activity), []).extend(ready)
        return ready, evidence

    def finish(self, verdicts: Sequence[Verdict]) -> EvidenceResult:
        """Send what is still waiting, wait for every query and build the rest of the
        evidence; the result holds every registry's, settled or not."""
        for workspace_id in sorted(self._waiting):
            self._send(workspace_id)
        if self._progress:
            self._progress(f"logs: {self._sent_count()} queries in {len(self._refs)} workspaces")
        activity = self._activity_results()
        for verdict in verdicts:
            if verdict.registry.key not in self._settled:
                self._unsettled.setdefault(verdict.registry.key, None)
        self._build(list(self._unsettled), activity)
        revised = self._late_activity()
        evidence = self._evidence
        everyone = {v.registry.key for v in verdicts}
        _, orphans = build_evidence(
            (), activity, window=self._window, registry_keys=everyone, options=self._opts.evidence
        )
        for future in self._activity:
            self._errors.extend(e for r in future.result()[0] for e in _describe(r, self._opts))
        workspaces = {w: ref.result() for w, ref in sorted(self._refs.items())}
        errors = [
            f"logs: workspace {ref.id}: {ref.error}"
            for ref in workspaces.values()
            if ref.error is not None
        ]
        if self._progress:
            self._progress(f"logs: evidence for {len(evidence)} registries")
        return EvidenceResult(
            window=self._window,
            evidence=evidence,
            routes=tuple(sorted(self._all_routes, key=lambda r: (r.registry_key, r.workspace_id))),
            workspaces=workspaces,
            orphan_activity=orphans,
            errors=tuple(dict.fromkeys(errors + self._errors)),
            queries=self._sent_count(),
            revised=frozenset(revised),
        )

    # -- building --------------------------------------------------------------------------

    def _build(self, keys: list[str], activity: list[QueryRows]) -> dict[str, LogEvidence]:
        """Evidence of `keys` (all of whose queries have returned), then their chunks' rows
        are let go once no other registry needs them."""
        chunks = list({id(c): c for k in keys for c in self._chunks.get(k, ())}.values())
        results = [r for c in chunks for r in c.future.result()[0]]
        routes = [r for k in keys for r in self._routes.get(k, ())]
        resolved = [ref.result() for ref in self._refs.values() if ref.done()]
        unavailable = {ref.id: ref.error for ref in resolved if ref.error is not None}
        evidence, _ = build_evidence(
            sorted(routes, key=lambda r: (r.registry_key, r.workspace_id)),
            [*results, *activity],
            window=self._window,
            registry_keys=keys,
            unavailable=unavailable,
            options=self._opts.evidence,
        )
        for key in keys:
            self._unsettled.pop(key, None)
            self._settled.add(key)
            self._routes.pop(key, None)
            for chunk in self._chunks.pop(key, ()):
                chunk.remaining -= 1
                if chunk.remaining == 0:
                    rows, sent = chunk.future.result()
                    self._sent += sent
                    self._errors.extend(e for r in rows for e in _describe(r, self._opts))
        self._evidence.update(evidence)
        return evidence

    def _late_activity(self) -> set[str]:
        """Adds to the evidence `settle` handed out what activity queries sent after it
        found; returns the registries whose evidence changed."""
        revised = set()
        for seen, keys in self._settled_after.items():
            late = [r for f in self._activity[seen:] for r in f.result()[0]]
            if not late:
                continue
            found, _ = build_evidence(
                (), late, window=self._window, registry_keys=keys, options=self._opts.evidence
            )
            for key, extra in found.items():
                if self._merge_activity(key, extra):
                    revised.add(key)
        return revised

    def _merge_activity(self, key: str, extra: LogEvidence) -> bool:
        base = self._evidence.get(key)
        if base is None:
            self._evidence[key] = extra
            return True
        events = set(base.activity) | set(extra.activity)
        if len(events) == len(base.activity):
            return False  # the same events, already known
        merged = replace(
            base,
            activity=tuple(sorted(events, key=lambda a: (a.at or base.window_start, a.kind))),
        )
        self._evidence[key] = replace(
            merged, observations=observations(merged, self._opts.evidence)
        )
        return True

    def _activity_results(self) -> list[QueryRows]:
        return [r for f in self._activity for r in f.result()[0]]

    def _sent_count(self) -> int:
        pending = {id(c): c for chunks in self._chunks.values() for c in chunks}
        in_flight = sum(c.future.result()[1] for c in pending.values() if c.future.done())
        activity = sum(f.result()[1] for f in self._activity if f.done())
        return self._sent + in_flight + activity

    # -- sending ---------------------------------------------------------------------------

    def _workspace(self, workspace_id: str) -> Future[WorkspaceRef]:
        """Resolve a workspace once; its activity queries go out as soon as it resolves."""
        ref = self._refs.get(workspace_id)
        if ref is None:
            ref = self._resolver.submit(resolve_workspace, self._arm, workspace_id)
            self._refs[workspace_id] = ref
            for subs in kql.chunks(self._subscriptions, self._opts.chunk_size):
                self._activity.append(
                    self._pool.submit(self._query, ref, functools.partial(self._activity_q, subs))
                )
        return ref

    def _activity_q(self, subscriptions: list[str], ref: WorkspaceRef) -> list[_Request]:
        return [_activity_request(ref, subscriptions, self._window, self._opts)]

    def _send_overdue(self) -> None:
        now = self._clock()
        for workspace_id, since in list(self._waiting_since.items()):
            if now - since >= self._max_wait:
                self._send(workspace_id)

    def _send(self, workspace_id: str) -> None:
        keys = self._waiting.pop(workspace_id, [])
        self._waiting_since.pop(workspace_id, None)
        if not keys:
            return
        ids = kql.normalize_ids(keys)
        future = self._pool.submit(
            self._query,
            self._refs[workspace_id],
            lambda r: _registry_requests(r, ids, self._window, self._opts),
        )
        chunk = _Chunk(future, remaining=len(set(keys)))
        for key in dict.fromkeys(keys):
            self._chunks.setdefault(key, []).append(chunk)

    def _query(
        self, ref_future: Future[WorkspaceRef], build: Callable[[WorkspaceRef], list[_Request]]
    ) -> tuple[list[QueryRows], int]:
        ref = ref_future.result()
        if ref.customer_id is None:
            return [], 0  # reported once, from the workspace
        return _run(self._reader, build(ref), self._opts)


def _registry_requests(
    ref: WorkspaceRef, ids: list[str], window: Window, opts: LogOptions
) -> list[_Request]:
    assert ref.customer_id is not None
    keys = frozenset(ids)
    builders: list[tuple[Callable[[Span | None], Query], timedelta]] = [
        (
            lambda span: kql.freshness_query(ids, window, reach_back=opts.reach(), span=span),
            _NO_OVERLAP,
        ),
        (lambda span: kql.logins_query(ids, window, span=span), _NO_OVERLAP),
        (
            lambda span: kql.bursts_query(
                ids, window, min_failures=opts.burst_failures, step=opts.burst_step, span=span
            ),
            # A burst across the split point must lie whole in the later part.
            opts.burst_window + opts.burst_step,
        ),
        (lambda span: kql.repository_query(ids, window, span=span), _NO_OVERLAP),
        (lambda span: kql.deletions_query(ids, window, cap=opts.list_cap, span=span), _NO_OVERLAP),
    ]
    return [
        _Request(ref.id, ref.customer_id, keys, build, build(None), opts.max_splits, overlap)
        for build, overlap in builders
    ]


def _activity_request(
    ref: WorkspaceRef, subscriptions: list[str], window: Window, opts: LogOptions
) -> _Request:
    assert ref.customer_id is not None

    def build(span: Span | None) -> Query:
        return kql.activity_query(subscriptions, window, cap=opts.list_cap, span=span)

    return _Request(ref.id, ref.customer_id, frozenset(), build, build(None), opts.max_splits)


def _run(
    reader: LogsReader, requests: list[_Request], opts: LogOptions
) -> tuple[list[QueryRows], int]:
    """Run the requests; split the ones that were too big and run the halves."""
    results: list[QueryRows] = []
    sent = 0
    pending = requests
    while pending:
        outcomes = reader.run([(r.customer_id, r.query) for r in pending])
        sent += len(pending)
        retry: list[_Request] = []
        for request, outcome in zip(pending, outcomes, strict=True):
            if outcome.too_big and request.splits_left > 0:
                retry.extend(_halves(request))
                continue
            results.append(_as_rows(request, outcome, opts))
        pending = retry
    return results, sent


def _halves(request: _Request) -> list[_Request]:
    start, end = request.query.start, request.query.end
    middle = start + (end - start) / 2
    # Whole seconds keep the datetime literals tidy; the halves still cover the range.
    middle = middle.replace(microsecond=0)
    if middle <= start:
        return [request]  # cannot split further: run as is (its failure is then kept)
    later_start = max(start, middle - request.overlap)
    out = []
    for span in ((start, middle), (later_start, end)):
        query = request.build(span)
        out.append(
            _Request(
                request.workspace_id,
                request.customer_id,
                request.registry_keys,
                request.build,
                query,
                request.splits_left - 1,
                request.overlap,
            )
        )
    return out


def _as_rows(request: _Request, outcome: QueryOutcome, opts: LogOptions) -> QueryRows:
    capped = request.query.purpose in _LISTINGS and len(outcome.rows) >= opts.list_cap
    return QueryRows(
        workspace_id=request.workspace_id,
        purpose=request.query.purpose,
        registry_keys=request.registry_keys,
        rows=outcome.rows,
        error=outcome.error,
        partial_error=outcome.partial_error,
        capped=capped,
    )


def _describe(result: QueryRows, opts: LogOptions) -> Iterable[str]:
    where = f"{result.purpose.value} query in workspace {result.workspace_id}"
    if result.error is not None:
        yield f"logs: {where} failed: {result.error}"
    if result.partial_error is not None:
        yield f"logs: {where} returned a partial result ({len(result.rows)} rows kept): " + (
            result.partial_error
        )
    if result.capped:
        yield f"logs: {where} reached its cap of {opts.list_cap} rows; older entries not listed"
