"""`AuditStore`: audit results in Azure Table Storage, and the readers the API serves from.

Tables (all named `{prefix}<name>`):

- `runs`: one row per run, PartitionKey `run`, RowKey inverted start time + run id (newest
  first). `start_run` writes it as `running`; `finish_run` replaces it with the outcome.
- `registries`: the current state of each registry, keyed by its name (see `keys`).
- `history`: one row per registry each time its status or reason codes change (first sight
  included), in the registry's partition, RowKey `<registry key>|<inverted time>|<run id>`.
- `summary`: one entity, the materialised summary of the last finished run.
- `evidence`: what each run's log check showed per registry (`auditor.evidence.documents`), two
  rows per registry and run (logins, activity) in the registry's own partition (its key),
  RowKey `<kind>|<inverted observed time>_<run id>`, newest first; the JSON is split over string
  properties and its lists trimmed to fit an entity, the cut counted in `omitted`. One row per
  run, not per change: a registry's entries overlap when runs are closer than the lookback.

A run's registries are written as they are judged (`RunWriter.write`, during an audit) or
at its end (`finish_run`); each row carries when its registry was judged (`observedAt`,
`checkedAt`). Per batch the evidence goes first, then history, then registries; the run row
and then the summary come last, so a run that dies on the way leaves the previous summary in
place; the next run repeats any history entry whose registry row was not updated (at least
once, never lost). Every write is an upsert (replace) in transactions of at most 100
operations per partition, so finishing the same run twice writes the same rows again and no
new history.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from auditor.evidence.model import LogEvidence
from auditor.facts import Registry, Status, Verdict
from auditor.reasons import reason
from auditor.reasons.catalog import REMOVED
from auditor.run_record import AuditRun
from auditor.storage import entities, keys
from auditor.storage.errors import StorageError
from auditor.storage.keys import InvalidContinuationToken
from auditor.storage.transactions import MAX_OPERATIONS, transactions
from auditor.summary import iso, summarize

log = logging.getLogger(__name__)

_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,52}")  # + "registries" stays within 63 characters
MAX_BATCH = MAX_OPERATIONS  # operations per transaction (a service limit)
_MAX_PAGE = 1000  # the service returns at most 1000 entities per request
# Fewer registries than this are read one by one rather than by listing the table.
_POINT_READS = 20
# Transactions in flight at once; each is one partition, so order within a table is free.
_WRITE_WORKERS = 8
_REGISTRIES_CURSOR = "registries"
_RUNS_CURSOR = "runs"


# What `finish_run` reads of the stored rows to find changes and removals.
_PREVIOUS_COLUMNS = (
    "RowKey",
    "Status",
    "Reasons",
    "StatusSince",
    "LastRunId",
    "ResourceId",
    "Name",
    "SubscriptionId",
    "ResourceGroup",
    "Location",
)


@dataclass(frozen=True, slots=True)
class _Previous:
    status: str | None
    reason_codes: tuple[str, ...]
    status_since: Any
    last_run_id: str | None
    registry: Registry


def _previous(row: Mapping[str, Any]) -> _Previous:
    return _Previous(
        status=row.get("Status"),
        reason_codes=entities.reason_codes(entities.parse_reasons(row.get("Reasons"))),
        status_since=row.get("StatusSince"),
        last_run_id=row.get("LastRunId"),
        registry=entities.registry_from_entity(row),
    )


@contextmanager
def _guard(action: str) -> Iterator[None]:
    try:
        yield
    except AzureError as exc:
        raise StorageError.wrap(action, exc) from exc


def _check_page_size(name: str, value: int) -> None:
    if not 1 <= value <= _MAX_PAGE:
        raise ValueError(f"{name} must be between 1 and {_MAX_PAGE}")


class AuditStore:
    """Reads and writes audit results. Thread-safe as the SDK clients it holds are."""

    def __init__(self, table_service: TableServiceClient, *, prefix: str) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError("table prefix must be a letter then up to 52 letters or digits")
        self._service = table_service
        self._runs = table_service.get_table_client(f"{prefix}runs")
        self._registries = table_service.get_table_client(f"{prefix}registries")
        self._history = table_service.get_table_client(f"{prefix}history")
        self._summary = table_service.get_table_client(f"{prefix}summary")
        self._evidence = table_service.get_table_client(f"{prefix}evidence")
        self._tables_ready = False
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(cls, connection_string: str, prefix: str) -> AuditStore:
        try:
            service = TableServiceClient.from_connection_string(connection_string)
        except ValueError:
            # The SDK's message may quote the string, and with it the account key.
            raise StorageError("reading the connection string", "it is malformed") from None
        return cls(service, prefix=prefix)

    @classmethod
    def from_endpoint(cls, endpoint: str, credential: TokenCredential, prefix: str) -> AuditStore:
        """Identity-based access: `endpoint` is the account's table URL
        (`https://<account>.table.core.windows.net`); the identity needs the
        "Storage Table Data Contributor" role."""
        return cls(TableServiceClient(endpoint=endpoint, credential=credential), prefix=prefix)

    def ensure_tables(self) -> None:
        """Create the tables if missing; once per store (writers call it, readers need not)."""
        with self._lock:
            if self._tables_ready:
                return
            with _guard("creating the tables"):
                for table in (
                    self._runs,
                    self._registries,
                    self._history,
                    self._summary,
                    self._evidence,
                ):
                    self._service.create_table_if_not_exists(table.table_name)
            self._tables_ready = True

    # --- writing -------------------------------------------------------------------------

    def start_run(self, run_id: str, started_at: datetime, trigger: str) -> None:
        self.ensure_tables()
        with _guard("recording the run start"):
            self._runs.upsert_entity(
                entities.started_run_entity(run_id, started_at, trigger), mode=UpdateMode.REPLACE
            )

    def run_writer(self, run_id: str, *, only: Collection[str] | None = None) -> RunWriter:
        """Writes `run_id`'s registries while the run goes on; see `RunWriter`. `only`: the
        registry keys of a run that judges a few registries and removes none."""
        self.ensure_tables()
        return RunWriter(self, run_id, self._current_rows(only))

    def finish_run(self, run: AuditRun, *, update_summary: bool = True) -> AuditRun:
        """Store a finished run whose registries were not written as it went; returns it with
        the registries found removed appended (see `RunWriter.finish`)."""
        only = None
        if not update_summary and not run.inventoried_subscriptions:
            # An out-of-band re-audit (Event Grid): read its registries' rows, not the fleet's.
            only = {keys.registry_key(v.registry.name) for v in run.verdicts}
        with self.run_writer(run.run_id, only=only) as writer:
            return writer.finish(run, update_summary=update_summary)

    @staticmethod
    def _removed(
        previous: Mapping[str, _Previous], current: Mapping[str, Verdict], run: AuditRun
    ) -> dict[str, Verdict]:
        listed = {s.strip().lower() for s in run.inventoried_subscriptions}
        removed: dict[str, Verdict] = {}
        for key in sorted(previous.keys() - current.keys()):
            row = previous[key]
            status = row.status
            newly_gone = status != Status.REMOVED.value and row.registry.subscription_id in listed
            # Finishing the same run again must report the same removals.
            gone_in_this_run = status == Status.REMOVED.value and row.last_run_id == run.run_id
            if newly_gone or gone_in_this_run:
                removed[key] = Verdict(
                    registry=row.registry,
                    status=Status.REMOVED,
                    reasons=(reason(REMOVED),),
                )
        return removed

    def _upsert_all(
        self,
        table: TableClient,
        rows: Sequence[dict[str, Any]],
        action: str,
        *,
        workers: int = 1,
    ) -> None:
        def submit(batch: list[dict[str, Any]]) -> None:
            with _guard(action):
                table.submit_transaction(
                    [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in batch]
                )

        batches = list(_batches(rows))
        if workers <= 1 or len(batches) <= 1:
            for batch in batches:
                submit(batch)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="store") as pool:
            # list(): the first failure is raised here, after every batch was tried.
            list(pool.map(submit, batches))

    # --- reading -------------------------------------------------------------------------

    def _current_rows(self, only: Collection[str] | None = None) -> dict[str, _Previous]:
        # Only what the comparison needs: a fleet's full rows (reasons with their details)
        # would be the largest thing the run holds while writing.
        with _guard("reading registry status"):
            if only is not None and len(only) <= _POINT_READS:
                return {
                    key: _previous(row)
                    for key in only
                    if (row := self._registry_row(key, select=list(_PREVIOUS_COLUMNS)))
                }
            try:
                return {
                    row["RowKey"]: _previous(row)
                    for row in self._registries.list_entities(
                        results_per_page=_MAX_PAGE, select=list(_PREVIOUS_COLUMNS)
                    )
                    if only is None or row["RowKey"] in only
                }
            except ResourceNotFoundError:
                return {}

    def _registry_row(self, key: str, *, select: list[str]) -> Mapping[str, Any] | None:
        try:
            row: Mapping[str, Any] = self._registries.get_entity(
                keys.registry_partition(key), key, select=select
            )
        except ResourceNotFoundError:
            return None
        return row

    def known_registries(self) -> list[Registry]:
        """Registries stored as present (not removed): what the next inventory should find."""
        rows = self._query(
            self._registries,
            "Status ne @removed",
            {"removed": Status.REMOVED.value},
            page_size=_MAX_PAGE,
            action="reading registry status",
        )
        return [entities.registry_from_entity(row) for row in rows]

    def get_summary(self) -> dict[str, Any] | None:
        """The materialised summary document (see `auditor.summary`), or None before any run
        has finished. One point read."""
        with _guard("reading the summary"):
            try:
                row = self._summary.get_entity(keys.SUMMARY_PARTITION, keys.SUMMARY_ROW)
            except ResourceNotFoundError:
                return None
        return entities.summary_from_entity(row)

    def ping(self) -> None:
        """One quick request without retries: raises StorageError if storage is unreachable."""
        with _guard("checking the connection"):
            try:
                self._summary.get_entity(
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
        page_size: int = 50,
        continuation: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of registries in name order, and the token of the next page (None at the
        end). `status` and `subscription` filter in the service; `reason` (an exact code such
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
        if continuation is not None:
            after_pk, after_rk = keys.decode_cursor(_REGISTRIES_CURSOR, continuation)
            # Spaces around every token: the SDK substitutes `@name` only as a whole word.
            clauses.append(
                "( PartitionKey gt @afterPk or"
                " ( PartitionKey eq @afterPk and RowKey gt @afterRk ) )"
            )
            params.update(afterPk=after_pk, afterRk=after_rk)
        rows = self._query(
            self._registries,
            " and ".join(clauses),
            params,
            # A client-side filter discards rows, so read full service pages for it.
            page_size=_MAX_PAGE if reason is not None else min(_MAX_PAGE, page_size + 1),
            action="listing registries",
        )
        if reason is not None:
            rows = (
                row
                for row in rows
                if reason in {r.code for r in entities.parse_reasons(row.get("Reasons"))}
            )
        return self._page(rows, page_size, _REGISTRIES_CURSOR, entities.registry_doc)

    def get_registry(self, name: str) -> dict[str, Any] | None:
        """A registry's current state (status, reasons, last run), by name; one point read."""
        key = keys.registry_key(name)
        with _guard("reading a registry"):
            try:
                row = self._registries.get_entity(keys.registry_partition(key), key)
            except ResourceNotFoundError:
                return None
        return entities.registry_doc(row)

    def registry_history(self, name: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """The registry's changes, newest first: the status and reasons each run found."""
        _check_page_size("limit", limit)
        key = keys.registry_key(name)
        low, high = keys.history_range(key)
        rows = self._query(
            self._history,
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": keys.registry_partition(key), "low": low, "high": high},
            page_size=limit,
            action="reading registry history",
        )
        return [entities.history_doc(row) for _, row in zip(range(limit), rows, strict=False)]

    def list_runs(
        self, *, limit: int = 20, continuation: str | None = None, now: datetime | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Runs newest first (running ones included), and the token of the next page. A run
        still `running` a day after it started (as of `now`) is shown `abandoned`."""
        _check_page_size("limit", limit)
        query = "PartitionKey eq @pk"
        params: dict[str, Any] = {"pk": keys.RUNS_PARTITION}
        if continuation is not None:
            _, after_rk = keys.decode_cursor(_RUNS_CURSOR, continuation)
            query += " and RowKey gt @afterRk"
            params["afterRk"] = after_rk
        rows = self._query(
            self._runs, query, params, page_size=min(_MAX_PAGE, limit + 1), action="listing runs"
        )
        moment = now or datetime.now(UTC)
        return self._page(rows, limit, _RUNS_CURSOR, lambda r: entities.run_doc(r, now=moment))

    def registry_logins(
        self,
        name: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 10,
        continuation: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The registry's login evidence per run (`documents.logins_document` with `runId`
        and `observedAt`), newest run first, observed within [since, until]."""
        return self._evidence_page(keys.EVIDENCE_LOGINS, name, since, until, limit, continuation)

    def registry_activity(
        self,
        name: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 10,
        continuation: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The registry's repository activity per run (`documents.activity_document` with
        `runId` and `observedAt`), newest run first, observed within [since, until]."""
        return self._evidence_page(keys.EVIDENCE_ACTIVITY, name, since, until, limit, continuation)

    def _evidence_page(
        self,
        kind: str,
        name: str,
        since: datetime | None,
        until: datetime | None,
        limit: int,
        continuation: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
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
        rows = self._query(
            self._evidence,
            query,
            params,
            page_size=min(_MAX_PAGE, limit + 1),
            action="reading log evidence",
        )
        return self._page(rows, limit, kind, entities.evidence_doc)

    def _query(
        self,
        table: TableClient,
        query: str,
        params: dict[str, Any],
        *,
        page_size: int,
        action: str,
    ) -> Iterator[dict[str, Any]]:
        """Rows lazily, following the service's pages; values only ever go in `parameters`.
        A missing table reads as empty (nothing has been written yet)."""
        with _guard(action):
            try:
                found = (
                    table.query_entities(query, parameters=params, results_per_page=page_size)
                    if query
                    else table.list_entities(results_per_page=page_size)
                )
                for row in found:
                    yield dict(row)
            except ResourceNotFoundError:
                return

    @staticmethod
    def _page(
        rows: Iterable[dict[str, Any]],
        size: int,
        kind: str,
        document: Callable[[Mapping[str, Any]], dict[str, Any]],
    ) -> tuple[list[dict[str, Any]], str | None]:
        # Read one row beyond the page: a token is only handed out when a next page exists.
        taken: list[dict[str, Any]] = []
        for row in rows:
            if len(taken) == size:
                last = taken[-1]
                token = keys.encode_cursor(kind, last["PartitionKey"], last["RowKey"])
                return [document(r) for r in taken], token
            taken.append(row)
        return [document(r) for r in taken], None


class RunWriter:
    """One run's results, written as its registries are judged and then at its end.

    `write` queues registries whose verdict is final (written by one background thread, in
    transactions), so a large fleet's rows go out while the rest of its settings are still
    being read under ARM's throttle. `finish` waits for them, writes what was not written or
    has changed since, the registries found removed, then the run row, then the summary: a
    run that dies on the way leaves the previous summary in place, and the next run repeats
    any history entry whose registry row was not updated (at least once, never lost).
    Per batch, evidence goes first, then history, then status rows.

    Rows carry when their registry was judged (`observed_at`): the run's end for those
    written by `finish`.
    """

    def __init__(self, store: AuditStore, run_id: str, previous: dict[str, _Previous]) -> None:
        self._store = store
        self._run_id = run_id
        self._previous = previous
        # What was written per registry key: the verdict and evidence objects, so `finish`
        # rewrites only registries whose result changed after they were written.
        self._written: dict[str, tuple[Verdict, LogEvidence | None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-writer")
        self._pending: list[Future[None]] = []

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def busy(self) -> bool:
        """A queued write is still running (one writer thread: the last one is the newest);
        the caller can gather more registries for the next, rather than queue them up."""
        return bool(self._pending) and not self._pending[-1].done()

    def write(
        self,
        verdicts: Iterable[Verdict],
        evidence: Mapping[str, LogEvidence],
        *,
        observed_at: datetime,
    ) -> None:
        """Queue final verdicts (and their evidence) for writing; returns at once."""
        items = []
        for verdict in verdicts:
            key = keys.registry_key(verdict.registry.name)
            found = evidence.get(verdict.registry.key)
            self._written[key] = (verdict, found)
            items.append((key, verdict, found))
        if items:
            self._pending.append(self._pool.submit(self._write, items, observed_at))

    def finish(self, run: AuditRun, *, update_summary: bool = True) -> AuditRun:
        """Store the finished run; returns it with the registries found removed appended.

        A stored registry is marked removed only when its subscription was listed completely
        (`run.inventoried_subscriptions`) and the run did not report it; registries of other
        subscriptions keep their last state unless the run reports them (e.g. as unknown).
        `update_summary=False` is for runs that judged a few registries out of band (an Event
        Grid re-audit): their rows and history are stored, the fleet summary stays as it was.
        """
        failures = []
        for future in self._pending:
            # Every queued write is waited for; the first failure is raised after.
            try:
                future.result()
            except StorageError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]
        current: dict[str, Verdict] = {}
        for verdict in run.verdicts:
            key = keys.registry_key(verdict.registry.name)
            if key in current:
                # One row per name; two verdicts for it would also break a transaction.
                log.warning("run %s judged registry %r twice; keeping the last", run.run_id, key)
            current[key] = verdict
        removed = AuditStore._removed(self._previous, current, run)
        final = replace(run, verdicts=tuple(current.values()) + tuple(removed.values()))
        rest = []
        for key, verdict in [*current.items(), *removed.items()]:
            found = run.evidence.get(verdict.registry.key)
            written = self._written.get(key)
            if written is not None and written[0] is verdict and written[1] is found:
                continue
            rest.append((key, verdict, found))
        self._write(rest, run.finished_at)

        store = self._store
        with _guard("recording the run"):
            store._runs.upsert_entity(entities.finished_run_entity(final), mode=UpdateMode.REPLACE)
        if not update_summary:
            return final
        # Last, and from memory: the summary never mixes this run with an earlier one.
        summary = summarize(final, generated_at=run.finished_at)
        with _guard("writing the summary"):
            store._summary.upsert_entity(entities.summary_entity(summary), mode=UpdateMode.REPLACE)
        return final

    def _write(
        self, items: Sequence[tuple[str, Verdict, LogEvidence | None]], observed_at: datetime
    ) -> None:
        store = self._store
        registry_rows: list[dict[str, Any]] = []
        history_rows: list[dict[str, Any]] = []
        for key, verdict, _ in items:
            stored_reasons, omitted = entities.reasons_json(verdict.reasons)
            if omitted:
                log.warning("registry %r: %d reasons did not fit its row", key, omitted)
            before = self._previous.get(key)
            codes = entities.reason_codes(entities.parse_reasons(stored_reasons))
            changed = before is None or (
                before.status != verdict.status.value or before.reason_codes != codes
            )
            since = observed_at
            if before is not None and not changed:
                since = entities.parse_time(before.status_since) or since
            registry_rows.append(
                entities.registry_entity(
                    key,
                    verdict,
                    stored_reasons,
                    run_id=self._run_id,
                    observed_at=observed_at,
                    status_since=since,
                )
            )
            if changed:
                history_rows.append(
                    entities.history_entity(
                        key,
                        verdict,
                        stored_reasons,
                        run_id=self._run_id,
                        observed_at=observed_at,
                        previous_status=before.status if before else None,
                    )
                )
                # A registry written again in `finish` (its result changed) compares with
                # what this wrote, and its history says so.
                self._previous[key] = _Previous(
                    status=verdict.status.value,
                    reason_codes=codes,
                    status_since=iso(since),
                    last_run_id=self._run_id,
                    registry=verdict.registry,
                )
        # First: once the run row says finished, its evidence is there to read.
        self._write_evidence([(k, v, e) for k, v, e in items if e is not None], observed_at)
        store._upsert_all(
            store._history, history_rows, "writing registry history", workers=_WRITE_WORKERS
        )
        store._upsert_all(
            store._registries, registry_rows, "writing registry status", workers=_WRITE_WORKERS
        )

    def _write_evidence(
        self, items: Sequence[tuple[str, Verdict, LogEvidence]], observed_at: datetime
    ) -> None:
        """Evidence rows are the bulk of a run's writes (JSON documents of every registry with
        log traffic): built a transaction's worth at a time inside the writers, so memory holds
        a few transactions' rows, not the fleet's."""
        by_partition: dict[str, list[tuple[str, Verdict, LogEvidence]]] = defaultdict(list)
        for item in items:
            by_partition[keys.registry_partition(item[0])].append(item)
        # Two rows per registry: a task of MAX_BATCH // 2 registries is one full transaction.
        per_task = max(1, MAX_BATCH // 2)
        tasks = [
            group[i : i + per_task]
            for group in by_partition.values()
            for i in range(0, len(group), per_task)
        ]

        def write(task: list[tuple[str, Verdict, LogEvidence]]) -> None:
            rows: list[dict[str, Any]] = []
            for key, verdict, found in task:
                rows += entities.evidence_entities(
                    key, verdict.registry, found, run_id=self._run_id, observed_at=observed_at
                )
            self._store._upsert_all(self._store._evidence, rows, "writing log evidence")

        with ThreadPoolExecutor(max_workers=_WRITE_WORKERS, thread_name_prefix="store") as pool:
            # list(): the first failure is raised here, after every partition was tried.
            list(pool.map(write, tasks))


def _batches(rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for group in transactions(rows):
        yield [rows[i] for i in group]
