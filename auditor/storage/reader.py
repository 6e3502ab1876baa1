"""`AuditReader`: what the API and the next run read back from the tables. Reads only.

Every filter goes to the service as OData with its values in `parameters` (see `_query`), so
no value is ever pasted into filter text. A missing table reads as empty: nothing has been
written yet.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from auditor.compliance_history import HistoryRow
from auditor.facts import Registry, Status
from auditor.run_record import RunMode, RunStatus, Sweeps
from auditor.storage import entities, keys
from auditor.storage.errors import guarded
from auditor.storage.keys import InvalidContinuationToken
from auditor.storage.tables import MAX_PAGE, Tables
from auditor.summary import RegistryRecord, Run

_REGISTRIES_CURSOR = "registries"
_RUNS_CURSOR = "runs"
_LONGEST_RUN = entities.ABANDONED_AFTER  # a run still running this long has stopped

Page = tuple[list[dict[str, Any]], str | None]


# Runs that finished: what they read is stored (a failed one may have read nothing).
FINISHED = frozenset({RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value})
# Triggers of runs that judge one registry, not the fleet.
ONE_REGISTRY = frozenset({"event"})


def _check_page_size(name: str, value: int) -> None:
    if not 1 <= value <= MAX_PAGE:
        raise ValueError(f"{name} must be between 1 and {MAX_PAGE}")


class AuditReader:
    """Documents from the stored rows (see `entities`), with keyset paging."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def known_registries(self) -> list[Registry]:
        """Registries stored as present (not removed): what the next inventory should find.
        A run reads it, so it rides out a short outage as the run's writes do."""

        def read(**options: Any) -> list[Registry]:
            try:
                rows = self._tables.registries.query_entities(
                    "Status ne @removed",
                    parameters={"removed": Status.REMOVED.value},
                    results_per_page=MAX_PAGE,
                    **options,
                )
                return [entities.registry_from_entity(row) for row in rows]
            except ResourceNotFoundError:
                return []

        return self._tables.retry.call("reading registry status", read)

    def get_summary(self) -> dict[str, Any] | None:
        """The materialised summary document (see `auditor.summary`), or None before any run
        has finished. One point read."""
        with guarded("reading the summary"):
            try:
                row = self._tables.summary.get_entity(keys.SUMMARY_PARTITION, keys.SUMMARY_ROW)
            except ResourceNotFoundError:
                return None
        return entities.summary_from_entity(row)

    def ping(self) -> None:
        """One quick request without retries: raises StorageError if storage is unreachable."""
        with guarded("checking the connection"):
            try:
                self._tables.summary.get_entity(
                    keys.SUMMARY_PARTITION,
                    keys.SUMMARY_ROW,
                    select=["PartitionKey"],
                    retry_total=0,
                    connection_timeout=5,
                    read_timeout=5,
                )
            except ResourceNotFoundError:
                pass  # reachable; nothing stored yet

    def list_registries(
        self,
        *,
        status: Status | str | None = None,
        subscription: str | None = None,
        reason: str | None = None,
        name_prefix: str | None = None,
        page_size: int = 50,
        continuation: str | None = None,
    ) -> Page:
        """One page of registries in name order, and the token of the next page (None at the
        end). `status`, `subscription` and `name_prefix` (names that start with it, in any
        case) filter in the service; `reason` (an exact code such
        as `category_missing:ContainerRegistryLoginEvents`) filters here, because Table
        Storage cannot match inside a list: the store reads on until the page is full.

        Raises InvalidContinuationToken (a ValueError) for a token it did not issue.
        """
        _check_page_size("page_size", page_size)
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if status is not None:
            clauses.append("Status eq @status")
            params["status"] = Status(status).value
        if subscription is not None:
            clauses.append("SubscriptionId eq @subscription")
            params["subscription"] = subscription.strip().lower()
        if name_prefix:
            # Names are alphanumerics and keys their lower case: a key range in one partition.
            low = keys.registry_key(name_prefix)
            clauses.append("PartitionKey eq @prefixPk and RowKey ge @low and RowKey lt @high")
            high = low[:-1] + chr(ord(low[-1]) + 1)
            params.update(prefixPk=keys.registry_partition(low), low=low, high=high)
        if continuation is not None:
            after_pk, after_rk = keys.decode_cursor(_REGISTRIES_CURSOR, continuation)
            # Spaces around every token: the SDK substitutes `@name` only as a whole word.
            clauses.append(
                "( PartitionKey gt @afterPk or"
                " ( PartitionKey eq @afterPk and RowKey gt @afterRk ) )"
            )
            params.update(afterPk=after_pk, afterRk=after_rk)
        rows = _query(
            self._tables.registries,
            " and ".join(clauses),
            params,
            # A client-side filter discards rows, so read full service pages for it.
            page_size=MAX_PAGE if reason is not None else min(MAX_PAGE, page_size + 1),
            action="listing registries",
        )
        if reason is not None:
            rows = (
                row
                for row in rows
                if reason in {r.code for r in entities.parse_reasons(row.get("Reasons"))}
            )
        return _page(rows, page_size, _REGISTRIES_CURSOR, entities.registry_doc)

    def all_registries(self) -> Iterator[RegistryRecord]:
        """Every stored registry in name order, read a full page at a time."""
        token: str | None = None
        while True:
            items, token = self.list_registries(page_size=MAX_PAGE, continuation=token)
            # `entities.registry_doc` builds each: a `RegistryRecord`.
            yield from cast(list[RegistryRecord], items)
            if token is None:
                return

    def get_registry(self, name: str) -> dict[str, Any] | None:
        """A registry's current state (status, reasons, last run), by name; one point read."""
        key = keys.registry_key(name)
        with guarded("reading a registry"):
            try:
                row = self._tables.registries.get_entity(keys.registry_partition(key), key)
            except ResourceNotFoundError:
                return None
        return entities.registry_doc(row)

    def registry_history(self, name: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """The registry's changes, newest first: the status and reasons each run found."""
        _check_page_size("limit", limit)
        rows = self._history_rows(name, page_size=limit)
        return [entities.history_doc(row) for _, row in zip(range(limit), rows, strict=False)]

    def fleet_history(self) -> list[HistoryRow]:
        """Every stored history row of the fleet, its columns only, a full page at a time:
        what the fleet at an instant and a period's statistics are computed from. Rows are
        written only on changes, and pruned after `AUDITOR_RETENTION_HISTORY_DAYS`."""
        rows = _query(
            self._tables.history,
            "",
            {},
            page_size=MAX_PAGE,
            action="reading the fleet's history",
            select=entities.HISTORY_COLUMNS,
        )
        return [entities.history_row(row) for row in rows]

    def registry_changes(self, name: str, *, since: datetime, until: datetime) -> list[HistoryRow]:
        """The registry's changes that make its intervals within [since, until]: the one in
        force at `since`, those found within, and the one that ended the state holding at
        `until`. Reads its rows newest first from `until` on, and stops at `since`."""
        rows = self._history_rows(
            name, until=until, page_size=MAX_PAGE, select=entities.HISTORY_COLUMNS
        )
        found: list[HistoryRow] = []
        for row in rows:
            change = entities.history_row(row)
            found.append(change)
            if change.observed_at <= since:
                break  # the state in force at `since`: older rows end before the period
        return found

    def _history_rows(
        self,
        name: str,
        *,
        page_size: int,
        until: datetime | None = None,
        select: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """One registry's history rows newest first (from `until` on: `keys.history_range`)."""
        key = keys.registry_key(name)
        low, high = keys.history_range(key, until=until)
        return _query(
            self._tables.history,
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": keys.registry_partition(key), "low": low, "high": high},
            page_size=page_size,
            action="reading registry history",
            select=select,
        )

    def runs_between(self, since: datetime, until: datetime) -> list[Run]:
        """The runs started within [since, until], newest first, every page."""
        low, high = keys.runs_range(since, until)
        rows = _query(
            self._tables.runs,
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": keys.RUNS_PARTITION, "low": low, "high": high},
            page_size=MAX_PAGE,
            action="listing runs",
        )
        # `entities.run_doc` builds each: a `Run`.
        return [cast(Run, entities.run_doc(row, now=until)) for row in rows]

    def runs_finished_by(self, at: datetime) -> list[Run]:
        """The runs that may be the newest finished at or before `at`: newest first from
        `at`, until a day (no run lasts longer) before the start of the first such run."""
        rows = _query(
            self._tables.runs,
            "PartitionKey eq @pk and RowKey ge @low",
            {"pk": keys.RUNS_PARTITION, "low": keys.inverted_timestamp(at)},
            page_size=100,
            action="listing runs",
        )
        found: list[Run] = []
        horizon: datetime | None = None
        for row in rows:
            run = cast(Run, entities.run_doc(row, now=at))
            started = entities.parse_time(run["startedAt"])
            if horizon is not None and started is not None and started < horizon:
                break
            found.append(run)
            finished = entities.parse_time(run["finishedAt"])
            if horizon is None and finished is not None and finished <= at and started:
                horizon = started - _LONGEST_RUN
        return found

    def list_runs(
        self, *, limit: int = 20, continuation: str | None = None, now: datetime | None = None
    ) -> Page:
        """Runs newest first (running ones included), and the token of the next page. A run
        still `running` a day after it started (as of `now`) is shown `abandoned`."""
        _check_page_size("limit", limit)
        query = "PartitionKey eq @pk"
        params: dict[str, Any] = {"pk": keys.RUNS_PARTITION}
        if continuation is not None:
            _, after_rk = keys.decode_cursor(_RUNS_CURSOR, continuation)
            query += " and RowKey gt @afterRk"
            params["afterRk"] = after_rk
        rows = _query(
            self._tables.runs,
            query,
            params,
            page_size=min(MAX_PAGE, limit + 1),
            action="listing runs",
        )
        moment = now or datetime.now(UTC)
        return _page(rows, limit, _RUNS_CURSOR, lambda r: entities.run_doc(r, now=moment))

    def last_sweeps(self, subscriptions: Collection[str] = (), *, scan: int = 500) -> Sweeps:
        """When each subscription was last listed completely by a finished run, and when the
        newest such run and the newest full sweep started: from the newest run back until
        the full sweep and every one of `subscriptions` are found, or `scan` runs were read.
        A failed run counts for none (it may have read nothing), nor does a one-registry
        re-audit (an Event Grid notice)."""
        wanted = {s.lower() for s in subscriptions}
        covered: dict[str, datetime] = {}
        latest: datetime | None = None
        last_full: datetime | None = None
        rows = _query(
            self._tables.runs,
            "PartitionKey eq @pk",
            {"pk": keys.RUNS_PARTITION},
            page_size=100,
            action="reading the last runs",
        )
        for row in itertools.islice(rows, scan):
            run = entities.run_doc(row)
            started = entities.parse_time(run["startedAt"])
            if run["status"] not in FINISHED or run["trigger"] in ONE_REGISTRY:
                continue
            if started is None:
                continue
            latest = latest or started
            for sub in entities.run_subscriptions(row):
                covered.setdefault(sub, started)
            if run["mode"] == RunMode.FULL.value and last_full is None:
                last_full = started
            if last_full is not None and wanted <= covered.keys():
                break
        return Sweeps(covered, latest, last_full)

    def registry_logins(
        self,
        name: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 10,
        continuation: str | None = None,
    ) -> Page:
        """The registry's login evidence per run (`evidence.documents.logins_document` with
        `runId` and `observedAt`), newest run first, observed within [since, until]."""
        return self._evidence_page(keys.EVIDENCE_LOGINS, name, since, until, limit, continuation)

    def registry_activity(
        self,
        name: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 10,
        continuation: str | None = None,
    ) -> Page:
        """The registry's repository activity per run (`evidence.documents.activity_document`
        with `runId` and `observedAt`), newest run first, observed within [since, until]."""
        return self._evidence_page(keys.EVIDENCE_ACTIVITY, name, since, until, limit, continuation)

    def _evidence_page(
        self,
        kind: str,
        name: str,
        since: datetime | None,
        until: datetime | None,
        limit: int,
        continuation: str | None,
    ) -> Page:
        _check_page_size("limit", limit)
        registry = keys.registry_key(name)
        partition = keys.registry_partition(registry)
        low, high = keys.evidence_range(registry, kind, since=since, until=until)
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        params: dict[str, Any] = {"pk": partition, "low": low, "high": high}
        if continuation is not None:
            after_pk, after_rk = keys.decode_cursor(kind, continuation)
            if after_pk != partition or not low <= after_rk < high:
                raise InvalidContinuationToken()  # another registry's (or window's) token
            query += " and RowKey gt @afterRk"
            params["afterRk"] = after_rk
        rows = _query(
            self._tables.evidence,
            query,
            params,
            page_size=min(MAX_PAGE, limit + 1),
            action="reading log evidence",
        )
        return _page(rows, limit, kind, entities.evidence_doc)


def _query(
    table: TableClient,
    query: str,
    params: dict[str, Any],
    *,
    page_size: int,
    action: str,
    select: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows lazily, following the service's pages; values only ever go in `parameters`.
    A missing table reads as empty (nothing has been written yet)."""
    columns = {"select": list(select)} if select is not None else {}
    with guarded(action):
        try:
            found = (
                table.query_entities(
                    query, parameters=params, results_per_page=page_size, **columns
                )
                if query
                else table.list_entities(results_per_page=page_size, **columns)
            )
            for row in found:
                yield dict(row)
        except ResourceNotFoundError:
            return


def _page(
    rows: Iterable[dict[str, Any]],
    size: int,
    kind: str,
    document: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> Page:
    # Read one row beyond the page: a token is only handed out when a next page exists.
    taken: list[dict[str, Any]] = []
    for row in rows:
        if len(taken) == size:
            last = taken[-1]
            token = keys.encode_cursor(kind, last["PartitionKey"], last["RowKey"])
            return [document(r) for r in taken], token
        taken.append(row)
    return [document(r) for r in taken], None
