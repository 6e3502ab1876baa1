"""The batch bodies `transactions.submit_transaction` writes and reads, without a service."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.pipeline._base import Pipeline
from azure.core.rest import HttpRequest
from azure.data.tables import EdmType, UpdateMode
from azure.data.tables._generated._configuration import AzureTableConfiguration
from azure.data.tables._policies import StorageHeadersPolicy
from azure.data.tables._table_batch import TableBatchOperations

from auditor.storage.transactions import (
    EncodedEntity,
    Part,
    _requests,
    multipart_body,
    response_parts,
    transactions,
)

ENDPOINT = "https://account.table.core.windows.net"


def operations() -> list[HttpRequest]:
    batch = TableBatchOperations(
        config=AzureTableConfiguration(url=ENDPOINT), endpoint=ENDPOINT, table_name="t"
    )
    batch.add_operation(("upsert", {"PartitionKey": "p", "RowKey": "a", "S": "x\r\n--b"}, {}))
    batch.add_operation(
        ("upsert", {"PartitionKey": "p", "RowKey": "b", "N": 1}, {"mode": UpdateMode.REPLACE})
    )
    batch.add_operation(("create", {"PartitionKey": "p", "RowKey": "c"}))
    batch.add_operation(("delete", {"PartitionKey": "p", "RowKey": "d"}))
    return batch.requests


def test_the_body_is_the_one_azure_core_writes() -> None:
    requests = operations()
    changeset = HttpRequest("POST", "")
    changeset.set_multipart_mixed(
        *requests, policies=[StorageHeadersPolicy()], boundary="changeset_1"
    )
    request = HttpRequest("POST", f"{ENDPOINT}/$batch")
    request.set_multipart_mixed(
        changeset, policies=[StorageHeadersPolicy()], enforce_https=False, boundary="batch_1"
    )
    Pipeline._prepare_multipart_mixed_request(request)
    request._prepare_multipart_body()  # type: ignore[attr-defined]

    def dated(body: bytes) -> bytes:
        return re.sub(rb"(x-ms-date|Date): [^\r]*", rb"\1: (now)", body)

    ours = multipart_body(requests, "batch_1", "changeset_1")
    assert dated(ours) == dated(request.content)
    assert ours.count(b"Content-ID: ") == 4


def answer(*parts: bytes, inner: str = "changesetresponse_9") -> bytes:
    body = b"".join(
        b"--" + inner.encode() + b"\r\nContent-Type: application/http\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + part + b"\r\n"
        for part in parts
    )
    return (
        b"--batchresponse_1\r\nContent-Type: multipart/mixed; boundary="
        + inner.encode()
        + b"\r\n\r\n"
        + body
        + b"--"
        + inner.encode()
        + b"--\r\n--batchresponse_1--\r\n"
    )


OUTER = "multipart/mixed; boundary=batchresponse_1"
OK = b"HTTP/1.1 204 No Content\r\nETag: W/\"datetime'2031-01-01'\"\r\n\r\n"


def test_each_operations_answer_in_order_with_its_etag() -> None:
    created = b'HTTP/1.1 201 Created\r\nLocation: x\r\nEtag: W/"e2"\r\n\r\n{}'
    parts = response_parts(OUTER, answer(OK, created))
    assert [(p.status, p.etag) for p in parts] == [
        (204, "W/\"datetime'2031-01-01'\""),
        (201, 'W/"e2"'),
    ]
    assert parts[1].raw.startswith(b"HTTP/1.1 201 Created")


def test_a_failure_keeps_its_body_for_the_sdks_error_decoding() -> None:
    failed = (
        b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n\r\n"
        b'{"odata.error":{"code":"EntityAlreadyExists","message":{"value":"1:exists"}}}'
    )
    [part] = response_parts(OUTER, answer(failed))
    assert part == Part(409, None, failed)


def test_a_quoted_boundary_and_a_preamble() -> None:
    body = b"preamble\r\n" + answer(OK)
    assert len(response_parts('multipart/mixed; boundary="batchresponse_1"', body)) == 1


@pytest.mark.parametrize(
    ("content_type", "body", "problem"),
    [
        ("application/json", b"{}", "not multipart"),
        (OUTER, b"nothing of the kind", "without its boundary"),
        (OUTER, answer(b"changesetresponse_9\r\nHTTP/1.1 400 Bad"), "status line"),
        (OUTER, answer(b"HTTP/1.1 abc OK\r\n\r\n"), "status line"),
        (
            OUTER,
            b"--batchresponse_1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--batchresponse_1--",
            "of type 'text/plain'",
        ),
    ],
)
def test_a_malformed_answer_says_what_is_wrong(
    content_type: str, body: bytes, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        response_parts(content_type, body)


class Colour(Enum):
    RED = "red"


HOSTILE_KEYS = ["a", "it's", "a/b?c#d", "100% ü", "''", " spaced ", "x\u202ey", "%27"]


def typed_row(partition: str, row: str, n: int) -> dict[str, Any]:
    return {
        "PartitionKey": partition,
        "RowKey": row,
        "Text": f"line\r\n--batch {n} 'quoted' \"double\" ü",
        "Small": n,
        "Big": (2**40 + n, EdmType.INT64),
        "Ratio": n / 3,
        "Flag": n % 2 == 0,
        "At": datetime(2031, 1, 2, 3, 4, 5, n, tzinfo=UTC),
        "Missing": None,
        "Typed": (str(n), EdmType.INT64),
        "Colour": Colour.RED,
        "Raw": b"\x00\xff",
    }


def built(operations: list[Any], templated: bool) -> list[tuple[Any, ...]]:
    batch = TableBatchOperations(
        config=AzureTableConfiguration(url=ENDPOINT), endpoint=ENDPOINT, table_name="audit"
    )
    if templated:
        requests = _requests(batch, operations)
    else:
        for operation in operations:
            batch.add_operation(operation)
        requests = batch.requests
    out = []
    for request in requests:
        content = request.content
        body = content.encode() if isinstance(content, str) else bytes(content or b"")
        headers = {k: v for k, v in request.headers.items() if k != "Content-Length"}
        out.append((request.method, request.url, list(headers.items()), body))
    return out


@pytest.mark.parametrize("partition", HOSTILE_KEYS)
def test_requests_built_from_the_first_of_their_kind_are_the_sdks(partition: str) -> None:
    replace = {"mode": UpdateMode.REPLACE}
    operations: list[Any] = []
    for n, row in enumerate(HOSTILE_KEYS):
        on_etag = {
            "etag": f"W/\"datetime'2031-01-0{n % 9 + 1}T00%3A00%3A00.{n}Z'\"",
            "match_condition": MatchConditions.IfNotModified,
        }
        operations += [
            ("upsert", typed_row(partition, f"u{row}", n), replace),
            ("create", typed_row(partition, f"c{row}", n), {}),
            ("CREATE", typed_row(partition, f"C{row}", n)),
            ("upsert", typed_row(partition, f"m{row}", n), {"mode": UpdateMode.MERGE}),
            ("update", typed_row(partition, f"r{row}", n), {**on_etag, **replace}),
            ("delete", {"PartitionKey": partition, "RowKey": f"d{row}"}, on_etag),
            ("delete", {"PartitionKey": partition, "RowKey": f"D{row}"}, {}),
        ]
    # Kinds the SDK still builds, between the templated ones.
    operations += [
        ("upsert", typed_row(partition, "default", 0), {}),
        (
            "update",
            typed_row(partition, "etag", 0),
            {"etag": 'W/"1"', "match_condition": MatchConditions.IfNotModified},
        ),
        (
            "update",
            typed_row(partition, "bare", 0),
            {"etag": "unquoted", **replace, "match_condition": MatchConditions.IfNotModified},
        ),
        ("upsert", typed_row(partition, "last", 9), replace),
    ]
    ours = built(operations, templated=True)
    assert ours == built(operations, templated=False)
    assert len(ours) == len(operations)
    # Entities encoded once beforehand give the same requests.
    encoded = [(op[0], EncodedEntity(op[1]), *op[2:]) for op in operations]
    assert built(encoded, templated=True) == ours


def test_an_encoded_entity_is_sent_and_measured_by_its_body() -> None:
    replace = {"mode": UpdateMode.REPLACE}
    rows = [EncodedEntity(typed_row("p", f"r{n}", n)) for n in range(3)]
    batch = TableBatchOperations(
        config=AzureTableConfiguration(url=ENDPOINT), endpoint=ENDPOINT, table_name="audit"
    )
    rows[2].body = "as encoded"  # sent as it is, not encoded again
    requests = _requests(batch, [("upsert", row, replace) for row in rows])
    assert [r.content for r in requests[1:]] == [rows[1].body, "as encoded"]
    # Grouped by their bodies' size: 1.1 MB bodies go two to a 3 MiB transaction.
    small = [EncodedEntity({"PartitionKey": "p", "RowKey": f"s{n}"}) for n in range(4)]
    assert transactions(small) == [[0, 1, 2, 3]]
    for row in small:
        row.body = "x" * 1_100_000
    assert transactions(small) == [[0, 1], [2, 3]]


def test_a_templated_operation_in_another_partition_is_refused() -> None:
    replace = {"mode": UpdateMode.REPLACE}
    operations = [
        ("upsert", typed_row("p", "a", 1), replace),
        ("upsert", typed_row("q", "b", 2), replace),
    ]
    with pytest.raises(ValueError, match="Partition Keys"):
        built(operations, templated=True)
