"""Sending planned alerts: claim, write ahead to the outbox, deliver to every sink, record.

For each alert of a plan: claim it by storing its new state with the ETag read at the start
(a concurrent run that planned the same alert loses the write and sends nothing), add a
history row, put one outbox row per sink, then deliver. Each sink works through its alerts in
its own thread, in plan order, so a slow or failing sink holds up nobody else. A delivered
alert's outbox row is deleted; a failed one stays with the (redacted) error and a retry time,
and `flush_outbox` sends it on a later run.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError

from auditor.alerts.model import Alert
from auditor.alerts.outbox import Outbox, OutboxEntry
from auditor.alerts.payload import from_document, to_document
from auditor.alerts.sinks.base import DeliveryError, Sink
from auditor.alerts.state import AlertStateStore
from auditor.alerts.transitions import AlertPlan, StateChange

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=5)  # far longer than a sink's retries take
DEFAULT_MAX_AGE = timedelta(days=7)  # then an undeliverable alert is given up, loudly
_FIRST_RETRY = timedelta(minutes=5)
_MAX_RETRY = timedelta(hours=1)
_CLAIM_WORKERS = 8


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
) -> DeliveryReport:
    """Store the plan's states and deliver the alerts this run wins; see the module doc."""
    report = DeliveryReport()
    quiet = [c for c in plan.changes if c.alert is None]
    report.states_written = state_store.store(quiet)

    def prepare(change: StateChange) -> list[_Job] | None:
        """Claim one alert and write its history and outbox rows; None if another run won."""
        alert = change.alert
        assert alert is not None
        if state_store.claim(change) is None:
            return None
        history_key = _history(state_store, alert, sinks)
        document = to_document(alert)
        return [
            _Job(alert, _put(outbox, sink.name, document, history_key, now, lease), history_key)
            for sink in sinks
        ]

    noisy = [c for c in plan.changes if c.alert is not None]
    # Storage round trips dominate on a first run with many failing registries: overlap them.
    with ThreadPoolExecutor(max_workers=_CLAIM_WORKERS, thread_name_prefix="alert-claim") as pool:
        prepared = list(pool.map(prepare, noisy))
    jobs: dict[str, list[_Job]] = {sink.name: [] for sink in sinks}
    for change, sink_jobs in zip(noisy, prepared, strict=True):
        assert change.alert is not None
        if sink_jobs is None:
            report.claimed_elsewhere.append(change.alert.id)
            continue
        report.claimed.append(change.alert.id)
        for sink, job in zip(sinks, sink_jobs, strict=True):
            jobs[sink.name].append(job)
    report.deliveries = _deliver_all(sinks, jobs, state_store, outbox, now)
    return report


def flush_outbox(
    sinks: Sequence[Sink],
    outbox: Outbox,
    state_store: AlertStateStore,
    *,
    now: datetime,
    lease: timedelta = DEFAULT_LEASE,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> DeliveryReport:
    """Send what earlier runs could not (call at the start of every run). Rows of sinks no
    longer configured stay until the sink is configured again or they expire."""
    jobs: dict[str, list[_Job]] = {sink.name: [] for sink in sinks}
    report = DeliveryReport()
    for sink in sinks:
        for entry in outbox.due(sink.name, now):
            if now - entry.created_at > max_age:
                if outbox.drop(entry):
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
                continue
            leased = outbox.lease(entry, now + lease)
            if leased is None:
                continue  # another run is on it
            try:
                alert = from_document(leased.document)
            except (KeyError, ValueError, TypeError):
                log.error("outbox row %s/%s is unreadable; dropped", sink.name, entry.alert_id)
                outbox.drop(leased)
                continue
            jobs[sink.name].append(_Job(alert, leased, leased.history_key))
    report.deliveries += _deliver_all(sinks, jobs, state_store, outbox, now)
    return report


def _history(state_store: AlertStateStore, alert: Alert, sinks: Sequence[Sink]) -> str:
    try:
        return state_store.append_history(alert, [s.name for s in sinks])
    except AzureError as exc:
        log.warning("could not record alert %s in history: %s", alert.id, type(exc).__name__)
        return ""


def _put(
    outbox: Outbox,
    sink: str,
    document: dict[str, object],
    history_key: str,
    now: datetime,
    lease: timedelta,
) -> OutboxEntry | None:
    try:
        return outbox.put(sink, dict(document), history_key=history_key, now=now, lease=lease)
    except AzureError as exc:
        log.error(
            "alert %s could not be written to the %s outbox (%s); sending without a safety net",
            document.get("id"),
            sink,
            type(exc).__name__,
        )
        return None


def _deliver_all(
    sinks: Sequence[Sink],
    jobs: dict[str, list[_Job]],
    state_store: AlertStateStore,
    outbox: Outbox,
    now: datetime,
) -> list[Delivery]:
    busy = [s for s in sinks if jobs.get(s.name)]
    if not busy:
        return []
    results: list[Delivery] = []
    with ThreadPoolExecutor(max_workers=len(busy), thread_name_prefix="alert-sink") as pool:
        for delivered in pool.map(
            lambda sink: _deliver(sink, jobs[sink.name], state_store, outbox, now), busy
        ):
            results.extend(delivered)
    return results


def _quietly(step: Callable[[OutboxEntry], object], entry: OutboxEntry) -> None:
    """An outbox update that fails leaves the row leased; it is retried when the lease ends."""
    try:
        step(entry)
    except AzureError as exc:
        log.warning("outbox update for alert %s failed: %s", entry.alert_id, type(exc).__name__)


def _deliver(
    sink: Sink,
    jobs: Sequence[_Job],
    state_store: AlertStateStore,
    outbox: Outbox,
    now: datetime,
) -> list[Delivery]:
    out: list[Delivery] = []
    for job in jobs:
        alert = job.alert
        try:
            sink.send(alert)
        except DeliveryError as exc:
            error = exc.problem
        except Exception as exc:  # noqa: BLE001 - a sink bug must not stop the others
            error = f"unexpected {type(exc).__name__}"
            # Frames only: an exception's message may quote a URL, its code lines do not.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("sink %s failed on alert %s: %s\n%s", sink.name, alert.id, error, frames)
        else:
            if job.entry is not None:
                _quietly(outbox.delivered, job.entry)
            if job.history_key:
                state_store.record_delivery(job.history_key, sink.name, "delivered")
            out.append(Delivery(alert.id, sink.name, "delivered"))
            continue
        # Without an outbox row nothing will retry it; with one, even a failed update leaves
        # the row to be retried once its lease ends.
        outcome = "lost" if job.entry is None else "queued"
        if job.entry is not None:
            retry_at = now + retry_delay(job.entry.attempts + 1)
            _quietly(functools.partial(outbox.failed, error=error, retry_at=retry_at), job.entry)
        log.warning("alert %s to %s failed: %s (%s)", alert.id, sink.name, error, outcome)
        if job.history_key:
            state_store.record_delivery(job.history_key, sink.name, f"{outcome}: {error}"[:200])
        out.append(Delivery(alert.id, sink.name, outcome, error))
    return out
