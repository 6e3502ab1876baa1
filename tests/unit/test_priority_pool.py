"""The priority pool behind the log queries: queued jobs start by priority, then in order;
results and errors reach each job's future; shutting down cancels what never started."""

from __future__ import annotations

import threading

import pytest

from auditor.priority_pool import PriorityPool


def test_queued_jobs_start_by_priority_then_in_the_order_they_came() -> None:
    started = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def blocker() -> str:
        started.set()
        release.wait(5)
        return "blocker"

    pool = PriorityPool(1)
    try:
        first = pool.submit(1, blocker)
        assert started.wait(5)
        jobs = [
            pool.submit(1, order.append, "registry-1"),
            pool.submit(1, order.append, "registry-2"),
            pool.submit(0, order.append, "activity"),
            pool.submit(1, order.append, "registry-3"),
            pool.submit(0, order.append, "activity-2"),
        ]
        release.set()
        assert first.result(5) == "blocker"
        for job in jobs:
            job.result(5)
    finally:
        pool.shutdown()
    assert order == ["activity", "activity-2", "registry-1", "registry-2", "registry-3"]


def test_an_error_reaches_its_future_and_the_pool_goes_on() -> None:
    def fails() -> None:
        raise ValueError("bad answer")

    pool = PriorityPool(2)
    try:
        failed = pool.submit(0, fails)
        fine = pool.submit(0, lambda: 42)
        with pytest.raises(ValueError, match="bad answer"):
            failed.result(5)
        assert fine.result(5) == 42
    finally:
        pool.shutdown()


def test_shutdown_cancels_the_jobs_that_never_started() -> None:
    started = threading.Event()
    release = threading.Event()

    def blocker() -> None:
        started.set()
        release.wait(5)

    pool = PriorityPool(1)
    running = pool.submit(0, blocker)
    assert started.wait(5)
    queued = [pool.submit(1, lambda: None) for _ in range(3)]
    threading.Timer(0.1, release.set).start()
    pool.shutdown()
    assert running.done() and running.exception() is None
    assert all(job.cancelled() for job in queued)
