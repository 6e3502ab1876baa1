"""Alerts not yet delivered, per sink, in Table Storage (`{prefix}outbox`).

Written ahead: once a run has claimed an alert it puts one row per sink here *before* sending
(PartitionKey: sink name, RowKey: alert id), and deletes the row, with its ETag, once the sink
took the alert. A run that dies mid-delivery therefore leaves the row behind, and a later run
sends it. `NotBefore` is a lease while a run is sending (so an overlapping run leaves the row
alone) and the next retry time after a failure. Every transition of a row is conditional on
its ETag, so two runs never both deliver one row.

A run's rows are written, leased and settled in transactions of up to 100 rows of one sink;
a transaction that fails on one row (it changed meanwhile) is retried row by row, so every
row still succeeds or fails on its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableServiceClient, UpdateMode

from auditor.alerts.payload import timestamp
from auditor.alerts.tables import LazyTable, Operation, etag_of, utc, without_none, write_all

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
    # Times the row was handed to a sink (created or leased for sending). More hand-overs
    # than recorded failures means one ended unrecorded: that alert may have gone out.
    handovers: int = 1

    @property
    def maybe_sent(self) -> bool:
        return self.handovers > self.attempts


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
        entry = _new_entry(sink, document, history_key, now, lease)
        try:
            result = self._table.client.create_entity(_to_entity(entry))
        except ResourceExistsError:
            return None
        return replace(entry, etag=etag_of(result))

    def put_many(
        self,
        sink: str,
        alerts: Sequence[tuple[dict[str, Any], str]],
        *,
        now: datetime,
        lease: timedelta,
    ) -> list[OutboxEntry | None]:
        """`put` for each (document, history key), 100 rows to a transaction. None for a row
        that exists, and, after an error log, for a row storage would not take: that alert is
        then sent without a safety net."""
        entries = [_new_entry(sink, document, key, now, lease) for document, key in alerts]

        def unwritten(i: int, exc: AzureError) -> None:
            log.error(
                "alert %s could not be written to the %s outbox (%s); sending without a safety net",
                entries[i].alert_id,
                sink,
                type(exc).__name__,
            )

        def alone(i: int) -> OutboxEntry | None:
            try:
                return self.put(
                    sink,
                    entries[i].document,
                    history_key=entries[i].history_key,
                    now=now,
                    lease=lease,
                )
            except AzureError as exc:
                unwritten(i, exc)
                return None

        return write_all(
            self._table.client,
            [("create", _to_entity(e), {}) for e in entries],
            alone=alone,
            written=lambda i, response: replace(entries[i], etag=etag_of(response)),
            unwritten=unwritten,
        )

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
        leased = replace(entry, not_before=until, handovers=entry.handovers + 1)
        return self._replace(leased, entry.etag)

    def lease_many(
        self, entries: Sequence[OutboxEntry], until: datetime
    ) -> list[OutboxEntry | None]:
        """`lease` for each row, 100 to a transaction."""
        leased = [replace(e, not_before=until, handovers=e.handovers + 1) for e in entries]
        return write_all(
            self._table.client,
            [_update(e, entries[i].etag) for i, e in enumerate(leased)],
            alone=lambda i: self.lease(entries[i], until),
            written=lambda i, response: replace(leased[i], etag=etag_of(response)),
        )

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

    def settle(
        self,
        delivered: Sequence[OutboxEntry],
        failed: Sequence[tuple[OutboxEntry, str, datetime]],
    ) -> None:
        """Delete the delivered rows and record each failure (error, retry time), as `delivered`
        and `failed` do, 100 rows to a transaction. A row that changed since it was leased is
        left to whoever has it now."""
        updates = [
            replace(e, attempts=e.attempts + 1, last_error=error[:_MAX_ERROR], not_before=retry)
            for e, error, retry in failed
        ]
        operations: list[Operation] = [
            (
                "delete",
                {"PartitionKey": e.sink, "RowKey": e.alert_id},
                {"etag": e.etag, "match_condition": MatchConditions.IfNotModified},
            )
            for e in delivered
        ]
        operations += [_update(u, e.etag) for u, (e, _, _) in zip(updates, failed, strict=True)]

        def alone(i: int) -> object:
            if i < len(delivered):
                return self.delivered(delivered[i])
            entry, error, retry_at = failed[i - len(delivered)]
            return self.failed(entry, error, retry_at)

        write_all(self._table.client, operations, alone=alone, written=lambda i, _: None)

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


def _new_entry(
    sink: str, document: dict[str, Any], history_key: str, now: datetime, lease: timedelta
) -> OutboxEntry:
    return OutboxEntry(
        sink=sink,
        alert_id=str(document["id"]),
        document=document,
        history_key=history_key,
        created_at=now,
        not_before=now + lease,
    )


def _update(entry: OutboxEntry, etag: str | None) -> Operation:
    return (
        "update",
        _to_entity(entry),
        {
            "mode": UpdateMode.REPLACE,
            "etag": etag,
            "match_condition": MatchConditions.IfNotModified,
        },
    )


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
            "Handovers": entry.handovers,
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
        # Rows written before hand-overs were counted: taken as recorded.
        handovers=int(entity.get("Handovers", entity.get("Attempts", 0))),
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
