"""A thread pool whose queued jobs start by priority, then in the order they came.

The log queries share one pool bounded by Log Analytics' concurrent-query limit, and a
workspace first seen late in a run gets its activity query queued behind every registry query
already waiting. Every registry's evidence waits on all activity queries, so none could
settle until that one ran: the 10,000-registry change-driven run settled 4,000 registries
3 s later than their own queries allowed. Here the activity query starts at the next free
worker.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class PriorityPool:
    """`submit(priority, fn, *args)`: lower priorities start first; a running job is never
    interrupted. `shutdown` cancels the jobs not started, so nobody waits on them forever."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "") -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=thread_name_prefix)
        self._lock = threading.Lock()
        self._queued: list[tuple[int, int, Future[Any], Callable[..., Any], tuple[Any, ...]]] = []
        self._order = itertools.count()

    def submit(self, priority: int, fn: Callable[..., T], *args: Any) -> Future[T]:
        job: Future[T] = Future()
        with self._lock:
            heapq.heappush(self._queued, (priority, next(self._order), job, fn, args))
        # One worker call per job: each takes whichever queued job comes first when it runs.
        self._pool.submit(self._run_next)
        return job

    def _run_next(self) -> None:
        with self._lock:
            _, _, job, fn, args = heapq.heappop(self._queued)
        if not job.set_running_or_notify_cancel():
            return
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - delivered to the job's future
            job.set_exception(exc)
        else:
            job.set_result(result)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            left, self._queued = self._queued, []
        for _, _, job, _, _ in left:
            job.cancel()
