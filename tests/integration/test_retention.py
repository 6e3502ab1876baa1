"""Retention against Azurite: expired evidence, runs, history and alert history are deleted in
transactions, within a time budget, and a failure is reported rather than raised.

Stored times are anchored to the wall clock (`NOW`), so no fixture date ever meets it."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from auditor.alerts.model import Alert, AlertKind, Change, Topic
from auditor.alerts.state import AlertStateStore
from auditor.evidence.model import LogEvidence
from auditor.facts import Reason, Registry, Status, Verdict
from auditor.retention import RetentionReport, prune_expired
from auditor.run_record import AuditRun, RunStatus
from auditor.storage import AuditStore, pruning
from emulator.azurite import DEV_KEY

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-00000000000a"
NOW = datetime.now(UTC)
LOGIN_MISSING = "category_missing:ContainerRegistryLoginEvents"


def registry(name: str) -> Registry:
    return Registry(
        id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=SUB,
        resource_group="rg",
    )


def store_run(store: AuditStore, run_id: str, age: timedelta, verdicts: list[Verdict]) -> AuditRun:
    """A run that finished `age` ago, with evidence for each registry it judged."""
    finished = NOW - age
    run = AuditRun(
        run_id=run_id,
        started_at=finished - timedelta(minutes=2),
        finished_at=finished,
        status=RunStatus.SUCCEEDED,
        verdicts=tuple(verdicts),
        inventoried_subscriptions=frozenset({SUB}),
        trigger="timer",
        evidence={
            v.registry.key: LogEvidence(v.registry.key, finished - timedelta(hours=1), finished)
            for v in verdicts
        },
    )
    store.start_run(run.run_id, run.started_at, run.trigger)
    return store.finish_run(run)


def notice(number: int, age: timedelta) -> Alert:
    detected = NOW - age
    return Alert(
        id=f"alert{number:04d}",
        incident_id=f"incident{number:04d}",
        key=f"compliance:acrflip{number}",
        kind=AlertKind.OPENED,
        topic=Topic.COMPLIANCE,
        change=Change.BECAME_NONCOMPLIANT,
        registry=registry("acrflip1"),
        status="noncompliant",
        reasons=(Reason(LOGIN_MISSING, "why"),),
        detected_at=detected,
        opened_at=detected,
    )


@pytest.fixture
def service(storage_connection_string: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(storage_connection_string)


@pytest.fixture
def store(service: TableServiceClient, table_prefix: str) -> AuditStore:
    return AuditStore(service, prefix=table_prefix)


@pytest.fixture
def alerts(service: TableServiceClient, table_prefix: str) -> AlertStateStore:
    return AlertStateStore(service, prefix=table_prefix)


def rows(service: TableServiceClient, table: str) -> list[dict[str, Any]]:
    return [dict(row) for row in service.get_table_client(table).list_entities()]


def run_ids(service: TableServiceClient, table: str) -> set[str]:
    return {row["RunId"] for row in rows(service, table)}


def seed_a_year_and_more(store: AuditStore, alerts: AlertStateStore) -> None:
    """Runs 401, 31 and 1 day(s) ago, each changing one registry's status; notices as old."""
    flip = registry("acrflip1")
    store_run(store, "old", timedelta(days=401), [Verdict(flip, Status.COMPLIANT)])
    store_run(
        store,
        "month",
        timedelta(days=31),
        [Verdict(flip, Status.NONCOMPLIANT, (Reason(LOGIN_MISSING, "why"),))],
    )
    store_run(store, "fresh", timedelta(days=1), [Verdict(flip, Status.COMPLIANT)])
    for number, days in enumerate((401, 31, 1)):
        alerts.append_history(notice(number, timedelta(days=days)), ["log"])


def test_expired_rows_are_deleted_and_the_rest_kept(
    store: AuditStore,
    alerts: AlertStateStore,
    service: TableServiceClient,
    table_prefix: str,
) -> None:
    seed_a_year_and_more(store, alerts)
    registries_before = rows(service, table_prefix + "registries")
    summary_before = store.get_summary()

    report = prune_expired(store)

    assert report.complete and report.errors == ()
    assert {p.table.removeprefix(table_prefix): p.deleted for p in report.pruned} == {
        "evidence": 4,  # two rows (logins, activity) of each run older than 30 days
        "runs": 1,
        "history": 1,
        "alerts": 1,
    }
    assert run_ids(service, table_prefix + "evidence") == {"fresh"}
    assert [r["id"] for r in store.list_runs()[0]] == ["fresh", "month"]
    assert [h["runId"] for h in store.registry_history("acrflip1")] == ["fresh", "month"]
    assert [h["id"] for h in alerts.history()] == ["alert0002", "alert0001"]
    # The present is never pruned.
    assert rows(service, table_prefix + "registries") == registries_before
    assert store.get_summary() == summary_before

    # Nothing left to prune: a second pass deletes nothing.
    again = prune_expired(store)
    assert again.complete and sum(p.deleted for p in again.pruned) == 0


def test_periods_are_parameters(
    store: AuditStore, alerts: AlertStateStore, service: TableServiceClient, table_prefix: str
) -> None:
    seed_a_year_and_more(store, alerts)
    report = prune_expired(
        store, evidence_days=500, runs_days=30, history_days=2, alert_history_days=500
    )
    assert report.complete
    assert run_ids(service, table_prefix + "evidence") == {"old", "month", "fresh"}
    assert [r["id"] for r in store.list_runs()[0]] == ["fresh"]
    assert [h["runId"] for h in store.registry_history("acrflip1")] == ["fresh"]
    assert len(alerts.history()) == 3
    with pytest.raises(ValueError, match="evidence_days"):
        prune_expired(store, evidence_days=0)


def test_many_rows_go_in_transactions_of_one_partition(
    store: AuditStore, service: TableServiceClient, table_prefix: str, monkeypatch: Any
) -> None:
    # 130 registries of one partition ("r"): 260 evidence rows, 130 history rows.
    verdicts = [Verdict(registry(f"reg{i:04d}"), Status.COMPLIANT) for i in range(130)]
    store_run(store, "old", timedelta(days=401), verdicts)
    transactions: list[int] = []
    single: list[str] = []
    submit = pruning.submit_transaction
    counted_tables = {store.tables.evidence.table_name, store.tables.history.table_name}

    def counted(table: Any, operations: Any, **options: Any) -> Any:
        if table.table_name in counted_tables:
            transactions.append(len(list(operations)))
        return submit(table, operations, **options)

    monkeypatch.setattr(pruning, "submit_transaction", counted)
    for table in (store.tables.evidence, store.tables.history):
        monkeypatch.setattr(table, "delete_entity", lambda *a, **k: single.append(a))

    report = prune_expired(store)

    assert report.complete
    assert sorted(transactions, reverse=True) == [100, 100, 100, 60, 30]
    assert single == []
    assert rows(service, table_prefix + "evidence") == []
    assert rows(service, table_prefix + "history") == []


class Steps:
    """A clock that moves one second per reading: a budget of n seconds lasts n readings."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_pruning_stops_at_its_budget_and_the_next_one_goes_on(
    store: AuditStore, alerts: AlertStateStore, service: TableServiceClient, table_prefix: str
) -> None:
    verdicts = [Verdict(registry(f"reg{i:04d}"), Status.COMPLIANT) for i in range(130)]
    store_run(store, "old", timedelta(days=401), verdicts)
    alerts.append_history(notice(1, timedelta(days=401)), ["log"])

    stopped = prune_expired(store, budget_seconds=3, clock=Steps())
    assert not stopped.complete and stopped.errors == ()
    left = len(rows(service, table_prefix + "evidence"))
    assert 0 < left < 260  # some of it done, not all
    assert len(alerts.history()) == 1  # not reached

    finished = prune_expired(store)
    assert finished.complete
    assert rows(service, table_prefix + "evidence") == []
    assert alerts.history() == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_failure_is_reported_not_raised(table_prefix: str, caplog: Any) -> None:
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};"
        f"TableEndpoint=http://127.0.0.1:{_closed_port()}/devstoreaccount1;"
    )
    service = TableServiceClient.from_connection_string(connection_string, retry_total=0)
    report = prune_expired(AuditStore(service, prefix=table_prefix))

    assert isinstance(report, RetentionReport)
    assert not report.complete
    (error,) = report.errors
    assert "evidence" in error and "could not be reached" in error
    assert DEV_KEY not in error and "AccountKey" not in error
    assert any("retention" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert DEV_KEY not in caplog.text
