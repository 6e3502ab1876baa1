"""The log part of an audit: do the registries' events arrive in Log Analytics?

Fed by the settings judgement one verdict at a time (`EvidenceCollector`, so the queries run
while ARM's throttle paces the remaining reads), or after it with every verdict
(`collect_evidence`); then `auditor.evidence.judgement.apply_evidence` adds the findings to the
verdicts. No storage, no CLI.

Query plan: the settings say which workspaces should receive which registries' events
(`routing.plan_routes`). Each workspace is resolved to its query GUID once, then gets one
query per purpose (`kql.Purpose`) selecting the run's subscriptions (`_SubscriptionId in~`, in
chunks of `chunk_size`; a run of at most `chunk_size` registries selects them by id), so the
number of queries grows with workspaces, not registries, and every query can go out as soon as
its workspace is first seen. A query
the service finds too big (504 after retries, a timeout or an oversized result) is run again
over halves of its time range, at most `max_splits` times; the analysis merges the parts.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from auditor import kql
from auditor.azure.logs import LogsReader, WorkspaceRef, pack_rows, resolve_workspace
from auditor.errors import ConfigError
from auditor.evidence.build import build_evidence, orphan_activity
from auditor.evidence.judgement import observations
from auditor.evidence.model import (
    DEFAULT_ADMIN_IDENTITIES,
    DEFAULT_ANONYMOUS_IDENTITIES,
    ActivityEvent,
    EvidenceOptions,
    LogEvidence,
    QueryRows,
    Row,
)
from auditor.evidence.routing import Route, plan_routes
from auditor.evidence.rows import keyed
from auditor.facts import CategoryInfo, Verdict, normalize_id
from auditor.kql import Purpose, Query, Span, Window
from auditor.policy import Policy
from auditor.ports import LogQueries, QueryAnswer, WorkspaceReads
from auditor.priority_pool import PriorityPool
from auditor.settings import LogsSettings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from auditor.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

_NO_OVERLAP = timedelta(0)
_DECLARED = LogsSettings()  # the settings' declared defaults


@dataclass(frozen=True)
class LogOptions:
    """How far back to look and what counts as silent, a burst, a listing's cap...

    The first five come from the validated `LogsSettings` and are checked there, not here.
    """

    lookback: timedelta = _DECLARED.lookback
    silent_after: timedelta = _DECLARED.silent_after
    pending_window: timedelta = _DECLARED.pending_window
    burst_failures: int = _DECLARED.burst_failures
    burst_window: timedelta = _DECLARED.burst_window
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
        for name in ("burst_step", "reach_back"):
            if getattr(self, name) <= timedelta(0):
                raise ConfigError(name, "must be longer than zero")
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
    def from_settings(cls, logs: LogsSettings) -> LogOptions:
        return cls(
            lookback=logs.lookback,
            silent_after=logs.silent_after,
            pending_window=logs.pending_window,
            burst_failures=logs.burst_failures,
            burst_window=logs.burst_window,
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
        endpoint=settings.logs.endpoint,
        audience=settings.logs.audience,
        max_concurrency=settings.logs.concurrency,
        retries=settings.arm.http_retries,
    )


@dataclass(frozen=True)
class EvidenceResult:
    window: Window
    evidence: Mapping[str, LogEvidence]  # by registry key
    routed: frozenset[str] = frozenset()  # registries whose logs go to some workspace
    workspaces: Mapping[str, WorkspaceRef] = field(default_factory=dict)
    # Activity-log events of registries not in this run (deleted since, or out of scope).
    orphan_activity: tuple[ActivityEvent, ...] = ()
    # For the run record: workspaces unreadable, queries failed, partial or capped.
    errors: tuple[str, ...] = ()
    queries: int = 0  # queries sent (splits included), retries not counted
    # Registries `EvidenceCollector.settle` handed out whose evidence changed since (activity
    # found by a query sent after they settled).
    revised: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Request:
    workspace_id: str
    customer_id: str
    build: Callable[[Span | None], Query]
    query: Query
    splits_left: int
    overlap: timedelta = timedelta(0)
    cap: int | None = None  # a listing's `top N`


def collect_evidence(
    arm_clients: WorkspaceReads,
    logs_reader: LogQueries,
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
        registries=[v.registry.key for v in verdicts],
        options=options,
        categories=categories,
        policy=policy,
        progress=progress,
    ) as collector:
        for verdict in verdicts:
            collector.add(verdict)
        return collector.finish(verdicts)


@dataclass(eq=False)
class _Answer:
    """What one registry query returned, its rows indexed by registry (rows of registries
    not in the run are dropped on arrival), so each registry takes its own rows when it
    settles and they are let go then.

    A workspace answers for the whole fleet minutes before most of it is judged, so the rows
    wait packed per registry (`pack_rows`), under half their size as objects (measured on
    login rows: about 150 bytes a row instead of 340). The bytes never leave this object.
    """

    result: QueryRows  # without rows or registry keys: those come with `take`
    rows: dict[str, bytes]
    row_count: int
    unpack: Callable[[bytes], list[Row]]

    def take(self, keys: Iterable[str]) -> QueryRows:
        keys = frozenset(keys)
        rows: list[Row] = []
        for key in sorted(keys):
            packed = self.rows.pop(key, None)
            if packed is not None:
                rows += self.unpack(packed)
        return replace(self.result, registry_keys=keys, rows=tuple(rows))


_Sent = Future[tuple[list[QueryRows], int]]
# Registries whose evidence is built at once: their rows are unpacked together (at 10,000
# registries, one build of every registry left at the end held 54 MB of unpacked rows at the
# run's peak).
_BUILD_SLICE = 500
_REGISTRY_PURPOSES = tuple(p for p in Purpose if p is not Purpose.ACTIVITY)
_ACTIVITY_QUERY, _REGISTRY_QUERY = 0, 1  # priorities in the query pool
_Asked = Future[tuple[list[_Answer], int]]


class EvidenceCollector:
    """`collect_evidence` fed one verdict at a time, so the log queries run while the rest
    of the fleet's settings are still being read (paced by ARM, mostly waiting).

    A workspace gets all its queries when it is first routed to: the registry queries
    select every registry of the run's subscriptions (or, for a run of at most `chunk_size`
    registries, the run's registries by id), so they also cover the registries whose settings
    are read later, and nothing is left to query after the last read. The rows are kept per
    registry until that registry is judged and routed there; the rest are dropped.

    `settle` hands out the evidence of the registries whose queries have all returned, so
    their results can be stored before the last settings are read. Activity queries cover
    every registry: a registry settles only when every activity query sent so far has
    returned, and `finish` adds what a later one found (a workspace first seen late) to
    evidence already settled, naming those registries in `EvidenceResult.revised`.
    """

    def __init__(
        self,
        arm_clients: WorkspaceReads,
        logs_reader: LogQueries,
        *,
        now: datetime,
        subscriptions: Iterable[str],
        registries: Collection[str] | None = None,
        options: LogOptions | None = None,
        categories: Sequence[CategoryInfo] = (),
        policy: Policy | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._arm = arm_clients
        self._reader = logs_reader
        self._opts = options or LogOptions()
        self._window = Window.ending(now, self._opts.lookback)
        self._categories = categories
        self._accepts = policy.accepts_workspace if policy and policy.accepted_workspaces else None
        self._subscriptions = sorted({s.lower() for s in subscriptions})
        self._keep = frozenset(normalize_id(k) for k in registries) if registries else None
        self._selections = _selections(self._subscriptions, self._keep, self._opts.chunk_size)
        self._list_cap = _list_cap(self._opts, self._keep)
        # Made before the run's registries are known (`prefetch`, then `restrict`).
        self._ahead = registries is None
        self._held: list[tuple[str, Future[WorkspaceRef]]] = []  # their listings, held back
        self._progress = progress
        self._routes: dict[str, tuple[Route, ...]] = {}  # of registries not settled yet
        self._routed: set[str] = set()
        self._evidence: dict[str, LogEvidence] = {}
        self._refs: dict[str, Future[WorkspaceRef]] = {}
        self._answers: dict[str, list[_Asked]] = {}  # by workspace
        self._routed_to: set[str] = set()  # workspaces some registry is routed to
        self._activity_from: set[str] = set()  # workspaces whose activity queries went out
        self._unsettled: dict[str, None] = {}  # registry keys, in the order they came
        self._arrivals = 0  # registries routed so far
        # What `settle` last found ready, and from what: scanning every registry waiting on
        # each of a run's few dozen answers took a tenth of a second of CPU per 10,000.
        self._scanned: tuple[frozenset[str], int, int] | None = None
        self._ready: list[str] = []
        self._settled: set[str] = set()
        self._activity: list[_Sent] = []
        # Workspaces whose registry queries `add_all` is about to send.
        self._asking: list[tuple[str, Future[WorkspaceRef]]] = []
        # Registries handed out by `settle`, by how many activity queries had been sent then.
        self._settled_after: dict[int, list[str]] = {}
        # Workspace reads are ARM calls (paced elsewhere); queries are bounded by the reader.
        self._resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="logs-ws")
        # Activity queries first, even when their workspace is first seen late: every
        # registry's settling waits on all of them.
        self._pool = PriorityPool(logs_reader.max_concurrency, thread_name_prefix="logs-q")
        for workspace in self._opts.activity_workspaces:
            self._workspace(normalize_id(workspace), registry_queries=False)

    def __enter__(self) -> EvidenceCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown()
        self._resolver.shutdown(wait=True, cancel_futures=True)

    def add(self, verdict: Verdict) -> None:
        """Route one judged registry; a workspace seen for the first time gets its queries."""
        self.add_all((verdict,))

    def add_all(self, verdicts: Iterable[Verdict]) -> None:
        """Route judged registries. The activity queries of the workspaces seen first here go
        out before their registry queries: every registry's settling waits on all of them,
        and only on its own workspaces' registry queries. Of several workspaces seen first
        here, the one with most of these registries asks first (a change-driven run routes
        its kept registries at once): a workspace's registries settle when its last query
        returns, so the answers that come last should hold the fewest."""
        routed: Counter[str] = Counter()
        for verdict in verdicts:
            routed.update(route.workspace_id for route in self._route(verdict))
        asked, self._asking = self._asking, []
        asked.sort(key=lambda item: -routed[item[0]])  # stable: else in the order first seen
        for workspace_id, ref in asked:
            self._answers[workspace_id] = self._send(ref, _REGISTRY_PURPOSES)

    def prefetch(self, workspace_ids: Iterable[str]) -> None:
        """Ask workspaces' registry queries before any registry is routed there: a
        change-driven run names them from the stored settings while the store is still being
        read, so the queries overlap that read. Made before the run's registries are known,
        the collector holds back the deletions listing (its cap grows with the fleet) until
        `restrict`; a workspace's activity queries wait until a registry is routed there, as
        in any run; and what a workspace no registry is routed to answered is dropped, its
        failures unreported."""
        for workspace_id in workspace_ids:
            if workspace_id in self._answers:
                continue
            ref = self._ref(workspace_id)
            purposes = _REGISTRY_PURPOSES
            if self._ahead:
                purposes = tuple(p for p in purposes if p is not Purpose.DELETIONS)
                self._held.append((workspace_id, ref))
            self._answers[workspace_id] = self._send(ref, purposes)

    @property
    def prefetched(self) -> bool:
        return bool(self._answers) and not self._routed_to

    def restrict(
        self,
        registries: Collection[str],
        subscriptions: Iterable[str],
        categories: Sequence[CategoryInfo] = (),
    ) -> bool:
        """The run's registries, their subscriptions and the categories, for a collector
        made before they were known (`registries=None`), before any registry is routed.
        False, and nothing changed, when a subscription is not one it was made with: its
        registry queries, already sent, select the subscriptions they were made with."""
        wanted = {s.lower() for s in subscriptions}
        if not wanted <= set(self._subscriptions) or self._routed_to:
            return False
        # Activity queries are still to go out: for these subscriptions, as in any run.
        self._subscriptions = sorted(wanted)
        self._keep = frozenset(normalize_id(k) for k in registries)
        self._list_cap = _list_cap(self._opts, self._keep)
        self._categories = categories
        self._ahead = False
        held, self._held = self._held, []
        for workspace_id, ref in held:
            self._answers[workspace_id] += self._send(ref, (Purpose.DELETIONS,))
        return True

    def _send(self, ref: Future[WorkspaceRef], purposes: Sequence[Purpose]) -> list[_Asked]:
        # One task per purpose: a result is packed as soon as it arrives, so at most one
        # unpacked result per pool worker exists at a time.
        return [
            self._pool.submit(_REGISTRY_QUERY, self._ask, ref, selection, purpose)
            for selection in self._selections
            for purpose in purposes
        ]

    def wait(self, timeout: float) -> bool:
        """Waits until a query sent so far returns, at most `timeout` seconds; True when every
        one has returned."""
        sent: list[Future[Any]] = [*self._activity]
        sent += (f for answers in self._answers.values() for f in answers)
        out = [f for f in sent if not f.done()]
        if not out:
            return True
        _, still = concurrent.futures.wait(
            out, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED
        )
        return not still

    def _route(self, verdict: Verdict) -> tuple[Route, ...]:
        key = verdict.registry.key
        self._unsettled[key] = None
        self._arrivals += 1
        routes = plan_routes(
            [verdict], categories=self._categories, accepts_workspace=self._accepts
        )
        self._routes[key] = routes
        if routes:
            self._routed.add(key)
        for route in routes:
            if route.workspace_id not in self._routed_to:
                self._routed_to.add(route.workspace_id)
                self._workspace(route.workspace_id, registry_queries=True)
        return routes

    def settle(self, limit: int | None = None) -> tuple[list[str], dict[str, LogEvidence]]:
        """Registries whose evidence is complete now (keys, in the order they came; at most
        `limit`) and their evidence (registries without any have no entry); each is handed
        out once."""
        if not all(f.done() for f in self._activity):
            return [], {}
        answered = frozenset(
            w for w, answers in self._answers.items() if all(f.done() for f in answers)
        )
        # A registry's readiness depends only on its routes (fixed once routed) and on which
        # workspaces have answered: the last scan holds while neither changed.
        scanned = (answered, self._arrivals, len(self._activity))
        if scanned != self._scanned:
            self._scanned = scanned
            self._ready = [
                k
                for k in self._unsettled
                if all(r.workspace_id in answered for r in self._routes.get(k, ()))
            ]
        ready = [k for k in self._ready if k in self._unsettled]
        cut = len(ready) if limit is None else limit
        ready, self._ready = ready[:cut], ready[cut:]
        if not ready:
            return [], {}
        evidence = self._build(ready, self._activity_results())
        self._settled_after.setdefault(len(self._activity), []).extend(ready)
        return ready, evidence

    def finish(self, verdicts: Sequence[Verdict]) -> EvidenceResult:
        """Wait for every query and build the rest of the evidence; the result holds every
        registry's, settled or not."""
        if self._progress:
            self._progress(f"logs: waiting for the queries of {len(self._refs)} workspaces")
        activity = self._activity_results()
        for verdict in verdicts:
            if verdict.registry.key not in self._settled:
                self._unsettled.setdefault(verdict.registry.key, None)
        self._build(list(self._unsettled), activity)
        revised = self._late_activity()
        evidence = self._evidence
        orphans = orphan_activity(activity, (v.registry.key for v in verdicts))
        problems: list[str] = []
        sent = 0
        for sent_activity in self._activity:
            results, count = sent_activity.result()
            sent += count
            cap = self._opts.list_cap
            problems.extend(e for r in results for e in _describe(r, len(r.rows), cap))
        for workspace_id, answers in self._answers.items():
            for asked in answers:
                found, count = asked.result()
                sent += count
                if workspace_id not in self._routed_to:
                    continue  # asked ahead (`prefetch`) for registries not routed there
                for answer in found:
                    problems.extend(_describe(answer.result, answer.row_count, self._list_cap))
        self._answers.clear()  # rows of registries routed nowhere: not needed any more
        used = self._routed_to | self._activity_from
        workspaces = {w: ref.result() for w, ref in sorted(self._refs.items()) if w in used}
        errors = [
            f"logs: workspace {ref.id}: {ref.error}"
            for ref in workspaces.values()
            if ref.error is not None
        ]
        if self._progress:
            self._progress(
                f"logs: {sent} queries in {len(workspaces)} workspaces,"
                f" evidence for {len(evidence)} registries"
            )
        return EvidenceResult(
            window=self._window,
            evidence=evidence,
            routed=frozenset(self._routed),
            workspaces=workspaces,
            orphan_activity=orphans,
            errors=tuple(dict.fromkeys(errors + problems)),
            queries=sent,
            revised=frozenset(revised),
        )

    # -- building --------------------------------------------------------------------------

    def _build(self, keys: list[str], activity: list[QueryRows]) -> dict[str, LogEvidence]:
        """Evidence of `keys` (all of whose queries have returned), a slice at a time: the
        rows a slice unpacks are let go before the next, so a workspace answering for half
        the fleet at once does not unpack half the fleet's rows at once."""
        evidence: dict[str, LogEvidence] = {}
        for start in range(0, len(keys), _BUILD_SLICE):
            evidence.update(self._build_slice(keys[start : start + _BUILD_SLICE], activity))
        return evidence

    def _build_slice(self, keys: list[str], activity: list[QueryRows]) -> dict[str, LogEvidence]:
        """Evidence of `keys`; each takes its rows out of its workspaces' answers."""
        routed: dict[str, list[str]] = {}
        routes = [r for k in keys for r in self._routes.get(k, ())]
        for route in routes:
            routed.setdefault(route.workspace_id, []).append(route.registry_key)
        results = [
            answer.take(ws_keys)
            for workspace, ws_keys in routed.items()
            for future in self._answers.get(workspace, ())
            for answer in future.result()[0]
        ]
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

    # -- sending ---------------------------------------------------------------------------

    def _ref(self, workspace_id: str) -> Future[WorkspaceRef]:
        """The workspace, resolved once; its queries go out as soon as it resolves."""
        ref = self._refs.get(workspace_id)
        if ref is None:
            ref = self._resolver.submit(resolve_workspace, self._arm, workspace_id)
            self._refs[workspace_id] = ref
        return ref

    def _workspace(self, workspace_id: str, *, registry_queries: bool) -> None:
        ref = self._ref(workspace_id)
        if workspace_id not in self._activity_from:
            self._activity_from.add(workspace_id)
            for subs in kql.chunks(self._subscriptions, self._opts.chunk_size):
                build = functools.partial(self._activity_q, subs)
                self._activity.append(self._pool.submit(_ACTIVITY_QUERY, self._query, ref, build))
        if registry_queries and workspace_id not in self._answers:
            self._answers[workspace_id] = []  # sent by `add_all`, after the activity queries
            self._asking.append((workspace_id, ref))

    def _activity_q(self, subscriptions: list[str], ref: WorkspaceRef) -> list[_Request]:
        return [_activity_request(ref, subscriptions, self._window, self._opts)]

    def _query(
        self, ref_future: Future[WorkspaceRef], build: Callable[[WorkspaceRef], list[_Request]]
    ) -> tuple[list[QueryRows], int]:
        ref = ref_future.result()
        if ref.customer_id is None:
            return [], 0  # reported once, from the workspace
        return _run(self._reader, build(ref))

    def _ask(
        self, ref_future: Future[WorkspaceRef], selection: kql.Selection, purpose: Purpose
    ) -> tuple[list[_Answer], int]:
        def build(ref: WorkspaceRef) -> list[_Request]:
            opts = self._opts
            return [_registry_request(ref, selection, purpose, self._window, opts, self._list_cap)]

        results, sent = self._query(ref_future, build)
        return [_index(r, self._keep) for r in results], sent


def _selections(
    subscriptions: Sequence[str], registries: frozenset[str] | None, chunk_size: int
) -> list[kql.Selection]:
    """What each workspace's registry queries select: a small run's registries by id (the
    narrowest query), any other run's subscriptions, in chunks."""
    if registries is not None and len(registries) <= chunk_size:
        return [kql.Selection.of_registries(registries)]
    return [kql.Selection.of_subscriptions(c) for c in kql.chunks(subscriptions, chunk_size)]


def _list_cap(opts: LogOptions, registries: frozenset[str] | None) -> int:
    """A listing covers more registries than a chunk did: its cap grows with the fleet."""
    fleet = len(registries) if registries is not None else 0
    return opts.list_cap * max(1, math.ceil(fleet / opts.chunk_size))


def _index(result: QueryRows, keep: frozenset[str] | None) -> _Answer:
    rows: dict[str, list[Row]] = {}
    for key, row in keyed(result.rows, kql.COL_RESOURCE):
        if keep is None or key in keep:
            rows.setdefault(key, []).append(row)
    packed, unpack = pack_rows(rows)
    return _Answer(replace(result, rows=()), packed, len(result.rows), unpack)


def _registry_request(
    ref: WorkspaceRef,
    ids: kql.Selection,
    purpose: Purpose,
    window: Window,
    opts: LogOptions,
    list_cap: int,
) -> _Request:
    assert ref.customer_id is not None
    builders: dict[Purpose, tuple[Callable[[Span | None], Query], timedelta]] = {
        Purpose.FRESHNESS: (
            lambda span: kql.freshness_query(ids, window, reach_back=opts.reach(), span=span),
            _NO_OVERLAP,
        ),
        Purpose.LOGINS: (lambda span: kql.logins_query(ids, window, span=span), _NO_OVERLAP),
        Purpose.BURSTS: (
            lambda span: kql.bursts_query(
                ids, window, min_failures=opts.burst_failures, step=opts.burst_step, span=span
            ),
            # A burst across the split point must lie whole in the later part.
            opts.burst_window + opts.burst_step,
        ),
        Purpose.REPOSITORY: (
            lambda span: kql.repository_query(ids, window, span=span),
            _NO_OVERLAP,
        ),
        Purpose.DELETIONS: (
            lambda span: kql.deletions_query(ids, window, cap=list_cap, span=span),
            _NO_OVERLAP,
        ),
    }
    build, overlap = builders[purpose]
    cap = list_cap if purpose is Purpose.DELETIONS else None
    return _Request(ref.id, ref.customer_id, build, build(None), opts.max_splits, overlap, cap)


def _activity_request(
    ref: WorkspaceRef, subscriptions: list[str], window: Window, opts: LogOptions
) -> _Request:
    assert ref.customer_id is not None

    def build(span: Span | None) -> Query:
        return kql.activity_query(subscriptions, window, cap=opts.list_cap, span=span)

    return _Request(ref.id, ref.customer_id, build, build(None), opts.max_splits, cap=opts.list_cap)


def _run(reader: LogQueries, requests: list[_Request]) -> tuple[list[QueryRows], int]:
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
            results.append(_as_rows(request, outcome))
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
    return [
        replace(request, query=request.build(span), splits_left=request.splits_left - 1)
        for span in ((start, middle), (later_start, end))
    ]


def _as_rows(request: _Request, outcome: QueryAnswer) -> QueryRows:
    capped = request.cap is not None and len(outcome.rows) >= request.cap
    return QueryRows(
        workspace_id=request.workspace_id,
        purpose=request.query.purpose,
        registry_keys=frozenset(),
        rows=outcome.rows,
        error=outcome.error,
        partial_error=outcome.partial_error,
        capped=capped,
    )


def _describe(result: QueryRows, kept: int, cap: int) -> Iterable[str]:
    where = f"{result.purpose.value} query in workspace {result.workspace_id}"
    if result.error is not None:
        yield f"logs: {where} failed: {result.error}"
    if result.partial_error is not None:
        yield f"logs: {where} returned a partial result ({kept} rows kept): " + (
            result.partial_error
        )
    if result.capped:
        yield f"logs: {where} reached its cap of {cap} rows; older entries not listed"
