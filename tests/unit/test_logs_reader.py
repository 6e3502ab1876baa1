"""The Log Analytics adapter with a fake SDK client: retries, pacing, concurrency, partial
results, and how the SDK client is configured."""

from __future__ import annotations

import json
import pickle
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.monitor.query import LogsQueryPartialResult, LogsQueryResult, LogsTable

from auditor import kql
from auditor.azure.logs import (
    PACER_BURST,
    PACER_RATE,
    LogRow,
    LogsReader,
    QueryOutcome,
    pack_rows,
    parse_workspace_id,
    resolve_workspace,
)
from auditor.pacing import TokenBucketPacer

GUID = "aaaaaaaa-0000-0000-0000-000000000001"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
QUERY = kql.repository_query(["/x"], kql.Window.ending(NOW, timedelta(hours=1)))


@dataclass
class _Response:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    reason: str = "Error"
    request: object = None

    def text(self) -> str:
        return json.dumps(self.body)


def http_error(status: int, code: str = "Err", retry_after: str | None = None) -> HttpResponseError:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"code": code, "message": f"{code} happened"}}
    return HttpResponseError(response=_Response(status, headers, body))


def table(rows: list[list[Any]]) -> LogsTable:
    return LogsTable(
        name="PrimaryResult", columns=["A", "B"], columns_types=["string", "long"], rows=rows
    )


class FakeClient:
    """Answers from a script: each item is a result to return or an exception to raise."""

    def __init__(self, script: list[Any], delay: float = 0.0) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, str, Any]] = []
        self.delay = delay
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def query_workspace(self, workspace_id: str, query: str, **kw: Any) -> Any:
        with self._lock:
            self.calls.append((workspace_id, query, kw.get("timespan")))
            self.active += 1
            self.peak = max(self.peak, self.active)
            item = self.script.pop(0) if self.script else LogsQueryResult(tables=[table([])])
        try:
            if self.delay:
                time.sleep(self.delay)
            if isinstance(item, BaseException):
                raise item
            return item
        finally:
            with self._lock:
                self.active -= 1

    def close(self) -> None:
        pass


def reader(client: FakeClient, **kw: Any) -> tuple[LogsReader, list[float]]:
    sleeps: list[float] = []
    # Pacing is tested on its own below; here it must not wait for real.
    pacer = TokenBucketPacer(rate=1000.0, burst=1000, sleep=sleeps.append)
    r = LogsReader(client=client, sleep=sleeps.append, pacer=pacer, **kw)
    return r, sleeps


def test_rows_are_read_by_column_name_and_the_timespan_is_sent() -> None:
    client = FakeClient([LogsQueryResult(tables=[table([["x", 1], ["y", 2]])])])
    r, _ = reader(client)
    outcome = r.query(GUID, QUERY)
    assert outcome == QueryOutcome(rows=({"A": "x", "B": 1}, {"A": "y", "B": 2}), attempts=1)
    first = outcome.rows[0]
    assert first["A"] == "x" and first.get("B") == 1 and first.get("C") is None
    assert dict(first) == {"A": "x", "B": 1} and list(first) == ["A", "B"]
    with pytest.raises(KeyError):
        first["C"]
    assert client.calls == [(GUID, QUERY.text, QUERY.timespan)]


def test_429_is_retried_honouring_retry_after() -> None:
    ok = LogsQueryResult(tables=[table([["x", 1]])])
    client = FakeClient([http_error(429, "TooManyRequests", retry_after="7"), ok])
    r, sleeps = reader(client)
    outcome = r.query(GUID, QUERY)
    assert outcome.rows and outcome.error is None and outcome.attempts == 2
    assert max(sleeps) >= 7.0
    assert r.stats.throttled == 1 and r.stats.retried == 1


def test_429_pauses_the_shared_pacer() -> None:
    ok = LogsQueryResult(tables=[table([])])
    client = FakeClient([http_error(429, retry_after="30"), ok])
    clock = [0.0]
    slept: list[float] = []
    pacer = TokenBucketPacer(rate=6, burst=10, clock=lambda: clock[0], sleep=slept.append)
    r = LogsReader(client=client, pacer=pacer, sleep=lambda s: None)
    r.query(GUID, QUERY)
    assert slept and max(slept) >= 29.0  # the retry waited for the server's pause


def test_504_is_retried_then_given_up_as_too_big() -> None:
    client = FakeClient([http_error(504, "GatewayTimeout")] * 3)
    r, sleeps = reader(client, retries=2)
    outcome = r.query(GUID, QUERY)
    assert outcome.error is not None and "504" in outcome.error
    assert outcome.attempts == 3 and len(sleeps) == 2
    assert sleeps[1] > sleeps[0] * 0.9  # backs off
    assert outcome.too_big


def test_429_exhausted_is_never_split() -> None:
    client = FakeClient([http_error(429, "TooManyRequests", retry_after="0")] * 2)
    r, _ = reader(client, retries=1)
    outcome = r.query(GUID, QUERY)
    assert outcome.status == 429 and not outcome.too_big


@pytest.mark.parametrize(("status", "code"), [(403, "InsufficientAccessError"),
                                              (404, "PathNotFoundError"),
                                              (400, "SemanticError")])  # fmt: skip
def test_client_errors_are_not_retried(status: int, code: str) -> None:
    client = FakeClient([http_error(status, code)])
    r, sleeps = reader(client)
    outcome = r.query(GUID, QUERY)
    assert outcome.attempts == 1 and sleeps == []
    assert outcome.status == status and code in (outcome.error or "")
    assert not outcome.too_big


def test_partial_error_keeps_the_rows_and_the_error() -> None:
    partial = LogsQueryPartialResult(
        partial_data=[table([["x", 1]])],
        partial_error=type("E", (), {"code": "PartialError", "message": "shard 3 failed"})(),
    )
    r, _ = reader(FakeClient([partial]))
    outcome = r.query(GUID, QUERY)
    assert outcome.rows == ({"A": "x", "B": 1},)
    assert outcome.error is None
    assert outcome.partial_error == "PartialError: shard 3 failed"
    assert r.stats.partial == 1


def test_unexpected_exceptions_stay_inside_the_outcome() -> None:
    r, _ = reader(FakeClient([RuntimeError("surprise")]))
    outcome = r.query(GUID, QUERY)
    assert outcome.error is not None and "surprise" in outcome.error


def test_a_bad_workspace_guid_is_never_sent() -> None:
    client = FakeClient([])
    r, _ = reader(client)
    assert r.query("../../subscriptions", QUERY).error == "workspace id is not a GUID"
    assert client.calls == []


def test_batch_runs_at_most_the_concurrency_limit_in_order() -> None:
    client = FakeClient(
        [LogsQueryResult(tables=[table([[str(i), i]])]) for i in range(12)], delay=0.05
    )
    r, _ = reader(client, max_concurrency=5)
    outcomes = r.run([(GUID, QUERY)] * 12)
    assert len(outcomes) == 12 and client.peak <= 5
    assert client.peak >= 2  # it did run concurrently
    assert r.stats.queries == 12


def test_concurrency_above_the_service_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        LogsReader(client=FakeClient([]), max_concurrency=6)


def test_a_read_timeout_must_outlast_the_server_timeout_it_waits_for() -> None:
    with pytest.raises(ValueError, match="read_timeout"):
        LogsReader(client=FakeClient([]), server_timeout=300)  # the 200 s default is shorter
    LogsReader(client=FakeClient([]), server_timeout=300, read_timeout=320.0)


def test_default_pacing_stays_under_200_queries_in_any_30_seconds() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    pacer = TokenBucketPacer(
        rate=PACER_RATE, burst=PACER_BURST, clock=lambda: clock[0], sleep=sleep
    )
    times = []
    for _ in range(600):
        pacer.acquire("loganalytics")
        times.append(clock[0])
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:] if t < start + 30.0)
        assert in_window < 200


def test_client_uses_the_audience_for_its_token_scope() -> None:
    class Cred:
        def get_token(self, *scopes: str, **kw: Any) -> Any:
            raise AssertionError("not called")

    r = LogsReader(
        Cred(), endpoint="https://127.0.0.1:8443", audience="https://api.loganalytics.io"
    )
    config = r._client._config
    assert config.credential_scopes == ["https://api.loganalytics.io/.default"]
    assert config.endpoint == "https://127.0.0.1:8443"
    assert config.retry_policy.total_retries == 0  # our loop retries, not the SDK's
    r.close()


# --------------------------------------------------------------------------- workspaces

WS = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-mon"
    "/providers/Microsoft.OperationalInsights/workspaces/law-central"
)


@dataclass(frozen=True)
class Workspace:
    customer_id: str | None


class FakeWorkspaces:
    """A subscription's `workspaces` operations: `get` answers `result`, or raises it."""

    def __init__(self, result: Workspace | Exception) -> None:
        self.result = result
        self.calls: list[tuple[str, str]] = []

    def get(self, group: str, name: str, /) -> Workspace:
        self.calls.append((group, name))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@dataclass(frozen=True)
class LogAnalyticsClient:
    workspaces: FakeWorkspaces


class FakeArm:
    """ARM as workspace resolution reads it: `workspaces(sub).workspaces.get(group, name)`."""

    def __init__(self, result: Workspace | Exception) -> None:
        self.ops = FakeWorkspaces(result)
        self.subscriptions: list[str] = []

    def workspaces(self, subscription_id: str, /) -> LogAnalyticsClient:
        self.subscriptions.append(subscription_id)
        return LogAnalyticsClient(self.ops)


def test_workspace_id_parsing() -> None:
    assert parse_workspace_id(WS.upper()) == (
        "11111111-1111-1111-1111-111111111111",
        "RG-MON",
        "LAW-CENTRAL",
    )
    assert parse_workspace_id("/subscriptions/x/resourceGroups/y") is None


def test_workspace_resolves_to_its_customer_id() -> None:
    arm = FakeArm(Workspace(GUID.upper()))
    ref = resolve_workspace(arm, WS)
    assert ref.customer_id == GUID and ref.error is None and ref.id == WS.lower()
    assert arm.ops.calls == [("rg-mon", "law-central")]


@pytest.mark.parametrize(
    "failure",
    [
        ResourceNotFoundError(
            response=_Response(404, body={"error": {"code": "ResourceNotFound", "message": "gone"}})
        ),
        http_error(403, "AuthorizationFailed"),
    ],
    ids=["missing", "forbidden"],
)
def test_missing_or_unreadable_workspace_carries_the_reason(failure: Exception) -> None:
    ref = resolve_workspace(FakeArm(failure), WS)
    assert ref.customer_id is None
    assert ref.error is not None and ref.error.startswith("workspace unreadable: HTTP 40")


def test_a_workspace_without_customer_id_is_an_error() -> None:
    ref = resolve_workspace(FakeArm(Workspace(None)), WS)
    assert ref.error == "workspace has no customerId"


def test_rows_pickled_together_come_back_equal_and_sharing_one_index() -> None:
    index = {"_ResourceId": 0, "Attempts": 1, "LastSeen": 2}
    rows = [LogRow(index, ("/r/a", n, NOW - timedelta(minutes=n))) for n in range(3)]
    back = pickle.loads(pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301
    assert [dict(r) for r in back] == [dict(r) for r in rows]
    assert back[0]["LastSeen"] == NOW and back[2].get("Missing", "x") == "x"
    assert len({id(r._index) for r in back}) == 1


def test_packed_rows_come_back_equal_with_their_index_and_strings_interned() -> None:
    index = {"_ResourceId": 0, "Identity": 1, "Attempts": 2, "Bins": 3}
    # Interned as decoding interns the columns that repeat; pickle would give back a copy.
    who = sys.intern("".join(["ci", "@contoso.com"]))
    groups = {
        "/r/a": [LogRow(index, ("/r/a", who, n, [["2026-01-01T00:00:00Z", n]])) for n in range(3)],
        "/r/b": [LogRow(index, ("/r/b", None, 1.5, {"k": True}))],
    }
    packed, unpack = pack_rows(groups)
    assert set(packed) == {"/r/a", "/r/b"} and all(type(b) is bytes for b in packed.values())
    for key, rows in groups.items():
        back = unpack(packed[key])
        assert [dict(r) for r in back] == [dict(r) for r in rows]
        assert all(type(r) is LogRow and r._index is index for r in back)
    back = unpack(packed["/r/a"])
    assert back[0]["Identity"] is who


@pytest.mark.parametrize(
    "groups",
    [
        # The SDK's own tables hold datetimes, which marshal cannot.
        {"/r/a": [LogRow({"At": 0}, (NOW,))]},
        # Rows of two indexes, or plain mappings (other readers): pickled as they are.
        {"/r/a": [LogRow({"A": 0}, (1,))], "/r/b": [LogRow({"B": 0}, (2,))]},
        {"/r/a": [{"A": 1, "At": NOW}]},
    ],
)
def test_rows_marshal_cannot_hold_are_pickled(groups: dict[str, list[Any]]) -> None:
    packed, unpack = pack_rows(groups)
    for key, rows in groups.items():
        assert [dict(r) for r in unpack(packed[key])] == [dict(r) for r in rows]
        assert packed[key][:1] == b"\x80"  # pickle's protocol marker
