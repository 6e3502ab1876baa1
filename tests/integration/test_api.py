"""The HTTP API through FastAPI's TestClient, backed by a real AuditStore on Azurite."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from azure.data.tables import TableServiceClient
from fastapi.testclient import TestClient
from py_ocsf_models.events.findings.compliance_finding import ComplianceFinding

from auditor.api import create_app
from auditor.facts import Reason, Registry, Status, Verdict
from auditor.policy import Policy, policy_document
from auditor.reasons import describe
from auditor.run_record import AuditRun, RunStatus
from auditor.storage import AuditStore
from emulator.azurite import DEV_KEY

pytestmark = pytest.mark.integration

SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=3)
LOGIN_MISSING = "category_missing:ContainerRegistryLoginEvents"
PROBLEM = "application/problem+json"
# The policy the second run judged against; the app is configured with another.
JUDGED = Policy(required_categories=("ContainerRegistryLoginEvents",))
SARIF_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs/reference/sarif-schema-2.1.0.json").read_text()
)


def verdict(name: str, status: Status, *codes: str, sub: str = SUB_A) -> Verdict:
    registry = Registry(
        id=f"/subscriptions/{sub}/resourceGroups/rg/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=sub,
        resource_group="rg",
        location="westeurope",
    )
    return Verdict(registry, status, tuple(Reason(code, f"why {code}") for code in codes))


def audit_run(number: int, *verdicts: Verdict, policy: Policy | None = None) -> AuditRun:
    started = T0 + timedelta(hours=number)
    return AuditRun(
        run_id=f"run{number:03d}",
        started_at=started,
        finished_at=started + timedelta(minutes=2),
        status=RunStatus.SUCCEEDED,
        verdicts=verdicts,
        inventoried_subscriptions=frozenset({SUB_A, SUB_B}),
        trigger="timer",
        policy=policy,
    )


@pytest.fixture
def store(storage_connection_string: str, table_prefix: str) -> AuditStore:
    return AuditStore.from_connection_string(storage_connection_string, prefix=table_prefix)


def client_for(provider: Callable[[], AuditStore]) -> TestClient:
    # A policy other than the default, so the exports are seen to state the app's.
    return TestClient(create_app(provider, now=lambda: NOW, policy=Policy(require_metrics=False)))


@pytest.fixture
def client(store: AuditStore) -> TestClient:
    return client_for(lambda: store)


@pytest.fixture
def audited(store: AuditStore) -> AuditStore:
    """Two runs: acrgone01 disappears in the second."""
    for run in (
        audit_run(
            1,
            verdict("acrgood01", Status.COMPLIANT),
            verdict("acrbad001", Status.COMPLIANT),
            verdict("acrgone01", Status.COMPLIANT),
        ),
        audit_run(
            2,
            verdict("acrgood01", Status.COMPLIANT),
            verdict("acrbad001", Status.NONCOMPLIANT, LOGIN_MISSING, "metrics_missing"),
            verdict("acrbad002", Status.NONCOMPLIANT, LOGIN_MISSING, sub=SUB_B),
            verdict("acrdark01", Status.UNKNOWN, "unknown:HTTP 403", sub=SUB_B),
            policy=JUDGED,
        ),
    ):
        store.start_run(run.run_id, run.started_at, run.trigger)
        store.finish_run(run)
    return store


def assert_problem(response: Any, status: int, parameter: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert set(body) >= {"type", "title", "detail", "status"}
    if parameter is not None:
        assert body["type"] == "urn:acr-auditor:problem:invalid-parameter"
        assert f"'{parameter}'" in body["detail"]
        assert [p["name"] for p in body["invalidParams"]] == [parameter]
    return body


def test_compliance_before_any_run(client: TestClient) -> None:
    response = client.get("/api/compliance")
    assert response.status_code == 200
    body = response.json()
    assert body["lastRun"] is None
    assert body["dataAgeSeconds"] is None
    assert body["totals"] == {
        "total": 0,
        "compliant": 0,
        "noncompliant": 0,
        "unknown": 0,
        "removed": 0,
        "exempt": 0,
        "pending": 0,
    }
    assert body["compliancePercent"] is None


def test_compliance(client: TestClient, audited: AuditStore) -> None:
    body = client.get("/api/compliance").json()
    assert body["lastRun"] == {
        "id": "run002",
        "startedAt": "2024-05-01T14:00:00+00:00",
        "finishedAt": "2024-05-01T14:02:00+00:00",
        "status": "succeeded",
        "trigger": "timer",
        "errorCount": 0,
    }
    assert body["dataAgeSeconds"] == 58 * 60  # NOW is 15:00
    assert body["totals"] == {
        "total": 5,
        "compliant": 1,
        "noncompliant": 2,
        "unknown": 1,
        "removed": 1,
        "exempt": 0,
        "pending": 0,
    }
    assert body["compliancePercent"] == 33.3
    assert body["policy"] == policy_document(JUDGED)  # as the run recorded it
    assert body["byReason"] == [
        {"code": LOGIN_MISSING, "count": 2},
        {"code": "metrics_missing", "count": 1},
        {"code": "removed", "count": 1},
        {"code": "unknown:HTTP 403", "count": 1},
    ]
    assert [s["subscriptionId"] for s in body["bySubscription"]] == [SUB_A, SUB_B]
    assert {k: v for k, v in body.items() if k != "dataAgeSeconds"} == audited.get_summary()


def test_registries_list_filters_and_pages(client: TestClient, audited: AuditStore) -> None:
    def names(query: str) -> list[str]:
        response = client.get(f"/api/registries{query}")
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]

    assert names("") == ["acrbad001", "acrbad002", "acrdark01", "acrgone01", "acrgood01"]
    assert names("?status=removed") == ["acrgone01"]
    assert names(f"?subscription={SUB_B}") == ["acrbad002", "acrdark01"]
    assert names(f"?reason={LOGIN_MISSING}") == ["acrbad001", "acrbad002"]
    assert names(f"?reason={LOGIN_MISSING}&subscription={SUB_A}") == ["acrbad001"]
    # A name prefix, in any case: a key range, with the other filters and pages.
    assert names("?namePrefix=ACRBAD") == ["acrbad001", "acrbad002"]
    assert names("?namePrefix=acrbad002") == ["acrbad002"]
    assert names("?namePrefix=acrg&status=compliant") == ["acrgood01"]
    assert names("?namePrefix=z") == []
    prefixed = client.get("/api/registries?namePrefix=acrbad&pageSize=1").json()
    rest = client.get(
        "/api/registries",
        params={"namePrefix": "acrbad", "pageSize": 1, "continuation": prefixed["continuation"]},
    ).json()
    assert [i["name"] for i in prefixed["items"] + rest["items"]] == ["acrbad001", "acrbad002"]
    assert rest["continuation"] is None
    assert client.get("/api/registries?namePrefix=acr-bad").status_code == 400

    first = client.get("/api/registries?pageSize=2").json()
    assert [i["name"] for i in first["items"]] == ["acrbad001", "acrbad002"]
    second = client.get(
        "/api/registries", params={"pageSize": 2, "continuation": first["continuation"]}
    ).json()
    assert [i["name"] for i in second["items"]] == ["acrdark01", "acrgone01"]
    third = client.get(
        "/api/registries", params={"pageSize": 2, "continuation": second["continuation"]}
    ).json()
    assert [i["name"] for i in third["items"]] == ["acrgood01"]
    assert third["continuation"] is None

    item = first["items"][0]
    assert item == {
        "id": f"/subscriptions/{SUB_A}/resourceGroups/rg/providers/"
        "Microsoft.ContainerRegistry/registries/acrbad001",
        "name": "acrbad001",
        "subscriptionId": SUB_A,
        "resourceGroup": "rg",
        "location": "westeurope",
        "status": "noncompliant",
        "reasons": [
            {"code": LOGIN_MISSING, "detail": f"why {LOGIN_MISSING}"},
            {"code": "metrics_missing", "detail": "why metrics_missing"},
        ],
        "lastRunId": "run002",
        "checkedAt": "2024-05-01T14:02:00+00:00",
        "statusSince": "2024-05-01T14:02:00+00:00",
        "lastEvent": None,
    }


def test_registry_detail(client: TestClient, audited: AuditStore) -> None:
    response = client.get("/api/registries/ACRbad001")  # names are case-insensitive
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "noncompliant"
    login = describe(LOGIN_MISSING)
    assert body["findings"][0] == {
        "code": LOGIN_MISSING,
        "detail": f"why {LOGIN_MISSING}",
        "title": login.title,
        "severity": "high",
        "explanation": login.explanation,
        "remediation": login.remediation,
        "docsUrl": login.docs_url,
        "controls": [control.to_dict() for control in login.controls],
    }
    assert "mcsb:LT-3" in [c["id"] for c in body["findings"][0]["controls"]]
    assert body["findings"][1]["controls"] == []  # metrics_missing maps to no control
    assert [f["code"] for f in body["findings"]] == [LOGIN_MISSING, "metrics_missing"]
    assert [(h["runId"], h["status"], h["previousStatus"]) for h in body["history"]] == [
        ("run002", "noncompliant", "compliant"),
        ("run001", "compliant", None),
    ]
    limited = client.get("/api/registries/acrbad001?historyLimit=1").json()
    assert [h["runId"] for h in limited["history"]] == ["run002"]


def test_controls(client: TestClient, audited: AuditStore) -> None:
    response = client.get("/api/controls")
    assert response.status_code == 200
    body = response.json()
    # acrgood01, acrbad001, acrbad002, acrdark01 and acrgone01 (removed in the second run)
    assert body["registries"] == 5
    controls = {c["id"]: c for c in body["controls"]}
    cis = controls["cis-azure:5.4"]
    assert (cis["document"], cis["version"], cis["control"]) == (
        "CIS Microsoft Azure Foundations Benchmark",
        "2.1.0",
        "5.4",
    )
    assert cis["failingRegistries"] == ["acrbad001", "acrbad002"]
    assert cis["passingRegistries"] == ["acrgood01"]
    assert (cis["failing"], cis["passing"], cis["notAssessed"]) == (2, 1, 2)
    assert "category_missing" in cis["reasonCodes"]
    # Only destination reasons fail LT-5: every judged registry passes it.
    assert controls["mcsb:LT-5"]["passingRegistries"] == ["acrbad001", "acrbad002", "acrgood01"]
    bounded = client.get("/api/controls?limit=1").json()
    cis = next(c for c in bounded["controls"] if c["id"] == "cis-azure:5.4")
    assert (cis["failingRegistries"], cis["failing"]) == (["acrbad001"], 2)
    assert_problem(client.get("/api/controls?limit=-1"), 400, "limit")
    assert_problem(client.get("/api/controls?limit=x"), 400, "limit")


def test_export(client: TestClient, audited: AuditStore) -> None:
    sarif = client.get("/api/export?format=sarif")
    assert sarif.status_code == 200
    assert sarif.headers["content-type"] == "application/sarif+json"
    assert 'filename="acr-auditor-run002.sarif"' in sarif.headers["content-disposition"]
    log = sarif.json()
    jsonschema.validate(log, SARIF_SCHEMA, cls=jsonschema.Draft4Validator)
    results = log["runs"][0]["results"]
    assert {(r["properties"]["registry"], r["properties"]["code"]) for r in results} == {
        ("acrbad001", LOGIN_MISSING),
        ("acrbad001", "metrics_missing"),
        ("acrbad002", LOGIN_MISSING),
        ("acrdark01", "unknown:HTTP 403"),
        ("acrgone01", "removed"),
    }
    assert log["runs"][0]["automationDetails"]["id"] == "acr-auditor/run002"
    properties = log["runs"][0]["properties"]
    # The policy the run recorded, not the one the app is configured with now.
    assert (properties["policy"], properties["policyFromRun"]) == (policy_document(JUDGED), True)

    table = client.get("/api/export?format=csv")
    assert table.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [(r["registry"], r["status"]) for r in rows] == [
        ("acrbad001", "noncompliant"),
        ("acrbad002", "noncompliant"),
        ("acrdark01", "unknown"),
        ("acrgone01", "removed"),
        ("acrgood01", "compliant"),
    ]
    findings = client.get("/api/export?format=ocsf").json()
    assert [ComplianceFinding.model_validate(f).class_uid for f in findings] == [2003] * 4
    document = client.get("/api/export?format=json").json()
    assert document["run"]["id"] == "run002"
    assert len(document["registries"]) == 5
    assert_problem(client.get("/api/export?format=xml"), 400, "format")
    assert_problem(client.get("/api/export"), 400, "format")


def test_export_before_any_run_says_so(client: TestClient) -> None:
    document = client.get("/api/export?format=json").json()
    assert (document["run"], document["registries"]) == (None, [])
    # No run, no recorded policy: the app's, and it says so.
    assert document["policy"] == policy_document(Policy(require_metrics=False))
    assert document["policyFromRun"] is False


def test_unknown_registry_is_404(client: TestClient, audited: AuditStore) -> None:
    body = assert_problem(client.get("/api/registries/acrnever1"), 404)
    assert body["type"] == "urn:acr-auditor:problem:not-found"
    assert "acrnever1" in body["detail"]


def test_runs(client: TestClient, audited: AuditStore) -> None:
    first = client.get("/api/runs?limit=1").json()
    assert [r["id"] for r in first["items"]] == ["run002"]
    assert first["items"][0]["totals"]["removed"] == 1
    second = client.get("/api/runs", params={"limit": 1, "continuation": first["continuation"]})
    assert [r["id"] for r in second.json()["items"]] == ["run001"]
    assert second.json()["continuation"] is None


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/registries?status=bogus", "status"),
        ("/api/registries?status=", "status"),
        ("/api/registries?pageSize=0", "pageSize"),
        ("/api/registries?pageSize=501", "pageSize"),
        ("/api/registries?pageSize=ten", "pageSize"),
        ("/api/registries?subscription=not-a-guid", "subscription"),
        ("/api/registries?subscription=' or 1 eq 1", "subscription"),
        (f"/api/registries?subscription={SUB_A}%0A", "subscription"),
        ("/api/registries?reason=' or 1 eq 1", "reason"),
        ("/api/registries?reason=category_missing:a:b", "reason"),
        ("/api/registries?reason=has space", "reason"),
        ("/api/registries?continuation=garbage!", "continuation"),
        ("/api/registries?continuation=eyJrIjoicnVucyIsInAiOiJydW4iLCJyIjoiMSJ9", "continuation"),
        ("/api/registries/abcd", "name"),
        ("/api/registries/" + "a" * 51, "name"),
        ("/api/registries/acr-dash1", "name"),
        ("/api/registries/acr%27or1", "name"),
        ("/api/registries/acrgood01?historyLimit=0", "historyLimit"),
        ("/api/runs?limit=101", "limit"),
        ("/api/runs?continuation=e30", "continuation"),
        # Lone surrogates (\ud800) spelled in the token's JSON, which no key can hold.
        (
            "/api/registries?continuation=eyJrIjoicmVnaXN0cmllcyIsInAiOiJcdWQ4MDAiLCJyIjoieCJ9",
            "continuation",
        ),
        ("/api/runs?continuation=eyJrIjoicnVucyIsInAiOiJydW4iLCJyIjoiXHVkODAwIn0", "continuation"),
    ],
)
def test_bad_parameters_are_400_problems(
    client: TestClient, audited: AuditStore, url: str, parameter: str
) -> None:
    body = assert_problem(client.get(url), 400, parameter)
    assert "' or 1 eq 1" not in body["detail"]  # inputs are not echoed


def test_unknown_route_is_a_404_problem(client: TestClient) -> None:
    assert_problem(client.get("/api/nothing-here"), 404)
    assert_problem(client.post("/api/compliance"), 405)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE"])
def test_a_405_names_the_methods_the_route_allows(client: TestClient, method: str) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    for template, operations in paths.items():
        allowed = [m.upper() for m in operations]
        if method in allowed:
            continue  # POST .../remediate
        url = template.replace("{name}", "acrgood01")
        response = client.request(method, url)
        assert_problem(response, 405)
        assert [m.strip() for m in response.headers["allow"].split(",")] == allowed, url


def test_openapi_says_a_bad_token_or_time_is_a_400(client: TestClient) -> None:
    """Every operation taking `continuation`, `since` or `until` documents a 400 problem that
    names those parameters (schema checkers flag a 400 to an undocumented cause)."""
    schema = client.get("/api/openapi.json").json()
    checked = 0
    for path, operations in schema["paths"].items():
        if "get" not in operations:
            continue  # POST .../remediate takes neither
        names = {p["name"] for p in operations["get"].get("parameters", [])}
        bounded = sorted(names & {"continuation", "since", "until"})
        if not bounded:
            continue
        checked += 1
        bad = operations["get"]["responses"]["400"]
        problem = bad["content"][PROBLEM]["schema"]
        assert problem == {"$ref": "#/components/schemas/Problem"}, path
        for name in bounded:
            assert f"`{name}`" in bad["description"], (path, name)
    assert checked == 4  # registries, runs, a registry's logins and activity


def test_health(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "storage": "ok"}


def _unreachable_store(prefix: str) -> AuditStore:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    service = TableServiceClient.from_connection_string(connection_string, retry_total=0)
    return AuditStore(service, prefix=prefix)


def test_storage_failure_is_a_503_problem_without_secrets(table_prefix: str) -> None:
    broken = _unreachable_store(table_prefix)
    client = client_for(lambda: broken)
    for url in ("/api/compliance", "/api/registries", "/api/registries/acrgood01", "/api/runs"):
        response = client.get(url)
        body = assert_problem(response, 503)
        assert body["type"] == "urn:acr-auditor:problem:storage-unavailable"
        assert response.headers["retry-after"] == "30"
        for secret in (DEV_KEY, "AccountKey", "devstoreaccount1", "127.0.0.1"):
            assert secret not in response.text
    assert client.get("/api/health").json() == {"status": "degraded", "storage": "unavailable"}


def test_a_store_that_cannot_be_built_is_a_503(table_prefix: str) -> None:
    def provider() -> AuditStore:
        raise RuntimeError("AccountKey=sekrit is wrong")

    client = client_for(provider)
    response = client.get("/api/compliance")
    assert_problem(response, 503)
    assert "sekrit" not in response.text
    assert client.get("/api/health").json() == {"status": "degraded", "storage": "unavailable"}


def test_openapi_lists_the_routes(client: TestClient) -> None:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert set(schema["paths"]) == {
        "/api/compliance",
        "/api/registries",
        "/api/registries/{name}",
        "/api/registries/{name}/logins",
        "/api/registries/{name}/activity",
        "/api/alerts",
        "/api/runs",
        "/api/health",
        "/api/controls",
        "/api/export",
        "/api/compliance/period",
        "/api/registries/{name}/intervals",
        "/api/report",
        "/api/registries/{name}/remediate",
        "/api/registries/{name}/actions",
        "/api/actions",
    }
    for path in schema["paths"].values():
        for operation in path.values():
            responses = operation["responses"]
            assert "422" not in responses
            assert PROBLEM in responses["400"]["content"]
    parameters = {p["name"] for p in schema["paths"]["/api/registries"]["get"]["parameters"]}
    assert parameters == {
        "status",
        "subscription",
        "reason",
        "namePrefix",
        "pageSize",
        "continuation",
    }
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert "/api/openapi.json" in docs.text


def test_the_openapi_document_says_how_the_deployed_api_is_called(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["functionKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
    }
    assert schemes["functionKeyQuery"] == {"type": "apiKey", "in": "query", "name": "code"}
    assert document["security"] == [{"functionKeyHeader": []}, {"functionKeyQuery": []}]
    operations = [(path, op) for path, ops in document["paths"].items() for op in ops.values()]
    ids = [op["operationId"] for _, op in operations]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z]+(_[a-z]+)*", i) for i in ids)
    assert {path: op["tags"] for path, op in operations}["/api/registries/{name}/logins"] == [
        "evidence"
    ]
    assert all(op.get("tags") for _, op in operations)
    anonymous = [path for path, op in operations if op.get("security") == []]
    assert anonymous == ["/api/health"]


def test_the_docs_page_works_offline_and_behind_a_key(client: TestClient) -> None:
    page = client.get("/api/docs", params={"code": "k3y'<x>"})
    assert page.status_code == 200
    urls = re.findall(r"""(?:href|src|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    local = [u for u in urls if u.startswith("/api/")]
    assert local and not [u for u in urls if u.startswith("http")]  # no CDN
    assert all(u.endswith("?code=k3y%27%3Cx%3E") for u in local), local  # the key, encoded
    assert "<x>" not in page.text
    for url in local:
        assert client.get(url).status_code == 200, url
