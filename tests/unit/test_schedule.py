from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from auditor.schedule import Scheduler, next_fire


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        (
            "0 0 * * * *",
            datetime(2026, 1, 1, 10, 15, tzinfo=UTC),
            datetime(2026, 1, 1, 11, tzinfo=UTC),
        ),
        (
            "30 */5 * * * *",
            datetime(2026, 1, 1, 10, 1, tzinfo=UTC),
            datetime(2026, 1, 1, 10, 5, 30, tzinfo=UTC),
        ),
    ],
)
def test_next_fire_reads_seconds_first(
    expression: str, after: datetime, expected: datetime
) -> None:
    assert next_fire(expression, after) == expected


def test_scheduler_runs_the_job_and_survives_failures() -> None:
    calls: list[int] = []
    done = threading.Event()

    def job() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first run fails")
        done.set()

    scheduler = Scheduler("* * * * * *", job)
    scheduler.start()
    try:
        assert done.wait(5), "the schedule stopped after a failing run"
    finally:
        scheduler.stop()
    assert len(calls) >= 2


def test_bad_expression_fails_at_start() -> None:
    with pytest.raises(ValueError):
        Scheduler("not a schedule", lambda: None)
