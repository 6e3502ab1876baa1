"""Small helpers shared by the alert state store and the outbox (Azure Table Storage)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient


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
    """A stored datetime back as a plain aware datetime (the SDK returns a subclass)."""
    if not isinstance(value, datetime):
        return None
    moment = value.astimezone(UTC) if value.tzinfo is not None else value
    return datetime.combine(moment.date(), moment.time(), tzinfo=UTC)


def etag_of(entity: Mapping[str, Any]) -> str | None:
    metadata = getattr(entity, "metadata", None)
    if isinstance(metadata, Mapping):
        value = metadata.get("etag")
        return str(value) if value else None
    value = entity.get("etag")
    return str(value) if value else None


def without_none(entity: dict[str, Any]) -> dict[str, Any]:
    """Table Storage has no null: an absent property is how "not set" is stored."""
    return {k: v for k, v in entity.items() if v is not None}
