"""Riding out short Table Storage outages: a run's storage operations are tried again, with
backoff, until a time budget is spent.

What may pass is retried: the service unreachable, a connection lost or timed out, 408, 429
and 5xx. A 4xx that cannot succeed (bad request, access denied, too large) is raised at once.
The store owns the retrying, so one budget bounds an operation from its first attempt: the
SDK's own policy is switched off for these calls (it never retries a transaction, which is a
POST, on a connection error), and each attempt's timeouts are cut to what is left of the
budget. Every operation retried here is an upsert, a create-if-missing or a read, so repeating
one that did reach the service changes nothing.

The budget is per outage, not per operation: once storage has failed for `budget` seconds
without a success in between, every further operation gets one attempt until one succeeds.
A run meeting a storage that stays down therefore learns it within the budget, instead of
spending the budget again on each of its transactions. A failure after more than `budget`
seconds without any begins a new outage.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
)

from auditor.azure.errors import retry_after, transient
from auditor.storage.errors import StorageError, describe

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BUDGET = 30.0  # seconds a run's storage operation is tried before StorageError
_MIN_TIMEOUT = 1.0  # an attempt near the end of the budget still gets this long


class StorageRetry:
    """Tries storage operations for up to `budget` seconds (see the module). Thread-safe: the
    writer's workers share one, and with it what they know of an outage."""

    def __init__(
        self,
        budget: float = DEFAULT_BUDGET,
        *,
        first_delay: float = 0.5,
        max_delay: float = 8.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if budget < 0 or first_delay <= 0 or max_delay < first_delay:
            raise ValueError("budget >= 0 and 0 < first_delay <= max_delay")
        self.budget = budget
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._failing_since: float | None = None  # no success since: an outage going on
        self._failed_at = 0.0  # the last failure of that outage

    def call(self, action: str, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`operation(*args, **kwargs)` with per-attempt options added (no SDK retries, the
        timeouts), tried until it succeeds, fails for good, or the budget is spent; then
        StorageError naming `action`."""
        started = self._clock()
        attempts = 0
        while True:
            attempts += 1
            left = self._deadline(started) - self._clock()
            try:
                result = operation(*args, **kwargs, **self._attempt_options(left))
            except AzureError as exc:
                pause = self._pause(exc, attempts, started)
                if pause is None:
                    elapsed = self._clock() - started
                    problem = f"{describe(exc)} ({_tries(attempts, elapsed)})"
                    raise StorageError(action, problem) from exc
                log.info(
                    "Table Storage: %s failed (%s); trying again in %.1f s",
                    action,
                    describe(exc),
                    pause,
                )
                self._sleep(pause)
                continue
            self._succeeded()
            if attempts > 1:
                log.warning("Table Storage: %s succeeded after %d attempts", action, attempts)
            return result

    def _deadline(self, started: float) -> float:
        with self._lock:
            since, failed_at = self._failing_since, self._failed_at
        if since is None or started - failed_at > self.budget:
            return started + self.budget  # no outage, or one long past: this is a new one
        return min(started, since) + self.budget

    def _attempt_options(self, left: float) -> dict[str, Any]:
        return {
            "retry_total": 0,
            "connection_timeout": max(_MIN_TIMEOUT, min(self._connect_timeout, left)),
            "read_timeout": max(_MIN_TIMEOUT, min(self._read_timeout, left)),
        }

    def _pause(self, exc: AzureError, attempts: int, started: float) -> float | None:
        """How long to wait before the next attempt; None to give up."""
        if not transient(exc):
            self._succeeded()  # the service answered: it is up
            return None
        now = self._clock()
        left = self._deadline(started) - now
        with self._lock:
            if self._failing_since is None or now - self._failed_at > self.budget:
                self._failing_since = now
            self._failed_at = now
        if left <= 0:
            return None
        backoff = min(self._max_delay, self._first_delay * 2.0 ** (attempts - 1))
        # Jitter: the writer's workers, failing together, do not all come back together.
        backoff *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not security
        return min(left, max(retry_after(exc) or 0.0, backoff))

    def _succeeded(self) -> None:
        with self._lock:
            self._failing_since = None


def _tries(attempts: int, elapsed: float) -> str:
    if attempts == 1:
        return "1 attempt"
    return f"{attempts} attempts over {elapsed:.0f} s"
