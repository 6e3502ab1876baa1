"""Small helpers shared by the alert state store and the outbox (Azure Table Storage)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError

from auditor.storage.errors import StorageError
from auditor.storage.listing import entity_time
from auditor.storage.retry import StorageRetry
from auditor.storage.transactions import (
    MAX_OPERATIONS,
    Operation,
    submit_transaction,
    transactions,
)

__all__ = ["MAX_OPERATIONS", "Operation", "transactions", "write_all"]

R = TypeVar("R")


class LazyTable:
    """A table created on first use, once per process, so building a store does no I/O."""

    def __init__(self, service: TableServiceClient, name: str) -> None:
        self.name = name
        self._service = service
        self._client: TableClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> TableClient:
        with self._lock:
            if self._client is None:
                try:
                    self._service.create_table(self.name)
                except ResourceExistsError:
                    pass
                self._client = self._service.get_table_client(self.name)
            return self._client


def utc(value: Any) -> datetime | None:
    """A stored datetime back as a plain aware datetime (the SDK returns a subclass; a raw
    row, its text)."""
    if isinstance(value, str):
        value = entity_time(value)
    if not isinstance(value, datetime):
        return None
    moment = value.astimezone(UTC) if value.tzinfo is not None else value
    return datetime.combine(moment.date(), moment.time(), tzinfo=UTC)


def etag_of(entity: Mapping[str, Any]) -> str | None:
    metadata = getattr(entity, "metadata", None)
    if isinstance(metadata, Mapping):
        value = metadata.get("etag")
        return str(value) if value else None
    value = entity.get("etag") or entity.get("odata.etag")  # the latter: a raw row
    return str(value) if value else None


def without_none(entity: dict[str, Any]) -> dict[str, Any]:
    """Table Storage has no null: an absent property is how "not set" is stored."""
    return {k: v for k, v in entity.items() if v is not None}


# One for the process, shared by every alert table: what it learns of an outage holds for all.
_RETRY = StorageRetry()


def _submit(client: TableClient, operations: list[Operation]) -> list[Mapping[str, Any]]:
    """A transaction that rides out a short outage like the run's own writes (the SDK never
    retries a POST on a lost connection), so a delivery recorded during a blip is not sent
    again as a possible repeat. Errors come out as the SDK raised them."""
    try:
        return _RETRY.call("writing alert state", submit_transaction, client, operations)
    except StorageError as exc:
        if isinstance(exc.__cause__, AzureError):
            raise exc.__cause__ from None
        raise


def write_all(
    client: TableClient,
    operations: Sequence[Operation],
    *,
    alone: Callable[[int], R],
    written: Callable[[int, Mapping[str, Any]], R],
    unwritten: Callable[[int, AzureError], R] | None = None,
) -> list[R]:
    """Apply `operations` in as few transactions as `transactions` allows; one result each.

    `written(i, response)` is the result of operation i of a committed transaction (the
    response metadata holds the row's new `etag`). A transaction is all or nothing: when it
    fails (TableTransactionError: a row exists, an ETag is stale, the payload was too large),
    each of its operations is retried on its own with `alone(i)`, which decides for that row
    alone. An operation alone in its group goes straight to `alone`: a transaction of one
    costs the same round trip. Any other storage error gives `unwritten(i, error)` for each
    operation of the group, or propagates without it.
    """
    results: dict[int, R] = {}
    for group in transactions([operation[1] for operation in operations]):
        if len(group) == 1:
            results[group[0]] = alone(group[0])
            continue
        try:
            responses = _submit(client, [operations[i] for i in group])
        except TableTransactionError:
            for i in group:
                results[i] = alone(i)
            continue
        except AzureError as exc:
            if unwritten is None:
                raise
            for i in group:
                results[i] = unwritten(i, exc)
            continue
        for i, response in zip(group, responses, strict=True):
            results[i] = written(i, response)
    return [results[i] for i in range(len(operations))]
