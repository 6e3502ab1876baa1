"""The timer schedule (NCRONTAB, six fields with seconds first, as Azure Functions reads it)
for `python -m auditor serve`, which runs the audit in-process instead of the Functions host."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from croniter import croniter

log = logging.getLogger(__name__)


def next_fire(expression: str, after: datetime) -> datetime:
    it = croniter(expression, after, second_at_beginning=True)
    fire = it.get_next(datetime)
    assert isinstance(fire, datetime)
    return fire if fire.tzinfo else fire.replace(tzinfo=UTC)


class Scheduler:
    """Runs `job` at every fire time until stopped; a failing job is logged, never fatal."""

    def __init__(
        self,
        expression: str,
        job: Callable[[], object],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        next_fire(expression, clock())  # fail at start-up on a bad expression
        self._expression = expression
        self._job = job
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="audit-schedule", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            fire = next_fire(self._expression, self._clock())
            if self._stop.wait(max(0.0, (fire - self._clock()).total_seconds())):
                return
            try:
                self._job()
            except Exception:  # the schedule must survive a bad run
                log.exception("scheduled audit failed")
