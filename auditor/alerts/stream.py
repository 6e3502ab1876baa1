"""A full run's alerts, sent as its registries are judged rather than all after the last one.

`AlertStream.submit` takes the registries the audit has just stored (final verdicts and their
log evidence) and hands them to one background thread, which runs `AlertService.process` on
them; `finish` sends what is left (registries judged last, found removed, or judged again)
and returns the run with alerting's problems added to its errors. Alerting never fails the
audit.

The alert states are read once, at the first batch, instead of once per batch (a partition
scan each); a registry processed twice in one run (its result changed after it was stored)
has its states read afresh, since the first pass changed them. So a registry's states are
let go once it is processed: they are not held, a fleet's worth of them, to the run's end.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from auditor.alerts.dispatch import DeliveryReport
from auditor.alerts.model import AlertState, Topic, alert_key
from auditor.alerts.service import AlertService
from auditor.alerts.sinks.base import redact_known
from auditor.evidence.model import LogEvidence
from auditor.facts import Verdict
from auditor.run_record import AuditRun

log = logging.getLogger(__name__)


class AlertStream:
    def __init__(
        self,
        service: AlertService,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._service = service
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts")
        self._pending: list[Future[None]] = []
        self._processed: dict[str, Verdict] = {}  # by registry key, as last processed
        self._states: dict[str, AlertState] | None = None
        self._report = DeliveryReport()
        self._problems: list[str] = []

    def __enter__(self) -> AlertStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._service.close()

    def submit(
        self, run_id: str, verdicts: Sequence[Verdict], evidence: Mapping[str, LogEvidence]
    ) -> None:
        """Queue stored registries for alerting; returns at once."""
        if verdicts:
            batch = list(verdicts)
            self._pending.append(self._pool.submit(self._process, run_id, batch, evidence))

    def finish(self, run: AuditRun) -> AuditRun:
        """Alert on what was not processed yet (or changed since), then report problems."""
        for future in self._pending:
            future.result()  # _process never raises
        rest = [v for v in run.verdicts if self._processed.get(v.registry.key) is not v]
        self._process(run.run_id, rest, run.evidence, now=run.finished_at)
        problems = self._problems + self._report.problems()
        return dataclasses.replace(run, errors=(*run.errors, *problems)) if problems else run

    @property
    def report(self) -> DeliveryReport:
        return self._report

    def _process(
        self,
        run_id: str,
        verdicts: Sequence[Verdict],
        evidence: Mapping[str, LogEvidence],
        *,
        now: datetime | None = None,
    ) -> None:
        if not verdicts:
            return
        try:
            if self._states is None:
                self._states = self._service.states.load()
            again = [v for v in verdicts if v.registry.key in self._processed]
            first = [v for v in verdicts if v.registry.key not in self._processed]
            moment = now or self._clock()
            for group, states in ((first, self._states), (again, None)):
                if not group:
                    continue
                keys = {v.registry.key for v in group}
                report = self._service.process(
                    group,
                    run_id=run_id,
                    now=moment,
                    login_evidence={k: e.observations for k, e in evidence.items() if k in keys}
                    or None,
                    states=states,
                )
                self._report = self._report.merge(report)
            for verdict in verdicts:
                self._processed[verdict.registry.key] = verdict
            for verdict in first:  # read afresh if processed again
                for topic in Topic:
                    self._states.pop(alert_key(verdict.registry.key, topic), None)
        except Exception as exc:  # a sink or storage surprise must not lose the audit's results
            log.exception("alerting failed for run %s", run_id)
            self._problems.append(redact_known(f"alerting failed: {exc}"))
