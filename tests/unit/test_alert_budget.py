"""A sink's time budget counts the time it spends sending, not the length of the run."""

from __future__ import annotations

from auditor.alerts.budget import SinkBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_only_time_spent_sending_counts() -> None:
    clock = Clock()
    budget = SinkBudget(10.0, clock=clock)
    with budget.sending("webhook") as deadline:
        assert deadline == 10.0
        clock.now += 4.0  # four seconds of deliveries
    clock.now += 500.0  # the run goes on reading settings; nothing is sent
    with budget.sending("webhook") as deadline:
        assert deadline == clock.now + 6.0  # what is left, from now
        clock.now += 6.0
    assert budget.left("webhook") == 0.0
    assert budget.left("teams") == 10.0  # each sink its own
