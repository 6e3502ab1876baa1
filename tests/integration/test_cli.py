"""`python -m auditor` as a user runs it: a separate process against the emulator and Azurite."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
from py_ocsf_models.events.findings.compliance_finding import ComplianceFinding

from emulator.testing import RunningEmulator

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]
REPO = Path(__file__).resolve().parents[2]


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


def test_json_document_and_exit_code(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    result = run_cli(env, "audit", "--format", "json")
    assert result.returncode == 1, result.stderr  # some registries are not compliant
    doc = json.loads(result.stdout)
    assert doc["schemaVersion"] == 1
    assert doc["totals"]["compliant"] == 2
    assert doc["totals"]["noncompliant"] == 4
    by_name = {r["name"]: r for r in doc["registries"]}
    assert set(by_name["acrnosetting01"]) >= {"id", "name", "subscriptionId", "status", "reasons"}
    assert by_name["acrnosetting01"]["reasons"][0]["code"] == "no_diagnostic_setting"
    assert by_name["acrcompliant01"]["status"] == "compliant"
    assert doc["run"]["status"] == "succeeded"


def test_all_compliant_subset_exits_zero_and_prints_a_table(local_azure: LocalAzure) -> None:
    emu, env = local_azure()
    # Keep only the compliant production registries in scope.
    for name in ("acrdisabled01", "acrstorage01"):
        reg = emu.world.registry_by_name(name)
        assert reg is not None
        emu.world.remove_registry(reg.id)
    result = run_cli(
        env, "audit", "--subscription", "11111111-1111-1111-1111-111111111111", "--no-store"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "acrcompliant01" in result.stdout
    assert "2 registries: 2 compliant" in result.stdout


def test_bad_setting_stops_with_a_message_naming_it(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    result = run_cli({**env, "AUDITOR_MAX_CONCURRENCY": "lots"}, "audit")
    assert result.returncode == 2
    assert "AUDITOR_MAX_CONCURRENCY" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_argument_is_refused(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    result = run_cli(env, "audit", "--subscription", "not-a-guid")
    assert result.returncode == 2
    assert "not a subscription id" in result.stderr


def test_a_subscription_the_identity_cannot_see_is_not_a_success(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    ghost = "99999999-9999-9999-9999-999999999999"
    env = {**env, "AUDITOR_SUBSCRIPTIONS": ghost}
    result = run_cli(env, "audit", "--format", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["run"]["status"] == "partial"
    assert doc["registries"] == []
    assert [e for e in doc["run"]["errors"] if ghost in e and "not visible" in e]
    table = run_cli(env, "audit", "--no-store")
    assert table.returncode == 1, table.stdout + table.stderr
    assert f"warning: subscription {ghost}: not visible" in table.stdout


def test_a_malformed_subscription_setting_stays_a_configuration_error(
    local_azure: LocalAzure,
) -> None:
    _, env = local_azure()
    result = run_cli({**env, "AUDITOR_SUBSCRIPTIONS": "9999-not-a-guid"}, "audit")
    assert result.returncode == 2
    assert "AUDITOR_SUBSCRIPTIONS" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_azure_is_a_failed_audit(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    result = run_cli(
        {**env, "AUDITOR_ARM_ENDPOINT": "https://127.0.0.1:9", "AUDITOR_HTTP_RETRIES": "0"},
        "audit",
        "--no-store",
        "--format",
        "json",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert json.loads(result.stdout)["run"]["status"] == "failed"


def test_alerts_test_sends_to_the_log_sink(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    result = run_cli(env, "alerts", "test", "--sink", "log")
    assert result.returncode == 0, result.stderr
    assert "test alert" in result.stdout
    assert "ACR_AUDITOR_ALERT" in result.stderr


def test_alerts_test_of_an_unconfigured_sink_names_the_setting(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    result = run_cli(env, "alerts", "test", "--sink", "webhook")
    assert result.returncode == 2
    assert "AUDITOR_ALERT_WEBHOOK_URL" in result.stderr


def test_serve_answers_health_and_the_summary(local_azure: LocalAzure) -> None:
    import socket
    import time
    import urllib.request

    _, env = local_azure()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "auditor", "serve", "--port", str(port), "--no-schedule"],
        env={**clean, **env},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    assert json.loads(r.read())["status"] == "ok"
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/compliance", timeout=5) as r:
            assert json.loads(r.read())["lastRun"] is None  # nothing audited yet
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_storage_down_still_prints_every_verdict_and_exits_two(local_azure: LocalAzure) -> None:
    """Table Storage unreachable for the whole run: the audit still runs, the document has
    every registry, the run says why nothing was stored, and the exit code says it failed."""
    _, env = local_azure()
    port = closed_port()
    dead = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
        f"KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    result = run_cli({**env, "AUDITOR_STORAGE": dead}, "audit", "--format", "json")
    assert result.returncode == 2, result.stderr
    doc = json.loads(result.stdout)
    assert doc["totals"]["compliant"] == 2 and doc["totals"]["noncompliant"] == 4
    assert len(doc["registries"]) == 6
    stored = [e for e in doc["run"]["errors"] if "results were not stored" in e]
    assert len(stored) == 1 and "Table Storage" in stored[0]
    assert "AccountKey" not in result.stdout + result.stderr
    assert "Eby8vdM02xNOcqFl" not in result.stdout + result.stderr


def test_no_azure_login_is_one_message_saying_what_to_do(local_azure: LocalAzure) -> None:
    emu, _ = local_azure()
    bare = {
        "PATH": os.environ["PATH"],
        "HOME": "/nonexistent",  # no Azure CLI login, no token cache
        "AUDITOR_ARM_ENDPOINT": emu.base_url,
        "REQUESTS_CA_BUNDLE": str(emu.ca_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "auditor", "audit", "--no-store", "--no-alerts", "--quiet"],
        env=bare,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "az login" in result.stdout and "AZURE_CLIENT_ID" in result.stdout
    assert "REGISTRY" not in result.stdout  # no empty table
    assert "EnvironmentCredential" not in result.stdout + result.stderr  # no credential chain
    assert len(result.stdout.splitlines()) <= 3


def test_the_table_can_show_only_some_statuses_or_reasons(local_azure: LocalAzure) -> None:
    _, env = local_azure()

    def shown(*flags: str) -> list[str]:
        result = run_cli(env, "audit", "--no-store", "--no-alerts", "--quiet", *flags)
        assert result.returncode == 1, result.stderr
        lines = result.stdout.split("\n\n")[0].splitlines()[1:]  # the rows, under the header
        assert "6 registries: 2 compliant, 4 noncompliant" in result.stdout  # the fleet's totals
        return sorted(line.split()[0] for line in lines)

    assert shown("--status", "compliant") == ["acrcompliant01", "acrgroups01"]
    assert shown("--reason", "category_disabled") == ["acrdisabled01"]  # a code family
    assert shown("--reason", "no_diagnostic_setting", "--reason", "not_resource_specific") == [
        "acrlegacy01",
        "acrnosetting01",
    ]
    assert shown("--status", "noncompliant", "--reason", "logs_silent") == ["acrdisabled01"]
    refused = run_cli(env, "audit", "--status", "sideways")
    assert refused.returncode == 2 and "invalid choice" in refused.stderr


def test_the_table_shows_exempt_registries(local_azure: LocalAzure) -> None:
    _, env = local_azure(REPO / "tests/integration/scenarios/exemptions.yaml")
    result = run_cli(env, "audit", "--no-store", "--no-alerts", "--quiet", "--status", "exempt")
    assert result.returncode == 1, result.stderr  # the others are noncompliant
    rows = result.stdout.split("\n\n")[0].splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["acrwaived01"]  # no AUDITOR_EXEMPTIONS here
    assert "exempt" in rows[0].split() and "exempted:noncompliant" in rows[0]
    assert "5 registries: 4 noncompliant, 1 exempt" in result.stdout


SARIF_SCHEMA = json.loads((REPO / "docs/reference/sarif-schema-2.1.0.json").read_text())


def test_audit_prints_a_valid_sarif_log(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    result = run_cli(env, "audit", "--format", "sarif", "--no-alerts")
    assert result.returncode == 1, result.stderr  # some registries are not compliant
    log = json.loads(result.stdout)
    jsonschema.validate(log, SARIF_SCHEMA, cls=jsonschema.Draft4Validator)
    (run,) = log["runs"]
    found = {(r["properties"]["registry"], r["ruleId"]) for r in run["results"]}
    assert ("acrnosetting01", "no_diagnostic_setting") in found
    assert not any(name == "acrcompliant01" for name, _ in found)
    assert run["properties"]["run"]["status"] == "succeeded"
    assert run["properties"]["policy"]["requiredCategories"]


def test_export_prints_the_stored_run_in_every_format(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    before = run_cli(env, "export", "--format", "csv")
    assert before.returncode == 2
    assert "no finished run is stored" in before.stderr
    audited = run_cli(env, "audit", "--format", "json", "--no-alerts")
    audit = json.loads(audited.stdout)
    statuses = {r["name"]: r["status"] for r in audit["registries"]}

    exported = run_cli(env, "export", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert document["run"]["id"] == audit["run"]["id"]
    assert document["policyFromRun"] is True
    assert document["policy"]["requiredCategories"] == [
        "ContainerRegistryLoginEvents",
        "ContainerRegistryRepositoryEvents",
    ]
    assert {r["name"]: r["status"] for r in document["registries"]} == statuses

    table = run_cli(env, "export", "--format", "csv")
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert {r["registry"]: r["status"] for r in rows} == statuses
    assert {r["run"] for r in rows} == {audit["run"]["id"]}
    assert {r["policy"] for r in rows} == {document["policy"]["fingerprint"]}
    assert rows[0]["checked at"]
    # Stored with each registry: the newest log event its last check saw.
    compliant = next(r for r in rows if r["registry"] == "acrcompliant01")
    assert compliant["last event"]
    assert next(r for r in rows if r["registry"] == "acrnosetting01")["last event"] == ""

    sarif = run_cli(env, "export", "--format", "sarif")
    jsonschema.validate(json.loads(sarif.stdout), SARIF_SCHEMA, cls=jsonschema.Draft4Validator)

    ocsf = run_cli(env, "export", "--format", "ocsf")
    findings = [ComplianceFinding.model_validate(f) for f in json.loads(ocsf.stdout)]
    assert {f.resources[0].name for f in findings if f.resources} == {
        name for name, status in statuses.items() if status != "removed"
    }
    assert {f.metadata.correlation_uid for f in findings} == {audit["run"]["id"]}


def test_export_refuses_an_unknown_format(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    result = run_cli(env, "export", "--format", "xml")
    assert result.returncode == 2
    assert "invalid choice: 'xml'" in result.stderr
