"""Retention: how long stored rows are kept, and pruning the older ones after a timer run.

Kept by default (the periods are `prune_expired`'s parameters, in days):

- log evidence (what each run's log check showed, ~6 KiB per registry and run): 30 days;
- runs, registry history and alert history: 400 days, so a yearly review still sees the
  same month of the year before.

The registries' current rows, the summary, the alert states and the outbox are the present,
not the past: never pruned here.

The timer prunes after its run has finished writing, within a time budget, and pruning never
fails or slows the audit: a failure is logged and returned in the report, and what a prune
could not reach in its budget is left for the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import AzureError

from auditor.alerts.state import AlertStateStore
from auditor.settings import Settings, StorageSettings
from auditor.storage import AuditStore, StorageError
from auditor.storage.errors import describe
from auditor.storage.pruning import Deadline, Pruned

log = logging.getLogger(__name__)

# The declared defaults of the AUDITOR_RETENTION_* settings.
_DECLARED = StorageSettings.model_fields
EVIDENCE_DAYS: int = _DECLARED["retention_evidence_days"].default
RUNS_DAYS: int = _DECLARED["retention_runs_days"].default
HISTORY_DAYS: int = _DECLARED["retention_history_days"].default
ALERT_HISTORY_DAYS = HISTORY_DAYS
BUDGET_SECONDS = 60.0  # per prune; the rest waits for the next timer run


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What a prune deleted per table, and what stopped it."""

    pruned: tuple[Pruned, ...]
    errors: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """Every expired row is gone: no error, and no table left for lack of time."""
        return not self.errors and all(p.complete for p in self.pruned)


def prune_after_run(store: AuditStore, settings: Settings) -> RetentionReport:
    """`prune_expired` with the periods the settings give (the timer and `serve` call it)."""
    storage = settings.storage
    return prune_expired(
        store,
        evidence_days=storage.retention_evidence_days,
        runs_days=storage.retention_runs_days,
        history_days=storage.retention_history_days,
        alert_history_days=storage.retention_history_days,
    )


def prune_expired(
    store: AuditStore,
    *,
    now: datetime | None = None,
    evidence_days: int = EVIDENCE_DAYS,
    runs_days: int = RUNS_DAYS,
    history_days: int = HISTORY_DAYS,
    alert_history_days: int = ALERT_HISTORY_DAYS,
    budget_seconds: float = BUDGET_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> RetentionReport:
    """Delete what is older than its retention period as of `now`, within `budget_seconds`.
    Never raises: errors are logged and reported (see the module)."""
    for name, days in (
        ("evidence_days", evidence_days),
        ("runs_days", runs_days),
        ("history_days", history_days),
        ("alert_history_days", alert_history_days),
    ):
        if days < 1:
            raise ValueError(f"{name} must be at least 1")
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    deadline = Deadline.after(budget_seconds, clock)
    pruned: list[Pruned] = []
    errors: list[str] = []
    try:
        pruned += store.prune(
            evidence_before=moment - timedelta(days=evidence_days),
            runs_before=moment - timedelta(days=runs_days),
            history_before=moment - timedelta(days=history_days),
            deadline=deadline,
        )
        if all(p.complete for p in pruned):
            alerts = AlertStateStore(store.tables.service, prefix=store.tables.prefix)
            cutoff = moment - timedelta(days=alert_history_days)
            pruned.append(alerts.prune_history(cutoff, deadline=deadline))
    except StorageError as exc:
        errors.append(str(exc))  # names the table and the status, never a key or URL
    except AzureError as exc:
        errors.append(f"pruning failed: {describe(exc)}")
    except Exception as exc:  # pruning must not fail the timer that ran the audit
        log.exception("retention: pruning failed")
        errors.append(f"pruning failed: {type(exc).__name__}")
    report = RetentionReport(tuple(pruned), tuple(errors))
    _log(report)
    return report


def _log(report: RetentionReport) -> None:
    counts = ", ".join(f"{p.table} {p.deleted}" for p in report.pruned) or "nothing"
    if report.errors:
        log.warning("retention: deleted %s; stopped: %s", counts, "; ".join(report.errors))
    elif not report.complete:
        log.warning("retention: deleted %s; out of time, the rest goes next run", counts)
    else:
        log.info("retention: deleted %s expired rows", counts)
