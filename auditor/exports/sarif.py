"""SARIF 2.1.0 (GitHub code scanning, Azure DevOps): one rule per reason code of the catalog,
with its explanation, fix, docs and controls; one result per finding (a registry's reason).

A result's location is the registry's ARM id, relative to `AZURE_RESOURCE_MANAGER`
(`https://management.azure.com/`), and its logical location the same id; its fingerprint
`acrAuditor/v1` is the SHA-256 of the registry id (lower case) and the full reason code, so
a finding keeps its identity from run to run. The run and the policy are in the run's
`automationDetails` and `properties`. An exempt registry's results carry a suppression
(kind `external`, status `accepted`, the exemption as justification), as SARIF records a
finding accepted outside the tool. Tests validate the document against the official schema
(`docs/reference/sarif-schema-2.1.0.json`).
"""

from __future__ import annotations

from typing import Any

from auditor.exemptions import otherwise
from auditor.exports.document import TOOL, ExportDocument, fingerprint, registry_identity
from auditor.facts import Status
from auditor.reasons import catalog
from auditor.reasons.catalog import ReasonInfo, Severity
from auditor.summary import ReasonItem, RegistryRecord

SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
VERSION = "2.1.0"
FINGERPRINT = "acrAuditor/v1"
BASE_URI_ID = "AZURE_RESOURCE_MANAGER"
LEVELS = {Severity.HIGH: "error", Severity.MEDIUM: "warning", Severity.LOW: "note"}
# GitHub code scanning ranks security results by this property (0.0-10.0).
SECURITY_SEVERITY = {Severity.HIGH: "8.0", Severity.MEDIUM: "5.0", Severity.LOW: "3.0"}


def _level(severity: Severity) -> str:
    return LEVELS.get(severity, "note")


def _describe(code: str) -> ReasonInfo:
    """A parameterised code's rule describes the code with its parameter named."""
    if catalog.is_parameterised(code):
        return catalog.describe(f"{code}{catalog.SEPARATOR}<parameter>")
    return catalog.describe(code)


def _help(info: ReasonInfo) -> dict[str, str]:
    fix = f"\n\nFix: {info.remediation}" if info.remediation else ""
    markdown_fix = f"\n\n**Fix**\n\n```\n{info.remediation}\n```" if info.remediation else ""
    docs = f"\n\n[Documentation]({info.docs_url})"
    return {
        "text": f"{info.explanation}{fix}\n\nDocumentation: {info.docs_url}",
        "markdown": f"{info.explanation}{markdown_fix}{docs}",
    }


def _rule(code: str) -> dict[str, Any]:
    info = _describe(code)
    return {
        "id": code,
        "name": "".join(part.title() for part in code.split("_")),
        "shortDescription": {"text": info.title},
        "fullDescription": {"text": info.explanation},
        "help": _help(info),
        "helpUri": info.docs_url,
        "defaultConfiguration": {"level": _level(info.severity)},
        "properties": {
            "tags": ["security", "logging", *(c.id for c in info.controls)],
            "security-severity": SECURITY_SEVERITY.get(info.severity, "0.0"),
            "controls": [c.to_dict() for c in info.controls],
        },
    }


def _result(record: RegistryRecord, item: ReasonItem, index: dict[str, int]) -> dict[str, Any]:
    code = item["code"]
    base = code.partition(catalog.SEPARATOR)[0]
    identity = registry_identity(record)
    try:
        level = _level(catalog.describe(code).severity)
    except KeyError:  # a code from another catalog version: still reported
        level = "warning"
    result: dict[str, Any] = {
        "ruleId": base,
        "level": level,
        "message": {"text": f"{record['name']}: {item['detail']}"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": identity.lstrip("/"), "uriBaseId": BASE_URI_ID}
                },
                "logicalLocations": [
                    {"fullyQualifiedName": record["id"], "name": record["name"], "kind": "resource"}
                ],
            }
        ],
        "fingerprints": {FINGERPRINT: fingerprint(identity, code)},
        "properties": {
            "code": code,
            "registry": record["name"],
            "subscriptionId": record["subscriptionId"],
            "resourceGroup": record["resourceGroup"],
            "status": record["status"],
            "checkedAt": record["checkedAt"],
            "runId": record["lastRunId"],
        },
    }
    if base in index:
        result["ruleIndex"] = index[base]
    return result


def _exemption(record: RegistryRecord) -> ReasonItem | None:
    """The `exempted:<status>` reason of an exempt registry."""
    return next((i for i in record["reasons"] if otherwise(i["code"]) is not None), None)


def _results(record: RegistryRecord, index: dict[str, int]) -> list[dict[str, Any]]:
    """A registry's findings; an exempt one's are suppressed (SARIF's way: kind `external`,
    accepted, justified by the exemption), and the exemption itself is no finding."""
    exemption = _exemption(record) if record["status"] == Status.EXEMPT else None
    results = [_result(record, item, index) for item in record["reasons"] if item is not exemption]
    if exemption is not None:
        suppression = {
            "kind": "external",
            "status": "accepted",
            "justification": exemption["detail"],
            "properties": {"code": exemption["code"]},
        }
        for result in results:
            result["suppressions"] = [suppression]
    return results


def sarif_log(document: ExportDocument) -> dict[str, Any]:
    codes = catalog.codes()
    index = {code: i for i, code in enumerate(codes)}
    run = document["run"]
    invocation: dict[str, Any] = {
        "executionSuccessful": run is not None and run["status"] != "failed"
    }
    if run is not None:
        invocation.update(startTimeUtc=run["startedAt"], endTimeUtc=run["finishedAt"])
    results = [result for record in document["registries"] for result in _results(record, index)]
    return {
        "$schema": SCHEMA_URI,
        "version": VERSION,
        "runs": [
            {
                "tool": {"driver": {"name": TOOL, "rules": [_rule(code) for code in codes]}},
                "automationDetails": {
                    "id": f"{TOOL}/{run['id'] if run is not None else 'none'}",
                    "description": {"text": "Azure Container Registry resource logging audit"},
                },
                "originalUriBaseIds": {BASE_URI_ID: {"uri": "https://management.azure.com/"}},
                "invocations": [invocation],
                "results": results,
                "properties": {
                    "run": run,
                    "policy": document["policy"],
                    "policyFromRun": document["policyFromRun"],
                },
            }
        ],
    }
