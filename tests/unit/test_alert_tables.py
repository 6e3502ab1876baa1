"""How alert rows are grouped into entity-group transactions: what Table Storage accepts."""

from __future__ import annotations

import json
from typing import Any

from auditor.alerts.tables import MAX_OPERATIONS, transactions

LIMIT = 4 * 2**20  # what Table Storage accepts in one transaction


def row(partition: str, key: str | int, **extra: Any) -> dict[str, Any]:
    return {"PartitionKey": partition, "RowKey": str(key), **extra}


def test_one_partition_is_split_every_100_rows_in_order() -> None:
    groups = transactions([row("state", i) for i in range(250)])
    assert [len(g) for g in groups] == [MAX_OPERATIONS, MAX_OPERATIONS, 50]
    assert [i for g in groups for i in g] == list(range(250))


def test_each_transaction_holds_one_partition() -> None:
    entities = [row("webhook" if i % 3 else "log", i) for i in range(30)]
    groups = transactions(entities)
    assert len(groups) == 2
    for group in groups:
        assert len({entities[i]["PartitionKey"] for i in group}) == 1
        assert group == sorted(group)  # a partition's rows keep their order
    assert sorted(i for g in groups for i in g) == list(range(30))


def test_a_row_never_appears_twice_in_one_transaction() -> None:
    entities = [row("history", "a"), row("history", "b"), row("history", "a")]
    assert transactions(entities) == [[0, 1], [2]]


def test_large_rows_are_split_under_the_payload_limit() -> None:
    document = "x" * 60_000  # an outbox row with a long alert document
    entities = [row("webhook", i, Document=document) for i in range(100)]
    groups = transactions(entities)
    assert len(groups) > 1
    for group in groups:
        payload = sum(len(json.dumps(entities[i])) for i in group)
        assert payload < LIMIT * 0.8
    assert [i for g in groups for i in g] == list(range(100))


def test_nothing_to_write_is_no_transaction() -> None:
    assert transactions([]) == []
