"""The remediation actions table, `{prefix}actions`: one row per remediation write (who, when,
the setting before and after, the result), kept apart from the audit tables (their writer and
reader belong to the run).

One partition, `action`; RowKey `<inverted time>_<action id>`, so every listing reads newest
first, and a registry's actions are that range filtered on its `Registry` column (remediations
are rare: at most `AUDITOR_REMEDIATION_MAX_PER_RUN` a run). The document is kept whole as JSON
in `Document`; the columns beside it are for filtering and reading at a glance. A run reads
the writes applied within the pending window (`applied_since`, one query): those registries
are `pending` until their events arrive.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from auditor.facts import normalize_id
from auditor.remediation.documents import ActionDocument, Result
from auditor.storage import keys
from auditor.storage.entities import clip
from auditor.storage.errors import guarded
from auditor.storage.tables import Tables

PARTITION = "action"
MAX_ACTIONS = 100  # per listing


class ActionLog:
    """Writes and lists remediation actions (StorageError on failure, naming what it did)."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._table: TableClient = tables.service.get_table_client(f"{tables.prefix}actions")
        self._ready = False

    def record(self, action: ActionDocument) -> None:
        at = datetime.fromisoformat(action["at"])
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": f"{keys.inverted_timestamp(at)}_{keys.run_key(action['id'])}",
            "Registry": keys.registry_key(action["registry"]),
            "Actor": action["actor"],
            "Result": action["result"],
            "SettingName": clip(action["settingName"]),
            # Two settings of at most a few KiB: well within a property's 32 K characters.
            "Document": json.dumps(action, ensure_ascii=False, separators=(",", ":")),
        }
        if not self._ready:
            self._tables.retry.call(
                "creating the actions table",
                self._tables.service.create_table_if_not_exists,
                self._table.table_name,
            )
            self._ready = True
        self._tables.retry.call("recording a remediation", self._table.upsert_entity, entity)

    def list(self, *, registry: str | None = None, limit: int = 20) -> list[ActionDocument]:
        """Actions newest first, all or one registry's (by name)."""
        limit = max(1, min(limit, MAX_ACTIONS))
        query = "PartitionKey eq @partition"
        params: dict[str, Any] = {"partition": PARTITION}
        if registry is not None:
            query += " and Registry eq @registry"
            params["registry"] = keys.registry_key(registry)
        found: list[ActionDocument] = []
        with guarded("reading remediation actions"):
            try:
                rows = self._table.query_entities(
                    query, parameters=params, results_per_page=min(limit, 1000)
                )
                for row in rows:
                    found.append(cast(ActionDocument, json.loads(row["Document"])))
                    if len(found) >= limit:
                        break
            except ResourceNotFoundError:
                return []  # nothing remediated yet
        return found

    def applied_since(self, since: datetime) -> frozenset[str]:
        """The registries (normalised ids) whose setting a remediation wrote after `since`:
        one query over the newest rows, applied writes only. A row whose document cannot be
        read names no registry; StorageError when the table cannot be read."""
        params = {
            "partition": PARTITION,
            "bound": keys.inverted_timestamp(since),  # newer rows sort before it
            "applied": Result.APPLIED.value,
        }

        def read(**options: Any) -> frozenset[str]:
            try:
                rows = self._table.query_entities(
                    "PartitionKey eq @partition and RowKey lt @bound and Result eq @applied",
                    parameters=params,
                    select=["Document"],
                    results_per_page=1000,
                    **options,
                )
                return frozenset(k for row in rows if (k := _registry_id(row)) is not None)
            except ResourceNotFoundError:
                return frozenset()  # nothing remediated yet

        return self._tables.retry.call("reading recent remediations", read)


def _registry_id(row: Any) -> str | None:
    try:
        found = json.loads(row["Document"])["registryId"]
    except (KeyError, TypeError, ValueError):
        return None
    return normalize_id(found) if isinstance(found, str) and found.strip() else None
