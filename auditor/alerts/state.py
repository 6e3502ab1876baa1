"""Alert state and history in Table Storage (`{prefix}alerts`), so alerts survive restarts.

One row per alert key in partition `state` (RowKey: a hash of the key, since ARM ids contain
`/`, which Table Storage forbids in keys). A transition is claimed by writing the new state
conditionally: `create_entity` for a key never seen (a concurrent insert conflicts), else a
replace with the ETag read at the start of the run (`IfNotModified`). When two runs overlap
and plan the same alert, only one write succeeds and only that run sends it.

Every notice also gets a row in partition `history`, keyed newest first, with the outcome of
its delivery to each sink, for `GET /api/alerts`.

Many rows at once (a first run opens an alert for every failing registry) are written in
entity-group transactions of up to 100 rows of one partition (`tables.write_all`). A
transaction is atomic, so a batch of claims either all succeed or all fail; a failed batch is
claimed again one row at a time, and a concurrent run that got to some keys first wins exactly
those.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableServiceClient, UpdateMode

from auditor.alerts.model import Alert, AlertState, Topic
from auditor.alerts.payload import severity, summary, timestamp
from auditor.alerts.tables import LazyTable, Operation, etag_of, utc, without_none, write_all
from auditor.alerts.transitions import StateChange
from auditor.facts import Registry
from auditor.storage.listing import list_rows
from auditor.storage.pruning import Deadline, Pruned, delete_matching

log = logging.getLogger(__name__)

STATE = "state"
HISTORY = "history"
# Reading keys one by one beats a partition scan only for a handful (an Event Grid run).
_POINT_READS = 20
_MAX_MS = 10**15  # inverts milliseconds so the newest history row sorts first


def row_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _sink_property(sink: str) -> str:
    return f"Sink_{sink}"


class AlertStateStore:
    def __init__(self, service: TableServiceClient, *, prefix: str) -> None:
        self._table = LazyTable(service, f"{prefix}alerts")

    @property
    def table_name(self) -> str:
        return self._table.name

    # -- state -----------------------------------------------------------------------------

    def load(self, keys: Collection[str] | None = None) -> dict[str, AlertState]:
        """Stored states by alert key: of `keys`, or all of them when None."""
        table = self._table.client
        states: dict[str, AlertState] = {}
        if keys is not None and len(keys) <= _POINT_READS:
            for key in keys:
                try:
                    entity = table.get_entity(STATE, row_key(key))
                except ResourceNotFoundError:
                    continue
                states[key] = _to_state(entity)
            return states
        wanted = set(keys) if keys is not None else None
        # Raw: a fleet's states are read at once, and `_to_state` converts the few values
        # it uses (the SDK's entity parses every property and each row's Timestamp).
        for entity in list_rows(
            table, query_filter="PartitionKey eq @pk", parameters={"pk": STATE}, raw=True
        ):
            state = _to_state(entity)
            if wanted is None or state.key in wanted:
                states[state.key] = state
        return states

    def claim(self, change: StateChange) -> AlertState | None:
        """Write `change.state` only if nobody changed it since `change.previous` was read.

        Returns the stored state (with its new ETag), or None when a concurrent run got there
        first: that run owns whatever alert the change carries.
        """
        table = self._table.client
        entity = _to_entity(change.state)
        previous = change.previous
        try:
            if previous is None or previous.etag is None:
                result = table.create_entity(entity)
            else:
                result = table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=previous.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return None
        return _with_etag(change.state, etag_of(result))

    def claim_many(self, changes: Sequence[StateChange]) -> list[AlertState | None]:
        """`claim` for each change, in transactions of up to 100. A transaction with a conflict
        fails as a whole and its changes are claimed one by one, so each change is won or lost
        on its own, exactly as with `claim`."""
        entities = [_to_entity(c.state) for c in changes]
        return write_all(
            self._table.client,
            [_operation(c, e) for c, e in zip(changes, entities, strict=True)],
            alone=lambda i: self.claim(changes[i]),
            written=lambda i, response: _with_etag(changes[i].state, etag_of(response)),
        )

    def store(self, changes: Sequence[StateChange]) -> int:
        """Write changes that carry no alert, 100 to a transaction; returns how many were
        written. A conflicting change is dropped: another run wrote a newer state, and the
        next run starts from that one."""
        return sum(1 for state in self.claim_many(changes) if state is not None)

    def open_alerts(self) -> list[AlertState]:
        query = "PartitionKey eq @pk and Open eq true"
        rows = self._table.client.query_entities(query, parameters={"pk": STATE})
        states = [_to_state(e) for e in rows]
        return sorted(states, key=lambda s: (s.opened_at is None, s.opened_at), reverse=True)

    # -- history ---------------------------------------------------------------------------

    def append_history(self, alert: Alert, sinks: Iterable[str]) -> str:
        """Record a claimed notice; returns its history RowKey."""
        entity = _history_entity(alert, sinks)
        self._table.client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return str(entity["RowKey"])

    def append_histories(self, alerts: Sequence[Alert], sinks: Sequence[str]) -> list[str]:
        """`append_history` for each alert, 100 to a transaction; best effort: "" for a notice
        whose row could not be written (the outbox, not the history, guarantees delivery)."""
        entities = [_history_entity(a, sinks) for a in alerts]

        def alone(i: int) -> str:
            try:
                return self.append_history(alerts[i], sinks)
            except AzureError as exc:
                return _no_history(alerts[i], exc)

        return write_all(
            self._table.client,
            [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities],
            alone=alone,
            written=lambda i, _: str(entities[i]["RowKey"]),
            unwritten=lambda i, exc: _no_history(alerts[i], exc),
        )

    def record_delivery(self, history_key: str, sink: str, outcome: str) -> None:
        """Best effort: the outbox, not this row, is what guarantees delivery."""
        try:
            self._table.client.upsert_entity(
                _delivery_entity(history_key, sink, outcome), mode=UpdateMode.MERGE
            )
        except AzureError as exc:
            log.warning("could not record %s delivery in history: %s", sink, type(exc).__name__)

    def record_deliveries(self, outcomes: Sequence[tuple[str, str, str]]) -> None:
        """`record_delivery` for each (history key, sink, outcome), 100 to a transaction."""
        failures: list[str] = []

        def unwritten(i: int, exc: AzureError) -> None:
            failures.append(type(exc).__name__)

        write_all(
            self._table.client,
            [
                ("upsert", _delivery_entity(*outcome), {"mode": UpdateMode.MERGE})
                for outcome in outcomes
            ],
            alone=lambda i: self.record_delivery(*outcomes[i]),
            written=lambda i, _: None,
            unwritten=unwritten,
        )
        if failures:
            log.warning("could not record %d deliveries in history: %s", len(failures), failures[0])

    def prune_history(self, before: datetime, *, deadline: Deadline) -> Pruned:
        """Delete the notices detected before `before` (oldest sort last: one key range)."""
        low = f"{_MAX_MS - _millis(before) + 1:015d}"
        return delete_matching(
            self._table.client,
            "PartitionKey eq @pk and RowKey ge @low",
            {"pk": HISTORY, "low": low},
            deadline=deadline,
        )

    def history(self, *, limit: int = 50, registry_key: str | None = None) -> list[dict[str, Any]]:
        """Notices, newest first, as API documents."""
        query = "PartitionKey eq @pk"
        parameters: dict[str, Any] = {"pk": HISTORY}
        if registry_key is not None:
            query += " and RegistryKey eq @rk"
            parameters["rk"] = registry_key
        rows = self._table.client.query_entities(
            query, parameters=parameters, results_per_page=min(limit, 1000)
        )
        out: list[dict[str, Any]] = []
        for entity in rows:
            out.append(_history_document(entity))
            if len(out) >= limit:
                break
        return out


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _history_entity(alert: Alert, sinks: Iterable[str]) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": HISTORY,
        "RowKey": f"{_MAX_MS - _millis(alert.detected_at):015d}-{alert.id}",
        "AlertId": alert.id,
        "IncidentId": alert.incident_id,
        "Key": alert.key,
        "Kind": alert.kind.value,
        "Topic": alert.topic.value,
        "Change": alert.change.value,
        "Summary": summary(alert),
        "Severity": severity(alert),
        "RegistryId": alert.registry.id,
        "RegistryName": alert.registry.name,
        "SubscriptionId": alert.registry.subscription_id,
        "ResourceGroup": alert.registry.resource_group,
        "RegistryKey": alert.registry.key,
        "Status": alert.status,
        "ReasonCodes": json.dumps([r.code for r in alert.reasons]),
        "DetectedAt": alert.detected_at,
        "RunId": alert.run_id,
    }
    for sink in sinks:
        entity[_sink_property(sink)] = "pending"
    return entity


def _no_history(alert: Alert, exc: AzureError) -> str:
    log.warning("could not record alert %s in history: %s", alert.id, type(exc).__name__)
    return ""


def _delivery_entity(history_key: str, sink: str, outcome: str) -> dict[str, Any]:
    return {"PartitionKey": HISTORY, "RowKey": history_key, _sink_property(sink): outcome}


def _history_document(entity: Any) -> dict[str, Any]:
    detected = utc(entity.get("DetectedAt"))
    prefix = _sink_property("")
    return {
        "id": entity.get("AlertId"),
        "incidentId": entity.get("IncidentId"),
        "kind": entity.get("Kind"),
        "topic": entity.get("Topic"),
        "change": entity.get("Change"),
        "summary": entity.get("Summary"),
        "severity": entity.get("Severity"),
        "registry": {
            "id": entity.get("RegistryId"),
            "name": entity.get("RegistryName"),
            "subscriptionId": entity.get("SubscriptionId"),
            "resourceGroup": entity.get("ResourceGroup", ""),
        },
        "status": entity.get("Status"),
        "reasonCodes": json.loads(entity.get("ReasonCodes") or "[]"),
        "detectedAt": timestamp(detected) if detected else None,
        "runId": entity.get("RunId") or None,
        "deliveries": {
            name[len(prefix) :]: value for name, value in entity.items() if name.startswith(prefix)
        },
    }


def state_document(state: AlertState) -> dict[str, Any]:
    """An open alert for the API."""

    def stamp(value: datetime | None) -> str | None:
        return timestamp(value) if value else None

    return {
        "key": state.key,
        "topic": state.topic.value,
        "incidentId": state.incident_id,
        "registry": {
            "id": state.registry.id,
            "name": state.registry.name,
            "subscriptionId": state.registry.subscription_id,
            "resourceGroup": state.registry.resource_group,
        },
        "status": state.status,
        "reasonCodes": list(state.reason_codes),
        "openedAt": stamp(state.opened_at),
        "lastNotifiedAt": stamp(state.last_notified_at),
        "notices": state.notices,
    }


def _operation(change: StateChange, entity: dict[str, Any]) -> Operation:
    previous = change.previous
    if previous is None or previous.etag is None:
        return ("create", entity, {})
    return (
        "update",
        entity,
        {
            "mode": UpdateMode.REPLACE,
            "etag": previous.etag,
            "match_condition": MatchConditions.IfNotModified,
        },
    )


def _with_etag(state: AlertState, etag: str | None) -> AlertState:
    return replace(state, etag=etag)


def _to_entity(state: AlertState) -> dict[str, Any]:
    reg = state.registry
    return without_none(
        {
            "PartitionKey": STATE,
            "RowKey": row_key(state.key),
            "Key": state.key,
            "Topic": state.topic.value,
            "RegistryId": reg.id,
            "RegistryName": reg.name,
            "SubscriptionId": reg.subscription_id,
            "ResourceGroup": reg.resource_group,
            "Status": state.status,
            "ReasonCodes": json.dumps(list(state.reason_codes)),
            "EverCompliant": state.ever_compliant,
            "Open": state.open,
            "IncidentId": state.incident_id,
            "Incidents": state.incidents,
            "Notices": state.notices,
            "OpenedAt": state.opened_at,
            "LastNotifiedAt": state.last_notified_at,
            "ResolvedAt": state.resolved_at,
            "FirstSeenAt": state.first_seen_at,
            "UpdatedAt": state.updated_at,
        }
    )


def _to_state(entity: Any) -> AlertState:
    return AlertState(
        key=entity["Key"],
        topic=Topic(entity["Topic"]),
        registry=Registry(
            id=entity["RegistryId"],
            name=entity["RegistryName"],
            subscription_id=entity["SubscriptionId"],
            resource_group=entity.get("ResourceGroup", ""),
        ),
        status=entity["Status"],
        reason_codes=tuple(json.loads(entity.get("ReasonCodes") or "[]")),
        ever_compliant=bool(entity.get("EverCompliant", False)),
        open=bool(entity.get("Open", False)),
        incident_id=entity.get("IncidentId", ""),
        incidents=int(entity.get("Incidents", 0)),
        notices=int(entity.get("Notices", 0)),
        opened_at=utc(entity.get("OpenedAt")),
        last_notified_at=utc(entity.get("LastNotifiedAt")),
        resolved_at=utc(entity.get("ResolvedAt")),
        first_seen_at=utc(entity.get("FirstSeenAt")),
        updated_at=utc(entity.get("UpdatedAt")),
        etag=etag_of(entity),
    )
