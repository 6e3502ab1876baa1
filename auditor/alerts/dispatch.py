"""Sending planned alerts: claim, write ahead to the outbox, deliver to every sink, record.

For each alert of a plan: claim it by storing its new state with the ETag read at the start
(a concurrent run that planned the same alert loses the write and sends nothing), add a
history row, put one outbox row per sink, then deliver. Each sink works through its alerts in
its own thread, in plan order, so a slow or failing sink holds up nobody else. A delivered
alert's outbox row is deleted; a failed one stays with the (redacted) error and a retry time,
and `flush_outbox` sends it on a later run.

Storage round trips dominated a first run that opens thousands of alerts, so every step works
on up to 100 alerts at a time in entity-group transactions: claims, history rows and outbox
rows before any alert is handed to a sink, then the outbox deletions or failure records and
the history outcomes after delivery (every 100 alerts or `SETTLE_EVERY`, whichever comes first).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError

from auditor.alerts.budget import BUDGET_SPENT, SinkBudget
from auditor.alerts.model import Alert
from auditor.alerts.outbox import Outbox, OutboxEntry
from auditor.alerts.payload import from_document, to_document
from auditor.alerts.sinks.base import DeliveryError, Sink
from auditor.alerts.state import AlertStateStore
from auditor.alerts.tables import MAX_OPERATIONS
from auditor.alerts.transitions import AlertPlan, StateChange

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=5)  # far longer than a sink's retries take
DEFAULT_MAX_AGE = timedelta(days=7)  # then an undeliverable alert is given up, loudly
_FIRST_RETRY = timedelta(minutes=5)
_MAX_RETRY = timedelta(hours=1)
_CLAIM_WORKERS = 8
# How long a sink's finished rows may wait to be settled together. A run that dies meanwhile
# leaves them leased, and a later run sends them again (consumers deduplicate on the id).
SETTLE_EVERY = 2.0  # seconds


class DispatchWorkers:
    """The threads that claim alerts and deliver them, owned by whoever sends for a run (the
    alert service) and shut down with it, instead of pools made per call."""

    def __init__(self, sinks: int) -> None:
        self.claims = ThreadPoolExecutor(
            max_workers=_CLAIM_WORKERS, thread_name_prefix="alert-claim"
        )
        # One per sink: a slow sink holds up nobody else.
        self.sinks = ThreadPoolExecutor(max_workers=max(1, sinks), thread_name_prefix="alert-sink")

    def close(self) -> None:
        self.claims.shutdown(wait=True, cancel_futures=True)
        self.sinks.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _workers(given: DispatchWorkers | None, sinks: int) -> Iterator[DispatchWorkers]:
    """`given`, or workers for this one call."""
    if given is not None:
        yield given
        return
    own = DispatchWorkers(sinks)
    try:
        yield own
    finally:
        own.close()


@dataclass(frozen=True)
class Delivery:
    alert_id: str
    sink: str
    outcome: str  # "delivered", "queued" (failed, kept for retry), "lost", "abandoned"
    error: str = ""


@dataclass
class DeliveryReport:
    claimed: list[str] = field(default_factory=list)  # alert ids this run owns
    claimed_elsewhere: list[str] = field(default_factory=list)  # a concurrent run sends them
    states_written: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # alerting itself failed (storage down)

    @property
    def failures(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.outcome != "delivered"]

    @property
    def delivered(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.outcome == "delivered"]

    def problems(self) -> list[str]:
        """What went wrong, as lines for the run's errors."""
        return list(self.errors) + [
            f"alert {d.alert_id} to {d.sink}: {d.outcome}" + (f" ({d.error})" if d.error else "")
            for d in self.failures
        ]

    def merge(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            claimed=self.claimed + other.claimed,
            claimed_elsewhere=self.claimed_elsewhere + other.claimed_elsewhere,
            states_written=self.states_written + other.states_written,
            deliveries=self.deliveries + other.deliveries,
            errors=self.errors + other.errors,
        )


def retry_delay(attempts: int) -> timedelta:
    """5, 10, 20, 40 minutes, then hourly: a sink that is down is not hammered every run."""
    delay: timedelta = _FIRST_RETRY * (2 ** max(attempts - 1, 0))
    return min(delay, _MAX_RETRY)


@dataclass(frozen=True)
class _Job:
    alert: Alert
    entry: OutboxEntry | None  # None when the outbox could not be written: send anyway
    history_key: str


def send_alerts(
    plan: AlertPlan,
    sinks: Sequence[Sink],
    state_store: AlertStateStore,
    outbox: Outbox,
    *,
    now: datetime,
    lease: timedelta = DEFAULT_LEASE,
    budget: SinkBudget | None = None,
    workers: DispatchWorkers | None = None,
) -> DeliveryReport:
    """Store the plan's states and deliver the alerts this run wins; see the module doc."""
    report = DeliveryReport()
    quiet = [c for c in plan.changes if c.alert is None]
    report.states_written = state_store.store(quiet)
    names = [sink.name for sink in sinks]

    def prepare(changes: Sequence[StateChange]) -> list[list[_Job] | None]:
        """Claim a batch of alerts and write their history and outbox rows; None for each
        alert another run won."""
        claimed = state_store.claim_many(changes)
        won: list[Alert] = []
        for change, state in zip(changes, claimed, strict=True):
            if state is not None:
                assert change.alert is not None
                won.append(change.alert)
        if not won:
            return [None] * len(changes)
        history_keys = state_store.append_histories(won, names)
        rows = list(zip([to_document(alert) for alert in won], history_keys, strict=True))
        entries = [outbox.put_many(name, rows, now=now, lease=lease) for name in names]
        jobs = iter(
            [_Job(alert, sink_entries[i], history_keys[i]) for sink_entries in entries]
            for i, alert in enumerate(won)
        )
        return [next(jobs) if state is not None else None for state in claimed]

    noisy = [c for c in plan.changes if c.alert is not None]
    batches = [noisy[i : i + MAX_OPERATIONS] for i in range(0, len(noisy), MAX_OPERATIONS)]
    # Batches overlap their round trips; within one, the outbox rows exist before any alert
    # is handed to a sink, which happens only once every batch is prepared.
    with _workers(workers, len(sinks)) as pools:
        prepared = [jobs for batch in pools.claims.map(prepare, batches) for jobs in batch]
        jobs: dict[str, list[_Job]] = {name: [] for name in names}
        for change, sink_jobs in zip(noisy, prepared, strict=True):
            assert change.alert is not None
            if sink_jobs is None:
                report.claimed_elsewhere.append(change.alert.id)
                continue
            report.claimed.append(change.alert.id)
            for name, job in zip(names, sink_jobs, strict=True):
                jobs[name].append(job)
        report.deliveries = _deliver_all(sinks, jobs, state_store, outbox, now, budget, pools)
    return report


def flush_outbox(
    sinks: Sequence[Sink],
    outbox: Outbox,
    state_store: AlertStateStore,
    *,
    now: datetime,
    lease: timedelta = DEFAULT_LEASE,
    max_age: timedelta = DEFAULT_MAX_AGE,
    budget: SinkBudget | None = None,
    workers: DispatchWorkers | None = None,
) -> DeliveryReport:
    """Send what earlier runs could not (call at the start of every run). Rows of sinks no
    longer configured stay until the sink is configured again or they expire."""
    jobs: dict[str, list[_Job]] = {sink.name: [] for sink in sinks}
    report = DeliveryReport()
    for sink in sinks:
        due: list[OutboxEntry] = []
        for entry in outbox.due(sink.name, now):
            if now - entry.created_at <= max_age:
                due.append(entry)
            elif outbox.drop(entry):
                log.error(
                    "alert %s to %s abandoned after %d attempts over %s: %s",
                    entry.alert_id,
                    sink.name,
                    entry.attempts,
                    max_age,
                    entry.last_error,
                )
                state_store.record_delivery(entry.history_key, sink.name, "abandoned")
                report.deliveries.append(
                    Delivery(entry.alert_id, sink.name, "abandoned", entry.last_error)
                )
        for entry, leased in zip(due, outbox.lease_many(due, now + lease), strict=True):
            if leased is None:
                continue  # another run is on it
            try:
                alert = from_document(leased.document)
            except (KeyError, ValueError, TypeError):
                log.error("outbox row %s/%s is unreadable; dropped", sink.name, entry.alert_id)
                outbox.drop(leased)
                continue
            # At least once: sent again, but a person is told it may be a repeat.
            alert = dataclasses.replace(alert, repeat=entry.maybe_sent)
            jobs[sink.name].append(_Job(alert, leased, leased.history_key))
    with _workers(workers, len(sinks)) as pools:
        report.deliveries += _deliver_all(sinks, jobs, state_store, outbox, now, budget, pools)
    return report


def _deliver_all(
    sinks: Sequence[Sink],
    jobs: dict[str, list[_Job]],
    state_store: AlertStateStore,
    outbox: Outbox,
    now: datetime,
    budget: SinkBudget | None,
    pools: DispatchWorkers,
) -> list[Delivery]:
    busy = [s for s in sinks if jobs.get(s.name)]
    results: list[Delivery] = []
    for delivered in pools.sinks.map(
        lambda sink: _deliver(sink, jobs[sink.name], state_store, outbox, now, budget), busy
    ):
        results.extend(delivered)
    return results


class _Settler:
    """One sink's finished alerts, written together: outbox rows deleted (delivered) or
    updated with the error and a retry time, and the outcomes in the history rows."""

    def __init__(self, sink: str, state_store: AlertStateStore, outbox: Outbox) -> None:
        self._sink = sink
        self._state_store = state_store
        self._outbox = outbox
        self._delivered: list[OutboxEntry] = []
        self._failed: list[tuple[OutboxEntry, str, datetime]] = []
        self._outcomes: list[tuple[str, str, str]] = []
        self._since = 0.0

    def delivered(self, job: _Job) -> None:
        if job.entry is not None:
            self._delivered.append(job.entry)
        self._add(job, "delivered")

    def failed(self, job: _Job, error: str, outcome: str, retry_at: datetime) -> None:
        if job.entry is not None:
            self._failed.append((job.entry, error, retry_at))
        self._add(job, f"{outcome}: {error}"[:200])

    def _add(self, job: _Job, outcome: str) -> None:
        if job.history_key:
            self._outcomes.append((job.history_key, self._sink, outcome))
        waiting = max(len(self._delivered) + len(self._failed), len(self._outcomes))
        if waiting == 1:
            self._since = time.monotonic()
        if waiting >= MAX_OPERATIONS or time.monotonic() - self._since >= SETTLE_EVERY:
            self.flush()

    def flush(self) -> None:
        if self._delivered or self._failed:
            try:
                self._outbox.settle(self._delivered, self._failed)
            except AzureError as exc:
                # The rows stay leased and are retried (or sent again) once the lease ends.
                log.warning(
                    "outbox update for %d %s alerts failed: %s",
                    len(self._delivered) + len(self._failed),
                    self._sink,
                    type(exc).__name__,
                )
        if self._outcomes:
            self._state_store.record_deliveries(self._outcomes)
        self._delivered, self._failed, self._outcomes = [], [], []


def _deliver(
    sink: Sink,
    jobs: Sequence[_Job],
    state_store: AlertStateStore,
    outbox: Outbox,
    now: datetime,
    budget: SinkBudget | None,
) -> list[Delivery]:
    out: list[Delivery] = []
    settler = _Settler(sink.name, state_store, outbox)
    sending = budget.sending(sink.name) if budget is not None else nullcontext(None)
    left = 0
    try:
        with sending as deadline:
            for job in jobs:
                if deadline is not None and time.monotonic() >= deadline:
                    # Left for the next run at once: each one tried would cost more of this run.
                    out.append(_failed(sink, job, settler, BUDGET_SPENT, now, retry_at=now))
                    left += out[-1].outcome == "queued"
                else:
                    out.append(_deliver_one(sink, job, settler, now, deadline))
    finally:
        settler.flush()
    if left:
        # One line for the lot: a fleet's worth of alerts would otherwise flood the log.
        log.warning("%d alerts to %s: %s; kept for the next run", left, sink.name, BUDGET_SPENT)
    return out


def _deliver_one(
    sink: Sink, job: _Job, settler: _Settler, now: datetime, deadline: float | None
) -> Delivery:
    alert = job.alert
    try:
        sink.send(alert, deadline=deadline)
    except DeliveryError as exc:
        error = exc.problem
    except Exception as exc:  # noqa: BLE001 - a sink bug must not stop the others
        error = f"unexpected {type(exc).__name__}"
        # Frames only: an exception's message may quote a URL, its code lines do not.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error("sink %s failed on alert %s: %s\n%s", sink.name, alert.id, error, frames)
    else:
        settler.delivered(job)
        return Delivery(alert.id, sink.name, "delivered")
    attempts = job.entry.attempts + 1 if job.entry is not None else 1
    return _failed(sink, job, settler, error, now, retry_at=now + retry_delay(attempts))


def _failed(
    sink: Sink, job: _Job, settler: _Settler, error: str, now: datetime, *, retry_at: datetime
) -> Delivery:
    # Without an outbox row nothing will retry it; with one, even a failed update leaves the
    # row to be retried once its lease ends.
    outcome = "lost" if job.entry is None else "queued"
    settler.failed(job, error, outcome, retry_at)
    if error != BUDGET_SPENT or outcome == "lost":  # the spent budget is logged once per batch
        log.warning("alert %s to %s failed: %s (%s)", job.alert.id, sink.name, error, outcome)
    return Delivery(job.alert.id, sink.name, outcome, error)
