"""Remediation end to end: `python -m auditor remediate` as a user runs it, the API route and
the timer's step, against the emulator (real SDK clients, its request log) and Azurite."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from auditor.api import create_app
from auditor.audit import audit_registry, run_audit
from auditor.evidence.judgement import apply_evidence
from auditor.facts import Status
from auditor.logs_audit import LogOptions, collect_evidence
from auditor.runtime import (
    audit_registry_once,
    build_arm_clients,
    build_credential,
    build_store,
    remediation_route,
    timer_audit,
)
from auditor.settings import Settings
from auditor.storage.actions import ActionLog
from auditor.storage.errors import StorageError
from emulator.testing import RunningEmulator
from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.integration

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]
PROD = "11111111-1111-1111-1111-111111111111"
DEV = "22222222-2222-2222-2222-222222222222"
WORKSPACE = (
    f"/subscriptions/{PROD}/resourceGroups/rg-monitoring"
    "/providers/Microsoft.OperationalInsights/workspaces/law-central"
)
WRITE_RIGHT = "Microsoft.Insights/diagnosticSettings/write"
# A registry with traffic and no setting: once fixed, its events should reach the workspace.
BUSY = {
    "name": "acrfixme01",
    "subscription": PROD,
    "resourceGroup": "rg-prod",
    "createdAt": "2025-03-01T08:00:00Z",
    "events": [{"kind": "logins", "perHour": 120, "identities": ["ci@contoso.com"]}],
}


def _estate(local_azure: LocalAzure, **knobs: Any) -> tuple[RunningEmulator, dict[str, str]]:
    emu, env = local_azure(**knobs)
    emu.world.add_registry(BUSY)
    return emu, {**env, "AUDITOR_REMEDIATION_WORKSPACE": WORKSPACE}


def _writes(emu: RunningEmulator) -> list[str]:
    return [f"{e.method} {e.path}" for e in emu.world.requests(api="arm") if e.method != "GET"]


def _entries(stdout: str) -> dict[str, dict[str, Any]]:
    document = json.loads(stdout)
    return {e["plan"]["registry"]: e for e in document["registries"]}


def test_a_dry_run_plans_every_noncompliant_registry_and_writes_nothing(
    local_azure: LocalAzure,
) -> None:
    emu, env = _estate(local_azure)
    result = run_cli(env, "remediate", "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    entries = _entries(result.stdout)
    assert set(entries) == {
        "acrdisabled01", "acrstorage01", "acrlegacy01", "acrnosetting01", "acrfixme01",
    }  # fmt: skip
    assert all(e["action"] is None for e in entries.values())
    disabled = entries["acrdisabled01"]["plan"]
    assert disabled["action"] == "update" and disabled["settingName"] == "partial"
    assert disabled["changes"] == ["enable the log category ContainerRegistryRepositoryEvents"]
    created = entries["acrnosetting01"]["plan"]
    assert created["action"] == "create" and created["before"] is None
    assert created["after"]["logAnalyticsDestinationType"] == "Dedicated"
    assert created["after"]["workspaceId"] == WORKSPACE
    assert _writes(emu) == []  # the request log shows no PUT (nor any other write)

    table = run_cli(env, "remediate", "--registry", "acrdisabled01")
    assert table.returncode == 0, table.stderr
    assert "Dry run: nothing is written" in table.stdout
    assert "before: to law-central (Dedicated); logs ContainerRegistryLoginEvents, " in table.stdout
    assert _writes(emu) == []


def test_apply_makes_the_registry_compliant_and_its_logs_start_to_flow(
    local_azure: LocalAzure,
) -> None:
    emu, env = _estate(local_azure)
    result = run_cli(
        env, "remediate", "--apply", "--registry", "acrfixme01", "--registry", "acrlegacy01",
        "--format", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    entries = _entries(result.stdout)
    for name in ("acrfixme01", "acrlegacy01"):
        action = entries[name]["action"]
        assert action["result"] == "applied", action
        assert action["actor"] == "cli"
        # Fixed, and pending until its first events arrive.
        assert action["statusBefore"] == "noncompliant" and action["statusAfter"] == "pending"
        assert action["pendingSince"] == action["at"]
    puts = [w for w in _writes(emu) if w.startswith("PUT ")]
    assert len(puts) == 2, puts
    assert [s.name for s in emu.world.settings(emu.world.registry_by_name("acrfixme01").id)] == [  # type: ignore[union-attr]
        "acr-auditor"
    ]

    # Stored: the actions, and the registries re-judged (their history shows the change).
    settings = Settings.from_env(env)
    store = build_store(settings)
    actions = ActionLog(store.tables).list()
    assert {a["registry"] for a in actions} == {"acrfixme01", "acrlegacy01"}
    assert store.reader.get_registry("acrfixme01")["status"] == "pending"  # type: ignore[index]

    # The next audit finds it compliant; once the emulated clock moves on, its events arrive.
    emu.world.advance(timedelta(minutes=30))
    clients = build_arm_clients(settings, build_credential())
    try:
        audit = run_audit(clients, settings.policy)
        now = emu.world.now()
        reader = _logs_reader(settings)
        evidence = collect_evidence(clients, reader, audit.verdicts, now=now, options=LogOptions())
        reader.close()
    finally:
        clients.close()
    judged = {
        v.registry.name: v
        for v in apply_evidence(
            audit.verdicts,
            evidence.evidence,
            now=now,
            silent_after=timedelta(hours=24),
            pending_window=timedelta(minutes=90),
        )
    }
    assert judged["acrfixme01"].status is Status.COMPLIANT
    fixed = evidence.evidence[judged["acrfixme01"].registry.key]
    last = max(w.last_event for w in fixed.workspaces if w.last_event is not None)
    applied = datetime.fromisoformat(entries["acrfixme01"]["action"]["at"])
    assert last >= applied - timedelta(minutes=1), (last, applied)


def _logs_reader(settings: Settings) -> Any:
    from auditor.logs_audit import build_logs_reader

    return build_logs_reader(settings, build_credential())


def test_a_write_refused_with_403_is_reported_once_naming_the_right(
    local_azure: LocalAzure,
) -> None:
    emu, env = _estate(
        local_azure,
        faults=[{"kind": "status", "status": 403, "method": "PUT", "path": "/diagnosticSettings/"}],
    )
    result = run_cli(
        env, "remediate", "--apply", "--registry", "acrnosetting01", "--format", "json"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    action = _entries(result.stdout)["acrnosetting01"]["action"]
    assert action["result"] == "forbidden"
    assert WRITE_RIGHT in action["message"]
    assert action["statusAfter"] is None and action["pendingSince"] is None
    assert len([w for w in _writes(emu) if w.startswith("PUT ")]) == 1  # not retried
    assert emu.world.settings(emu.world.registry_by_name("acrnosetting01").id) == []  # type: ignore[union-attr]
    table = run_cli(env, "remediate", "--apply", "--registry", "acrnosetting01", "--no-store")
    assert f"forbidden: Azure refused the write: the identity lacks '{WRITE_RIGHT}'" in table.stdout


def test_a_transient_failure_is_tried_again_a_bounded_number_of_times(
    local_azure: LocalAzure,
) -> None:
    emu, env = _estate(
        local_azure,
        faults=[
            {"kind": "status", "status": 503, "method": "PUT", "path": "/diagnosticSettings/",
             "count": 2, "retry_after": 0},
        ],
    )  # fmt: skip
    result = run_cli(
        env, "remediate", "--apply", "--registry", "acrnosetting01", "--format", "json",
        "--no-store",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert _entries(result.stdout)["acrnosetting01"]["action"]["result"] == "applied"
    assert len([w for w in _writes(emu) if w.startswith("PUT ")]) == 3

    emu.world.add_fault({"kind": "status", "status": 503, "method": "PUT", "retry_after": 0})
    env = {**env, "AUDITOR_HTTP_RETRIES": "1"}
    failed = run_cli(
        env, "remediate", "--apply", "--registry", "acrdisabled01", "--format", "json",
        "--no-store",
    )  # fmt: skip
    assert failed.returncode == 1
    assert _entries(failed.stdout)["acrdisabled01"]["action"]["result"] == "failed"
    assert len([w for w in _writes(emu) if w.startswith("PUT ")]) == 3 + 2


def test_the_api_route_needs_the_admin_app_and_the_setting(local_azure: LocalAzure) -> None:
    emu, env = _estate(local_azure)
    assert run_cli(env, "audit", "--no-alerts").returncode == 1  # stores the registries
    settings = Settings.from_env(env)
    store = build_store(settings)

    reading = TestClient(create_app(lambda: store, policy=settings.policy))
    refused = reading.post("/api/registries/acrnosetting01/remediate?apply=true")
    assert refused.status_code == 403

    off = TestClient(
        create_app(lambda: store, remediation=remediation_route(settings, lambda: store))
    )
    assert off.post("/api/registries/acrnosetting01/remediate").status_code == 409

    enabled = Settings.from_env({**env, "AUDITOR_ENABLE_REMEDIATION": "true"})
    admin = TestClient(
        create_app(lambda: store, remediation=remediation_route(enabled, lambda: store))
    )
    assert admin.post("/api/registries/acrnothere01/remediate").status_code == 404
    dry = admin.post("/api/registries/acrnosetting01/remediate")
    assert dry.status_code == 200, dry.text
    assert dry.json()["plan"]["action"] == "create" and dry.json()["action"] is None
    assert _writes(emu) == []

    done = admin.post("/api/registries/acrnosetting01/remediate?apply=true")
    assert done.status_code == 200, done.text
    action = done.json()["action"]
    assert action["actor"] == "api" and action["result"] == "applied"
    listed = admin.get("/api/registries/acrnosetting01/actions").json()["items"]
    assert [a["id"] for a in listed] == [action["id"]]
    assert admin.get("/api/actions").json()["items"][0]["registry"] == "acrnosetting01"
    assert admin.get("/api/registries/acrnothere01/actions").status_code == 404
    detail = admin.get("/api/registries/acrnosetting01").json()
    assert detail["status"] == "pending"  # its first events awaited
    assert [h["status"] for h in detail["history"][:2]] == ["pending", "noncompliant"]


def test_the_timer_remediates_the_allowed_subscriptions_within_the_cap(
    local_azure: LocalAzure,
) -> None:
    emu, env = _estate(local_azure)
    env = {
        **env,
        "AUDITOR_ENABLE_REMEDIATION": "true",
        "AUDITOR_REMEDIATION_SUBSCRIPTIONS": PROD,
        "AUDITOR_REMEDIATION_MAX_PER_RUN": "2",
        "AUDITOR_ALERT_LOG_RECORDS": "false",
    }
    settings = Settings.from_env(env)
    store = build_store(settings)
    timer_audit(settings, store)
    actions = ActionLog(store.tables).list()
    # Production holds acrdisabled01, acrstorage01 and acrfixme01: two of them this run.
    assert len(actions) == 2
    assert {a["subscriptionId"] for a in actions} == {PROD}
    assert {a["actor"] for a in actions} == {"timer"}
    assert all(a["result"] == "applied" for a in actions)
    dev = emu.world.registry_by_name("acrnosetting01")
    assert dev is not None and emu.world.settings(dev.id) == []  # not on the allow-list
    timer_audit(settings, store)
    assert len(ActionLog(store.tables).list()) == 3  # the third, next run


@pytest.mark.usefixtures("kept_tags")
def test_the_timer_remediates_a_tagged_registry_whatever_its_subscription(
    local_azure: LocalAzure,
) -> None:
    emu, env = _estate(local_azure)
    until = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    for name, tagged in (
        ("acroptin01", {"Auto-Remediate": " yes "}),
        ("acroptno01", {"auto-remediate": "no"}),
        (
            "acroptexempt01",
            {"auto-remediate": "yes", "acr-auditor-exempt": f"Retiring; until={until}"},
        ),
    ):
        emu.world.add_registry(
            {"name": name, "subscription": DEV, "resourceGroup": "rg-dev", "tags": tagged}
        )
    env = {
        **env,
        "AUDITOR_ENABLE_REMEDIATION": "true",
        "AUDITOR_REMEDIATION_TAG": "auto-remediate=yes",  # and no subscription listed
        "AUDITOR_ALERT_LOG_RECORDS": "false",
    }
    settings = Settings.from_env(env)
    store = build_store(settings)
    timer_audit(settings, store)
    actions = ActionLog(store.tables).list()
    assert [(a["registry"], a["actor"], a["result"]) for a in actions] == [
        ("acroptin01", "timer", "applied")
    ]
    assert actions[0]["subscriptionId"] == DEV
    # Untagged (in either subscription), tagged with another value, or exempt: left alone.
    for name in ("acrnosetting01", "acrfixme01", "acroptno01", "acroptexempt01"):
        untouched = emu.world.registry_by_name(name)
        assert untouched is not None and emu.world.settings(untouched.id) == [], name


class _ActionsUnreadable:
    """The store, except that the actions table cannot be read."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def recent_remediations(self, since: datetime) -> frozenset[str]:
        raise StorageError("reading recent remediations", "HTTP 503")


def test_a_remediated_registry_is_pending_until_its_events_arrive(
    local_azure: LocalAzure,
) -> None:
    # Azure takes a while before a new setting's first events arrive: here 30 minutes.
    emu, env = _estate(local_azure, logs={"first_data_delay_minutes": 30})
    world = emu.world
    owner = world.add_registry(
        {"name": "acrowner01", "subscription": PROD, "resourceGroup": "rg-prod",
         "createdAt": "2025-03-01T08:00:00Z", "events": [{"kind": "logins", "perHour": 60}]}
    )  # fmt: skip
    settings = Settings.from_env(env)
    store = build_store(settings)
    api = TestClient(create_app(lambda: store, policy=settings.policy))

    applied = run_cli(env, "remediate", "--apply", "--registry", "acrfixme01", "--format", "json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    action = _entries(applied.stdout)["acrfixme01"]["action"]
    assert action["result"] == "applied"
    # Re-judged at once: fixed, its first events awaited.
    assert (action["statusBefore"], action["statusAfter"]) == ("noncompliant", "pending")
    assert action["reasonsAfter"] == ["pending"]
    assert api.get("/api/registries/acrfixme01").json()["status"] == "pending"
    # The Event Grid notice of that write re-judges its settings alone: still pending...
    fixme = world.registry_by_name("acrfixme01")
    assert fixme is not None
    event = audit_registry_once(settings, fixme.id)
    assert [(v.status, v.reasons[0].code) for v in event.verdicts] == [(Status.PENDING, "pending")]
    # ...unless the actions cannot be read: then compliant, as before, and the run says why.
    clients = build_arm_clients(settings, build_credential())
    try:
        blind_event = audit_registry(
            clients,
            settings.policy,
            fixme.id,
            store=_ActionsUnreadable(store),
            pending_window=settings.logs.pending_window,
        )
    finally:
        clients.close()
    assert [(v.status, v.reasons) for v in blind_event.verdicts] == [(Status.COMPLIANT, ())]
    assert any("remediation actions unreadable" in e for e in blind_event.errors)
    # Its owner fixes another registry the same way: not the auditor's doing.
    world.put_setting(
        owner.id,
        "owner-setting",
        {
            "workspaceId": WORKSPACE,
            "logAnalyticsDestinationType": "Dedicated",
            "logs": [{"categoryGroup": "allLogs", "enabled": True}],
            "metrics": [{"category": "AllMetrics", "enabled": True}],
        },
        caller="alice@contoso.com",
    )

    def audit(run_store: Any) -> Any:
        clients = build_arm_clients(settings, build_credential())
        reader = _logs_reader(settings)
        try:
            return run_audit(
                clients,
                settings.policy,
                store=run_store,
                logs_reader=reader,
                log_options=LogOptions.from_settings(settings.logs),
                clock=world.now,  # the emulator's: its events are where its clock says
            )
        finally:
            reader.close()
            clients.close()

    def judged(run: Any) -> dict[str, tuple[str, list[str]]]:
        return {
            v.registry.name: (v.status.value, [r.code for r in v.reasons]) for v in run.verdicts
        }

    world.advance(timedelta(minutes=10))
    waiting = judged(audit(store))
    assert waiting["acrfixme01"] == ("pending", ["pending"])
    assert waiting["acrowner01"] == ("compliant", ["pending"])  # as today: not remediated
    assert [v for v in waiting.values() if v[0] == "pending"] == [("pending", ["pending"])]
    listed = api.get("/api/registries", params={"status": "pending"}).json()["items"]
    assert [r["name"] for r in listed] == ["acrfixme01"]
    owner_row = api.get("/api/registries/acrowner01").json()
    assert (owner_row["status"], [r["code"] for r in owner_row["reasons"]]) == (
        "compliant",
        ["pending"],
    )
    summary = api.get("/api/compliance").json()
    assert summary["totals"]["pending"] == 1
    assert summary["logs"]["pending"] == 2
    assert api.get("/api/runs").json()["items"][0]["totals"]["pending"] == 1

    # Actions that cannot be read cost the run nothing but the pending status, and say so.
    blind = audit(_ActionsUnreadable(store))
    assert judged(blind)["acrfixme01"] == ("compliant", ["pending"])
    assert any("remediation actions unreadable" in e for e in blind.errors), blind.errors

    # Its first events arrive 30 minutes after the write: compliant.
    world.advance(timedelta(minutes=40))
    arrived = judged(audit(store))
    assert arrived["acrfixme01"] == ("compliant", [])
    assert arrived["acrowner01"] == ("compliant", [])
    assert api.get("/api/registries/acrfixme01").json()["status"] == "compliant"
    assert api.get("/api/compliance").json()["totals"]["pending"] == 0
    history = api.get("/api/registries/acrfixme01").json()["history"]
    assert [h["status"] for h in history][:3] == ["compliant", "compliant", "pending"]
