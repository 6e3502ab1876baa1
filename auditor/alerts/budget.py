"""Each sink's time budget in a run.

A receiver that accepts connections and never answers costs a sink its timeout on every
attempt of every alert; without a bound one dead webhook holds a run past the Functions
timeout. A sink may spend `seconds` sending in the run; an attempt never waits past what is
left, and what is not sent by then waits in the outbox for the next run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

BUDGET_SPENT = "not sent: the sink's time budget for this run ran out"


class SinkBudget:
    """Seconds each sink may spend delivering in one run. Only time spent sending counts: a
    long run that streams its alerts as it goes is not cut off by its own length."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not seconds > 0:
            raise ValueError("a sink budget must be longer than zero")
        self.seconds = seconds
        self.clock = clock
        self._spent: dict[str, float] = {}
        self._lock = threading.Lock()

    def left(self, sink: str) -> float:
        with self._lock:
            return self.seconds - self._spent.get(sink, 0.0)

    @contextmanager
    def sending(self, sink: str) -> Iterator[float]:
        """A round of deliveries to `sink`: yields its deadline (on `clock`), and charges the
        time the round took to the sink's budget."""
        started = self.clock()
        try:
            yield started + self.left(sink)
        finally:
            with self._lock:
                self._spent[sink] = self._spent.get(sink, 0.0) + self.clock() - started
