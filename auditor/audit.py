"""One audit run: inventory, diagnostic settings read concurrently and paced, judgement, storage.

This module wires adapters to the pure judgement; it decides nothing about compliance itself.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError

from auditor import change_run, exemptions
from auditor.azure.clients import ArmClients
from auditor.azure.diagnostics import MalformedSettingError, read_categories, read_settings
from auditor.azure.errors import describe_error, retry_after, transient
from auditor.azure.inventory import (
    Found,
    Inventory,
    InventoryError,
    discover,
    read_registry,
    registry_from_id,
    visible_subscriptions,
)
from auditor.change_feed import ChangeLog
from auditor.changes import StoredState
from auditor.evidence.judgement import apply_evidence, remediation_pending
from auditor.evidence.model import LogEvidence
from auditor.evidence.routing import destinations
from auditor.facts import CategoryInfo, DiagnosticSetting, Registry, Status, Verdict
from auditor.judgement import judge
from auditor.logs_audit import EvidenceCollector, EvidenceResult, LogOptions
from auditor.pacing import SubscriptionQueue
from auditor.policy import ACR_LOG_CATEGORIES, Policy, unknown_categories
from auditor.ports import RunStore, VerdictWriter
from auditor.run_record import AuditRun, RunMode, RunStatus, Sweeps
from auditor.settings import MAX_CONCURRENCY, PolicySettings
from auditor.storage.entities import parse_settings
from auditor.storage.errors import StorageError
from auditor.storage.keys import registry_key

if TYPE_CHECKING:
    from auditor.azure.logs import LogsReader

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# Called with registries stored during the run (their final verdicts and log evidence), e.g.
# to alert on them before the run ends: (run id, verdicts, evidence by registry key).
Judged = Callable[[str, Sequence[Verdict], Mapping[str, LogEvidence]], None]

# How often judged registries are handed to the store while the settings are still read:
# often enough that little is left for the end of the run. A store still writing the last
# batch is not handed another: the registries gather into a bigger one instead of queuing
# (each batch's rows and alerts wait in memory until written).
WRITE_EVERY_SECONDS = 1.0
# Registries settled at once after the last read (see `_Settling.drain`).
TAIL_SLICE = 500
# Registries a change-driven run judges from the store at once (see `_Audit._plan_reads`).
PLAN_SLICE = 1_000
# While the inventory is still listed, how often the run looks whether it is complete (the
# log evidence collector starts then).
LISTING_POLL_SECONDS = 0.1


@dataclass
class AuditStats:
    registries: int = 0
    settings_reads: int = 0
    read_failures: int = 0
    categories_reads: int = 0
    inventory: Inventory = field(default_factory=Inventory)


def new_run_id(started_at: datetime) -> str:
    # Sortable by time, unique across overlapping runs.
    return started_at.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def reads_progress(done: int, total: int, elapsed: float) -> str:
    """`settings: 1,234/10,000 registries read, about 2 min left` (the estimate once the pace
    is known: the reads so far at the same rate)."""
    text = f"settings: {done:,}/{total:,} registries read"
    if done == 0 or done >= total or elapsed < 5.0:
        return text
    left = round(elapsed / done * (total - done))
    minutes, seconds = divmod(left, 60)
    estimate = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    return f"{text}, about {estimate} left"


def _category_problem(policy: Policy, categories: Sequence[CategoryInfo]) -> str | None:
    """Why the policy's required categories cannot be judged, if they cannot: a name the
    registry resource type does not have (per the categories API, else the documented ones)."""
    logs = [c.name for c in categories if c.category_type.casefold() == "logs"]
    source = "the categories API" if logs else "the documented categories"
    names = logs or list(ACR_LOG_CATEGORIES)
    unknown = unknown_categories(policy, names)
    if not unknown:
        return None
    setting = PolicySettings.variable("required_categories")
    return (
        f"configuration error: {setting} names {', '.join(repr(n) for n in unknown)}, which "
        f"container registries do not have; valid log categories ({source}): {', '.join(names)}"
    )


def recent_remediations(store: RunStore, since: datetime) -> tuple[frozenset[str], str | None]:
    """The registries the auditor remediated since `since` (`RunStore.recent_remediations`),
    or none and why: actions that cannot be read never fail a run, whose registries are then
    judged as any other (compliant rather than `pending`)."""
    try:
        return store.recent_remediations(since), None
    except Exception as exc:  # the run's verdicts matter more than its `pending` ones
        if not isinstance(exc, (StorageError, AzureError)):
            log.exception("reading the recent remediations failed")
        detail = str(exc) if isinstance(exc, StorageError) else describe_error(exc)
        return frozenset(), (
            f"remediation actions unreadable: {detail}; registries remediated lately are "
            "shown compliant, not pending"
        )


_RETRY_BACKOFF_SECONDS = 0.5  # doubling per attempt, as the SDK's own policy here
_MAX_RETRY_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class _RetryIn:
    seconds: float


def _read_once(
    clients: ArmClients,
    registry: Registry,
    categories: Sequence[CategoryInfo],
    policy: Policy,
    *,
    last: bool,
    attempt: int = 0,
) -> Verdict | _RetryIn:
    """One attempt at a registry's settings: its verdict, or, for a failure worth another
    try that is not the `last`, when to try again. The SDK does not retry this read itself,
    so a registry that keeps failing waits in the queue, not in a reader."""
    try:
        settings = read_settings(clients, registry.id, retry_total=0)
    except MalformedSettingError as exc:
        return judge(registry, None, categories, policy, read_error=str(exc))
    except AzureError as exc:
        wait = None if last else _retry_wait(exc, attempt)
        if wait is not None:
            return _RetryIn(wait)
        return judge(registry, None, categories, policy, read_error=describe_error(exc))
    except Exception as exc:  # one registry's surprise must not sink the run
        log.exception("unexpected error reading settings of %s", registry.id)
        return judge(registry, None, categories, policy, read_error=describe_error(exc))
    return judge(registry, settings, categories, policy)


def _retry_wait(exc: AzureError, attempt: int) -> float | None:
    """Seconds before the next try of a read that failed with `exc`; None if it cannot help."""
    if not transient(exc):
        return None
    asked = retry_after(exc)
    backoff = _RETRY_BACKOFF_SECONDS * 2**attempt
    return min(asked if asked is not None else backoff, _MAX_RETRY_WAIT_SECONDS)


def _judge_one(
    clients: ArmClients, registry: Registry, categories: Sequence[CategoryInfo], policy: Policy
) -> Verdict:
    """A registry judged on its own (nothing else to read meanwhile): its retries wait here."""
    attempt = 0
    while True:
        last = attempt >= clients.retries
        read = _read_once(clients, registry, categories, policy, attempt=attempt, last=last)
        if isinstance(read, Verdict):
            return read
        time.sleep(read.seconds)
        attempt += 1


def run_audit(
    clients: ArmClients,
    policy: Policy,
    *,
    subscriptions: Sequence[str] = (),
    store: RunStore | None = None,
    max_concurrency: int = MAX_CONCURRENCY,
    trigger: str = "cli",
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    stats: AuditStats | None = None,
    logs_reader: LogsReader | None = None,
    log_options: LogOptions | None = None,
    on_judged: Judged | None = None,
    mode: RunMode = RunMode.FULL,
    overlap: timedelta = timedelta(minutes=30),
) -> AuditRun:
    """`mode` CHANGES: only the registries the activity log says changed since the last
    finished run (less `overlap`) are read; the rest are judged from their stored settings
    (`change_run`). Without a store, or with nothing stored, every registry is read.

    `logs_reader` given: the logs are checked too (do events arrive?), which can make a
    registry `logs_silent` (noncompliant), `pending`, or unknown when its workspace fails;
    with a store, the registries it remediated within the pending window (one read of the
    actions table) are `pending` until their events arrive.

    Storage that fails never costs the run its verdicts: the run finishes, the returned record
    names the failure (`AuditRun.storage_error`), and the next run stores what this one could
    not. A run that dies for any other reason is recorded as failed before the error goes on.
    """
    started = clock()
    run_id = new_run_id(started)
    options = log_options or LogOptions()
    storage = _Storage(store, run_id)
    # Only a log check can tell a remediated registry's events have not arrived yet.
    since = started - options.pending_window if logs_reader is not None else None
    ahead = _AskAhead(policy) if logs_reader is not None and mode is RunMode.CHANGES else None
    storage.start(
        started,
        trigger,
        remediated_since=since,
        full_sweep=mode is RunMode.FULL,
        on_page=ahead.page if ahead is not None else None,
    )
    audit = _Audit(
        clients=clients,
        policy=policy,
        subscriptions=tuple(subscriptions),
        max_concurrency=max_concurrency,
        trigger=trigger,
        progress=progress,
        clock=clock,
        stats=stats if stats is not None else AuditStats(),
        logs_reader=logs_reader,
        options=options,
        on_judged=on_judged,
        storage=storage,
        run_id=run_id,
        started=started,
        mode=mode,
        overlap=overlap,
        ahead=ahead,
    )
    try:
        return audit.run()
    except BaseException as exc:
        storage.mark_failed(started, trigger, clock(), exc)
        raise


class _AskAhead:
    """A change-driven run's log queries asked before its registries are known: the
    workspaces the stored settings send logs to, named as the store's pages arrive (on its
    thread) and handed to the collector made for them (`EvidenceCollector.prefetch`), so the
    queries overlap the rest of the read instead of following it. The run adopts that
    collector once its inventory is complete (`_Audit._collector`)."""

    def __init__(self, policy: Policy) -> None:
        self._accepts = policy.accepts_workspace if policy.accepted_workspaces else None
        self._lock = threading.Lock()
        self._collector: EvidenceCollector | None = None
        self._named: set[str] = set()
        self._waiting: list[str] = []  # named before the collector was attached
        # A page that could not be handed over: the collector may hold part of its queries.
        self.failed = False

    def page(self, states: Sequence[StoredState]) -> None:
        """Never raises: it runs inside the store's read, which must not fail for it (the
        run then asks its queries as any run does, once its registries are routed)."""
        with self._lock:
            if self.failed:
                return
            try:
                # Each registry's text is its own (a setting's id names its registry).
                settings = [s for state in states for s in parse_settings(state.settings) or ()]
                found = destinations(settings, accepts_workspace=self._accepts)
                self._waiting += sorted(found - self._named)
                self._named |= found
            except Exception:  # noqa: BLE001 - logged by _fail: the read must not fail for it
                self._fail()
                return
            self._hand_over()

    def attach(self, collector: EvidenceCollector) -> None:
        """Never raises, as `page`."""
        with self._lock:
            self._collector = collector
            self._hand_over()

    def _hand_over(self) -> None:
        if self.failed or self._collector is None or not self._waiting:
            return
        try:
            self._collector.prefetch(self._waiting)
        except Exception:  # noqa: BLE001 - logged by _fail: the read must not fail for it
            self._fail()
        self._waiting = []

    def _fail(self) -> None:
        self.failed = True
        log.warning("logs: the stored settings' workspaces were not asked ahead", exc_info=True)


class _Storage:
    """The run's side of the store. The first failure is kept and nothing more is written:
    the verdicts stay in memory for the caller, and the next run compares with what is
    stored and writes what this one could not."""

    def __init__(self, store: RunStore | None, run_id: str) -> None:
        self._store = store
        self._run_id = run_id
        self.error: str | None = None
        self.writer: VerdictWriter | None = None
        self._opener = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-open")
        self._opening: Future[None] | None = None
        self._known: list[Registry] | None = None
        # Registries the auditor remediated within the pending window, and why they are not
        # known when the actions could not be read (the run goes on without them).
        self.remediated: frozenset[str] = frozenset()
        self.remediated_error: str | None = None

    @property
    def usable(self) -> bool:
        return self._store is not None and self.error is None

    def _failed(self, exc: BaseException) -> None:
        if self.error is None:
            detail = str(exc) if isinstance(exc, StorageError) else describe_error(exc)
            self.error = f"{detail}; this run's results were not stored (the next run stores them)"
            log.error("run %s: %s", self._run_id, self.error)

    def start(
        self,
        started: datetime,
        trigger: str,
        *,
        remediated_since: datetime | None = None,
        full_sweep: bool = False,
        on_page: Callable[[Sequence[StoredState]], None] | None = None,
    ) -> None:
        """Records the run and opens its writer (one read of the stored registries, each
        page given to `on_page` as it arrives), then, with `remediated_since`, reads the
        registries remediated since, on the storage's own thread, so it overlaps the
        inventory instead of preceding it. A `full_sweep` judges nothing from the store:
        the writer lets the stored settings go as soon as it opens."""
        if self._store is not None:
            self._opening = self._opener.submit(
                self._open, self._store, started, trigger, remediated_since, full_sweep, on_page
            )

    def _open(
        self,
        store: RunStore,
        started: datetime,
        trigger: str,
        remediated_since: datetime | None,
        full_sweep: bool,
        on_page: Callable[[Sequence[StoredState]], None] | None,
    ) -> None:
        try:
            store.start_run(self._run_id, started, trigger)
            self.writer = store.run_writer(self._run_id, on_page=on_page)
        except (StorageError, AzureError) as exc:
            self._failed(exc)
            return
        if full_sweep:
            self.writer.judged_from_store(())
        if remediated_since is not None:
            self.remediated, self.remediated_error = recent_remediations(store, remediated_since)

    def opened(self) -> None:
        """Waits until the run is recorded and its writer open (or failed)."""
        if self._opening is not None:
            self._opening.result()

    def known_registries(self, subscriptions: Sequence[str]) -> list[Registry]:
        """Registries stored as present, of `subscriptions` (all when empty): what the
        inventory should find. From the writer's read of the stored state."""
        self.opened()
        if self.writer is None:
            return []
        if self._known is None:
            self._known = self.writer.known_registries()  # before any write changes it
        in_scope = {s.lower() for s in subscriptions}
        return [r for r in self._known if not in_scope or r.subscription_id in in_scope]

    def has_state(self) -> bool:
        """The store answered and its registries were read: a change-driven run can compare."""
        self.opened()
        return self.writer is not None and self.usable

    def stored_settings(self, registry: Registry) -> tuple[DiagnosticSetting, ...] | None:
        """The settings the last run read for `registry`; None when none are usable."""
        if self.writer is None:
            return None
        return self.writer.stored_settings(registry_key(registry.name))

    def last_run(self, subscriptions: Collection[str]) -> Sweeps:
        """When each of `subscriptions` was last listed by a finished run: a change-driven run
        reads its activity log from there (less the overlap). Empty when unreadable."""
        if self._store is None or not self.usable:
            return Sweeps()
        try:
            return self._store.last_sweeps(subscriptions)
        except (StorageError, AzureError) as exc:
            log.warning("run %s: last runs unreadable: %s", self._run_id, describe_error(exc))
            return Sweeps()

    def has_facts(self, registry: Registry) -> bool:
        """The registry's stored row holds all its facts (see `VerdictWriter.stored_facts`)."""
        return self.writer is not None and self.writer.stored_facts(registry_key(registry.name))

    def judged_from_store(self, verdicts: Sequence[Verdict]) -> None:
        if self.writer is not None:
            self.writer.judged_from_store({registry_key(v.registry.name) for v in verdicts})

    @property
    def busy(self) -> bool:
        """Still opening (registries read while Resource Graph answers can be judged before
        the store is open), or still writing the last batch."""
        if self._opening is not None and not self._opening.done():
            return True
        return self.writer is not None and self.writer.busy

    def wait_idle(self) -> None:
        self.opened()
        if self.writer is not None:
            self.writer.wait_idle()

    def write(
        self, verdicts: Sequence[Verdict], evidence: Mapping[str, LogEvidence], at: datetime
    ) -> None:
        self.opened()
        if self.writer is not None and self.usable:
            self.writer.write(verdicts, evidence, observed_at=at)

    def finish(self, run: AuditRun) -> AuditRun:
        """The run as stored (removed registries added), or as judged with the failure."""
        self.opened()
        try:
            if self.writer is not None and self.usable:
                return self.writer.finish(run)
            if self._store is not None and self.usable:
                return self._store.finish_run(run)
        except (StorageError, AzureError) as exc:
            self._failed(exc)
        if self.error is None:
            return run
        return replace(run, errors=(*run.errors, self.error), storage_error=self.error)

    def close(self) -> None:
        self._opener.shutdown(wait=True)
        if self.writer is not None:
            self.writer.close()

    def mark_failed(
        self, started: datetime, trigger: str, finished: datetime, exc: BaseException
    ) -> None:
        """Best effort: the run row says failed instead of running forever."""
        try:
            self.opened()  # after the run row's "running", never before it
        except Exception:  # reported with the run's own error
            log.debug("run %s: opening the store failed", self._run_id, exc_info=True)
        if self._store is None or not self.usable:
            return
        why = f"the run died: {describe_error(exc)}"
        failed = AuditRun(self._run_id, started, finished, RunStatus.FAILED, (), errors=(why,))
        try:
            self._store.finish_run(replace(failed, trigger=trigger), update_summary=False)
        except Exception:  # the original error matters more; this one is only logged
            log.exception("run %s could not be recorded as failed", self._run_id)


@dataclass
class _Audit:
    """One full run's stages, in order: inventory, categories, paced settings reads and their
    judgement, log evidence per workspace, registries settled and handed to the store and the
    alerts as they go, then the run record."""

    clients: ArmClients
    policy: Policy
    subscriptions: tuple[str, ...]
    max_concurrency: int
    trigger: str
    progress: Progress | None
    clock: Callable[[], datetime]
    stats: AuditStats
    logs_reader: LogsReader | None
    options: LogOptions
    on_judged: Judged | None
    storage: _Storage
    run_id: str
    started: datetime
    mode: RunMode = RunMode.FULL
    overlap: timedelta = timedelta(minutes=30)
    ahead: _AskAhead | None = None
    errors: list[str] = field(default_factory=list)
    changes: change_run.ChangePlan = field(default_factory=change_run.ChangePlan)
    # A change-driven run from the store: when it planned, each subscription's watermark, and
    # the activity logs read.
    _now: datetime | None = None
    _watermarks: dict[str, datetime | None] = field(default_factory=dict)
    _logs: dict[str, ChangeLog] = field(default_factory=dict)
    # The collector of `ahead`, until the run adopts it or lets it go (`_collector`).
    _early: EvidenceCollector | None = None

    def run(self) -> AuditRun:
        try:
            return self._stages()
        finally:
            self.storage.close()  # after the store's thread: nothing more is asked ahead
            if self._early is not None:
                self._early.close()

    def _stages(self) -> AuditRun:
        fleet = _Fleet.listing(self) if self.mode is RunMode.FULL else self._changed_fleet()
        try:
            return self._judge(fleet)
        except _InventoryFailed as failed:
            return self._inventory_failed(self._known(), failed.error)
        finally:
            fleet.reads.close()  # readers stop after their current registry

    def _changed_fleet(self) -> _Fleet:
        try:
            return _Fleet.listed(self._inventory(), self.clients.pacer.due_in)
        except (AzureError, InventoryError) as exc:
            return _Fleet.failed(exc, self.clients.pacer.due_in)

    def _judge(self, fleet: _Fleet) -> AuditRun:
        # Built while Resource Graph answers: the categories read, then every settings read,
        # come right after its first page.
        self.clients.monitor()
        first = fleet.first()
        categories = self._categories(first)
        misconfigured = _category_problem(self.policy, categories)
        if misconfigured is not None:
            inventory = self._listed(fleet.result())
            return self._not_judged(
                [*self._known(), *inventory.registries], inventory, misconfigured
            )
        settling = _Settling(self, logs=self.logs_reader is not None)
        try:
            listed = _Listed(self, fleet, categories, settling)
            read = self._read_settings(fleet.reads, categories, settling, listed.poll)
            inventory = listed.inventory  # complete: the collector has every registry
            settling.drain()
            verdicts = [*self.changes.kept, *read, *listed.unreadable]
            return self._finish(inventory, verdicts, listed.collector, settling)
        finally:
            if settling.collector is not None:
                settling.collector.close()

    def _listed(self, inventory: Inventory) -> Inventory:
        """The inventory once complete: its figures and errors go on the run."""
        self.stats.inventory = inventory
        self.stats.registries = len(inventory.registries)
        self.errors.extend(inventory.errors)
        self.errors.extend(
            f"subscription {s}: {why}" for s, why in sorted(inventory.failed.items())
        )
        if self.storage.remediated_error is not None:
            self.errors.append(self.storage.remediated_error)
        return inventory

    def _known(self) -> list[Registry]:
        return self.storage.known_registries(self.subscriptions)

    def _inventory(self) -> Inventory:
        """A full sweep lists the fleet; a change-driven run with a store takes it from there
        and the activity log (`change_run.inventory`), listing only what they cannot tell."""
        if self.mode is RunMode.FULL or not self.storage.usable:
            return self._listing(list(self.subscriptions))
        # The subscriptions and their activity logs are read while the store's thread reads
        # the stored registries.
        now = self.clock()
        found = Inventory()
        subscriptions = visible_subscriptions(self.clients, self.subscriptions, found)
        # Asked ahead, registry queries select every visible subscription, in one chunk.
        if (
            self.ahead is not None
            and self.logs_reader is not None
            and len(subscriptions) <= self.options.chunk_size
        ):
            self._early = self._new_collector(subscriptions, None, ())
            self.ahead.attach(self._early)
        covered = self.storage.last_run(subscriptions).covered
        watermarks = {s: covered.get(s) for s in subscriptions}
        logs = change_run.read_logs(self.clients, watermarks, now, self.overlap)
        if not self.storage.has_state():
            return self._listing(list(self.subscriptions))
        self._now, self._watermarks, self._logs = now, watermarks, logs
        listed = change_run.inventory(
            self.clients,
            subscriptions,
            stored=self._known(),
            facts=self.storage.has_facts,
            logs=self._logs,
            listing=self._listing,
        )
        listed.failed.update(found.failed)
        listed.errors[:0] = found.errors
        if self.progress:
            self.progress(
                f"inventory: {len(listed.registries)} registries in {len(listed.complete)}"
                " subscriptions, from the store and the activity log"
            )
        return listed

    def _listing(self, subscriptions: list[str], found: Found | None = None) -> Inventory:
        return discover(
            self.clients,
            subscriptions,
            # Read by the store's thread while Resource Graph answers.
            expected=lambda: {r.subscription_id for r in self._known()},
            progress=self.progress,
            found=found,
        )

    def _plan_reads(
        self,
        registries: Sequence[Registry],
        categories: Sequence[CategoryInfo],
        kept: Callable[[Sequence[Verdict]], None],
    ) -> Sequence[Registry]:
        """In a change-driven run, the registries the activity log says changed and those
        with nothing usable stored (`change_run`). The rest are judged from their stored
        settings, `PLAN_SLICE` at a time, each slice handed to `kept` at once: the log
        queries of the workspaces it routes to go out while the next is judged."""
        if self._now is None:  # no store to compare with: the inventory was listed
            self.changes.full = {
                s: "nothing stored to compare with" for s in {r.subscription_id for r in registries}
            }
            self.storage.judged_from_store(())
            return registries
        known = {r.key for r in self._known()}
        watermarks = {s: at for s, at in self._watermarks.items() if at is not None}
        self.changes = change_run.ChangePlan()
        for start in range(0, max(len(registries), 1), PLAN_SLICE):
            part = change_run.plan(
                registries[start : start + PLAN_SLICE],
                stored=self.storage.stored_settings,
                known=known,
                logs=self._logs,
                watermarks=watermarks,
                now=self._now,
                overlap=self.overlap,
                categories=categories,
                policy=self.policy,
            )
            kept(part.kept)
            self.changes.extend(part)
        self.storage.judged_from_store(self.changes.kept)
        if self.progress:
            self.progress(
                f"changes: {len(self.changes.read)} registries to read,"
                f" {len(self.changes.kept)} judged from their stored settings"
            )
        return self.changes.read

    def _inventory_failed(self, known: Sequence[Registry], exc: Exception) -> AuditRun:
        # Without an inventory nothing can be judged; the run is recorded as failed.
        message = f"inventory failed: {describe_error(exc)}"
        failed = AuditRun(
            run_id=self.run_id,
            started_at=self.started,
            finished_at=self.clock(),
            status=RunStatus.FAILED,
            verdicts=tuple(judge(r, None, (), self.policy, read_error=message) for r in known),
            errors=(message,),
            trigger=self.trigger,
            policy=self.policy,
        )
        return self.storage.finish(failed)

    def _not_judged(
        self, registries: Sequence[Registry], inventory: Inventory, message: str
    ) -> AuditRun:
        """A configuration the registries cannot be judged under: each is unknown with the
        reason, and the run failed, rather than a fleet of false findings and alerts."""
        unique = {r.key: r for r in registries}
        failed = AuditRun(
            run_id=self.run_id,
            started_at=self.started,
            finished_at=self.clock(),
            status=RunStatus.FAILED,
            verdicts=tuple(
                judge(r, None, (), self.policy, read_error=message) for r in unique.values()
            ),
            inventoried_subscriptions=frozenset(inventory.complete),
            errors=(*self.errors, message),
            trigger=self.trigger,
            policy=self.policy,
        )
        return self.storage.finish(failed)

    def _categories(self, registry: Registry | None) -> list[CategoryInfo]:
        if registry is None:
            return []
        try:
            categories = read_categories(self.clients, registry.id)
        except (AzureError, MalformedSettingError) as exc:
            # The judgement falls back to the documented groups; note it on the run.
            self.errors.append(f"category metadata unavailable: {describe_error(exc)}")
            return []
        self.stats.categories_reads += 1
        return categories

    def _collector(
        self,
        registries: Sequence[Registry],
        unreadable: Sequence[Verdict],
        categories: Sequence[CategoryInfo],
    ) -> EvidenceCollector | None:
        if self.logs_reader is None:
            return None
        subscriptions = {r.subscription_id for r in registries}
        subscriptions |= {v.registry.subscription_id for v in unreadable}
        keys = [r.key for r in registries] + [v.registry.key for v in unreadable]
        early, self._early = self._early, None
        if early is not None:
            # The store's read is over (the inventory waited for it): nothing more is asked.
            whole = self.ahead is not None and not self.ahead.failed
            if whole and early.prefetched and early.restrict(keys, subscriptions, categories):
                return early
            early.close()
        return self._new_collector(subscriptions, keys, categories)

    def _new_collector(
        self,
        subscriptions: Collection[str],
        registries: Sequence[str] | None,
        categories: Sequence[CategoryInfo],
    ) -> EvidenceCollector:
        assert self.logs_reader is not None
        return EvidenceCollector(
            self.clients,
            self.logs_reader,
            now=self.clock(),
            subscriptions=subscriptions,
            registries=registries,
            options=self.options,
            categories=categories,
            policy=self.policy,
            progress=self.progress,
        )

    def _read_settings(
        self,
        reads: SubscriptionQueue[tuple[Registry, int]],
        categories: Sequence[CategoryInfo],
        settling: _Settling,
        poll: Callable[[], None],
    ) -> list[Verdict]:
        """Every registry's settings, read by `max_concurrency` readers paced per subscription,
        judged as they arrive; settled registries go to the store on the way. Registries may
        still be added to `reads` meanwhile (`poll` is called on every turn)."""
        # Which registry to read next is decided as the run goes (whose ARM budget has a token
        # now), so readers take them from a shared queue rather than in a fixed order.
        judged: queue.SimpleQueue[Verdict | BaseException] = queue.SimpleQueue()
        retries = self.clients.retries

        def reader() -> None:
            while (item := reads.next()) is not None:
                registry, attempt = item
                try:
                    read = _read_once(
                        self.clients,
                        registry,
                        categories,
                        self.policy,
                        attempt=attempt,
                        last=attempt >= retries,
                    )
                except BaseException as exc:  # noqa: BLE001 - handed to the run, which re-raises
                    judged.put(exc)
                    return
                if isinstance(read, Verdict):
                    judged.put(read)
                else:  # tried again later: the other reads go on meanwhile
                    reads.later(registry.subscription_id, (registry, attempt + 1), read.seconds)

        verdicts: list[Verdict] = []
        started = time.monotonic()
        workers = (
            self.max_concurrency if not reads.complete else min(self.max_concurrency, len(reads))
        )
        with ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix="audit"
        ) as pool:
            try:
                for _ in range(workers):
                    pool.submit(reader)
                while not (reads.complete and len(verdicts) >= reads.added):
                    poll()
                    # Wake up without a new verdict too: a read that hangs must not hold back
                    # registries already settled from the store and the alerts, nor the end
                    # of the inventory its registries wait for.
                    wake = WRITE_EVERY_SECONDS if reads.complete else LISTING_POLL_SECONDS
                    try:
                        item = judged.get(timeout=max(min(wake, WRITE_EVERY_SECONDS), 0.05))
                    except queue.Empty:
                        item = None
                    if isinstance(item, BaseException):
                        raise item
                    if item is not None:
                        verdicts.append(item)
                        settling.add(item)
                    settling.tick(
                        lambda: reads_progress(
                            len(verdicts), reads.added, time.monotonic() - started
                        )
                    )
            finally:
                reads.close()  # readers stop after their current registry
        return verdicts

    def _finish(
        self,
        inventory: Inventory,
        verdicts: list[Verdict],
        collector: EvidenceCollector | None,
        settling: _Settling,
    ) -> AuditRun:
        verdicts.sort(key=lambda v: v.registry.key)
        result = collector.finish(verdicts) if collector is not None else None
        if result is not None:
            self.errors.extend(result.errors)
            verdicts = settling.settle_rest(verdicts, result)
        any_unknown = any(v.status is Status.UNKNOWN for v in verdicts)
        run = AuditRun(
            run_id=self.run_id,
            started_at=self.started,
            finished_at=self.clock(),
            status=RunStatus.PARTIAL if (any_unknown or inventory.failed) else RunStatus.SUCCEEDED,
            verdicts=tuple(verdicts),
            inventoried_subscriptions=frozenset(inventory.complete),
            errors=tuple(self.errors),
            trigger=self.trigger,
            evidence=result.evidence if result else {},
            orphan_activity=tuple(result.orphan_activity) if result else (),
            log_queries=result.queries if result else 0,
            policy=self.policy,
            mode=self.mode,
            rereads=self.changes.rereads,
            full_reads=self.changes.full,
            settings_reads=self.stats.settings_reads,
        )
        if self.progress:
            self.progress(f"audit: {len(verdicts)} registries judged")
        return self.storage.finish(run)


class _InventoryFailed(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _Fleet:
    """The registries to read, as the queue the readers take them from. A full sweep lists
    them on a thread of its own and each page's registries are read while Resource Graph
    answers the next (`listing`); a change-driven run knows its inventory first (`listed`)."""

    def __init__(self, due_in: Callable[[str], float]) -> None:
        self.reads: SubscriptionQueue[tuple[Registry, int]] = SubscriptionQueue(
            (), due_in, more=True
        )
        self._first: Registry | None = None
        self._found = threading.Event()  # a registry was found, or the listing ended
        self._ended = threading.Event()
        self._inventory: Inventory | None = None
        self._error: BaseException | None = None

    @classmethod
    def listing(cls, audit: _Audit) -> _Fleet:
        fleet = cls(audit.clients.pacer.due_in)

        def run() -> None:
            try:
                fleet._inventory = audit._listing(list(audit.subscriptions), found=fleet.add)
            except BaseException as exc:  # noqa: BLE001 - raised on the run's thread by `result`
                fleet._error = exc
            finally:
                fleet._end()
                fleet.reads.no_more()

        # A daemon: a run that fails while Resource Graph still answers does not wait for it.
        threading.Thread(target=run, name="inventory", daemon=True).start()
        return fleet

    @classmethod
    def listed(cls, inventory: Inventory, due_in: Callable[[str], float]) -> _Fleet:
        """Known up front: what to read is added once planned (`_Listed`)."""
        fleet = cls(due_in)
        fleet._inventory = inventory
        fleet._first = inventory.registries[0] if inventory.registries else None
        fleet._end()
        return fleet

    @classmethod
    def failed(cls, error: Exception, due_in: Callable[[str], float]) -> _Fleet:
        fleet = cls(due_in)
        fleet._error = error
        fleet._end()
        return fleet

    def add(self, registries: Sequence[Registry]) -> None:
        """Registries to read (each read's first attempt)."""
        if self._first is None and registries:
            self._first = registries[0]
        self.reads.add((r.subscription_id, (r, 0)) for r in registries)
        self._found.set()

    def _end(self) -> None:
        self._ended.set()
        self._found.set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def first(self) -> Registry | None:
        """The first registry found, once there is one; None for a fleet without any."""
        self._found.wait()
        if self._first is None:
            self.result()  # a listing that failed before finding any raises here
        return self._first

    def result(self) -> Inventory:
        """The whole inventory, once listed; a listing that failed raises its error."""
        self._ended.wait()
        if isinstance(self._error, (AzureError, InventoryError)):
            raise _InventoryFailed(self._error)
        if self._error is not None:
            raise self._error
        assert self._inventory is not None
        return self._inventory


class _Listed:
    """What waits for the whole inventory: the run's figures and errors, the registries of
    subscriptions that could not be listed (the last known ones, unknown with the reason),
    the log evidence collector, and a change-driven run's plan of what to read."""

    def __init__(
        self,
        audit: _Audit,
        fleet: _Fleet,
        categories: Sequence[CategoryInfo],
        settling: _Settling,
    ) -> None:
        self._audit = audit
        self._fleet = fleet
        self._categories = categories
        self._settling = settling
        self._inventory: Inventory | None = None
        self.unreadable: list[Verdict] = []
        self.collector: EvidenceCollector | None = None
        self.poll()

    @property
    def inventory(self) -> Inventory:
        self.poll()
        self._fleet.result()  # waits, and raises a listing's failure
        assert self._inventory is not None
        return self._inventory

    def poll(self) -> None:
        if self._inventory is not None or not self._fleet.ended:
            return
        audit = self._audit
        inventory = self._inventory = audit._listed(self._fleet.result())
        listed = {r.key for r in inventory.registries}
        # Registries of subscriptions that could not be listed are not dropped: the last
        # known ones are reported unknown with the reason.
        self.unreadable = [
            judge(
                reg,
                None,
                self._categories,
                audit.policy,
                read_error=f"subscription unreadable: {why}",
            )
            for reg in audit._known()
            if (why := inventory.failed.get(reg.subscription_id)) is not None
            and reg.key not in listed
        ]
        self.collector = audit._collector(inventory.registries, self.unreadable, self._categories)
        self._settling.attach(self.collector)
        if audit.mode is RunMode.FULL:
            return  # its registries went to the readers as they were found
        to_read = audit._plan_reads(
            inventory.registries,
            self._categories,
            lambda kept: self._settling.add_all(kept, read=False),
        )
        self._fleet.add(to_read)
        self._fleet.reads.no_more()


class _Settling:
    """Judged registries waiting for their log evidence, and those settled: evidence applied
    and handed to the store and the alerts, at most every `WRITE_EVERY_SECONDS` and never
    while the store is still writing the last batch (the registries gather into a bigger one
    instead of queuing). With `logs`, registries wait until the evidence collector is
    `attach`ed (once the inventory is complete)."""

    def __init__(self, audit: _Audit, *, logs: bool) -> None:
        self._audit = audit
        self._logs = logs
        self.collector: EvidenceCollector | None = None
        self.final: dict[str, Verdict] = {}  # evidence applied, handed out, by registry key
        self._waiting: dict[str, Verdict] = {}
        self._last_write = self._last_report = time.monotonic()

    def attach(self, collector: EvidenceCollector | None) -> None:
        self.collector = collector
        if collector is not None:
            collector.add_all(list(self._waiting.values()))

    def add(self, verdict: Verdict, *, read: bool = True) -> None:
        """A judged registry; `read`: judged from settings read now, not stored ones."""
        self.add_all((verdict,), read=read)

    def add_all(self, verdicts: Sequence[Verdict], *, read: bool = True) -> None:
        self._waiting.update((v.registry.key, v) for v in verdicts)
        if self.collector is not None:
            self.collector.add_all(verdicts)
        if not read:
            return
        stats = self._audit.stats
        stats.settings_reads += len(verdicts)
        stats.read_failures += sum(v.status is Status.UNKNOWN for v in verdicts)

    def drain(self) -> None:
        """After the last read: registries settle as soon as their workspaces answer, not
        all at the end, so their evidence, rows and alerts overlap the queries still running.
        Nothing else waits on the main thread now, so they go without the hand-over's pause:
        a slice at a time, each slice's evidence built while the store writes the one before,
        rather than a whole workspace's before the first is written."""
        if self.collector is None:
            if not self._logs:  # nothing to wait for: the registries not handed over yet go now
                self._hand_over()
            return
        storage = self._audit.storage
        while True:
            answered = self.collector.wait(WRITE_EVERY_SECONDS)
            while storage.usable:
                ready, evidence = self.collector.settle(limit=TAIL_SLICE)
                if not ready:
                    break
                storage.wait_idle()
                self._write(ready, evidence)
            if answered:
                return
            self._report(lambda: "logs: waiting for the workspaces' queries")

    def tick(self, progress: Callable[[], str]) -> None:
        now = time.monotonic()
        if now - self._last_write > WRITE_EVERY_SECONDS and not self._audit.storage.busy:
            self._last_write = now
            self._hand_over()
        self._report(progress)

    def _report(self, progress: Callable[[], str]) -> None:
        now = time.monotonic()
        if self._audit.progress and now - self._last_report > 2.0:
            self._last_report = now
            self._audit.progress(progress())

    def _hand_over(self) -> None:
        if not self._audit.storage.usable:
            return  # registries stay waiting: the end of the run returns them all
        evidence: Mapping[str, LogEvidence] = {}
        if self.collector is not None:
            ready, evidence = self.collector.settle()
        elif self._logs:
            return  # no evidence yet: the collector comes with the whole inventory
        else:
            ready = list(self._waiting)
        self._write(ready, evidence)

    def _write(self, ready: Sequence[str], evidence: Mapping[str, LogEvidence]) -> None:
        """Registries settled (keys) and their evidence, to the store and the alerts."""
        settled = [self._waiting.pop(k) for k in ready if k in self._waiting]
        if not settled:
            return
        judged = self._apply(settled, evidence)
        audit = self._audit
        audit.storage.write(judged, evidence, audit.clock())
        if audit.on_judged is not None:
            audit.on_judged(audit.run_id, judged, evidence)

    def _apply(
        self, verdicts: Sequence[Verdict], evidence: Mapping[str, LogEvidence]
    ) -> tuple[Verdict, ...]:
        options = self._audit.options
        now = self._audit.clock()
        judged = apply_evidence(
            verdicts,
            evidence,
            now=now,
            silent_after=options.silent_after,
            pending_window=options.pending_window,
        )
        judged = remediation_pending(judged, self._audit.storage.remediated)
        judged = exemptions.apply(judged, self._audit.policy.exemptions, now=now)
        self.final.update((v.registry.key, v) for v in judged)
        return judged

    def settle_rest(self, verdicts: Sequence[Verdict], result: EvidenceResult) -> list[Verdict]:
        """Every registry's final verdict: those not handed out yet, and those whose evidence
        a late activity query changed, get their evidence now."""
        rest = [
            v
            for v in verdicts
            if v.registry.key not in self.final or v.registry.key in result.revised
        ]
        self._apply(rest, result.evidence)
        return [self.final[v.registry.key] for v in verdicts]


def audit_registry(
    clients: ArmClients,
    policy: Policy,
    registry_id: str,
    *,
    store: RunStore | None = None,
    trigger: str = "event",
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    remediated: bool = False,
    pending_window: timedelta | None = None,
) -> AuditRun:
    """Re-judge one registry at once (an Event Grid notice that its settings changed).

    Its row and history are stored; the fleet summary is left to the next full run, since one
    registry cannot say what the fleet looks like.

    Its settings alone are judged, not its logs: a compliant registry the auditor remediated
    is `pending`, its events taken as not arrived yet, when `remediated` (a remediation has
    just written its setting) or, with `pending_window` and a store, when a remediation
    applied within the window is stored. The next full run checks its logs.
    """
    started = clock()
    run_id = new_run_id(started)
    if store is not None:
        store.start_run(run_id, started, trigger)
    errors: list[str] = []
    try:
        registry = read_registry(clients, registry_id)
    except (AzureError, InventoryError) as exc:
        registry = registry_from_id(registry_id)
        errors.append(f"registry {registry_id}: {describe_error(exc)}")
        verdict = judge(registry, None, (), policy, read_error=describe_error(exc))
    else:
        categories: list[CategoryInfo] = []
        try:
            categories = read_categories(clients, registry.id)
        except (AzureError, MalformedSettingError) as exc:
            errors.append(f"category metadata unavailable: {describe_error(exc)}")
        misconfigured = _category_problem(policy, categories)
        if misconfigured is not None:
            errors.append(misconfigured)
            verdict = judge(registry, None, (), policy, read_error=misconfigured)
        else:
            judged = _judge_one(clients, registry, categories, policy)
            if judged.status is Status.COMPLIANT:
                keys = _remediated(registry, store, remediated, pending_window, started, errors)
                [judged] = remediation_pending([judged], keys, logs_checked=False)
            [verdict] = exemptions.apply([judged], policy.exemptions, now=clock())
    status = RunStatus.PARTIAL if verdict.status is Status.UNKNOWN else RunStatus.SUCCEEDED
    run = AuditRun(
        run_id=run_id,
        started_at=started,
        finished_at=clock(),
        status=RunStatus.FAILED if any(e.startswith("configuration") for e in errors) else status,
        verdicts=(verdict,),
        errors=tuple(errors),
        trigger=trigger,
        policy=policy,
    )
    return store.finish_run(run, update_summary=False) if store is not None else run


def _remediated(
    registry: Registry,
    store: RunStore | None,
    remediated: bool,
    window: timedelta | None,
    now: datetime,
    errors: list[str],
) -> Collection[str]:
    """`audit_registry`'s registries remediated lately: this one when it just was, else those
    the store holds actions of within `window`."""
    if remediated:
        return {registry.key}
    if store is None or window is None:
        return ()
    keys, problem = recent_remediations(store, now - window)
    if problem is not None:
        errors.append(problem)
    return keys
