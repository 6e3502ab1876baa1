"""`listing.list_rows` against Azurite, side by side with the SDK's own `list_entities` and
`query_entities`: the same entities (values, types, metadata), pages and errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import EdmType, TableClient, TableServiceClient, UpdateMode

from auditor.storage.listing import list_rows
from auditor.storage.transactions import submit_transaction

pytestmark = pytest.mark.integration

HOSTILE = "x'y\" \r\n é 😀 ' or ''='"
# A key may not hold control characters.
HOSTILE_KEY = "x'y\" é 😀 ' or ''='"
AT = datetime(2031, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)


@pytest.fixture
def table(storage_connection_string: str, table_prefix: str) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    made = service.create_table(f"{table_prefix}list")
    for partition in ("p", HOSTILE_KEY):
        submit_transaction(
            made,
            [
                (
                    "upsert",
                    {
                        "PartitionKey": partition,
                        "RowKey": f"r{i:03d}",
                        "Text": f"{HOSTILE} {i}",
                        "Small": i,
                        "Big": (2**40 + i, EdmType.INT64),
                        "Ratio": i / 3,
                        "Flag": i % 2 == 0,
                        "At": AT,
                        "Guid": uuid.UUID(int=i),
                        "Raw": bytes([i % 256, 0, 255]),
                        **({"Sparse": "only some"} if i % 7 == 0 else {}),
                    },
                    {"mode": UpdateMode.REPLACE},
                )
                for i in range(60)
            ],
        )
    yield made
    service.delete_table(made.table_name)


def seen(entities: Iterator[Any]) -> list[tuple[Any, ...]]:
    return [
        (dict(e), {k: type(v).__name__ for k, v in e.items()}, dict(e.metadata)) for e in entities
    ]


@pytest.mark.parametrize("page", [None, 7, 1000])
def test_the_same_entities_as_list_entities(table: TableClient, page: int | None) -> None:
    ours = seen(list_rows(table, results_per_page=page))
    assert ours == seen(iter(table.list_entities(results_per_page=page)))
    assert len(ours) == 120
    _, types, metadata = ours[0]
    assert types["At"] == "TablesEntityDatetime" and types["Big"] == "EntityProperty"
    assert metadata["etag"] and metadata["timestamp"]


@pytest.mark.parametrize("select", [None, ["RowKey", "Text", "Sparse"], ["Nope"]])
def test_the_same_entities_as_query_entities(table: TableClient, select: list[str] | None) -> None:
    query = "PartitionKey eq @pk and Small ge @low"
    parameters = {"pk": HOSTILE_KEY, "low": 50}  # a value an injected filter would break on
    ours = seen(
        list_rows(
            table, query_filter=query, parameters=parameters, select=select, results_per_page=4
        )
    )
    theirs = seen(
        iter(table.query_entities(query, parameters=parameters, select=select, results_per_page=4))
    )
    assert ours == theirs
    assert len(ours) == 10
    assert {e["PartitionKey"] for e, _, _ in ours if "PartitionKey" in e} <= {HOSTILE_KEY}


def test_a_missing_table_is_the_same_error(storage_connection_string: str) -> None:
    missing = TableClient.from_connection_string(storage_connection_string, "nosuchtable0")
    with pytest.raises(ResourceNotFoundError) as theirs:
        list(missing.list_entities())
    with pytest.raises(ResourceNotFoundError) as ours:
        list(list_rows(missing))
    assert type(ours.value) is type(theirs.value)
    assert ours.value.status_code == theirs.value.status_code == 404


def test_a_bad_filter_is_the_same_error(table: TableClient) -> None:
    with pytest.raises(HttpResponseError) as theirs:
        list(table.query_entities("Small eq eq 1"))
    with pytest.raises(HttpResponseError) as ours:
        list(list_rows(table, query_filter="Small eq eq 1"))
    assert type(ours.value) is type(theirs.value)
    assert ours.value.status_code == theirs.value.status_code
