"""Log evidence through storage and the API: an audit of the log-evidence scenario against the
emulator (Log Analytics included) stored in Azurite, then `/api/registries/{name}/logins`,
`/activity`, `/api/compliance` and `/api/alerts` through FastAPI's TestClient. Expected values
come from the emulator itself (KQL run directly over the window each entry reports).

The audits run on the emulator's clock (`run_audit(clock=world.now)`), not the wall clock, so
which registries are silent or pending does not depend on when the tests run.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from auditor import kql
from auditor.alerts import AlertService, build_sinks
from auditor.alerts.sinks.http import HttpOptions
from auditor.api import create_app
from auditor.audit import run_audit
from auditor.azure.logs import LogsReader
from auditor.evidence.documents import activity_document, logins_document
from auditor.evidence.model import LogEvidence, Operation, TrailEntry
from auditor.facts import Registry, Status, Verdict
from auditor.logs_audit import LogOptions, build_logs_reader
from auditor.run_record import AuditRun, RunStatus
from auditor.runtime import build_arm_clients, build_credential, build_store
from auditor.settings import Settings
from auditor.storage import AuditStore
from auditor.storage.entities import MAX_LIST_ITEMS
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]
SCENARIO = Path(__file__).with_name("scenarios") / "log_evidence.yaml"
SUB = "11111111-1111-1111-1111-111111111111"
LAW_LOGS = "bbbbbbbb-0000-0000-0000-000000000001"
PROBLEM = "application/problem+json"
TOKEN = "T0k3nInThePath9f8e7d"
SECRET = "hmac-secret-for-tests-0123456789"
FAST = HttpOptions(timeout=2.0, retries=1, backoff=0.01, max_backoff=0.05)
LISTED_OPERATIONS = ("Delete", "Untag", "PurgeTag", "PurgeManifest")


def rid(name: str, group: str = "rg-prod") -> str:
    return (
        f"/subscriptions/{SUB}/resourcegroups/{group}"
        f"/providers/microsoft.containerregistry/registries/{name}"
    )


@dataclass
class Estate:
    emu: RunningEmulator
    env: dict[str, str]
    store: AuditStore
    reader: LogsReader
    runs: list[AuditRun]

    def audit(self) -> AuditRun:
        settings = Settings.from_env(self.env)
        clients = build_arm_clients(settings, build_credential())
        try:
            run = run_audit(
                clients,
                settings.policy,
                store=self.store,
                logs_reader=self.reader,
                log_options=LogOptions.from_settings(settings.logs),
                clock=self.emu.world.now,
                trigger="test",
            )
        finally:
            clients.close()
        self.runs.append(run)
        return run

    def client(self, **kwargs: Any) -> TestClient:
        return TestClient(create_app(lambda: self.store, now=self.emu.world.now, **kwargs))

    def kusto(self, text: str, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows of `text` in law-logs over the window the entry reports."""
        start = datetime.fromisoformat(entry["window"]["start"])
        end = datetime.fromisoformat(entry["window"]["end"])
        query = kql.Query(kql.Purpose.REPOSITORY, text, start, end)
        outcome = self.reader.query(LAW_LOGS, query)
        assert outcome.error is None and outcome.partial_error is None, outcome
        return list(outcome.rows)


@pytest.fixture
def estate(local_azure: LocalAzure) -> Iterator[Estate]:
    emu, env = local_azure(SCENARIO)
    settings = Settings.from_env(env)
    credential = build_credential()
    reader = build_logs_reader(settings, credential)
    try:
        yield Estate(emu, env, build_store(settings, credential), reader, [])
    finally:
        reader.close()


@pytest.fixture
def audited(estate: Estate) -> Estate:
    estate.audit()
    return estate


def where(entry: dict[str, Any], table: str, name: str) -> str:
    start = datetime.fromisoformat(entry["window"]["start"])
    end = datetime.fromisoformat(entry["window"]["end"])
    return "\n".join(
        (
            table,
            f"| where TimeGenerated between ({kql.kql_datetime(start)} .. {kql.kql_datetime(end)})",
            f"| where _ResourceId =~ {kql.kql_string(rid(name))}",
        )
    )


def moment(value: Any) -> datetime:
    """A time as the emulator or the API writes it (Kusto has 7 fractional digits)."""
    text = str(value).replace("Z", "+00:00")
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        text = f"{head}.{digits[:6]}{tail[len(digits) :]}"
    return datetime.fromisoformat(text).astimezone(UTC)


def assert_problem(response: Any, status: int, parameter: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    if parameter is not None:
        assert body["type"] == "urn:acr-auditor:problem:invalid-parameter"
        assert [p["name"] for p in body["invalidParams"]] == [parameter], body
    return body


# --------------------------------------------------------------------------- activity, logins


def test_activity_is_the_runs_evidence_and_matches_the_emulator(audited: Estate) -> None:
    [run] = audited.runs
    response = audited.client().get("/api/registries/acrbusy01/activity")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["continuation"] is None
    [entry] = body["items"]
    assert entry["runId"] == run.run_id
    assert moment(entry["observedAt"]) == run.finished_at
    # Stored and served exactly as built from the run's evidence.
    stored = {k: v for k, v in entry.items() if k not in ("runId", "observedAt")}
    expected = json.loads(json.dumps(activity_document(run.evidence[rid("acrbusy01")])))
    assert stored == expected

    # Counts per operation, as the emulator counts them over the same window.
    rows = audited.kusto(
        where(entry, "ContainerRegistryRepositoryEvents", "acrbusy01")
        + "\n| summarize N = count() by OperationName",
        entry,
    )
    counts = {op.value: 0 for op in Operation}
    for row in rows:
        op = "purge" if str(row["OperationName"]).startswith("Purge") else row["OperationName"]
        counts[op.lower()] += int(row["N"])
    assert entry["operations"] == counts
    assert counts["pull"] > 0 and counts["delete"] > 0 and counts["untag"] > 0

    # Every delete and untag, each with who, what, when and from where, newest first.
    listed = audited.kusto(
        where(entry, "ContainerRegistryRepositoryEvents", "acrbusy01")
        + f"\n| where OperationName in ({', '.join(kql.kql_string(o) for o in LISTED_OPERATIONS)})"
        + "\n| project TimeGenerated, OperationName, Identity, CallerIpAddress, Repository, Tag,"
        " Digest",
        entry,
    )
    assert len(entry["deletions"]) == len(listed) == counts["delete"] + counts["untag"]

    def key(item: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(moment(item[k]) if k == "at" else item[k] for k in sorted(item))

    shown = [
        {
            "at": d["at"],
            "operationName": d["operationName"],
            "identity": d["identity"],
            "callerIp": d["callerIp"],
            "repository": d["repository"],
            "tag": d["tag"],
            "digest": d["digest"],
        }
        for d in entry["deletions"]
    ]
    emulator = [
        {
            "at": r["TimeGenerated"],
            "operationName": r["OperationName"],
            "identity": r["Identity"],
            "callerIp": r["CallerIpAddress"],
            "repository": r["Repository"],
            "tag": r["Tag"] or "",
            "digest": r["Digest"] or "",
        }
        for r in listed
    ]
    assert sorted(map(key, shown)) == sorted(map(key, emulator))
    times = [moment(d["at"]) for d in entry["deletions"]]
    assert times == sorted(times, reverse=True)
    assert [o["code"] for o in entry["observations"]] == ["artifact_deleted"]


def test_logins_are_the_runs_evidence_and_match_the_emulator(audited: Estate) -> None:
    [run] = audited.runs
    client = audited.client()
    busy = client.get("/api/registries/acrbusy01/logins").json()["items"][0]
    assert busy["runId"] == run.run_id
    stored = {k: v for k, v in busy.items() if k not in ("runId", "observedAt")}
    assert stored == json.loads(json.dumps(logins_document(run.evidence[rid("acrbusy01")])))

    [totals] = audited.kusto(
        where(busy, "ContainerRegistryLoginEvents", "acrbusy01")
        + "\n| summarize Attempts = count(),"
        ' Failures = countif(not(ResultDescription startswith "2"))',
        busy,
    )
    assert (busy["attempts"], busy["failures"]) == (totals["Attempts"], totals["Failures"])
    assert sum(item["attempts"] for item in busy["logins"]) == busy["attempts"]
    by_identity = {t["key"]: t for t in busy["byIdentity"]}
    assert by_identity["attacker@evil.example"] == {
        "key": "attacker@evil.example",
        "attempts": 20,
        "failures": 20,
    }
    assert {(b["kind"], b["key"], b["failures"]) for b in busy["bursts"]} == {
        ("ip", "192.0.2.66", 20),
        ("identity", "attacker@evil.example", 20),
    }
    assert {(f["kind"], f["value"]) for f in busy["firstSeen"]} == {
        ("identity", "attacker@evil.example"),
        ("ip", "192.0.2.66"),
    }
    assert sorted(o["code"] for o in busy["observations"]) == [
        "login_failure_burst",
        "login_failure_burst",
        "new_login_source",
        "new_login_source",
    ]
    assert busy["anonymousPulls"] == [] and busy["adminLogins"] == []

    public = client.get("/api/registries/acrpublic01/logins").json()["items"][0]
    [anonymous] = audited.kusto(
        where(public, "ContainerRegistryRepositoryEvents", "acrpublic01")
        + '\n| where Identity == "<anonymous>" and OperationName == "Pull" | count',
        public,
    )
    [admin] = audited.kusto(
        where(public, "ContainerRegistryLoginEvents", "acrpublic01")
        + '\n| where Identity =~ "acrpublic01" | count',
        public,
    )
    [pull] = public["anonymousPulls"]
    assert (pull["repository"], pull["count"]) == ("public/base", anonymous["Count"])
    assert anonymous["Count"] > 0
    assert {s["identity"] for s in public["adminLogins"]} == {"acrpublic01"}
    assert sum(s["attempts"] for s in public["adminLogins"]) == admin["Count"] > 0
    assert sorted(o["code"] for o in public["observations"]) == [
        "admin_user_login",
        "anonymous_pull",
    ]

    # Silent: entries exist, with the last event 30 hours back and nothing in the window.
    silent = client.get("/api/registries/acrsilent01/logins").json()["items"][0]
    assert silent["attempts"] == 0 and silent["logins"] == []
    last = moment(silent["lastEvent"])
    assert timedelta(hours=30) <= run.finished_at - last < timedelta(hours=32)


def test_compliance_summary_counts_the_log_findings(audited: Estate) -> None:
    [run] = audited.runs
    body = audited.client().get("/api/compliance").json()
    assert body["logs"] == {
        "checked": 7,
        "silent": 1,  # acrsilent01
        "pending": 2,  # acrnew01, acrsetnew01
        "unknown": 1,  # acrgone01: its workspace does not exist
        "interrupted": 0,
        "loginAlerts": 2,  # acrbusy01 (burst, new sources), acrpublic01 (anonymous, admin)
        "byObservation": [
            {"code": "admin_user_login", "count": 1},
            {"code": "anonymous_pull", "count": 1},
            {"code": "artifact_deleted", "count": 1},
            {"code": "login_failure_burst", "count": 1},
            {"code": "new_login_source", "count": 1},
        ],
        "logQueries": 2 * len(kql.Purpose),  # two readable workspaces, one query per purpose
    }
    assert run.log_queries == 2 * len(kql.Purpose)


# --------------------------------------------------------------------------- paging, bounds


def test_paging_time_bounds_and_parameters(estate: Estate) -> None:
    for _ in range(3):
        estate.audit()
        estate.emu.world.advance(timedelta(minutes=10))
    first, second, third = (r.run_id for r in estate.runs)
    client = estate.client()  # now() is 10 minutes after the third run
    url = "/api/registries/acrbusy01/activity"

    def ids(response: Any) -> list[str]:
        assert response.status_code == 200, response.text
        return [item["runId"] for item in response.json()["items"]]

    page = client.get(url, params={"limit": 2})
    assert ids(page) == [third, second]
    token = page.json()["continuation"]
    assert token
    rest = client.get(url, params={"limit": 2, "continuation": token})
    assert ids(rest) == [first] and rest.json()["continuation"] is None
    assert ids(client.get(url)) == [third, second, first]

    finished = [r.finished_at.isoformat() for r in estate.runs]
    assert ids(client.get(url, params={"since": "25m"})) == [third, second]
    assert ids(client.get(url, params={"since": finished[1]})) == [third, second]
    assert ids(client.get(url, params={"until": finished[1]})) == [second, first]
    assert ids(client.get(url, params={"since": finished[1], "until": finished[1]})) == [second]
    assert ids(client.get(url, params={"since": "5m"})) == []
    logins = "/api/registries/acrbusy01/logins"
    second_started = estate.emu.world.scenario.now + timedelta(minutes=5)
    assert ids(client.get(logins, params={"since": second_started.isoformat()})) == [third, second]

    # A token only pages the registry and kind it came from.
    assert_problem(
        client.get("/api/registries/acrpublic01/activity", params={"continuation": token}),
        400,
        "continuation",
    )
    assert_problem(client.get(logins, params={"continuation": token}), 400, "continuation")
    assert_problem(client.get(url, params={"since": "yesterday"}), 400, "since")
    assert_problem(client.get(url, params={"until": "7x"}), 400, "until")
    assert_problem(client.get(url, params={"since": "1h", "until": "2h"}), 400, "since")
    assert_problem(client.get(url, params={"limit": 0}), 400, "limit")
    assert_problem(client.get(url, params={"limit": 51}), 400, "limit")
    for path in ("logins", "activity"):
        body = assert_problem(client.get(f"/api/registries/acrnosuch01/{path}"), 404)
        assert "acrnosuch01" in body["detail"]
        assert_problem(client.get(f"/api/registries/a%2Fb/{path}"), 404)
        assert_problem(client.get(f"/api/registries/ab/{path}"), 400, "name")


def test_oversized_evidence_is_trimmed_and_the_cut_counted(estate: Estate) -> None:
    """5000 deletions with long values do not fit one entity: the newest are kept."""
    registry = Registry(
        id=rid("acrhuge01"), name="acrhuge01", subscription_id=SUB, resource_group="rg-prod"
    )
    start = datetime(2026, 11, 24, 12, tzinfo=UTC)
    deletions = tuple(
        TrailEntry(
            at=start + timedelta(seconds=i),
            operation=Operation.DELETE,
            operation_name="Delete",
            identity=f"user{i}@contoso.com",
            caller_ip="203.0.113.7",
            repository="app/" + "x" * 200,
            tag="",
            digest="sha256:" + f"{i:064x}",
            result="202",
        )
        for i in range(5000)
    )
    evidence = LogEvidence(
        registry.key, start, start + timedelta(days=1), deletions=deletions, problems=("p",) * 99
    )
    run = AuditRun(
        run_id="20261125T120000Z-0000huge",
        started_at=start + timedelta(days=1),
        finished_at=start + timedelta(days=1),
        status=RunStatus.SUCCEEDED,
        verdicts=(Verdict(registry, Status.COMPLIANT),),
        evidence={registry.key: evidence},
    )
    estate.store.start_run(run.run_id, run.started_at, run.trigger)
    estate.store.finish_run(run)
    [entry], _ = estate.store.registry_activity("acrhuge01")
    kept = len(entry["deletions"])
    assert 0 < kept < MAX_LIST_ITEMS
    assert kept + entry["omitted"]["deletions"] == 5000
    assert entry["omitted"] == {"trail": 0, "deletions": 5000 - kept, "activityLog": 0}
    # Newest first, and the newest kept.
    assert [d["digest"] for d in entry["deletions"]] == [
        f"sha256:{i:064x}" for i in range(4999, 4999 - kept, -1)
    ]
    assert len(entry["problems"]) == 50
    # Finishing the same run again writes the same rows, no second entry.
    estate.store.finish_run(replace(run))
    assert len(estate.store.registry_activity("acrhuge01")[0]) == 1


# --------------------------------------------------------------------------- alerts


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_alerts_are_listed_without_urls_or_secrets(audited: Estate) -> None:
    [run] = audited.runs
    unconfigured = assert_problem(audited.client().get("/api/alerts"), 404)
    assert unconfigured["detail"] == "Alerting is not configured."

    port = closed_port()  # deliveries fail: the errors end up in the document, redacted
    settings = Settings.from_env(
        {
            **audited.env,
            "AUDITOR_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{port}/hook/{TOKEN}",
            "AUDITOR_ALERT_WEBHOOK_SECRET": SECRET,
            "AUDITOR_ALERT_LOG_RECORDS": "false",
        }
    )

    def service() -> AlertService:
        return AlertService.from_settings(settings, sinks=build_sinks(settings, http=FAST))

    with service() as alerts:
        report = alerts.process(run.verdicts, run_id=run.run_id, now=run.finished_at)
    assert [d.sink for d in report.failures] == ["webhook"]

    client = audited.client(alerts_provider=service)
    response = client.get("/api/alerts")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sinks"] == ["webhook"]
    failing = {v.registry.name for v in run.verdicts if v.status is Status.NONCOMPLIANT}
    assert failing == {"acrsilent01"}
    assert {(a["registry"]["name"], a["topic"]) for a in body["open"]} == {
        ("acrsilent01", "compliance")
    }
    assert [(h["registry"]["name"], h["kind"]) for h in body["history"]] == [
        ("acrsilent01", "opened")
    ]
    assert [(u["sink"], u["attempts"]) for u in body["undelivered"]] == [("webhook", 1)]
    for text in (response.text, json.dumps(body)):
        assert TOKEN not in text
        assert SECRET not in text
        assert f"127.0.0.1:{port}" not in text and "http://" not in text

    only = client.get("/api/alerts", params={"registry": "acrsilent01", "limit": 1}).json()
    assert [a["registry"]["name"] for a in only["open"]] == ["acrsilent01"]
    assert len(only["history"]) == 1
    none = client.get("/api/alerts", params={"registry": "acrbusy01"}).json()
    assert none["open"] == [] and none["history"] == []
    assert_problem(client.get("/api/alerts", params={"registry": "acrnosuch01"}), 404)
    assert_problem(client.get("/api/alerts", params={"limit": 0}), 400, "limit")


def test_openapi_documents_the_new_routes(estate: Estate) -> None:
    schema = estate.client().get("/api/openapi.json").json()
    paths = schema["paths"]
    for path in ("/api/registries/{name}/logins", "/api/registries/{name}/activity"):
        operation = paths[path]["get"]
        assert {p["name"] for p in operation["parameters"]} == {
            "name",
            "since",
            "until",
            "limit",
            "continuation",
        }
        assert set(operation["responses"]) == {"200", "400", "404", "503"}
    assert "/api/alerts" in paths
    components = schema["components"]["schemas"]
    assert {"LoginPage", "ActivityPage", "Alerts", "LogCounts"} <= set(components)
    assert "logs" in components["Compliance"]["properties"]
