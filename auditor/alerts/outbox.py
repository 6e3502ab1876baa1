"""Alerts not yet delivered, per sink, in Table Storage (`{prefix}outbox`).

Written ahead: once a run has claimed an alert it puts one row per sink here *before* sending
(PartitionKey: sink name, RowKey: alert id), and deletes the row, with its ETag, once the sink
took the alert. A run that dies mid-delivery therefore leaves the row behind, and a later run
sends it. `NotBefore` is a lease while a run is sending (so an overlapping run leaves the row
alone) and the next retry time after a failure. Every transition of a row is conditional on
its ETag, so two runs never both deliver one row.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableServiceClient, UpdateMode

from auditor.alerts.payload import timestamp
from auditor.alerts.tables import LazyTable, etag_of, utc, without_none

log = logging.getLogger(__name__)

_MAX_ERROR = 500


@dataclass(frozen=True)
class OutboxEntry:
    sink: str
    alert_id: str
    document: dict[str, Any]  # the alert document (payload.to_document)
    history_key: str
    created_at: datetime
    not_before: datetime
    attempts: int = 0
    last_error: str = ""
    etag: str | None = None


class Outbox:
    def __init__(self, service: TableServiceClient, *, prefix: str) -> None:
        self._table = LazyTable(service, f"{prefix}outbox")

    @property
    def table_name(self) -> str:
        return self._table.name

    def put(
        self,
        sink: str,
        document: dict[str, Any],
        *,
        history_key: str,
        now: datetime,
        lease: timedelta,
    ) -> OutboxEntry | None:
        """Create the row, leased to the caller; None if the row exists (someone else has it)."""
        entry = OutboxEntry(
            sink=sink,
            alert_id=str(document["id"]),
            document=document,
            history_key=history_key,
            created_at=now,
            not_before=now + lease,
        )
        try:
            result = self._table.client.create_entity(_to_entity(entry))
        except ResourceExistsError:
            return None
        return replace(entry, etag=etag_of(result))

    def due(self, sink: str, now: datetime, *, limit: int = 1000) -> list[OutboxEntry]:
        """Rows of `sink` whose lease or retry time has passed, oldest alert first."""
        rows = self._table.client.query_entities(
            "PartitionKey eq @sink and NotBefore le @now",
            parameters={"sink": sink, "now": now},
        )
        entries = []
        for entity in rows:
            entries.append(_to_entry(entity))
            if len(entries) >= limit:
                break
        return sorted(entries, key=lambda e: e.created_at)

    def all(self, *, limit: int = 200) -> list[OutboxEntry]:
        entries: list[OutboxEntry] = []
        for entity in self._table.client.list_entities():
            entries.append(_to_entry(entity))
            if len(entries) >= limit:
                break
        return sorted(entries, key=lambda e: e.created_at)

    def lease(self, entry: OutboxEntry, until: datetime) -> OutboxEntry | None:
        """Take a due row for sending; None if another run took or finished it meanwhile."""
        return self._replace(replace(entry, not_before=until), entry.etag)

    def delivered(self, entry: OutboxEntry) -> bool:
        """Remove the row; False if it changed since we leased it (another run took it over
        after our lease ran out: that run may deliver it once more)."""
        try:
            self._table.client.delete_entity(
                entry.sink,
                entry.alert_id,
                etag=entry.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def failed(self, entry: OutboxEntry, error: str, retry_at: datetime) -> OutboxEntry | None:
        updated = replace(
            entry, attempts=entry.attempts + 1, last_error=error[:_MAX_ERROR], not_before=retry_at
        )
        return self._replace(updated, entry.etag)

    def drop(self, entry: OutboxEntry) -> bool:
        return self.delivered(entry)

    def _replace(self, entry: OutboxEntry, etag: str | None) -> OutboxEntry | None:
        try:
            result = self._table.client.update_entity(
                _to_entity(entry),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return replace(entry, etag=etag_of(result))


def _to_entity(entry: OutboxEntry) -> dict[str, Any]:
    return without_none(
        {
            "PartitionKey": entry.sink,
            "RowKey": entry.alert_id,
            "Document": json.dumps(entry.document, separators=(",", ":")),
            "HistoryKey": entry.history_key,
            "CreatedAt": entry.created_at,
            "NotBefore": entry.not_before,
            "Attempts": entry.attempts,
            "LastError": entry.last_error or None,
        }
    )


def _to_entry(entity: Any) -> OutboxEntry:
    created = utc(entity.get("CreatedAt"))
    not_before = utc(entity.get("NotBefore"))
    assert created is not None and not_before is not None  # always written
    return OutboxEntry(
        sink=entity["PartitionKey"],
        alert_id=entity["RowKey"],
        document=json.loads(entity["Document"]),
        history_key=entity.get("HistoryKey", ""),
        created_at=created,
        not_before=not_before,
        attempts=int(entity.get("Attempts", 0)),
        last_error=entity.get("LastError", ""),
        etag=etag_of(entity),
    )


def entry_document(entry: OutboxEntry) -> dict[str, Any]:
    """An undelivered alert for the API: which sink, how often tried, the redacted error."""
    return {
        "alertId": entry.alert_id,
        "sink": entry.sink,
        "summary": entry.document.get("summary"),
        "attempts": entry.attempts,
        "lastError": entry.last_error or None,
        "nextAttemptAt": timestamp(entry.not_before),
        "createdAt": timestamp(entry.created_at),
    }
