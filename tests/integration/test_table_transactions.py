"""`transactions.submit_transaction` against Azurite, side by side with the SDK's own
`TableClient.submit_transaction`: the same rows stored, the same results, the same errors."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, DecodeError, ServiceRequestError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from auditor.storage.transactions import Operation, submit_transaction

pytestmark = pytest.mark.integration

Submit = Callable[[TableClient, list[Operation]], list[Any]]
SUBMITS: dict[str, Submit] = {
    "sdk": lambda table, operations: table.submit_transaction(operations),
    "ours": lambda table, operations: submit_transaction(table, operations),
}
HOSTILE = "x'y\" \r\n--batch_0\r\n--changeset_0--\r\nHTTP/1.1 500 Oops\r\n é 😀 \x00"


@pytest.fixture
def service(storage_connection_string: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(storage_connection_string)


@pytest.fixture
def tables(service: TableServiceClient, table_prefix: str) -> Iterator[dict[str, TableClient]]:
    """One fresh table per way of submitting."""
    made = {name: service.create_table(f"{table_prefix}{name}") for name in SUBMITS}
    yield made
    for table in made.values():
        service.delete_table(table.table_name)


def rows(table: TableClient) -> list[dict[str, Any]]:
    return sorted(
        (
            {**row, "_types": sorted(type(v).__name__ for v in row.values())}
            for row in table.list_entities()
        ),
        key=lambda r: (r["PartitionKey"], r["RowKey"]),
    )


def entity(row: str, **extra: Any) -> dict[str, Any]:
    return {"PartitionKey": "p", "RowKey": row, **extra}


def test_the_same_rows_are_stored_as_by_the_sdk(tables: dict[str, TableClient]) -> None:
    at = datetime(2031, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
    operations: list[Operation] = [
        (
            "upsert",
            entity("a", Text=HOSTILE, Count=7, Ratio=1.5, Flag=True, At=at, Long="x" * 30_000),
            {"mode": UpdateMode.REPLACE},
        ),
        ("upsert", entity("b", Text="merged"), {"mode": UpdateMode.MERGE}),
        ("create", entity("c", Count=-1), {}),
    ]
    for name, submit in SUBMITS.items():
        results = submit(tables[name], operations)
        stored = {r["RowKey"]: r for r in tables[name].list_entities()}
        # Each operation's result is its row's new ETag, as the SDK reports it.
        assert [r["etag"] for r in results] == [stored[k].metadata["etag"] for k in "abc"]
    sdk, ours = rows(tables["sdk"]), rows(tables["ours"])
    assert ours == sdk
    assert ours[0]["Text"] == HOSTILE and ours[0]["At"] == at


def test_updates_and_deletes_with_etags(tables: dict[str, TableClient]) -> None:
    table = tables["ours"]
    [created] = submit_transaction(table, [("create", entity("a", N=1), {})])
    results = submit_transaction(
        table,
        [
            (
                "update",
                entity("a", N=2),
                {"etag": created["etag"], "match_condition": MatchConditions.IfNotModified},
            ),
            ("upsert", entity("b", N=3), {}),
        ],
    )
    assert table.get_entity("p", "a")["N"] == 2
    assert len(results) == 2
    submit_transaction(table, [("delete", entity("a"), {}), ("delete", entity("b"), {})])
    assert list(table.list_entities()) == []


@pytest.mark.parametrize(
    "case",
    ["exists", "stale etag", "missing row", "no such table", "too large"],
)
def test_a_failed_transaction_fails_as_with_the_sdk_and_writes_nothing(
    tables: dict[str, TableClient], service: TableServiceClient, case: str
) -> None:
    stale = "W/\"datetime'2020-01-01T00%3A00%3A00Z'\""
    failures: dict[str, tuple[type[BaseException], Any, int | None, str]] = {}
    for name, submit in SUBMITS.items():
        table = tables[name]
        table.create_entity(entity("old", N=1))
        operations: list[Operation] = [("upsert", entity("new", N=1), {})]
        if case == "exists":
            operations.append(("create", entity("old"), {}))
        elif case == "stale etag":
            condition = {"etag": stale, "match_condition": MatchConditions.IfNotModified}
            operations.append(("update", entity("old", N=2), condition))
        elif case == "missing row":
            operations.append(("delete", entity("gone"), {}))
        elif case == "no such table":
            table = service.get_table_client(f"missing{uuid.uuid4().hex[:10]}")
        else:
            operations += [
                ("upsert", entity(f"big{i}", A="a" * 31_000, B="b" * 31_000), {}) for i in range(80)
            ]
        with pytest.raises(AzureError) as raised:
            submit(table, operations)
        error: Any = raised.value
        message = str(error).split("\n", 1)[0].split(":", 1)[0]  # the failing operation's index
        failures[name] = (type(error), error.error_code, error.status_code, message)
        assert [r["RowKey"] for r in tables[name].list_entities()] == ["old"]
    assert failures["ours"] == failures["sdk"]


def test_an_empty_transaction_sends_nothing(tables: dict[str, TableClient]) -> None:
    assert submit_transaction(tables["ours"], []) == []


def test_the_clients_pipeline_options_apply(storage_connection_string: str) -> None:
    """Timeouts and retries go to the SDK's pipeline, as for its own calls: an unreachable
    service fails the same way, and at once with no retries."""
    port = _free_port()
    dead = storage_connection_string.replace(
        storage_connection_string.split("TableEndpoint=")[1].split(";")[0],
        f"http://127.0.0.1:{port}/devstoreaccount1",
    )
    table = TableServiceClient.from_connection_string(dead).get_table_client("t")
    for submit in (
        table.submit_transaction,
        lambda ops, **kw: submit_transaction(table, ops, **kw),
    ):
        with pytest.raises(ServiceRequestError):
            submit([("upsert", entity("a"), {})], retry_total=0, connection_timeout=2)


def _free_port() -> int:

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_an_answer_the_sdk_cannot_read_is_a_clear_azure_error(
    tables: dict[str, TableClient],
) -> None:
    """Azurite answers a transaction of more than 100 operations with a part that is not
    HTTP (the SDK's parser dies with `http.client.BadStatusLine`): here it is an AzureError
    that says what was wrong, which the store's retry and error reporting understand."""
    operations: list[Operation] = [("upsert", entity(f"r{i:03d}"), {}) for i in range(101)]
    with pytest.raises(DecodeError, match="Table Storage answered a transaction with"):
        submit_transaction(tables["ours"], operations)
    assert list(tables["ours"].list_entities()) == []
