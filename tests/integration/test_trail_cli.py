"""`python -m auditor trail` as a user runs it (a separate process against the emulator), and
the log findings `audit` prints (table and JSON, from a run built by hand)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from auditor import kql
from auditor.cli import render_table
from auditor.cli_json import run_document
from auditor.evidence.model import (
    LogEvidence,
    LoginSummary,
    Operation,
    TableFreshness,
    TrailCount,
    WorkspaceFreshness,
)
from auditor.facts import Reason, Registry, Status, Verdict
from auditor.logs_audit import build_logs_reader
from auditor.run_record import AuditRun, RunStatus
from auditor.runtime import build_credential
from auditor.settings import Settings
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]
REPO = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).with_name("scenarios") / "log_evidence.yaml"
SUB = "11111111-1111-1111-1111-111111111111"
LAW_LOGS = "bbbbbbbb-0000-0000-0000-000000000001"
BUSY = (
    f"/subscriptions/{SUB}/resourceGroups/rg-prod"
    "/providers/Microsoft.ContainerRegistry/registries/acrbusy01"
)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def moment(value: Any) -> datetime:
    text = str(value).replace("Z", "+00:00")
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        text = f"{head}.{digits[:6]}{tail[len(digits) :]}"
    return datetime.fromisoformat(text).astimezone(UTC)


def emulator_deletions(
    env: dict[str, str], start: datetime, end: datetime
) -> list[tuple[Any, ...]]:
    """acrbusy01's deletes and untags in [start, end], read from the emulator directly."""
    text = "\n".join(
        (
            "ContainerRegistryRepositoryEvents",
            f"| where TimeGenerated between ({kql.kql_datetime(start)} .. {kql.kql_datetime(end)})",
            f"| where _ResourceId =~ {kql.kql_string(BUSY.lower())}",
            '| where OperationName in ("Delete", "Untag", "PurgeTag", "PurgeManifest")',
        )
    )
    reader = build_logs_reader(Settings.from_env(env), build_credential())
    with reader:
        outcome = reader.query(LAW_LOGS, kql.Query(kql.Purpose.DELETIONS, text, start, end))
    assert outcome.error is None, outcome.error
    return sorted(
        (
            moment(r["TimeGenerated"]),
            r["OperationName"],
            r["Identity"],
            r["CallerIpAddress"],
            r["Repository"],
            r["Tag"] or "",
            r["Digest"] or "",
        )
        for r in outcome.rows
    )


def test_trail_prints_every_delete_and_untag(local_azure: LocalAzure) -> None:
    emu, env = local_azure(SCENARIO)
    until = emu.world.now()  # the emulator's clock: the window does not depend on the date
    since = until - timedelta(hours=24)
    window = ("--since", since.isoformat(), "--until", until.isoformat())

    result = run_cli(env, "trail", "--registry", "acrbusy01", *window, "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["registry"]["name"] == "acrbusy01"
    assert (moment(doc["window"]["start"]), moment(doc["window"]["end"])) == (since, until)
    assert [w["workspaceId"].rsplit("/", 1)[-1] for w in doc["workspaces"]] == ["law-logs"]
    expected = emulator_deletions(env, since, until)
    shown = sorted(
        (
            moment(d["at"]),
            d["operationName"],
            d["identity"],
            d["callerIp"],
            d["repository"],
            d["tag"],
            d["digest"],
        )
        for d in doc["deletions"]
    )
    assert shown == expected and len(expected) > 20
    ops = doc["operations"]
    assert ops["delete"] + ops["untag"] + ops["purge"] == len(expected)
    assert ops["pull"] > 0 and ops["push"] > 0
    assert {t["identity"] for t in doc["trail"]} == {
        "ci-pipeline@contoso.com",
        "release-bot@contoso.com",
    }
    assert doc["errors"] == [] and doc["warnings"] == []

    # The table, with the registry given by its ARM id: one line per delete/untag.
    table = run_cli(env, "trail", "--registry", BUSY, *window)
    assert table.returncode == 0, table.stderr
    out = table.stdout
    assert f"Deletes and untags: {len(expected)}\n" in out
    assert "OPERATION  IDENTITY" in out and "Activity log: 0" in out
    lines = out.splitlines()
    for at, operation, identity, ip, _, _, digest in expected:
        stamp = at.strftime("%Y-%m-%d %H:%M:%SZ")
        assert any(
            line.startswith(stamp) and all(v in line for v in (operation, identity, ip, digest))
            for line in lines
        ), (stamp, digest)
    assert sum(1 for line in lines if line.startswith(since.strftime("%Y-"))) == len(expected)


def test_trail_refuses_what_it_cannot_read(local_azure: LocalAzure) -> None:
    emu, env = local_azure(SCENARIO)
    unknown = run_cli(env, "trail", "--registry", "acrnosuch01")
    assert unknown.returncode == 2
    assert "no registry named 'acrnosuch01'" in unknown.stderr
    assert unknown.stdout == "" and "Traceback" not in unknown.stderr

    bad = run_cli(env, "trail", "--registry", "acrbusy01", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr

    new = emu.world.registry_by_name("acrnew01")
    assert new is not None
    emu.world.delete_setting(new.id, "to-law", caller="ops@contoso.com")
    silent = run_cli(env, "trail", "--registry", "acrnew01")
    assert silent.returncode == 1
    assert "acrnew01 sends no logs to a Log Analytics workspace" in silent.stderr

    # Its workspace does not exist: printed as far as possible, but exit 2.
    gone = run_cli(env, "trail", "--registry", "acrgone01")
    assert gone.returncode == 2
    assert "law-gone" in gone.stderr


# --------------------------------------------------------------------------- audit output

T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)


def registry(name: str) -> Registry:
    return Registry(
        id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=SUB,
        resource_group="rg",
        location="westeurope",
    )


def hand_run() -> AuditRun:
    loud, quiet, new, dark, plain = (
        registry(n) for n in ("acrloud01", "acrquiet1", "acrnew001", "acrdark01", "acrplain1")
    )
    ws = (
        f"/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.operationalinsights/workspaces"
    )
    ws += "/law"
    start = T0 - timedelta(hours=24)
    loud_evidence = LogEvidence(
        loud.key,
        start,
        T0,
        workspaces=(
            WorkspaceFreshness(
                ws,
                frozenset({kql.LOGIN_TABLE}),
                per_table=(TableFreshness(kql.LOGIN_TABLE, T0 - timedelta(minutes=3), 25, 30),),
            ),
        ),
        logins=(
            LoginSummary("ci@contoso.com", "203.0.113.1", 13, 1),
            LoginSummary("bad@evil.example", "192.0.2.9", 12, 12),
        ),
        trail=(TrailCount(Operation.PULL, "Pull", "ci@contoso.com", "app", 40, 0),),
        observations=(Reason("login_failure_burst", "12 failed logins"),),
    )
    return AuditRun(
        run_id="20261125T120000Z-0a1b2c3d",
        started_at=T0,
        finished_at=T0,
        status=RunStatus.PARTIAL,
        verdicts=(
            Verdict(loud, Status.COMPLIANT),
            Verdict(quiet, Status.NONCOMPLIANT, (Reason("logs_silent", "30 h"),)),
            Verdict(new, Status.COMPLIANT, (Reason("pending", "new"),)),
            Verdict(dark, Status.UNKNOWN, (Reason("logs_unreadable:http_404", "gone"),)),
            Verdict(plain, Status.COMPLIANT),
        ),
        evidence={
            loud.key: loud_evidence,
            quiet.key: LogEvidence(quiet.key, start, T0),
            new.key: LogEvidence(new.key, start, T0),
            dark.key: LogEvidence(
                dark.key,
                start,
                T0,
                workspaces=(WorkspaceFreshness(ws, frozenset(), unknown="HTTP 404"),),
            ),
        },
        log_queries=12,
    )


def test_audit_table_has_a_logs_section() -> None:
    out = io.StringIO()
    render_table(hand_run(), out)
    text = out.getvalue()
    assert text.split("\n\n")[-1] == (
        "Logs (4 registries checked, 12 queries):\n"
        "  silent: 1 (acrquiet1)\n"
        "  pending: 1 (acrnew001)\n"
        "  unreadable: 1 (acrdark01)\n"
        "  login alerts: 1 (acrloud01)\n"
    )
    # Without log evidence, no section.
    quiet = io.StringIO()
    render_table(
        AuditRun("r", T0, T0, RunStatus.SUCCEEDED, (Verdict(registry("a"), Status.COMPLIANT),)),
        quiet,
    )
    assert "Logs" not in quiet.getvalue()


def test_audit_json_gains_logs_and_keeps_its_keys() -> None:
    doc = run_document(hand_run())
    assert set(doc) == {"schemaVersion", "run", "totals", "registries", "logs"}
    by_name = {r["name"]: r for r in doc["registries"]}
    assert set(by_name["acrplain1"]) == {
        "id",
        "name",
        "subscriptionId",
        "resourceGroup",
        "location",
        "status",
        "reasons",
        "logs",
    }
    assert by_name["acrplain1"]["logs"] is None  # not checked
    assert by_name["acrloud01"]["logs"] == {
        "window": {"start": "2026-11-24T12:00:00+00:00", "end": "2026-11-25T12:00:00+00:00"},
        "lastEvent": "2026-11-25T11:57:00+00:00",
        "tables": [
            {
                "workspaceId": by_name["acrloud01"]["logs"]["tables"][0]["workspaceId"],
                "table": "ContainerRegistryLoginEvents",
                "lastEvent": "2026-11-25T11:57:00+00:00",
                "events": 25,
                "previousEvents": 30,
            }
        ],
        "unreadable": [],
        "logins": {"attempts": 25, "failures": 13, "identities": 2, "callerIps": 2},
        "operations": {"push": 0, "pull": 40, "delete": 0, "untag": 0, "purge": 0, "other": 0},
        "deletions": 0,
        "activityEvents": 0,
        "observations": ["login_failure_burst"],
        "problems": [],
    }
    assert by_name["acrdark01"]["logs"]["unreadable"] == [
        {
            "workspaceId": by_name["acrloud01"]["logs"]["tables"][0]["workspaceId"],
            "error": "HTTP 404",
        }
    ]
    assert doc["logs"] == {
        "checked": 4,
        "silent": 1,
        "pending": 1,
        "unknown": 1,
        "interrupted": 0,
        "loginAlerts": 1,
        "byObservation": [{"code": "login_failure_burst", "count": 1}],
        "logQueries": 12,
    }
    assert json.loads(json.dumps(doc)) == doc
