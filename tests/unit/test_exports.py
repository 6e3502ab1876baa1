"""The export builders: SARIF against the official schema, OCSF through its models, CSV as a
spreadsheet reads it, and the run and policy stated in each."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from py_ocsf_models.events.findings.compliance_finding import ComplianceFinding

from auditor.evidence.model import LogEvidence, TableFreshness, WorkspaceFreshness
from auditor.exports import ExportFormat, of_run, of_summary, render
from auditor.exports.sarif import FINGERPRINT
from auditor.facts import Reason, Registry, Status, Verdict
from auditor.policy import Policy, policy_document
from auditor.reasons import codes, describe
from auditor.run_record import AuditRun, RunStatus
from auditor.summary import RegistryRecord, summarize

# From oasis-tcs/sarif-spec, sarif-2.1/schema/sarif-schema-2.1.0.json (the 2.1.0 errata01
# schema, as published at docs.oasis-open.org).
SARIF_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs/reference/sarif-schema-2.1.0.json").read_text()
)
SUB = "00000000-0000-0000-0000-00000000000a"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LOGIN_MISSING = "category_missing:ContainerRegistryLoginEvents"


def registry(name: str) -> Registry:
    return Registry(
        id=f"/subscriptions/{SUB}/resourceGroups/RG/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=SUB,
        resource_group="RG",
        location="westeurope",
    )


def verdict(name: str, status: Status, *reason_codes: str) -> Verdict:
    return Verdict(registry(name), status, tuple(Reason(c, f"why {c}") for c in reason_codes))


def audit_run(
    run_id: str, *verdicts: Verdict, evidence: dict[str, LogEvidence] | None = None
) -> AuditRun:
    return AuditRun(
        run_id=run_id,
        started_at=T0,
        finished_at=T0 + timedelta(minutes=2),
        status=RunStatus.PARTIAL,
        verdicts=verdicts,
        evidence=evidence or {},
    )


FLEET = (
    verdict("acrgood01", Status.COMPLIANT),
    verdict("acrbad001", Status.NONCOMPLIANT, LOGIN_MISSING, "metrics_missing"),
    verdict("acrdark01", Status.UNKNOWN, "unknown:HTTP 403"),
    verdict("acrgone01", Status.REMOVED, "removed"),
)


def export(run_id: str = "run001", policy: Policy | None = None) -> Any:
    return of_run(audit_run(run_id, *FLEET), policy or Policy())


def test_sarif_validates_against_the_official_schema() -> None:
    log = json.loads(render(export(), ExportFormat.SARIF))
    jsonschema.validate(log, SARIF_SCHEMA, cls=jsonschema.Draft4Validator)
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(codes())  # one rule per reason code
    missing = rules[[r["id"] for r in rules].index("category_missing")]
    assert missing["help"]["text"].startswith(describe(LOGIN_MISSING).explanation[:20])
    assert "az monitor diagnostic-settings" in missing["help"]["text"]
    assert "cis-azure:5.4" in missing["properties"]["tags"]
    # One result per finding, pointing at its rule.
    found = [(r["properties"]["registry"], r["properties"]["code"]) for r in run["results"]]
    assert found == [
        ("acrbad001", LOGIN_MISSING),
        ("acrbad001", "metrics_missing"),
        ("acrdark01", "unknown:HTTP 403"),
        ("acrgone01", "removed"),
    ]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    assert run["results"][0]["level"] == "error"  # high severity
    # Which run and which policy.
    assert run["automationDetails"]["id"] == "acr-auditor/run001"
    assert run["properties"]["run"]["id"] == "run001"
    assert run["properties"]["policy"] == policy_document(Policy())


def test_a_sarif_finding_keeps_its_fingerprint_across_runs() -> None:
    def prints(run_id: str) -> list[str]:
        log = json.loads(render(export(run_id), ExportFormat.SARIF))
        return [r["fingerprints"][FINGERPRINT] for r in log["runs"][0]["results"]]

    first, second = prints("run001"), prints("run002")
    assert first == second
    assert len(set(first)) == len(first)  # and each finding its own


def test_sarif_of_no_run_is_valid_and_empty() -> None:
    log = json.loads(render(of_summary(None, Policy(), []), ExportFormat.SARIF))
    jsonschema.validate(log, SARIF_SCHEMA, cls=jsonschema.Draft4Validator)
    assert log["runs"][0]["results"] == []
    assert log["runs"][0]["invocations"] == [{"executionSuccessful": False}]


def test_ocsf_findings_validate_as_compliance_findings() -> None:
    findings = json.loads(render(export(), ExportFormat.OCSF))
    parsed = [ComplianceFinding.model_validate(f) for f in findings]  # raises when invalid
    assert [f.class_uid for f in parsed] == [2003, 2003, 2003]  # removed is not exported
    by_name = {f["resources"][0]["name"]: f for f in findings}
    assert set(by_name) == {"acrgood01", "acrbad001", "acrdark01"}
    bad = by_name["acrbad001"]
    assert bad["compliance"]["status_id"] == 3  # Fail
    assert "cis-azure:5.4" in bad["compliance"]["requirements"]
    assert "CIS Microsoft Azure Foundations Benchmark 2.1.0" in bad["compliance"]["standards"]
    assert [c["uid"] for c in bad["compliance"]["checks"]] == [LOGIN_MISSING, "metrics_missing"]
    assert bad["severity_id"] == 4  # High
    assert by_name["acrgood01"]["compliance"]["status_id"] == 1  # Pass
    assert by_name["acrdark01"]["compliance"]["status_id"] == 2  # Warning: unknown
    assert bad["metadata"]["correlation_uid"] == "run001"
    assert bad["unmapped"]["run"]["id"] == "run001"
    assert bad["unmapped"]["policy"]["fingerprint"] == policy_document(Policy())["fingerprint"]
    again = json.loads(render(export("run002"), ExportFormat.OCSF))
    assert [f["finding_info"]["uid"] for f in again] == [f["finding_info"]["uid"] for f in findings]


def test_csv_has_one_row_per_registry() -> None:
    evidence = {
        registry("acrbad001").key: LogEvidence(
            registry_key=registry("acrbad001").key,
            window_start=T0 - timedelta(days=1),
            window_end=T0,
            workspaces=(
                WorkspaceFreshness(
                    workspace_id="ws",
                    tables=frozenset({"ContainerRegistryLoginEvents"}),
                    per_table=(
                        TableFreshness(
                            "ContainerRegistryLoginEvents", T0 - timedelta(hours=1), 3, 3
                        ),
                    ),
                ),
            ),
        )
    }
    document = of_run(audit_run("run001", *FLEET, evidence=evidence), Policy())
    rows = list(csv.DictReader(io.StringIO(render(document, ExportFormat.CSV))))
    assert [r["registry"] for r in rows] == ["acrbad001", "acrdark01", "acrgone01", "acrgood01"]
    bad = rows[0]
    assert bad["status"] == "noncompliant"
    assert bad["reasons"] == f"{LOGIN_MISSING}; metrics_missing"
    assert bad["controls"] == "cis-azure:5.4; mcsb:LT-3; nist-800-53:AU-2; nist-800-53:AU-12"
    assert rows[3]["controls"] == ""  # compliant
    assert (bad["subscription"], bad["resource group"]) == (SUB, "RG")
    assert bad["last event"] == (T0 - timedelta(hours=1)).isoformat()
    assert bad["checked at"] == (T0 + timedelta(minutes=2)).isoformat()
    assert bad["run"] == "run001"
    assert bad["policy"] == policy_document(Policy())["fingerprint"]
    assert rows[1]["last event"] == ""


def test_csv_cells_never_start_a_formula() -> None:
    record: RegistryRecord = {
        **of_run(audit_run("r", FLEET[0]), Policy())["registries"][0],
        "resourceGroup": "=HYPERLINK(1)",
    }
    rows = list(
        csv.reader(io.StringIO(render(of_summary(None, Policy(), [record]), ExportFormat.CSV)))
    )
    assert rows[1][rows[0].index("resource group")] == "'=HYPERLINK(1)"


def test_json_states_the_run_and_the_policy() -> None:
    document = json.loads(render(export(), ExportFormat.JSON))
    assert document["run"]["id"] == "run001"
    assert document["run"]["status"] == "partial"
    other = Policy(require_metrics=False)
    assert policy_document(other)["fingerprint"] != document["policy"]["fingerprint"]
    assert document["registries"][0]["name"] == "acrbad001"
    cis = next(c for c in document["controls"] if c["id"] == "cis-azure:5.4")
    assert (cis["failing"], cis["passing"], cis["notAssessed"]) == (1, 1, 2)
    assert cis["failingRegistries"] == []  # counts only: names are the API's


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_every_format_ends_with_a_newline(fmt: ExportFormat) -> None:
    assert render(export(), fmt).endswith("\n")


def test_the_cli_offers_every_format() -> None:
    from auditor.cli import EXPORT_FORMATS

    assert EXPORT_FORMATS == tuple(ExportFormat)


def test_an_export_states_the_policy_the_run_judged_against() -> None:
    judged = Policy(required_categories=("ContainerRegistryLoginEvents",))
    run = replace(audit_run("run001", *FLEET), policy=judged)
    document = of_run(run, Policy())  # configured now: the default
    assert document["policy"] == policy_document(judged)
    assert document["policyFromRun"] is True
    stored = summarize(run, generated_at=run.finished_at).to_dict()
    again = of_summary(dict(stored), Policy(), document["registries"])
    assert (again["policy"], again["policyFromRun"]) == (policy_document(judged), True)
    assert again["run"] == document["run"]
    # A summary stored before runs recorded their policy: the configured one, said so.
    older = of_summary({**stored, "policy": None}, Policy(), [])
    assert (older["policy"], older["policyFromRun"]) == (policy_document(Policy()), False)
    sarif = json.loads(render(document, ExportFormat.SARIF))["runs"][0]["properties"]
    assert (sarif["policy"], sarif["policyFromRun"]) == (policy_document(judged), True)


def test_an_exempt_registry_is_suppressed_in_sarif_and_ocsf_and_counted_apart() -> None:
    waived = Verdict(
        registry("acrwaived"),
        Status.EXEMPT,
        (
            Reason("exempted:noncompliant", "Waiver until 2030-01-31 (tag): 'legacy'"),
            Reason(LOGIN_MISSING, "why"),
        ),
    )
    document = of_run(audit_run("run001", *FLEET, waived), Policy())
    log = json.loads(render(document, ExportFormat.SARIF))
    jsonschema.validate(log, SARIF_SCHEMA, cls=jsonschema.Draft4Validator)
    results = [r for r in log["runs"][0]["results"] if r["properties"]["registry"] == "acrwaived"]
    # Its finding is kept, suppressed by the exemption; the exemption itself is no finding.
    assert [r["properties"]["code"] for r in results] == [LOGIN_MISSING]
    assert results[0]["suppressions"] == [
        {
            "kind": "external",
            "status": "accepted",
            "justification": "Waiver until 2030-01-31 (tag): 'legacy'",
            "properties": {"code": "exempted:noncompliant"},
        }
    ]
    others = [r for r in log["runs"][0]["results"] if r["properties"]["registry"] != "acrwaived"]
    assert not any("suppressions" in r for r in others)

    findings = {
        f["resources"][0]["name"]: f for f in json.loads(render(document, ExportFormat.OCSF))
    }
    ComplianceFinding.model_validate(findings["acrwaived"])
    finding = findings["acrwaived"]
    assert (finding["status"], finding["status_id"]) == ("exempt", 3)  # Suppressed
    assert finding["status_detail"] == "Waiver until 2030-01-31 (tag): 'legacy'"
    assert finding["compliance"]["status_id"] == 3  # Fail: what it would otherwise be
    assert [c["uid"] for c in finding["compliance"]["checks"]] == [LOGIN_MISSING]
    assert "status_id" not in findings["acrbad001"]

    rows = list(csv.DictReader(io.StringIO(render(document, ExportFormat.CSV))))
    assert [r["status"] for r in rows if r["registry"] == "acrwaived"] == ["exempt"]
    cis = next(c for c in document["controls"] if c["id"] == "cis-azure:5.4")
    assert (cis["failing"], cis["passing"], cis["notAssessed"], cis["exempt"]) == (1, 1, 2, 1)


def test_a_pending_registry_passes_in_every_format() -> None:
    # Remediated by the auditor, its first events awaited: it meets the policy.
    fixed = verdict("acrfixed1", Status.PENDING, "pending")
    document = of_run(audit_run("run001", *FLEET, fixed), Policy())
    findings = {
        f["resources"][0]["name"]: f for f in json.loads(render(document, ExportFormat.OCSF))
    }
    finding = findings["acrfixed1"]
    ComplianceFinding.model_validate(finding)
    assert (finding["status"], finding["compliance"]["status_id"]) == ("pending", 1)  # Pass
    good = findings["acrgood01"]["compliance"]["requirements"]
    assert finding["compliance"]["requirements"] == good  # every mapped control
    log = json.loads(render(document, ExportFormat.SARIF))
    jsonschema.validate(log, SARIF_SCHEMA, cls=jsonschema.Draft4Validator)
    results = [r for r in log["runs"][0]["results"] if r["properties"]["registry"] == "acrfixed1"]
    assert [(r["ruleId"], r["level"], r["properties"]["status"]) for r in results] == [
        ("pending", "note", "pending")
    ]
    rows = list(csv.DictReader(io.StringIO(render(document, ExportFormat.CSV))))
    assert [(r["status"], r["controls"]) for r in rows if r["registry"] == "acrfixed1"] == [
        ("pending", "")
    ]
