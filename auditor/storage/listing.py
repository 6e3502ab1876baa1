"""Table Storage queries whose pages skip the SDK's response models (`list_rows`). Shared by
the reads a run makes of whole tables: the stored registries and the alert states.

`TableClient.list_entities` and `query_entities` deserialize every page through the
generated client's models before turning each entity into a `TableEntity`: a 10,000-row
table took about 0.8 s of CPU, half of it in those models. Here the SDK still builds each
page's request (filter, select, continuation) and sends it through its own pipeline, and
still turns each entity into a `TableEntity` (`_convert_to_entity`, types and metadata); only
the page's JSON is read directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from azure.core.exceptions import DecodeError
from azure.data.tables import TableClient, TableEntity
from azure.data.tables._deserialize import _convert_to_entity
from azure.data.tables._error import _decode_error
from azure.data.tables._generated.operations._operations import (
    build_table_query_entities_request,
)
from azure.data.tables._serialize import _parameter_filter_substitution

_NEXT_PARTITION = "x-ms-continuation-NextPartitionKey"
_NEXT_ROW = "x-ms-continuation-NextRowKey"


def list_rows(
    table: TableClient,
    *,
    query_filter: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    select: Sequence[str] | None = None,
    results_per_page: int | None = None,
    **options: Any,
) -> Iterator[TableEntity]:
    """`table.query_entities(query_filter, parameters=..., select=...)` (or `list_entities`
    without a filter): the same entities, requests, pipeline options and errors."""
    client: Any = table  # the SDK's generated client is not public API
    if query_filter is not None:
        query_filter = _parameter_filter_substitution(dict(parameters or {}), query_filter)
    columns = ",".join(select) if select else None
    next_partition: str | None = None
    next_row: str | None = None
    while True:
        request = build_table_query_entities_request(
            table.table_name,
            top=results_per_page,
            select=columns,
            filter=query_filter,
            next_partition_key=next_partition,
            next_row_key=next_row,
            version=client._client._config.version,
        )
        response = client._client.send_request(request, **options)
        if response.status_code != 200:
            raise _decode_error(response)  # type: ignore[no-untyped-call]
        for entity in _page(response):
            yield _convert_to_entity(entity)  # type: ignore[no-untyped-call]
        next_partition = response.headers.get(_NEXT_PARTITION)
        next_row = response.headers.get(_NEXT_ROW)
        if not next_partition and not next_row:
            return


def _page(response: Any) -> list[Mapping[str, Any]]:
    try:
        value = response.json()["value"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DecodeError("Table Storage answered a query with a malformed page", response) from exc
    if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
        raise DecodeError("Table Storage answered a query with a malformed page", response)
    return value
