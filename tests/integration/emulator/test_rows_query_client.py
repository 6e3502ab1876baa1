"""`RowsQueryClient` (the auditor's Log Analytics client) against the emulator, side by side
with the SDK's own `LogsQueryClient`: the same answers, errors and partial results, without
the SDK's result models."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, DecodeError, HttpResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.identity import DefaultAzureCredential
from azure.monitor.query import LogsQueryClient, LogsQueryResult

from auditor.azure.errors import describe_error
from auditor.azure.logs import RowsQueryClient
from auditor.evidence.rows import as_datetime
from emulator.identity import ARM_AUDIENCE, LOGS_AUDIENCE
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

LAW = "aaaaaaaa-0000-0000-0000-000000000001"
COUNTS = (
    "union withsource=T ContainerRegistryLoginEvents, ContainerRegistryRepositoryEvents"
    " | summarize n = count(), lastSeen = max(TimeGenerated) by T, _ResourceId"
    " | order by _ResourceId asc, T asc"
)


def client(
    cls: type[LogsQueryClient], emu: RunningEmulator, credential: Any, audience: str = LOGS_AUDIENCE
) -> LogsQueryClient:
    return cls(credential, endpoint=emu.base_url, audience=audience)


@pytest.fixture(scope="module")
def rows(emu: RunningEmulator, credential: DefaultAzureCredential) -> LogsQueryClient:
    return client(RowsQueryClient, emu, credential)


@pytest.fixture(scope="module")
def sdk(emu: RunningEmulator, credential: DefaultAzureCredential) -> LogsQueryClient:
    return client(LogsQueryClient, emu, credential)


def plain(value: Any) -> Any:
    """A cell as the SDK types it: datetimes parsed."""
    return as_datetime(value) if isinstance(value, str) and value[:2] == "20" else value


def test_the_same_rows_as_the_sdk_for_a_window(
    rows: LogsQueryClient, sdk: LogsQueryClient, emu: RunningEmulator
) -> None:
    end = emu.world.now()
    window = (end - timedelta(hours=6), end)
    ours = rows.query_workspace(LAW, COUNTS, timespan=window)
    theirs = sdk.query_workspace(LAW, COUNTS, timespan=window)
    assert isinstance(theirs, LogsQueryResult) and ours.status == "Success"
    [table], [expected] = ours.tables, theirs.tables
    assert table.columns == expected.columns == ["T", "_ResourceId", "n", "lastSeen"]
    assert len(table.rows) == len(expected.rows) > 0
    cells = [[plain(row[c]) for c in table.columns] for row in table.rows]
    assert cells == [list(r) for r in expected.rows]
    # As sent: datetimes stay text, read where used.
    assert all(isinstance(row["lastSeen"], str) for row in table.rows)
    # The window is sent: an empty one finds nothing.
    past = (end - timedelta(days=400), end - timedelta(days=399))
    assert rows.query_workspace(LAW, COUNTS, timespan=past).tables[0].rows == ()


def test_a_kusto_error_is_the_services_400(rows: LogsQueryClient) -> None:
    with pytest.raises(HttpResponseError) as err:
        rows.query_workspace(LAW, "ContainerRegistryLoginEvents | where Nope == 1", timespan=None)
    assert err.value.status_code == 400
    assert describe_error(err.value).startswith("HTTP 400 BadArgumentError: ")


def test_a_partial_answer_keeps_its_rows_and_says_why(
    rows: LogsQueryClient, emu: RunningEmulator
) -> None:
    emu.world.add_fault({"kind": "partial", "api": "logs", "count": 1})
    result = rows.query_workspace(LAW, "ContainerRegistryLoginEvents | take 5", timespan=None)
    assert result.status == "PartialError"
    assert len(result.partial_data[0].rows) == 5
    assert result.partial_error is not None and result.partial_error.code == "PartialError"
    assert rows.query_workspace(LAW, "print 1", timespan=None).status == "Success"


def test_a_token_for_another_audience_is_refused(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    wrong = client(RowsQueryClient, emu, credential, audience=ARM_AUDIENCE)
    with pytest.raises(ClientAuthenticationError) as err:
        wrong.query_workspace(LAW, "print 1", timespan=None)
    assert err.value.status_code == 401


def test_a_malformed_answer_is_a_decode_error(rows: LogsQueryClient, emu: RunningEmulator) -> None:
    emu.world.add_fault({"kind": "malformed", "api": "logs", "count": 1})
    with pytest.raises(DecodeError):
        rows.query_workspace(LAW, "print 1", timespan=None)


class _SeesDecoding(SansIOHTTPPolicy[Any, Any]):
    """A pipeline policy that notes whether the pipeline decoded an answer's body itself."""

    def __init__(self) -> None:
        self.decoded: list[bool] = []

    def on_response(self, request: Any, response: Any) -> None:
        self.decoded.append("deserialized_data" in response.context)


def test_the_pipeline_does_not_decode_the_answer_a_second_time(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    """The answer is decoded once, a row at a time: a pipeline decoding it as well held a
    whole second copy of every row."""
    seen = _SeesDecoding()
    ours = RowsQueryClient(
        credential, endpoint=emu.base_url, audience=LOGS_AUDIENCE, per_call_policies=[seen]
    )
    theirs = LogsQueryClient(
        credential, endpoint=emu.base_url, audience=LOGS_AUDIENCE, per_call_policies=[seen]
    )
    end = emu.world.now()
    result = ours.query_workspace(LAW, COUNTS, timespan=(end - timedelta(hours=6), end))
    assert result.tables[0].rows
    theirs.query_workspace(LAW, COUNTS, timespan=(end - timedelta(hours=6), end))
    assert seen.decoded == [False, True]  # the SDK's own client does decode it there
