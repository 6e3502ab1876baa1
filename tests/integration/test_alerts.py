"""Alerts end to end: state and outbox in Azurite, deliveries to a local HTTP receiver, the
Azurite queue and log records; concurrency, outages, secrets; the Event Grid path against the
emulator."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.pipeline import PipelineResponse
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueClient

from auditor import audit as audit_module
from auditor.alerts import (
    AlertKind,
    AlertService,
    Change,
    build_sinks,
    dispatch,
    options_from_settings,
    plan_alerts,
    send_alerts,
    send_test_alert,
    setting_change_from_event,
)
from auditor.alerts.eventgrid import registry_from_event
from auditor.alerts.model import Alert, Topic, alert_key
from auditor.alerts.outbox import Outbox
from auditor.alerts.schema import validate
from auditor.alerts.sinks import WebhookSink
from auditor.alerts.sinks.http import HttpOptions
from auditor.alerts.sinks.logrecord import PREFIX
from auditor.alerts.sinks.queue import API_VERSION
from auditor.alerts.state import AlertStateStore
from auditor.alerts.stream import AlertStream
from auditor.alerts.transitions import AlertPlan
from auditor.errors import ConfigError
from auditor.facts import Registry, Status, Verdict
from auditor.reasons.catalog import reason
from auditor.run_record import AuditRun, RunStatus
from auditor.runtime import audit_once
from auditor.settings import Settings
from emulator.azurite import Azurite
from emulator.webhooks import BlackHole, Received, Receiver

pytestmark = pytest.mark.integration

SUB = "0000aaaa-0000-0000-0000-000000000001"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKEN = "T0k3nInThePath9f8e7d"  # stands for the credential in Slack/Teams URLs
SECRET = "hmac-secret-for-tests-0123456789"
FAST = HttpOptions(timeout=2.0, retries=2, backoff=0.01, max_backoff=0.05)
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "reference" / "examples"


# -- a local receiver ---------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def queue_name() -> str:
    return "alerts-" + hashlib.sha256(str(time.monotonic_ns()).encode()).hexdigest()[:10]


@pytest.fixture
def make_settings(
    azurite_server: Azurite, table_prefix: str, receiver: Receiver, queue_name: str
) -> Callable[..., Settings]:
    def make(**overrides: str) -> Settings:
        env = {
            "AUDITOR_STORAGE": azurite_server.connection_string,
            "AUDITOR_TABLE_PREFIX": table_prefix,
            "AUDITOR_ALERT_WEBHOOK_URL": receiver.url(f"/hook/{TOKEN}"),
            "AUDITOR_ALERT_WEBHOOK_SECRET": SECRET,
            "AUDITOR_ALERT_TEAMS_URL": receiver.url(f"/teams/workflows/x?sig={TOKEN}"),
            "AUDITOR_ALERT_SLACK_URL": receiver.url(f"/slack/services/T0/B0/{TOKEN}"),
            "AUDITOR_ALERT_QUEUE": queue_name,
            **overrides,
        }
        return Settings.from_env({k: v for k, v in env.items() if v})

    return make


def service(settings: Settings) -> AlertService:
    return AlertService.from_settings(settings, sinks=build_sinks(settings, http=FAST))


# -- verdicts, built by hand --------------------------------------------------------------------


def registry(name: str = "acrprod01") -> Registry:
    return Registry(
        id=f"/subscriptions/{SUB}/resourceGroups/rg-prod/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=SUB,
        resource_group="rg-prod",
    )


REG = registry()


def failing(reg: Registry = REG) -> Verdict:
    return Verdict(reg, Status.NONCOMPLIANT, (reason("no_diagnostic_setting"),))


def compliant(reg: Registry = REG) -> Verdict:
    return Verdict(reg, Status.COMPLIANT)


def race(step: Callable[[int], Any], runners: int = 2) -> list[Any]:
    """Run `step(0..runners-1)` in threads released together; their results in order."""
    start = threading.Barrier(runners)
    results: list[Any] = [None] * runners
    errors: list[BaseException] = []

    def go(i: int) -> None:
        start.wait()
        try:
            results[i] = step(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(runners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def verify(received: Received) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers["X-Auditor-Signature"], expected)


def queue_messages(azurite: Azurite, name: str) -> list[Any]:
    client = QueueClient.from_connection_string(
        azurite.connection_string, name, api_version=API_VERSION
    )
    with client:
        return [json.loads(m.content) for m in client.receive_messages(max_messages=32)]


# -- every sink ---------------------------------------------------------------------------------


def test_each_sink_kind_receives_the_alert(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    azurite_server: Azurite,
    queue_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="auditor.alerts.record")
    with service(make_settings()) as alerts:
        report = alerts.process([failing()], run_id="run-1", now=NOW)
        document = alerts.document()
    assert sorted(d.sink for d in report.delivered) == ["log", "queue", "slack", "teams", "webhook"]
    assert report.failures == []

    [hook] = receiver.on("/hook/")
    assert verify(hook)  # the receiver can check the signature with the shared secret
    assert hook.headers["Content-Type"].startswith("application/json")
    alert = hook.json()
    assert validate(alert) == []
    assert (alert["kind"], alert["change"], alert["status"]) == (
        "opened",
        "new_registry",
        "noncompliant",
    )
    assert alert["registry"] == {
        "id": REG.id,
        "name": "acrprod01",
        "subscriptionId": SUB,
        "resourceGroup": "rg-prod",
    }
    assert alert["reasons"][0]["code"] == "no_diagnostic_setting"
    assert alert["detectedAt"] == "2026-03-01T12:00:00Z" and alert["runId"] == "run-1"
    assert hook.headers["X-Auditor-Alert-Id"] == alert["id"]

    [card] = receiver.on("/teams/")
    envelope = card.json()
    assert envelope["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert envelope["attachments"][0]["content"]["version"] == "1.4"
    assert "X-Auditor-Signature" not in card.headers

    [slack] = receiver.on("/slack/")
    assert "acrprod01" in slack.json()["text"]
    assert slack.json()["blocks"][0]["type"] == "header"

    [message] = queue_messages(azurite_server, queue_name)
    assert validate(message) == [] and message["id"] == alert["id"]

    [record] = [r for r in caplog.records if r.getMessage().startswith(PREFIX)]
    logged = json.loads(record.getMessage()[len(PREFIX) + 1 :])
    assert logged == alert

    # The API view: the open alert, its notice with every sink delivered, nothing pending.
    assert [a["registry"]["name"] for a in document["open"]] == ["acrprod01"]
    [notice] = document["history"]
    assert notice["id"] == alert["id"]
    assert notice["deliveries"] == dict.fromkeys(document["sinks"], "delivered")
    assert document["undelivered"] == []


def test_transitions_survive_restarts(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(
        AUDITOR_ALERT_TEAMS_URL="", AUDITOR_ALERT_SLACK_URL="", AUDITOR_ALERT_QUEUE=""
    )
    runs = [
        ([failing()], NOW, "opened"),
        ([failing()], NOW + timedelta(hours=1), None),  # no repeat
        ([failing()], NOW + timedelta(hours=24), "reminder"),
        ([failing()], NOW + timedelta(hours=25), None),
        ([compliant()], NOW + timedelta(hours=26), "resolved"),
        ([compliant()], NOW + timedelta(hours=27), None),
    ]
    for verdicts, now, expected in runs:
        before = len(receiver.requests)
        with service(settings) as alerts:  # a new process each run: state is in the table
            alerts.process(verdicts, now=now)
        kinds = [r.json()["kind"] for r in receiver.requests[before:]]
        assert kinds == ([expected] if expected else []), now
    ids = [r.json()["id"] for r in receiver.requests]
    incidents = {r.json()["incidentId"] for r in receiver.requests}
    assert len(set(ids)) == 3 and len(incidents) == 1


def test_two_overlapping_runs_send_one_alert(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(AUDITOR_ALERT_LOG_RECORDS="false", AUDITOR_ALERT_QUEUE="")
    regs = [registry(f"acrfleet{i:02d}") for i in range(12)]
    verdicts = [failing(r) for r in regs]
    for round_no in range(3):
        now = NOW + timedelta(hours=round_no)
        if round_no == 2:
            verdicts = [compliant(r) for r in regs]
        runs = [service(settings), service(settings)]
        # Both runs read the same state and plan the same alerts...
        plans: list[AlertPlan] = []
        for run in runs:
            states = run.states.load({alert_key(r.key, Topic.COMPLIANCE) for r in regs})
            plans.append(plan_alerts(states, verdicts, now=now, remind_after=timedelta(days=1)))
        assert plans[0].alerts == plans[1].alerts
        # ...then race to send them.
        reports = race(
            lambda i, runs=runs, plans=plans, now=now: send_alerts(
                plans[i], runs[i].sinks, runs[i].states, runs[i].outbox, now=now
            )
        )
        for run in runs:
            run.close()
        expected = len(plans[0].alerts)
        assert len(reports[0].claimed) + len(reports[1].claimed) == expected
        assert set(reports[0].claimed).isdisjoint(reports[1].claimed)
        assert len(reports[0].claimed_elsewhere) + len(reports[1].claimed_elsewhere) == expected
    hooks = [r.json() for r in receiver.on("/hook/")]
    ids = [h["id"] for h in hooks]
    assert len(ids) == len(set(ids)) == 24  # 12 opened, then (round 2) none, then 12 resolved
    assert sorted(h["kind"] for h in hooks) == ["opened"] * 12 + ["resolved"] * 12
    assert len(receiver.on("/slack/")) == 24


def test_overlapping_full_runs_alert_each_registry_once(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(
        AUDITOR_ALERT_LOG_RECORDS="false",
        AUDITOR_ALERT_QUEUE="",
        AUDITOR_ALERT_TEAMS_URL="",
        AUDITOR_ALERT_SLACK_URL="",
    )
    verdicts = [failing(registry(f"acrrace{i:02d}")) for i in range(10)]
    runs = [service(settings) for _ in range(3)]
    reports = race(lambda i: runs[i].process(verdicts, now=NOW), runners=3)
    for run in runs:
        run.close()
    assert sum(len(r.claimed) for r in reports) == 10
    names = sorted(r.json()["registry"]["name"] for r in receiver.on("/hook/"))
    assert names == sorted(v.registry.name for v in verdicts)


def test_quiet_state_updates_are_batched_and_never_overwrite_newer_state(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(
        AUDITOR_ALERT_QUEUE="",
        AUDITOR_ALERT_TEAMS_URL="",
        AUDITOR_ALERT_SLACK_URL="",
        AUDITOR_ALERT_LOG_RECORDS="false",
    )
    regs = [registry(f"acrquiet{i:03d}") for i in range(150)]  # two transactions
    missing = reason("category_missing:ContainerRegistryLoginEvents")
    with service(settings) as alerts:
        alerts.process([compliant(r) for r in regs], now=NOW)
        stored = alerts.states.load()
        assert len(stored) == 150 and all(s.ever_compliant for s in stored.values())
        # Two runs plan a quiet change (a new reason on an open incident) from the same state.
        alerts.process([Verdict(REG, Status.NONCOMPLIANT, (missing,))], now=NOW)
        worse = Verdict(
            REG, Status.NONCOMPLIANT, (missing, reason("metrics_missing", metric="AllMetrics"))
        )
        states = alerts.states.load([REG.key])
        plans = [plan_alerts(states, [worse], now=NOW, remind_after=None) for _ in range(2)]
        assert plans[0].alerts == () and len(plans[0].changes) == 1
        assert alerts.states.store(plans[0].changes) == 1
        assert alerts.states.store(plans[1].changes) == 0  # stale ETag: dropped
        assert alerts.states.load([REG.key])[REG.key].reason_codes == (
            missing.code,
            "metrics_missing",
        )
    assert [r.json()["kind"] for r in receiver.requests] == ["opened"]


def test_a_scan_reads_the_states_that_point_reads_do(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    """`load()` scans the partition and converts the raw rows itself; reading the same keys
    one by one goes through the SDK's entities. Both give equal states, ETags included, and
    a state written with the scan's ETag is taken."""
    settings = make_settings(
        AUDITOR_ALERT_QUEUE="",
        AUDITOR_ALERT_TEAMS_URL="",
        AUDITOR_ALERT_SLACK_URL="",
        AUDITOR_ALERT_LOG_RECORDS="false",
    )
    regs = [registry(f"acrscan{i:02d}") for i in range(6)]
    missing = reason("category_missing:ContainerRegistryLoginEvents")
    with service(settings) as alerts:
        # Every kind of state: open, resolved, never compliant, reminded.
        alerts.process([compliant(r) for r in regs[:3]], now=NOW)
        failing = [Verdict(r, Status.NONCOMPLIANT, (missing,)) for r in regs]
        alerts.process(failing, now=NOW + timedelta(hours=1))
        alerts.process([compliant(regs[0])], now=NOW + timedelta(hours=2))
        alerts.process(failing[1:2], now=NOW + timedelta(days=2))
        scanned = alerts.states.load()
        keys = [alert_key(r.key, Topic.COMPLIANCE) for r in regs]
        pointed = alerts.states.load(keys)
        assert set(pointed) == set(keys) and {k: scanned[k] for k in keys} == pointed
        assert all(s.etag for s in pointed.values())
        assert {s.open for s in pointed.values()} == {True, False}
        assert any(s.resolved_at and s.opened_at for s in pointed.values())
        newer = Verdict(
            regs[1], Status.NONCOMPLIANT, (missing, reason("metrics_missing", metric="AllMetrics"))
        )
        plan = plan_alerts(scanned, [newer], now=NOW + timedelta(days=2), remind_after=None)
        assert plan.changes and alerts.states.store(plan.changes) == len(plan.changes)


def test_a_sink_that_crashes_does_not_stop_the_others(
    make_settings: Callable[..., Settings], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        name = "broken"

        def send(self, alert: Any, *, deadline: float | None = None) -> None:
            raise RuntimeError(f"bug while posting to https://secret.example/{TOKEN}")

        def close(self) -> None:
            return None

    settings = make_settings(
        AUDITOR_ALERT_QUEUE="",
        AUDITOR_ALERT_TEAMS_URL="",
        AUDITOR_ALERT_SLACK_URL="",
        AUDITOR_ALERT_LOG_RECORDS="false",
    )
    sinks = [Broken(), *build_sinks(settings, http=FAST)]
    with AlertService.from_settings(settings, sinks=sinks) as alerts:
        report = alerts.process([failing()], now=NOW)
        pending = alerts.document()["undelivered"]
    assert [(d.sink, d.outcome) for d in report.deliveries] == [
        ("broken", "queued"),
        ("webhook", "delivered"),
    ]
    assert [p["sink"] for p in pending] == ["broken"]
    assert "unexpected RuntimeError" in caplog.text and TOKEN not in caplog.text


# -- many alerts: entity-group transactions ------------------------------------------------------


class TableRequests:
    """Every HTTP request the Tables SDK sends (its response hook runs after the retry policy,
    so a retried request counts again; a transaction is one request)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, response: PipelineResponse[Any, Any]) -> None:
        request = response.http_request
        with self._lock:
            self.seen.append((request.method, urlsplit(request.url).path.rsplit("/", 1)[-1]))

    @property
    def transactions(self) -> int:
        return sum(1 for _, path in self.seen if path == "$batch")

    @property
    def single_writes(self) -> list[tuple[str, str]]:
        """Writes of one row each (table creation aside)."""
        return [
            (method, path)
            for method, path in self.seen
            if method != "GET" and path not in ("$batch", "Tables")
        ]


def counted(settings: Settings, requests: TableRequests, sinks: Any = None) -> AlertService:
    """An AlertService whose table requests are counted."""
    assert settings.storage.connection_string is not None
    tables = TableServiceClient.from_connection_string(
        settings.storage.connection_string, raw_response_hook=requests
    )
    return AlertService(
        build_sinks(settings, http=FAST) if sinks is None else sinks,
        AlertStateStore(tables, prefix=settings.storage.table_prefix),
        Outbox(tables, prefix=settings.storage.table_prefix),
        options=options_from_settings(settings),
    )


def webhook_only(make_settings: Callable[..., Settings], **more: str) -> Settings:
    return make_settings(
        AUDITOR_ALERT_QUEUE="", AUDITOR_ALERT_TEAMS_URL="", AUDITOR_ALERT_SLACK_URL="", **more
    )


def outbox_table(settings: Settings) -> TableClient:
    assert settings.storage.connection_string is not None
    return TableClient.from_connection_string(
        settings.storage.connection_string, f"{settings.storage.table_prefix}outbox"
    )


def test_a_first_run_opening_250_alerts_writes_in_transactions(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dispatch, "SETTLE_EVERY", 3600.0)  # count by batch size, not by clock
    settings = webhook_only(make_settings)  # two sinks: webhook and log records
    regs = [registry(f"acrbulk{i:03d}") for i in range(250)]
    requests = TableRequests()
    with counted(settings, requests) as alerts:
        report = alerts.process([failing(r) for r in regs], now=NOW)
    assert len(report.claimed) == 250 and report.failures == []

    # One alert at a time this was 2 + 3 per sink = 8 writes per alert (2,000 here). Now:
    # 2 tables, 2 outbox reads, 1 state read; claims, history and each sink's outbox rows in
    # 3 transactions each (12); each sink's deletions and outcomes after delivery (12).
    assert requests.single_writes == []
    assert requests.transactions == 24
    assert len(requests.seen) == 29

    hooks = [r.json() for r in receiver.on("/hook/")]
    assert sorted(h["registry"]["name"] for h in hooks) == [r.name for r in regs]
    assert len({h["id"] for h in hooks}) == 250
    with service(settings) as alerts:
        document = alerts.document(limit=500)
    assert len(document["open"]) == 250
    assert document["undelivered"] == []
    assert sorted(n["id"] for n in document["history"]) == sorted(h["id"] for h in hooks)
    for notice in document["history"]:
        assert notice["deliveries"] == {"webhook": "delivered", "log": "delivered"}
    assert list(outbox_table(settings).list_entities()) == []


def test_a_one_alert_run_writes_row_by_row(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    requests = TableRequests()
    with counted(webhook_only(make_settings, AUDITOR_ALERT_LOG_RECORDS="false"), requests) as al:
        report = al.process([failing()], now=NOW)
    assert [d.outcome for d in report.deliveries] == ["delivered"]
    # The Event Grid path: a transaction of one row would cost the same round trip.
    assert requests.transactions == 0
    assert sorted(m for m, _ in requests.single_writes) == [
        "DELETE",
        "PATCH",
        "POST",
        "POST",
        "PUT",
    ]


def test_failed_deliveries_stay_in_the_outbox_when_settled_in_a_transaction(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = webhook_only(make_settings, AUDITOR_ALERT_LOG_RECORDS="false")
    regs = [registry(f"acrmixed{i:03d}") for i in range(150)]
    refused = {7, 57, 107}  # the receiver refuses these POSTs (4xx: not retried in the run)
    receiver.statuses = [400 if i in refused else 200 for i in range(150)]
    with service(settings) as alerts:
        report = alerts.process([failing(r) for r in regs], now=NOW)
        document = alerts.document(limit=500)
    failed = {d.alert_id for d in report.failures}
    posted = [r.json()["id"] for r in receiver.on("/hook/")]
    assert failed == {posted[i] for i in refused}
    assert [d.outcome for d in report.failures] == ["queued"] * 3

    pending = document["undelivered"]
    assert {p["alertId"] for p in pending} == failed
    for row in pending:
        assert row["attempts"] == 1 and row["lastError"].startswith("HTTP 400")
        assert row["nextAttemptAt"] == "2026-03-01T12:05:00Z"
    deliveries = {n["id"]: n["deliveries"]["webhook"] for n in document["history"]}
    assert len(deliveries) == 150
    assert {i for i, d in deliveries.items() if d != "delivered"} == failed
    assert all(deliveries[i].startswith("queued: HTTP 400") for i in failed)

    # A later run leases the three (one transaction) and delivers them.
    requests = TableRequests()
    with counted(settings, requests) as alerts:
        later = alerts.flush(now=NOW + timedelta(minutes=10))
        document = alerts.document(limit=500)
    assert sorted(d.alert_id for d in later.delivered) == sorted(failed)
    assert requests.single_writes == []
    assert document["undelivered"] == []
    assert all(n["deliveries"]["webhook"] == "delivered" for n in document["history"])
    assert sorted(r.json()["id"] for r in receiver.on("/hook/")) == sorted([*posted, *failed])


def test_a_refused_token_never_reaches_the_outbox_history_logs_or_report(
    make_settings: Callable[..., Settings], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(AUDITOR_ALERT_QUEUE="", AUDITOR_ALERT_LOG_RECORDS="false")
    receiver.statuses = [401, 401, 401]  # webhook, Teams, Slack: each echoes its token
    with caplog.at_level(logging.DEBUG), service(settings) as alerts:
        report = alerts.process([failing()], now=NOW)
        document = alerts.document(limit=50)
    assert len(report.failures) == 3
    shown = json.dumps(document) + caplog.text + " ".join(report.problems())
    assert "HTTP 401: bad token [redacted]" in shown
    for i in range(len(TOKEN) - 5):
        assert TOKEN[i : i + 6] not in shown


def test_a_black_hole_sink_costs_a_run_its_budget_and_loses_nothing(
    make_settings: Callable[..., Settings], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """14 alerts to a webhook that never answers, 10 s timeout and 3 retries each: the sink
    spends its budget on the first, the rest wait in the outbox untried, and the next run,
    with the receiver answering, delivers each alert once."""
    hole = BlackHole()
    settings = webhook_only(make_settings, AUDITOR_ALERT_LOG_RECORDS="false")
    regs = [registry(f"acrhole{i:03d}") for i in range(14)]
    slow = HttpOptions(timeout=10.0, retries=3, backoff=0.5, max_backoff=8.0)
    base = service(settings)
    stalled = AlertService(
        [WebhookSink(hole.url(f"/hook/{TOKEN}"), SECRET, options=slow)],
        base.states,
        base.outbox,
        options=dataclasses.replace(base.options, sink_budget=1.5),
    )
    try:
        with stalled:
            report = stalled.process([failing(r) for r in regs], now=NOW)
    finally:
        hole.close()
    assert hole.accepted == 1  # one attempt, cut to the budget; nobody else waited on it
    assert [d.outcome for d in report.failures] == ["queued"] * 14
    assert all("time budget for this run ran out" in d.error for d in report.failures)
    # The one tried says why it failed; the 13 left untried are one line, not one each (a
    # fleet's worth would flood the log).
    spent = [r.getMessage() for r in caplog.records if "budget for this run" in r.getMessage()]
    assert len(spent) == 2 and "(last try: timed out) (queued)" in spent[0]
    assert spent[1] == (
        "13 alerts to webhook: not sent: the sink's time budget for this run ran out;"
        " kept for the next run"
    )

    with base:
        later = base.flush(now=NOW + timedelta(minutes=10))
        assert base.document(limit=50)["undelivered"] == []
    assert sorted(d.alert_id for d in later.delivered) == sorted(report.claimed)
    assert sorted(r.json()["id"] for r in receiver.on("/hook/")) == sorted(report.claimed)


def test_every_alert_is_in_the_outbox_before_a_sink_gets_it(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = webhook_only(make_settings, AUDITOR_ALERT_LOG_RECORDS="false")
    table = outbox_table(settings)
    seen: dict[str, bool] = {}

    class Checking:
        """A sink that looks up its alert's outbox row when the alert is handed to it."""

        name = "checking"

        def send(self, alert: Alert, *, deadline: float | None = None) -> None:
            rows = table.query_entities(
                "PartitionKey eq @sink and RowKey eq @id",
                parameters={"sink": self.name, "id": alert.id},
            )
            seen[alert.id] = len(list(rows)) == 1

        def close(self) -> None:
            return None

    regs = [registry(f"acrahead{i:03d}") for i in range(230)]
    with AlertService.from_settings(settings, sinks=[Checking()]) as alerts:
        report = alerts.process([failing(r) for r in regs], now=NOW)
    assert len(seen) == 230 and all(seen.values())
    assert len(report.delivered) == 230
    assert list(table.list_entities()) == []  # and it is gone once delivered


def test_a_batch_whose_keys_a_concurrent_run_created_first_falls_back_row_by_row(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = webhook_only(make_settings, AUDITOR_ALERT_LOG_RECORDS="false")
    regs = [registry(f"acrfallback{i:03d}") for i in range(250)]
    plan = plan_alerts({}, [failing(r) for r in regs], now=NOW, remind_after=None)
    changes = plan.changes
    # Another run got to a few keys first: one in each batch of 100, and batch edges.
    taken = [0, 99, 100, 180, 249]
    with service(settings) as other:
        won = {i: other.states.claim(changes[i]) for i in taken}
    assert all(state is not None for state in won.values())

    requests = TableRequests()
    with counted(settings, requests) as alerts:
        report = send_alerts(plan, alerts.sinks, alerts.states, alerts.outbox, now=NOW)
        stored = alerts.states.load()
        document = alerts.document(limit=500)
    ids = [c.alert.id for c in changes if c.alert is not None]
    lost = {ids[i] for i in taken}
    assert set(report.claimed_elsewhere) == lost
    assert set(report.claimed) == set(ids) - lost
    assert sorted(r.json()["id"] for r in receiver.on("/hook/")) == sorted(set(ids) - lost)
    # The other run's rows are untouched, and this run wrote no history or outbox for them.
    for i, state in won.items():
        assert state is not None and stored[changes[i].state.key].etag == state.etag
    assert {n["id"] for n in document["history"]} == set(ids) - lost
    # Each of the three batches failed as a whole once, then went row by row.
    claims = [m for m, p in requests.single_writes if m == "POST"]
    assert len(claims) == 250


def test_two_overlapping_runs_of_250_alerts_send_each_once(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = webhook_only(make_settings, AUDITOR_ALERT_LOG_RECORDS="false")
    regs = [registry(f"acrrace{i:03d}") for i in range(250)]
    keys = {alert_key(r.key, Topic.COMPLIANCE) for r in regs}
    rounds = [[failing(r) for r in regs], [compliant(r) for r in regs]]  # creates, then updates
    for round_no, verdicts in enumerate(rounds):
        now = NOW + timedelta(hours=round_no)
        runs = [service(settings), service(settings)]
        plans = [
            plan_alerts(run.states.load(keys), verdicts, now=now, remind_after=None) for run in runs
        ]
        assert plans[0].alerts == plans[1].alerts and len(plans[0].alerts) == 250
        reports = race(
            lambda i, runs=runs, plans=plans, now=now: send_alerts(
                plans[i], runs[i].sinks, runs[i].states, runs[i].outbox, now=now
            )
        )
        for run in runs:
            run.close()
        assert set(reports[0].claimed).isdisjoint(reports[1].claimed)
        assert len(reports[0].claimed) + len(reports[1].claimed) == 250
    hooks = [r.json() for r in receiver.on("/hook/")]
    assert len(hooks) == len({h["id"] for h in hooks}) == 500
    assert sorted(h["kind"] for h in hooks) == ["opened"] * 250 + ["resolved"] * 250


# -- outages ------------------------------------------------------------------------------------


def test_receiver_down_then_back_delivers_once_from_the_outbox(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    down = Receiver().start()
    down_url = down.url(f"/hook/{TOKEN}")
    down.stop()  # connection refused from now on
    settings = make_settings(
        AUDITOR_ALERT_WEBHOOK_URL=down_url, AUDITOR_ALERT_QUEUE="", AUDITOR_ALERT_TEAMS_URL=""
    )
    try:
        with service(settings) as alerts:
            first = alerts.process([failing()], now=NOW)
            pending = alerts.document()["undelivered"]
        # The failing sink held up nobody: Slack and the log record went out at once.
        assert sorted(d.sink for d in first.delivered) == ["log", "slack"]
        [failure] = first.failures
        assert (failure.sink, failure.outcome) == ("webhook", "queued")
        assert "connection failed" in failure.error
        [row] = pending
        assert row["sink"] == "webhook" and row["attempts"] == 1

        with service(settings) as alerts:  # too early: the retry waits its backoff
            assert alerts.process([failing()], now=NOW + timedelta(minutes=2)).deliveries == []

        down.start()  # back, on the same port
        with service(settings) as alerts:
            second = alerts.process([failing()], now=NOW + timedelta(minutes=10))
            document = alerts.document()
        assert [(d.sink, d.outcome) for d in second.deliveries] == [("webhook", "delivered")]
        assert document["undelivered"] == []
        assert document["history"][0]["deliveries"]["webhook"] == "delivered"

        with service(settings) as alerts:
            assert alerts.process([failing()], now=NOW + timedelta(hours=1)).deliveries == []
        [hook] = down.requests
        assert verify(hook) and hook.json()["kind"] == "opened"
        # Its failure was recorded: a retry, not a possible repeat.
        assert "repeat" not in hook.json()["summary"]
        assert len(receiver.on("/slack/")) == 1
    finally:
        down.stop()


def test_5xx_is_retried_within_the_run(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(
        AUDITOR_ALERT_QUEUE="", AUDITOR_ALERT_TEAMS_URL="", AUDITOR_ALERT_SLACK_URL=""
    )
    receiver.statuses = [500, 503]
    with service(settings) as alerts:
        report = alerts.process([failing()], now=NOW)
        assert alerts.document()["undelivered"] == []
    assert report.failures == []
    bodies = [r.body for r in receiver.on("/hook/")]
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the same alert, retried


def test_a_run_that_died_mid_delivery_is_finished_by_the_next(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(
        AUDITOR_ALERT_QUEUE="",
        AUDITOR_ALERT_TEAMS_URL="",
        AUDITOR_ALERT_SLACK_URL="",
        AUDITOR_ALERT_LOG_RECORDS="false",
    )
    alerts = service(settings)
    plan = plan_alerts({}, [failing()], now=NOW, remind_after=None)
    [change] = plan.changes
    # The dead run claimed the alert and wrote its outbox row (leased), then vanished.
    assert alerts.states.claim(change) is not None
    [alert] = plan.alerts
    from auditor.alerts.payload import to_document

    alerts.outbox.put(
        "webhook", to_document(alert), history_key="", now=NOW, lease=timedelta(minutes=5)
    )
    # An overlapping run leaves the leased row alone; the plan has nothing new either.
    assert alerts.process([failing()], now=NOW + timedelta(minutes=1)).deliveries == []
    assert receiver.requests == []
    report = alerts.process([failing()], now=NOW + timedelta(minutes=6))
    assert [(d.alert_id, d.outcome) for d in report.deliveries] == [(alert.id, "delivered")]
    assert [r.json()["id"] for r in receiver.requests] == [alert.id]
    # The dead run may have sent it before dying: the same id, and a person is told.
    [resent] = receiver.requests
    assert resent.json()["summary"].startswith(f"Possible repeat of alert {alert.id}: ")
    alerts.close()


def test_undeliverable_alerts_are_given_up_after_max_age(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    down = Receiver().start()
    down.stop()
    settings = make_settings(
        AUDITOR_ALERT_WEBHOOK_URL=down.url("/x"),
        AUDITOR_ALERT_QUEUE="",
        AUDITOR_ALERT_TEAMS_URL="",
        AUDITOR_ALERT_SLACK_URL="",
        AUDITOR_ALERT_LOG_RECORDS="false",
    )
    with service(settings) as alerts:
        alerts.process([failing()], now=NOW)
        caplog.set_level(logging.ERROR, logger="auditor.alerts.dispatch")
        report = alerts.flush(now=NOW + timedelta(days=8))
        assert [d.outcome for d in report.deliveries] == ["abandoned"]
        assert alerts.document()["undelivered"] == []
    assert "abandoned" in caplog.text


# -- secrets ------------------------------------------------------------------------------------


def test_secrets_never_reach_logs_errors_or_the_api(
    make_settings: Callable[..., Settings], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, including httpx's request lines
    receiver.statuses = [500] * 30  # every HTTP sink fails, with retries
    settings = make_settings(AUDITOR_ALERT_QUEUE="")
    with service(settings) as alerts:
        report = alerts.process([failing()], now=NOW)
        later = alerts.process([failing()], now=NOW + timedelta(minutes=10))
        document = alerts.document()
        shown = [repr(alerts), repr(alerts.sinks), repr(settings), repr(report), repr(later)]
    assert len(report.failures) == 3
    assert "HTTP 500" in report.failures[0].error
    api = json.dumps(document)
    assert len(document["undelivered"]) == 3 and "HTTP 500" in api
    assert sorted(document["sinks"]) == ["log", "slack", "teams", "webhook"]
    for text in [caplog.text, api, *shown]:
        assert TOKEN not in text
        assert SECRET not in text
        assert f"127.0.0.1:{receiver.port}/hook" not in text


def test_cli_test_alert_goes_to_one_sink(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(AUDITOR_ALERT_QUEUE="")
    alert = send_test_alert(settings, "slack")
    [slack] = receiver.requests
    assert slack.path.startswith("/slack/") and "(test)" in json.dumps(slack.json())
    assert alert.test and alert.change is Change.TEST
    send_test_alert(settings, "webhook")
    assert receiver.requests[-1].json()["test"] is True and verify(receiver.requests[-1])
    with pytest.raises(ConfigError, match="not configured"):
        send_test_alert(make_settings(AUDITOR_ALERT_TEAMS_URL="", AUDITOR_ALERT_QUEUE=""), "teams")
    with pytest.raises(ConfigError, match="not one of"):
        send_test_alert(settings, "pager")


# -- Event Grid: near real time, against the emulator ---------------------------------------------


def test_event_grid_delete_event_re_audit_and_alert_in_seconds(
    local_azure: Any, receiver: Receiver, table_prefix: str, azurite_server: Azurite
) -> None:
    from auditor.azure.diagnostics import read_settings
    from auditor.judgement import judge
    from auditor.runtime import audit_once, build_arm_clients, build_credential

    _, env = local_azure()
    settings = Settings.from_env(
        {
            **env,
            "AUDITOR_ALERT_WEBHOOK_URL": receiver.url(f"/hook/{TOKEN}"),
            "AUDITOR_ALERT_WEBHOOK_SECRET": SECRET,
            "AUDITOR_ALERT_LOG_RECORDS": "false",
        }
    )
    run = audit_once(settings, trigger="timer", use_store=False)
    with service(settings) as alerts:
        alerts.process(run.verdicts, run_id=run.run_id)
    opened = {r.json()["registry"]["name"] for r in receiver.requests}
    assert "acrnosetting01" in opened and "acrcompliant01" not in opened

    # Someone deletes the compliant registry's only setting; ARM publishes the event.
    [target] = [v.registry for v in run.verdicts if v.registry.name == "acrcompliant01"]
    clients = build_arm_clients(settings, build_credential())
    try:
        [setting] = read_settings(clients, target.id)
        clients.monitor().diagnostic_settings.delete(target.id, setting.name)
        [event] = json.loads((EXAMPLES / "eventgrid-ResourceDeleteSuccess.json").read_text())
        event["subject"] = event["data"]["resourceUri"] = setting.id
        event["data"]["claims"]["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] = (
            "mallory@contoso.com"
        )
        before = len(receiver.requests)

        # What the Event Grid trigger does: which registry, re-audit it alone, alert.
        registry_id = registry_from_event(event)
        change = setting_change_from_event(event)
        assert registry_id is not None and change is not None
        assert registry_id.lower() == target.id.lower()
        verdict = judge(target, read_settings(clients, registry_id), (), settings.policy)
        with service(settings) as alerts:
            report = alerts.process([verdict], setting_changes=[change], run_id="event")
    finally:
        clients.close()
    assert report.failures == []
    [hook] = receiver.requests[before:]
    alert = hook.json()
    assert (alert["kind"], alert["change"]) == ("opened", "setting_deleted")
    assert alert["registry"]["name"] == "acrcompliant01"
    assert alert["settingChange"]["caller"] == "mallory@contoso.com"
    assert "mallory@contoso.com" in alert["summary"]
    assert verify(hook)
    assert AlertKind(alert["kind"]) is AlertKind.OPENED


# -- a full audit -------------------------------------------------------------------------------


def test_a_full_audit_alerts_on_registries_as_they_are_stored(
    local_azure: Callable[..., Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow reads, one registry's far slower than the rest (10 s, a margin that stays wide on
    a busy machine), and a hand-over after every read: alerts on registries stored early go
    out while that read is still waited for, each alert once, and a second run sends nothing
    new."""
    monkeypatch.setattr(audit_module, "WRITE_EVERY_SECONDS", 0.0)
    slow = "acrnosetting01/providers/microsoft.insights/diagnosticsettings$"
    emu, env = local_azure(
        latency={"arm": 400}, faults=[{"kind": "slow", "delay_s": 10, "api": "arm", "path": slow}]
    )
    settings = Settings.from_env(
        {
            **env,
            "AUDITOR_MAX_CONCURRENCY": "2",
            "AUDITOR_ALERT_WEBHOOK_URL": receiver.url(f"/hook/{TOKEN}"),
            "AUDITOR_ALERT_WEBHOOK_SECRET": SECRET,
        }
    )
    run = audit_once(settings, trigger="test")
    failing = sorted(v.registry.name for v in run.verdicts if v.status is Status.NONCOMPLIANT)
    assert len(failing) == 4
    hooks = receiver.on("/hook/")
    assert sorted(r.json()["registry"]["name"] for r in hooks) == failing
    wall = time.time() - time.monotonic()  # Received.at is monotonic
    last_read = max(e.time for e in emu.world.requests() if e.path.endswith("/diagnosticSettings"))
    assert min(r.at for r in hooks) + wall < last_read  # sent during the reads
    assert not [e for e in run.errors if "alert" in e]

    emu.world.knobs = emu.world.scenario.knobs  # no more slow reads
    audit_once(settings, trigger="test")
    assert len(receiver.on("/hook/")) == len(failing)  # nothing new to say


def test_a_run_lets_go_of_a_registrys_alert_states_once_it_is_processed(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    """A full run reads every alert state at its first batch; each registry's are dropped
    once its alerts are sent (a fleet's worth of them is megabytes at the run's peak), and a
    registry processed again in the run reads its own afresh: one alert each, no repeat."""
    settings = make_settings(AUDITOR_ALERT_TEAMS_URL="", AUDITOR_ALERT_SLACK_URL="")
    regs = [registry(f"acrstream{i:02d}") for i in range(3)]
    now = datetime.now(UTC)
    with service(settings) as alerts:  # an earlier run: every registry failing, alerted once
        alerts.process([failing(r) for r in regs], run_id="earlier", now=now)
    fixed = [compliant(r) for r in regs]
    stream = AlertStream(service(settings), clock=lambda: now + timedelta(minutes=5))
    with stream:
        stream.submit("this", fixed[:2], {})
        for future in stream._pending:
            future.result()
        held = stream._states or {}
        assert {s.registry.name for s in held.values()} == {"acrstream02"}
        again = failing(regs[0])  # its result changed after it was stored
        run = AuditRun(
            run_id="this",
            started_at=now,
            finished_at=now + timedelta(minutes=5),
            status=RunStatus.SUCCEEDED,
            verdicts=(again, *fixed[1:]),
        )
        stream.finish(run)
    kinds = [(r.json()["registry"]["name"], r.json()["kind"]) for r in receiver.on("/hook/")]
    names = [r.name for r in regs]
    assert kinds == [
        *((n, "opened") for n in names),
        *((n, "resolved") for n in names),
        ("acrstream00", "opened"),  # one alert per change, none repeated
    ]
    states = AlertStateStore(
        TableServiceClient.from_connection_string(settings.storage.connection_string),
        prefix=settings.storage.table_prefix,
    ).load()
    assert {s.registry.name: s.open for s in states.values()} == {
        "acrstream00": True,
        "acrstream01": False,
        "acrstream02": False,
    }
