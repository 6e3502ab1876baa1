"""StorageRetry: which storage errors are tried again, for how long, and what is raised after
(with a clock and a sleep of the test's own, so no test waits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)

from auditor.azure.errors import transient
from auditor.storage import StorageError, StorageRetry

SECRET = "AccountKey=c2VjcmV0LWtleQ=="


class Response:
    """What HttpResponseError reads of a response."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.reason = "reason"
        self.headers = headers or {}
        self.request = None

    def text(self) -> str:
        return ""


def http_error(status: int, headers: dict[str, str] | None = None) -> HttpResponseError:
    return HttpResponseError(message=f"failed at {SECRET}", response=Response(status, headers))


class Clock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def retry_on(clock: Clock, budget: float = 30.0) -> StorageRetry:
    return StorageRetry(budget, sleep=clock.sleep, clock=clock)


def failing(errors: list[AzureError], calls: list[dict[str, Any]]) -> Callable[..., str]:
    """An operation that raises `errors` in turn, then succeeds; records its options."""

    def operation(*args: Any, **options: Any) -> str:
        calls.append(options)
        if errors:
            raise errors.pop(0)
        return "done"

    return operation


@pytest.mark.parametrize(
    "error",
    [
        ServiceRequestError("connection refused"),
        ServiceResponseError("connection reset"),
        ServiceResponseTimeoutError("read timed out"),
        IncompleteReadError("connection dropped in the body"),
        http_error(408),
        http_error(429),
        http_error(500),
        http_error(502),
        http_error(503),
    ],
    ids=lambda e: type(e).__name__ + str(getattr(e, "status_code", "") or ""),
)
def test_an_outage_is_ridden_out(error: AzureError) -> None:
    clock = Clock()
    calls: list[dict[str, Any]] = []
    operation = failing([error, error, error], calls)
    assert retry_on(clock).call("writing registry status", operation) == "done"
    assert len(calls) == 4
    assert len(clock.sleeps) == 3
    # The store owns the retrying: no SDK retries inside an attempt, timeouts within budget.
    assert all(c["retry_total"] == 0 for c in calls)
    assert all(0 < c["connection_timeout"] <= 30 and 0 < c["read_timeout"] <= 30 for c in calls)


@pytest.mark.parametrize(
    "error",
    [
        http_error(400),
        http_error(409),
        http_error(413),
        ClientAuthenticationError(message=SECRET, response=Response(403)),
        ResourceNotFoundError(message=SECRET, response=Response(404)),
    ],
    ids=lambda e: str(e.status_code),
)
def test_a_request_that_cannot_succeed_is_not_repeated(error: HttpResponseError) -> None:
    clock = Clock()
    calls: list[dict[str, Any]] = []
    with pytest.raises(StorageError) as caught:
        retry_on(clock).call("writing registry status", failing([error], calls))
    assert len(calls) == 1
    assert clock.sleeps == []
    assert f"HTTP {error.status_code}" in str(caught.value)
    assert not transient(error)


def test_storage_down_past_the_budget_is_a_storage_error_naming_what_failed() -> None:
    clock = Clock()
    calls: list[dict[str, Any]] = []
    down = [ServiceRequestError(f"cannot reach {SECRET}") for _ in range(1000)]
    with pytest.raises(StorageError) as caught:
        retry_on(clock, budget=30).call("writing log evidence", failing(down, calls))
    message = str(caught.value)
    assert message.startswith("Table Storage: writing log evidence failed: ")
    assert "could not be reached" in message
    assert f"{len(calls)} attempts over 30 s" in message
    assert "AccountKey" not in message and "c2VjcmV0" not in message
    assert sum(clock.sleeps) == pytest.approx(30)
    assert 4 <= len(calls) < 30  # backoff, not a busy loop
    assert max(clock.sleeps) <= 8


def test_a_lasting_outage_costs_the_budget_once_not_per_operation() -> None:
    clock = Clock()
    retry = retry_on(clock, budget=30)
    for _ in range(5):
        with pytest.raises(StorageError):
            retry.call("writing registry history", failing([ServiceRequestError("down")] * 99, []))
    # The first operation spent the budget; the next ones, still meeting the outage, had one
    # attempt each.
    assert sum(clock.sleeps) == pytest.approx(30)

    # Storage back: the next outage gets a budget of its own.
    assert retry.call("recording the run", failing([], [])) == "done"
    waited = sum(clock.sleeps)
    assert retry.call("writing the summary", failing([ServiceRequestError("down")], [])) == "done"
    assert sum(clock.sleeps) > waited


def test_an_outage_long_past_does_not_shorten_the_next_one() -> None:
    clock = Clock()
    retry = retry_on(clock, budget=30)
    with pytest.raises(StorageError):
        retry.call("writing registry history", failing([ServiceRequestError("down")] * 99, []))
    clock.now += 3600  # the next run, an hour later, meets a new blip: no success in between
    waited = sum(clock.sleeps)
    calls: list[dict[str, Any]] = []
    assert retry.call("recording the run start", failing([ServiceRequestError("blip")], calls))
    assert len(calls) == 2 and sum(clock.sleeps) > waited


def test_attempts_near_the_end_of_the_budget_get_shorter_timeouts() -> None:
    clock = Clock()
    calls: list[dict[str, Any]] = []
    with pytest.raises(StorageError):
        retry_on(clock, budget=12).call(
            "writing log evidence", failing([ServiceResponseTimeoutError("slow")] * 99, calls)
        )
    assert calls[0]["read_timeout"] == 12
    assert calls[-1]["read_timeout"] < 12


def test_retry_after_is_honoured() -> None:
    clock = Clock()
    throttled = http_error(503, {"Retry-After": "7"})
    assert retry_on(clock).call("writing registry status", failing([throttled], [])) == "done"
    assert clock.sleeps == [7]


def test_arguments_reach_the_operation() -> None:
    calls: list[tuple[Any, ...]] = []

    def operation(*args: Any, **options: Any) -> None:
        calls.append((args, options["mode"]))

    retry_on(Clock()).call("writing the summary", operation, "entity", mode="replace")
    assert calls == [(("entity",), "replace")]


def test_other_errors_pass_through_untouched() -> None:
    def operation(**options: Any) -> None:
        raise ValueError("a programming error is not an outage")

    with pytest.raises(ValueError):
        retry_on(Clock()).call("writing the summary", operation)
