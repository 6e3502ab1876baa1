"""Whole audits through every fault the auditor must survive, against the emulator and Azurite
with the real SDK clients, alerts going to a local webhook.

Each fault gets a run with it and then a healthy run, and the same promises are checked:
every registry is reported (none dropped); the ones the fault hides are `unknown` with a reason,
and only those; after the healthy run the tables hold every registry's true status and a
history without repeats; every alert reached the webhook exactly once.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditor.alerts import AlertService
from auditor.facts import Status
from auditor.run_record import AuditRun, RunStatus
from auditor.runtime import audit_once, build_store
from auditor.settings import Settings
from emulator import azurite
from emulator.testing import RunningEmulator
from emulator.webhooks import BlackHole, Receiver

pytestmark = pytest.mark.integration

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]
PROD = "11111111-1111-1111-1111-111111111111"
DEV = "22222222-2222-2222-2222-222222222222"
GHOST = "33333333-3333-3333-3333-333333333333"  # configured, but not visible to the identity
COMPLIANT = frozenset({"acrcompliant01", "acrgroups01"})
FAILING = frozenset({"acrdisabled01", "acrstorage01", "acrlegacy01", "acrnosetting01"})
SETTINGS_READ = "/providers/microsoft.insights/diagnosticsettings$"


def _fault(**fields: Any) -> dict[str, Any]:
    return fields


# name: (faults, extra environment, registries that must be unknown, that may be unknown)
FAULTS: dict[str, tuple[list[dict[str, Any]], dict[str, str], frozenset[str], frozenset[str]]] = {
    "ARM answers 503 one time in ten": (
        [_fault(kind="status", status=503, api="arm", probability=0.1, seed=11)],
        {},
        frozenset(),
        frozenset(),
    ),
    "a storm of 429s": (
        [_fault(kind="status", status=429, retry_after=1, api="arm", path=SETTINGS_READ, count=8)],
        {},
        frozenset(),
        frozenset(),
    ),
    "a subscription answers 403": (
        [_fault(kind="status", status=403, subscription=DEV)],
        {},
        frozenset({"acrlegacy01", "acrnosetting01"}),
        frozenset({"acrlegacy01", "acrnosetting01"}),
    ),
    "the workspace is gone": (
        [
            _fault(
                kind="status",
                status=404,
                api="logs",
                path="/v1/workspaces/",
                code="WorkspaceNotFoundError",
            )
        ],
        {},
        COMPLIANT,  # their logs cannot prove them compliant; the failing stay failing
        COMPLIANT,
    ),
    "slow ARM reads": (
        [_fault(kind="slow", delay_s=1.0, api="arm", path=SETTINGS_READ, probability=0.5, seed=5)],
        {},
        frozenset(),
        frozenset(),
    ),
    "malformed answers": (
        [_fault(kind="malformed", path="diagnosticSettings$", count=2)],
        {},
        frozenset(),
        frozenset(),
    ),
    "a configured subscription nobody can see": (
        [],
        {"AUDITOR_SUBSCRIPTIONS": f"{PROD},{DEV},{GHOST}"},
        frozenset(),
        frozenset(),
    ),
}


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def _settings(env: dict[str, str], url: str, **more: str) -> Settings:
    return Settings.from_env(
        {**env, "AUDITOR_ALERT_WEBHOOK_URL": url, "AUDITOR_ALERT_LOG_RECORDS": "false", **more}
    )


def _statuses(run: AuditRun) -> dict[str, str]:
    return {v.registry.name: v.status.value for v in run.verdicts}


def _true_statuses() -> dict[str, str]:
    return {
        **dict.fromkeys(COMPLIANT, Status.COMPLIANT.value),
        **dict.fromkeys(FAILING, Status.NONCOMPLIANT.value),
    }


def _check_reported(run: AuditRun, must: frozenset[str], may: frozenset[str]) -> None:
    statuses = _statuses(run)
    assert set(statuses) == COMPLIANT | FAILING, "a registry was dropped"
    unknown = {name for name, status in statuses.items() if status == "unknown"}
    assert must <= unknown <= may, (unknown, run.errors)
    for verdict in run.verdicts:
        if verdict.status is Status.UNKNOWN:
            assert verdict.reasons and all(r.detail for r in verdict.reasons), verdict
        else:
            assert statuses[verdict.registry.name] == _true_statuses()[verdict.registry.name]


def _check_consistent(settings: Settings, run: AuditRun) -> None:
    """After a healthy run: the true status of every registry, stored, with a history in
    which no entry repeats the one before it."""
    assert _statuses(run) == _true_statuses()
    store = build_store(settings)
    for name, status in _true_statuses().items():
        row = store.get_registry(name)
        assert row is not None and row["status"] == status, (name, row)
        history = [
            (h["status"], tuple(r["code"] for r in h["reasons"]))
            for h in store.registry_history(name)
        ]
        assert all(a != b for a, b in itertools.pairwise(history)), (name, history)


def _check_alerted_once(webhook: Receiver) -> None:
    documents = [r.json() for r in webhook.accepted()]
    ids = [d["id"] for d in documents]
    assert len(ids) == len(set(ids)), "an alert was delivered twice"
    opened = sorted(d["registry"]["name"] for d in documents if d["kind"] == "opened")
    assert opened == sorted(FAILING)


@pytest.mark.parametrize("name", list(FAULTS))
def test_an_audit_through_a_fault_loses_nothing(
    name: str, local_azure: LocalAzure, webhook: Receiver
) -> None:
    faults, extra, must, may = FAULTS[name]
    emu, env = local_azure(faults=faults) if faults else local_azure()
    settings = _settings({**env, **extra}, webhook.url("/hook"))
    first = audit_once(settings, trigger="test")
    _check_reported(first, must, may)
    if extra:
        assert first.status is RunStatus.PARTIAL and any(GHOST in e for e in first.errors)

    emu.world.knobs = emu.world.scenario.knobs  # the fault is over
    healthy = audit_once(_settings(env, webhook.url("/hook")), trigger="test")
    assert healthy.status is RunStatus.SUCCEEDED
    _check_consistent(settings, healthy)
    _check_alerted_once(webhook)


def test_azurite_down_and_back_mid_run_loses_nothing(
    local_azure: LocalAzure, webhook: Receiver
) -> None:
    """Table Storage stops 0.5 s into a run whose reads take a few seconds, and comes back
    3 s later: the run rides it out, every registry is stored, every alert goes out once."""
    _, env = local_azure(latency={"arm": 400})
    own = azurite.start(persistent=True)
    try:
        settings = _settings(
            {**env, "AUDITOR_STORAGE": own.connection_string, "AUDITOR_MAX_CONCURRENCY": "1"},
            webhook.url("/hook"),
        )
        down = threading.Timer(0.5, own.halt)
        back = threading.Timer(3.5, own.resume)
        down.start()
        back.start()
        run = audit_once(settings, trigger="test")
        back.join()
        assert run.storage_error is None, run.errors
        _check_reported(run, frozenset(), frozenset())
        _check_consistent(settings, audit_once(settings, trigger="test"))
        _check_alerted_once(webhook)
    finally:
        own.stop()


def test_a_black_hole_then_a_flaky_webhook_deliver_each_alert_once(
    local_azure: LocalAzure, webhook: Receiver
) -> None:
    """The webhook first never answers (the run spends its 2 s budget and keeps the alerts),
    then answers 500 twice before it takes them: each alert arrives once."""
    _, env = local_azure()
    hole = BlackHole()
    try:
        stalled = _settings(env, hole.url("/hook"), AUDITOR_ALERT_SINK_BUDGET_SECONDS="2")
        first = audit_once(stalled, trigger="test")
    finally:
        hole.close()
    assert hole.accepted >= 1
    _check_reported(first, frozenset(), frozenset())
    assert webhook.requests == []

    webhook.statuses = [500, 500]  # retried within the run
    settings = _settings(env, webhook.url("/hook"))
    _check_consistent(settings, audit_once(settings, trigger="test"))
    # The one alert the black hole was tried with waits its retry time (5 minutes) like any
    # failed delivery; the next run after that sends it.
    with AlertService.from_settings(settings) as alerts:
        alerts.flush(now=datetime.now(UTC) + timedelta(minutes=10))
    _check_alerted_once(webhook)
