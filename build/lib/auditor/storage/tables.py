"""The store's five tables, by name, and creating them: what the writer and the read side
share.

Tables (all named `{prefix}<name>`):

- `runs`: one row per run, PartitionKey `run`, RowKey inverted start time + run id (newest
  first). `start_run` writes it as `running`; `finish_run` replaces it with the outcome.
- `registries`: the current state of each registry, keyed by its name (see `keys`).
- `history`: one row per registry each time its status or reason codes change (first sight
  included), in the registry's partition, RowKey `<registry key>|<inverted time>|<change id>`
  named by the change, not the run (`keys.history_row_key`): overlapping runs that find the
  same change write one row.
- `summary`: one entity, the materialised summary of the last finished run.
- `evidence`: what each run's log check showed per registry (`auditor.evidence.documents`), two
  rows per registry and run (logins, activity) in the registry's own partition (its key),
  RowKey `<kind>|<inverted observed time>_<run id>`, newest first; the JSON is split over string
  properties and its lists trimmed to fit an entity, the cut counted in `omitted`. One row per
  run, not per change: a registry's entries overlap when runs are closer than the lookback.
"""

from __future__ import annotations

import re
import threading

from azure.data.tables import TableServiceClient

from auditor.storage.retry import StorageRetry

_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,52}")  # + "registries" stays within 63 characters
MAX_PAGE = 1000  # the service returns at most 1000 entities per request


class Tables:
    """Table clients named `{prefix}<table>`, and how a run's operations on them are retried
    (`retry`). Thread-safe as the SDK clients it holds are."""

    def __init__(
        self, table_service: TableServiceClient, *, prefix: str, retry: StorageRetry | None = None
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError("table prefix must be a letter then up to 52 letters or digits")
        self.service = table_service  # for tables of the same account kept elsewhere (alerts)
        self.prefix = prefix
        self.retry = retry or StorageRetry()
        self.runs = table_service.get_table_client(f"{prefix}runs")
        self.registries = table_service.get_table_client(f"{prefix}registries")
        self.history = table_service.get_table_client(f"{prefix}history")
        self.summary = table_service.get_table_client(f"{prefix}summary")
        self.evidence = table_service.get_table_client(f"{prefix}evidence")
        self._ready = False
        self._lock = threading.Lock()

    def ensure_tables(self) -> None:
        """Create the tables if missing; once per set (writers call it, readers need not: a
        missing table reads as empty)."""
        with self._lock:
            if self._ready:
                return
            for table in (
                self.runs,
                self.registries,
                self.history,
                self.summary,
                self.evidence,
            ):
                self.retry.call(
                    "creating the tables",
                    self.service.create_table_if_not_exists,
                    table.table_name,
                )
            self._ready = True
