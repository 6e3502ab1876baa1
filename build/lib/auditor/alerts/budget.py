"""Each sink's time budget in a run.

A receiver that accepts connections and never answers costs a sink its timeout on every
attempt of every alert; without a bound one dead webhook holds a run past the Functions
timeout. A sink may spend `seconds` from its first delivery in the run; an attempt never
waits past that, and what is not sent by then waits in the outbox for the next run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

BUDGET_SPENT = "not sent: the sink's time budget for this run ran out"


class SinkBudget:
    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not seconds > 0:
            raise ValueError("a sink budget must be longer than zero")
        self.seconds = seconds
        self.clock = clock
        self._deadlines: dict[str, float] = {}
        self._lock = threading.Lock()

    def deadline(self, sink: str) -> float:
        """The sink's deadline (on `clock`), counted from its first call in the run."""
        with self._lock:
            if sink not in self._deadlines:
                self._deadlines[sink] = self.clock() + self.seconds
            return self._deadlines[sink]

    def spent(self, sink: str) -> bool:
        return self.clock() >= self.deadline(sink)
