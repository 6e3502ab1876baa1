"""Compliance over time through the API and the CLI, from the history a real store keeps:
runs written to Azurite (the clock injected), and real audits against the emulator with the
world changed between them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from auditor.api import create_app
from auditor.facts import Status, Verdict
from auditor.policy import Policy
from auditor.run_record import AuditRun, RunStatus
from auditor.runtime import audit_once, build_store
from auditor.settings import Settings
from auditor.storage import AuditStore
from emulator.testing import RunningEmulator
from tests.integration.test_api import verdict
from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.integration

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]
SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
NOW = T0 + 6 * H
MISSING = "category_missing:ContainerRegistryLoginEvents"
PROBLEM = "application/problem+json"
HOSTILE = 'acr<img src=x onerror="alert(1)">'


def store_run(store: AuditStore, number: int, *verdicts: Verdict) -> AuditRun:
    started = T0 + number * H
    run = AuditRun(
        run_id=f"run{number:03d}",
        started_at=started,
        finished_at=started + timedelta(minutes=2),
        status=RunStatus.SUCCEEDED,
        verdicts=verdicts,
        inventoried_subscriptions=frozenset({SUB_A, SUB_B}),
        trigger="timer",
    )
    store.start_run(run.run_id, run.started_at, run.trigger)
    return store.finish_run(run)


def finished(number: int) -> datetime:
    return T0 + number * H + timedelta(minutes=2)


@pytest.fixture
def store(storage_connection_string: str, table_prefix: str) -> AuditStore:
    return AuditStore.from_connection_string(storage_connection_string, prefix=table_prefix)


@pytest.fixture
def client(store: AuditStore) -> TestClient:
    return TestClient(
        create_app(
            lambda: store, now=lambda: NOW, policy=Policy(require_metrics=False), scope=[SUB_A]
        )
    )


@pytest.fixture
def history(store: AuditStore) -> AuditStore:
    """Run 1: all compliant. Run 2: acrbad001 noncompliant, acrnew001 first seen (never
    compliant). Run 4: acrbad001 fixed, acrgone01 removed."""
    store_run(
        store,
        1,
        verdict("acrgood01", Status.COMPLIANT),
        verdict("acrbad001", Status.COMPLIANT),
        verdict("acrgone01", Status.COMPLIANT),
    )
    store_run(
        store,
        2,
        verdict("acrgood01", Status.COMPLIANT),
        verdict("acrbad001", Status.NONCOMPLIANT, MISSING),
        verdict("acrgone01", Status.COMPLIANT),
        verdict("acrnew001", Status.NONCOMPLIANT, "metrics_missing", sub=SUB_B),
    )
    store_run(
        store,
        4,
        verdict("acrgood01", Status.COMPLIANT),
        verdict("acrbad001", Status.COMPLIANT),
        verdict("acrnew001", Status.NONCOMPLIANT, "metrics_missing", sub=SUB_B),
    )
    return store


def between(a: datetime, b: datetime) -> str:
    return (a + (b - a) / 2).isoformat()


def test_compliance_at_an_instant_is_the_state_then(client: TestClient, history: Any) -> None:
    first = client.get("/api/compliance", params={"at": between(finished(1), finished(2))})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["lastRun"]["id"] == "run001"
    assert body["totals"] == {
        "total": 3,
        "compliant": 3,
        "noncompliant": 0,
        "unknown": 0,
        "removed": 0,
        "exempt": 0,
        "pending": 0,
    }
    assert "dataAgeSeconds" not in body  # not the summary's document

    second = client.get("/api/compliance", params={"at": between(finished(2), finished(4))})
    body = second.json()
    assert body["lastRun"]["id"] == "run002"
    assert body["totals"]["noncompliant"] == 2
    assert {s["subscriptionId"] for s in body["bySubscription"]} == {SUB_A, SUB_B}
    assert body["byReason"] == [
        {"code": MISSING, "count": 1},
        {"code": "metrics_missing", "count": 1},
    ]

    removal = client.get("/api/compliance", params={"at": finished(4).isoformat()}).json()
    assert removal["lastRun"]["id"] == "run004"
    assert removal["totals"]["removed"] == 1
    assert removal["totals"]["compliant"] == 2

    before = client.get("/api/compliance", params={"at": (T0 - H).isoformat()}).json()
    assert before["lastRun"] is None and before["totals"]["total"] == 0

    # Without `at`, the summary as before.
    plain = client.get("/api/compliance").json()
    assert plain["lastRun"]["id"] == "run004"
    assert plain["dataAgeSeconds"] == int((NOW - finished(4)).total_seconds())


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"at": "yesterday"}, "at"),
        ({"at": (NOW + H).isoformat()}, "at"),
        ({"at": "1999-12-31T00:00:00Z"}, "at"),
        ({"at": "2024-13-01"}, "at"),
    ],
)
def test_a_bad_at_is_a_problem_naming_it(
    client: TestClient, query: dict[str, str], parameter: str
) -> None:
    response = client.get("/api/compliance", params=query)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == "urn:acr-auditor:problem:invalid-parameter"
    assert [p["name"] for p in body["invalidParams"]] == [parameter]


@pytest.mark.parametrize(
    ("path", "query", "parameter"),
    [
        ("/api/compliance/period", {"from": "soon"}, "from"),
        ("/api/compliance/period", {"to": (NOW + H).isoformat()}, "to"),
        ("/api/compliance/period", {"from": NOW.isoformat(), "to": T0.isoformat()}, "from"),
        ("/api/registries/acrbad001/intervals", {"from": "x"}, "from"),
        ("/api/report", {"to": "2024-02-30"}, "to"),
    ],
)
def test_a_bad_period_is_a_problem_naming_the_bound(
    client: TestClient, history: Any, path: str, query: dict[str, str], parameter: str
) -> None:
    response = client.get(path, params=query)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert [p["name"] for p in response.json()["invalidParams"]] == [parameter]


def test_the_period_s_statistics(client: TestClient, history: Any) -> None:
    start, end = T0 + H, T0 + 5 * H
    response = client.get(
        "/api/compliance/period", params={"from": start.isoformat(), "to": end.isoformat()}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == (start.isoformat(), end.isoformat())
    by_name = {r["name"]: r for r in body["registries"]}
    assert set(by_name) == {"acrgood01", "acrbad001", "acrgone01", "acrnew001"}
    bad = by_name["acrbad001"]
    assert [(i["status"], i["from"], i["to"]) for i in bad["intervals"]] == [
        ("compliant", finished(1).isoformat(), finished(2).isoformat()),
        ("noncompliant", finished(2).isoformat(), finished(4).isoformat()),
        ("compliant", finished(4).isoformat(), None),
    ]
    assert bad["intervals"][1]["reasonCodes"] == [MISSING]
    assert bad["knownSeconds"] == int((end - finished(1)).total_seconds())
    assert bad["compliantSeconds"] == bad["knownSeconds"] - 2 * 3600
    assert body["meanTimeToFixSeconds"] == 2 * 3600
    assert body["fixes"] == 1
    assert body["neverCompliant"] == ["acrnew001"]
    assert by_name["acrnew001"]["knownSeconds"] == int((end - finished(2)).total_seconds())
    gone = by_name["acrgone01"]
    assert gone["intervals"][-1]["status"] == "removed"
    assert gone["knownSeconds"] == int((finished(4) - finished(1)).total_seconds())
    assert body["runs"] == {
        "total": 3,
        "succeeded": 3,
        "partial": 0,
        "failed": 0,
        "unfinished": 0,
        "firstStartedAt": (T0 + H).isoformat(),
        "lastFinishedAt": finished(4).isoformat(),
    }
    # A period before the removal's run and after the first: run 2 only.
    runs = client.get(
        "/api/compliance/period",
        params={"from": (T0 + 1.5 * H).isoformat(), "to": (T0 + 3 * H).isoformat()},
    ).json()["runs"]
    assert runs["total"] == 1


def test_a_registry_s_intervals_end_where_the_history_says_even_after_the_period(
    client: TestClient, history: Any
) -> None:
    # The period ends while acrbad001 is noncompliant: its interval still shows its real end.
    response = client.get(
        "/api/registries/acrbad001/intervals",
        params={"from": (T0 + 1.5 * H).isoformat(), "to": (T0 + 3 * H).isoformat()},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "acrbad001"
    assert [(i["status"], i["from"], i["to"], i["durationSeconds"]) for i in body["intervals"]] == [
        ("compliant", finished(1).isoformat(), finished(2).isoformat(), 3600),
        ("noncompliant", finished(2).isoformat(), finished(4).isoformat(), 7200),
    ]
    # Defaults: the 30 days up to now.
    whole = client.get("/api/registries/acrbad001/intervals").json()
    assert [i["status"] for i in whole["intervals"]] == ["compliant", "noncompliant", "compliant"]
    assert whole["intervals"][-1]["to"] is None
    assert whole["intervals"][-1]["durationSeconds"] == int((NOW - finished(4)).total_seconds())

    missing = client.get("/api/registries/acrnever01/intervals")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM


def test_the_report_is_printable_html_with_every_stored_string_escaped(
    client: TestClient, store: AuditStore
) -> None:
    store_run(store, 1, verdict(HOSTILE, Status.NONCOMPLIANT, "unknown:<b>bold</b>"))
    store_run(store, 2, verdict(HOSTILE, Status.COMPLIANT))
    response = client.get("/api/report", params={"from": T0.isoformat()})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<img" not in html and "<b>" not in html and "<script" not in html
    assert "acr&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert "unknown:&lt;b&gt;bold&lt;/b&gt;" in html
    assert "@media print" in html
    assert "http://" not in html and "https://" not in html  # no external asset
    assert SUB_A in html  # the app's scope
    assert "ContainerRegistryLoginEvents" in html  # the app's policy
    assert "run002" in html  # the fleet at the end comes from the last run


def test_the_new_routes_are_documented_like_the_others(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    expected = {
        "/api/compliance/period": "compliance_period",
        "/api/registries/{name}/intervals": "registry_intervals",
        "/api/report": "report",
    }
    for path, operation_id in expected.items():
        operation = paths[path]["get"]
        assert operation["operationId"] == operation_id
        assert operation["tags"] == ["compliance"]
        assert PROBLEM in operation["responses"]["400"]["content"]
    assert "text/html" in paths["/api/report"]["get"]["responses"]["200"]["content"]
    at = [p for p in paths["/api/compliance"]["get"]["parameters"] if p["name"] == "at"]
    assert at and not at[0]["required"]


# --- real audits against the emulator --------------------------------------------------------


def audit(env: dict[str, str]) -> AuditRun:
    return audit_once(Settings.from_env(env), trigger="test", alerts=False)


def test_a_status_change_between_two_real_audits(local_azure: LocalAzure, tmp_path: Path) -> None:
    emu, env = local_azure()
    first = audit(env)
    registry = emu.world.registry_by_name("acrcompliant01")
    assert registry is not None
    assert {v.registry.name: v.status for v in first.verdicts}["acrcompliant01"] is (
        Status.COMPLIANT
    )
    assert emu.world.delete_setting(registry.id, "to-law", caller="ops@contoso.com")
    second = audit(env)
    assert {v.registry.name: v.status for v in second.verdicts}["acrcompliant01"] is (
        Status.NONCOMPLIANT
    )
    store = build_store(Settings.from_env(env))
    now = second.finished_at + timedelta(seconds=1)
    client = TestClient(create_app(lambda: store, now=lambda: now))
    middle = between(first.finished_at, second.started_at)

    old = client.get("/api/compliance", params={"at": middle}).json()
    assert old["lastRun"]["id"] == first.run_id
    first_counts = {s.value: 0 for s in Status}
    for v in first.verdicts:
        first_counts[v.status.value] += 1
    assert old["totals"]["compliant"] == first_counts["compliant"]
    assert old["totals"]["noncompliant"] == first_counts["noncompliant"]
    new = client.get("/api/compliance", params={"at": now.isoformat()}).json()
    assert new["lastRun"]["id"] == second.run_id
    assert new["totals"]["compliant"] == old["totals"]["compliant"] - 1

    since = (first.started_at - timedelta(seconds=1)).isoformat()
    intervals = client.get(
        "/api/registries/acrcompliant01/intervals", params={"from": since}
    ).json()["intervals"]
    assert [i["status"] for i in intervals] == ["compliant", "noncompliant"]
    assert intervals[0]["to"] == intervals[1]["from"]
    assert first.finished_at <= datetime.fromisoformat(intervals[1]["from"]) <= now
    assert "no_diagnostic_setting" in intervals[1]["reasonCodes"]
    assert intervals[1]["to"] is None

    period = client.get("/api/compliance/period", params={"from": since}).json()
    assert period["runs"]["total"] == 2
    entry = next(r for r in period["registries"] if r["name"] == "acrcompliant01")
    # The audits are quick: the compliant interval may last under a second, which the whole
    # seconds round down to 0; the ratio comes from the exact times.
    assert 0 < entry["complianceRatio"] < 1
    assert entry["compliantSeconds"] <= entry["knownSeconds"]
    assert entry["exemptSeconds"] == 0

    # The same from the command line, in a separate process against the same store.
    at_first = run_cli(env, "report", "--at", middle, "--format", "json")
    assert at_first.returncode == 0, at_first.stderr
    assert json.loads(at_first.stdout)["totals"] == old["totals"]
    table = run_cli(env, "report", "--from", since)
    assert table.returncode == 0, table.stderr
    assert "acrcompliant01" in table.stdout and "mean time to fix" in table.stdout
    report = tmp_path / "report.html"
    printed = run_cli(env, "report", "--from", since, "--html", str(report), "--format", "json")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["runs"]["total"] == 2
    assert "acrcompliant01" in report.read_text(encoding="utf-8")

    exported = run_cli(env, "export", "--format", "csv", "--at", middle)
    assert exported.returncode == 0, exported.stderr
    rows = {r["registry"]: r for r in csv.DictReader(io.StringIO(exported.stdout))}
    assert rows["acrcompliant01"]["status"] == "compliant"
    assert {r["run"] for r in rows.values()} == {first.run_id}
    latest = run_cli(env, "export", "--format", "json", "--at", now.isoformat())
    document = json.loads(latest.stdout)
    assert document["run"]["id"] == second.run_id
    assert document["policyFromRun"] is False
    statuses = {r["name"]: r["status"] for r in document["registries"]}
    assert statuses["acrcompliant01"] == "noncompliant"


def test_report_and_export_refuse_bad_times(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for args, option in (
        (("report", "--at", future), "--at"),
        (("report", "--from", "whenever"), "--from"),
        (("report", "--at", "1h", "--from", "2h"), "--at"),
        (("report", "--from", "1h", "--to", "2h"), "--from"),
        (("export", "--at", "1899-01-01"), "--at"),
    ):
        result = run_cli(env, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith(f"error: {option}"), result.stderr
    none_yet = run_cli(env, "export", "--at", "1h")
    assert none_yet.returncode == 2
    assert "no run had finished" in none_yet.stderr
