"""Deleting expired rows: the rows a query selects, in entity-group transactions, until a
deadline. Shared by the audit tables (which of their rows expire is `prune_audit_tables`) and
the alert history.

Rows are selected by key range where the keys sort by time (runs, alert history) and by their
own time property otherwise (evidence and history rows are keyed by registry first), never by
the service's `Timestamp`, which moves whenever a row is written again. A deletion stopped by
its deadline, or by an error, leaves the rest for the next one: deleting is idempotent, and a
row already gone (another prune got there first) counts as deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError

from auditor.storage import keys
from auditor.storage.errors import guarded
from auditor.storage.tables import MAX_PAGE, Tables
from auditor.storage.transactions import submit_transaction, transactions
from auditor.summary import iso

_MAX_TIMEOUT = 30.0  # seconds per request, fewer when the deadline is closer
_MIN_TIMEOUT = 1.0
_KEY_COLUMNS = ["PartitionKey", "RowKey"]


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one deletion did: `complete` is False when its deadline stopped it first."""

    table: str
    deleted: int
    complete: bool


@dataclass(frozen=True, slots=True)
class Deadline:
    """The monotonic time by which a prune stops starting requests."""

    at: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    def left(self) -> float:
        return self.at - self.clock()

    def request_options(self) -> dict[str, Any]:
        """Timeouts of one request: a hung request cannot hold the prune far past its end."""
        timeout = max(_MIN_TIMEOUT, min(_MAX_TIMEOUT, self.left()))
        return {"connection_timeout": timeout, "read_timeout": timeout}


def delete_matching(
    table: TableClient, query: str, parameters: dict[str, Any], *, deadline: Deadline
) -> Pruned:
    """Delete the rows `query` selects (values only in `parameters`), a page at a time, each
    page in transactions, until none is left or the deadline passes. StorageError when the
    service fails."""
    deleted = 0
    with guarded(f"pruning {table.table_name}"):
        for page in _pages(table, query, parameters, deadline):
            for group in transactions(page):
                if deadline.left() <= 0:
                    return Pruned(table.table_name, deleted, complete=False)
                deleted += _delete(table, [page[i] for i in group], deadline)
            if deadline.left() <= 0:
                return Pruned(table.table_name, deleted, complete=False)
    return Pruned(table.table_name, deleted, complete=True)


def _pages(
    table: TableClient, query: str, parameters: dict[str, Any], deadline: Deadline
) -> Iterator[list[dict[str, Any]]]:
    """The selected rows' keys, a service page at a time. Deleting a page before reading the
    next is safe: the service's continuation is the next key, not a position."""
    try:
        found = table.query_entities(
            query,
            parameters=parameters,
            select=_KEY_COLUMNS,
            results_per_page=MAX_PAGE,
            **deadline.request_options(),
        ).by_page()
        for page in found:
            yield [dict(row) for row in page]
    except ResourceNotFoundError:
        return  # no table yet: nothing to prune


def _delete(table: TableClient, rows: list[dict[str, Any]], deadline: Deadline) -> int:
    options = deadline.request_options()
    try:
        submit_transaction(table, [("delete", row, {}) for row in rows], **options)
    except TableTransactionError:
        # A row already gone fails its transaction as a whole: delete them one by one.
        for row in rows:
            table.delete_entity(row["PartitionKey"], row["RowKey"], **options)
    return len(rows)


# -- which rows of the audit tables expire -------------------------------------------------


def prune_audit_tables(
    tables: Tables,
    *,
    evidence_before: datetime,
    runs_before: datetime,
    history_before: datetime,
    deadline: Deadline,
) -> list[Pruned]:
    """Delete the evidence, runs and history rows observed (or, for runs, started) before the
    given times; the registries' current rows and the summary stay. Evidence first: it is the
    bulk of what grows. A table not reached before the deadline is left for the next prune."""
    expired = (
        (tables.evidence, "ObservedAt lt @before", {"before": iso(evidence_before)}),
        (
            tables.runs,
            "PartitionKey eq @pk and RowKey gt @low",
            {"pk": keys.RUNS_PARTITION, "low": keys.runs_started_before(runs_before)},
        ),
        (tables.history, "ObservedAt lt @before", {"before": iso(history_before)}),
    )
    pruned: list[Pruned] = []
    for table, query, parameters in expired:
        pruned.append(delete_matching(table, query, parameters, deadline=deadline))
        if not pruned[-1].complete:
            break
    return pruned
