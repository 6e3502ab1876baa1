"""`AuditWriter` and `RunWriter`: a run's results into the tables. Writes only, after one read
of the stored state its changes are judged against (`auditor.changes` decides them).

A run's registries are written as they are judged (`RunWriter.write`, during an audit) or
at its end (`finish_run`); each row carries when its registry was judged (`observedAt`,
`checkedAt`). Per batch the evidence goes first, then history, then registries; the run row
and then the summary come last, so a run that dies on the way leaves the previous summary in
place; the next run repeats any history entry whose registry row was not updated, into the
same row (a history row is named by its change, `changes.Change`: never lost, never twice,
also when two runs overlap). Every write is an upsert (replace) in transactions of at most
100 operations per partition, so finishing the same run twice writes the same rows again and
no new history. A registry's log evidence is written when it differs from its newest stored
evidence (the window aside) or that is `EVIDENCE_REFRESH` old; a registry a change-driven run
judged from its stored settings (`judged_from_store`) keeps its row unless the row would say
something else (`entities.content_digest`). Each write rides out a short outage
(`Tables.retry`, see `retry`); a storage that stays down past its budget is a StorageError
naming what was being written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from auditor import changes
from auditor.changes import StoredState
from auditor.evidence.digest import evidence_digest
from auditor.evidence.model import LogEvidence
from auditor.facts import DiagnosticSetting, Registry, Status, Verdict
from auditor.run_record import AuditRun
from auditor.storage import entities, keys
from auditor.storage.errors import StorageError
from auditor.storage.listing import list_rows
from auditor.storage.tables import MAX_PAGE, Tables
from auditor.storage.transactions import (
    MAX_OPERATIONS,
    encoded,
    submit_transaction,
    transactions,
)
from auditor.summary import summarize

log = logging.getLogger(__name__)

MAX_BATCH = MAX_OPERATIONS  # operations per transaction (a service limit)
# Fewer registries than this are read one by one rather than by listing the table.
_POINT_READS = 20
# Transactions in flight at once; each is one partition, so order within a table is free.
_WRITE_WORKERS = 8
# Registries whose rows are built and written together: three transactions' worth of each
# table (two slices' rows exist at once: one built while the other is sent).
_WRITE_SLICE = 3 * MAX_BATCH

# Evidence that says the same as the newest stored is written again after this long anyway,
# well within its retention (`AUDITOR_RETENTION_EVIDENCE_DAYS`, at least a day), so every
# registry keeps a recent row.
EVIDENCE_REFRESH = timedelta(hours=12)

# One registry's part of a batch: its key, its verdict, its log evidence if any.
_Item = tuple[str, Verdict, LogEvidence | None]


class _SliceRows(NamedTuple):
    evidence: list[dict[str, Any]]
    history: list[dict[str, Any]]
    registries: list[dict[str, Any]]


class AuditWriter:
    """Starts and finishes runs, and hands out their `RunWriter`s."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def start_run(self, run_id: str, started_at: datetime, trigger: str) -> None:
        self._tables.ensure_tables()
        self._tables.retry.call(
            "recording the run start",
            self._tables.runs.upsert_entity,
            entities.started_run_entity(run_id, started_at, trigger),
            mode=UpdateMode.REPLACE,
        )

    def run_writer(
        self,
        run_id: str,
        *,
        only: Collection[str] | None = None,
        on_page: Callable[[Sequence[StoredState]], None] | None = None,
    ) -> RunWriter:
        """Writes `run_id`'s registries while the run goes on; see `RunWriter`. `only`: the
        registry keys of a run that judges a few registries and removes none; `on_page`:
        see `stored_states`."""
        self._tables.ensure_tables()
        stored = self._tables.retry.call(
            "reading registry status",
            stored_states,
            self._tables.registries,
            only,
            on_page=on_page,
        )
        return RunWriter(self._tables, run_id, stored)

    def finish_run(self, run: AuditRun, *, update_summary: bool = True) -> AuditRun:
        """Store a finished run whose registries were not written as it went; returns it with
        the registries found removed appended (see `RunWriter.finish`)."""
        only = None
        if not update_summary and not run.inventoried_subscriptions:
            # An out-of-band re-audit (Event Grid): read its registries' rows, not the fleet's.
            only = {keys.registry_key(v.registry.name) for v in run.verdicts}
        with self.run_writer(run.run_id, only=only) as writer:
            return writer.finish(run, update_summary=update_summary)


def stored_states(
    registries: TableClient,
    only: Collection[str] | None = None,
    *,
    on_page: Callable[[Sequence[StoredState]], None] | None = None,
    **options: Any,
) -> dict[str, StoredState]:
    """The stored state of every registry (or of the keys in `only`) by key: what a run's
    results are compared with. `options` go to every request (see `StorageRetry`).
    `on_page` is given a scan's states a page (1,000) at a time as they arrive, all but a
    last part short of a page (a retry scans again): a large fleet's read takes a second or
    more, and what it holds can start work before it ends."""
    if only is not None and len(only) <= _POINT_READS:
        return {
            key: entities.stored_state(row)
            for key in only
            if (row := _registry_row(registries, key, options))
        }
    found: dict[str, StoredState] = {}
    page: list[StoredState] = []
    try:
        for row in list_rows(
            registries, results_per_page=MAX_PAGE, select=entities.STATE_COLUMNS, **options
        ):
            if only is not None and row["RowKey"] not in only:
                continue
            state = found[row["RowKey"]] = entities.stored_state(row)
            if on_page is not None:
                page.append(state)
                if len(page) == MAX_PAGE:
                    on_page(page)
                    page = []
    except ResourceNotFoundError:
        return {}
    return found


def _registry_row(
    registries: TableClient, key: str, options: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    try:
        row: Mapping[str, Any] = registries.get_entity(
            keys.registry_partition(key), key, select=list(entities.STATE_COLUMNS), **options
        )
    except ResourceNotFoundError:
        return None
    return row


class RunWriter:
    """One run's results, written as its registries are judged and then at its end.

    `write` queues registries whose verdict is final (written by one background thread, in
    transactions), so a large fleet's rows go out while the rest of its settings are still
    being read under ARM's throttle. `finish` waits for them, writes what was not written or
    has changed since, the registries found removed, then the run row, then the summary: a
    run that dies on the way leaves the previous summary in place, and the next run repeats
    any history entry whose registry row was not updated, into the same row.
    Per batch, evidence goes first, then history, then status rows.

    Rows carry when their registry was judged (`observed_at`): the run's end for those
    written by `finish`.
    """

    def __init__(self, tables: Tables, run_id: str, stored: dict[str, StoredState]) -> None:
        self._tables = tables
        self._run_id = run_id
        self._stored = stored
        self._opened_with = dict(stored)  # `_stored` follows the writes
        # What was written per registry key: the verdict and evidence objects, so `finish`
        # rewrites only registries whose result changed after they were written.
        self._written: dict[str, tuple[Verdict, LogEvidence | None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-writer")
        # The transactions of every batch, on workers the writer owns for the run (not a pool
        # per batch): each is one partition, so order within a table is free.
        self._store = ThreadPoolExecutor(max_workers=_WRITE_WORKERS, thread_name_prefix="store")
        # Sends a built slice (its tables in order, each on `_store`) while the next is built.
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-send")
        self._pending: list[Future[None]] = []
        # Registry keys judged from their stored settings (a change-driven run): their rows
        # are written only when their content changed.
        self._unread: frozenset[str] = frozenset()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._sender.shutdown(wait=True, cancel_futures=True)
        self._store.shutdown(wait=True, cancel_futures=True)

    def known_registries(self) -> list[Registry]:
        """Registries stored as present (not removed) when this writer opened: from the same
        read of the stored state its changes are judged against, so a run reads it once."""
        return [s.registry for s in self._opened_with.values() if s.status != Status.REMOVED.value]

    def stored_settings(self, key: str) -> tuple[DiagnosticSetting, ...] | None:
        """The diagnostic settings stored for registry `key` (`keys.registry_key`) when this
        writer opened, from the same read as `known_registries`; None when not known (never
        read, unreadable, or stored by an older version) or after `judged_from_store`."""
        state = self._opened_with.get(key)
        return entities.parse_settings(state.settings) if state is not None else None

    def stored_facts(self, key: str) -> bool:
        """Registry `key`'s stored row held every fact of the registry when this writer
        opened (`entities.facts_json`): a change-driven run can take it from the store."""
        state = self._opened_with.get(key)
        return state is not None and state.facts

    def judged_from_store(self, registry_keys: Collection[str]) -> None:
        """Registries (`keys.registry_key`) judged from their stored settings, not read: their
        rows keep when their settings were last read (`CheckedAt`) unless what they say
        changed. Before the first `write`, after the last `stored_settings`: the stored
        settings text is let go here (the rest of the run compares digests), a fleet's worth
        held to the run's end otherwise."""
        self._unread = frozenset(registry_keys)
        for key, state in self._opened_with.items():
            if state.settings is not None:
                lean = replace(state, settings=None)
                self._opened_with[key] = lean
                if self._stored.get(key) is state:
                    self._stored[key] = lean

    @property
    def busy(self) -> bool:
        """A queued write is still running (one writer thread: the last one is the newest);
        the caller can gather more registries for the next, rather than queue them up."""
        return bool(self._pending) and not self._pending[-1].done()

    def wait_idle(self) -> None:
        """Returns when the queued writes are done; their failures are `finish`'s to raise."""
        wait(self._pending[-1:])  # one writer thread: the newest is the last to finish

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
        self._wait_for_writes()
        current = _by_key(run)
        removed = changes.removed(
            self._stored,
            current.keys(),
            listed_subscriptions=run.inventoried_subscriptions,
            run_id=run.run_id,
        )
        final = replace(run, verdicts=tuple(current.values()) + tuple(removed.values()))
        self._write(self._unwritten([*current.items(), *removed.items()], run), run.finished_at)

        retry = self._tables.retry
        retry.call(
            "recording the run",
            self._tables.runs.upsert_entity,
            entities.finished_run_entity(final),
            mode=UpdateMode.REPLACE,
        )
        if not update_summary:
            return final
        # Last, and from memory: the summary never mixes this run with an earlier one.
        summary = summarize(final, generated_at=run.finished_at)
        retry.call(
            "writing the summary",
            self._tables.summary.upsert_entity,
            entities.summary_entity(summary),
            mode=UpdateMode.REPLACE,
        )
        return final

    def _wait_for_writes(self) -> None:
        failures = []
        for future in self._pending:
            # Every queued write is waited for; the first failure is raised after.
            try:
                future.result()
            except StorageError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def _unwritten(self, verdicts: Iterable[tuple[str, Verdict]], run: AuditRun) -> list[_Item]:
        """The registries not written yet, or whose verdict or evidence changed since."""
        rest = []
        for key, verdict in verdicts:
            found = run.evidence.get(verdict.registry.key)
            written = self._written.get(key)
            if written is not None and written[0] is verdict and written[1] is found:
                continue
            rest.append((key, verdict, found))
        return rest

    def _write(self, items: Sequence[_Item], observed_at: datetime) -> None:
        # A slice at a time: the rows of a fleet's worth of registries (the end of a run whose
        # store fell behind) are not all built before the first is written. In key order, so
        # a slice holds few partitions and its transactions stay full.
        # Each slice's rows are built while the one before is sent: building is CPU, sending
        # mostly waiting on the service. At most two slices' rows exist at once.
        ordered = sorted(items, key=lambda item: item[0])
        sending: Future[None] | None = None
        for start in range(0, len(ordered), _WRITE_SLICE):
            rows = self._slice_rows(ordered[start : start + _WRITE_SLICE], observed_at)
            if sending is not None:
                sending.result()
            sending = self._sender.submit(self._send, rows)
        if sending is not None:
            sending.result()

    def _slice_rows(self, items: Sequence[_Item], observed_at: datetime) -> _SliceRows:
        registry_rows: list[dict[str, Any]] = []
        history_rows: list[dict[str, Any]] = []
        evidence_rows: list[dict[str, Any]] = []
        for key, verdict, found in items:
            stored_reasons, omitted = entities.reasons_json(verdict.reasons)
            if omitted:
                log.warning("registry %r: %d reasons did not fit its row", key, omitted)
            before = self._stored.get(key)
            evidence = self._evidence(key, verdict, found, before, observed_at, evidence_rows)
            # As stored: the next run compares with what it reads back.
            codes = changes.reason_codes(entities.parse_reasons(stored_reasons))
            changed = changes.changed(before, verdict.status, codes)
            since = changes.status_since(before, changed=changed, observed_at=observed_at)
            row = entities.registry_entity(
                key,
                verdict,
                stored_reasons,
                run_id=self._run_id,
                observed_at=observed_at,
                status_since=since,
                last_event=found.last_event if found is not None else None,
                evidence=evidence,
            )
            if key in self._unread and before is not None and before.digest == row["Digest"]:
                continue  # judged from its stored settings, to the same row: left alone
            registry_rows.append(row)
            if changed:
                history_rows.append(
                    entities.history_entity(
                        key,
                        verdict,
                        stored_reasons,
                        run_id=self._run_id,
                        observed_at=observed_at,
                        change=changes.Change(before, verdict.status, codes),
                    )
                )
            # A registry written again in `finish` (its result changed) compares with what
            # this wrote, and its history says so.
            self._stored[key] = StoredState(
                registry=verdict.registry,
                status=verdict.status.value,
                reason_codes=codes,
                status_since=since,
                last_run_id=self._run_id,
                # What a later write compares with: not the settings text, which only the
                # state read at the start serves (`stored_settings`).
                digest=row["Digest"],
                evidence=evidence,
                facts=True,
            )
        return _SliceRows(evidence_rows, history_rows, registry_rows)

    def _send(self, rows: _SliceRows) -> None:
        # First: once the run row says finished, its evidence is there to read.
        self._upsert_all(
            self._tables.evidence, rows.evidence, "writing log evidence", parallel=True
        )
        self._upsert_all(
            self._tables.history, rows.history, "writing registry history", parallel=True
        )
        self._upsert_all(
            self._tables.registries, rows.registries, "writing registry status", parallel=True
        )

    def _evidence(
        self,
        key: str,
        verdict: Verdict,
        found: LogEvidence | None,
        before: StoredState | None,
        observed_at: datetime,
        rows: list[dict[str, Any]],
    ) -> tuple[str, datetime] | None:
        """Adds the registry's evidence rows to `rows` unless the newest stored ones say the
        same (their window aside) and are recent; returns the digest and time of its newest
        stored evidence. Evidence rows are most of a run's writes, and most registries'
        logs say the same from one run to the next."""
        stored = before.evidence if before is not None else None
        if found is None:
            return stored
        digest = evidence_digest(found)
        if stored is not None and stored[0] == digest:
            if observed_at - stored[1] < EVIDENCE_REFRESH:
                return stored
        rows += entities.evidence_entities(
            key, verdict.registry, found, run_id=self._run_id, observed_at=observed_at
        )
        return digest, observed_at

    def _upsert_all(
        self,
        table: TableClient,
        rows: Sequence[dict[str, Any]],
        action: str,
        *,
        parallel: bool = False,
    ) -> None:
        def submit(batch: list[dict[str, Any]]) -> None:
            self._tables.retry.call(
                action,
                submit_transaction,
                table,
                [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in batch],
            )

        batches = list(_batches(rows))
        if not parallel or len(batches) <= 1:
            for batch in batches:
                submit(batch)
            return
        # list(): the first failure is raised here, after every batch was tried. Only the
        # sender thread gets here, never a store worker.
        list(self._store.map(submit, batches))


def _by_key(run: AuditRun) -> dict[str, Verdict]:
    current: dict[str, Verdict] = {}
    for verdict in run.verdicts:
        key = keys.registry_key(verdict.registry.name)
        if key in current:
            # One row per name; two verdicts for it would also break a transaction.
            log.warning("run %s judged registry %r twice; keeping the last", run.run_id, key)
        current[key] = verdict
    return current


def _batches(rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    bodies = encoded(rows)  # once, for the grouping and the requests alike
    for group in transactions(bodies):
        yield [bodies[i] for i in group]
