"""What every export is built from: one run, the policy, and the registries as the store
serves them (`RegistryRecord`). `export --format json` and `GET /api/export?format=json`
print it as it is; SARIF, OCSF and CSV are built from it.

Three sources make the same document: a run just finished (`of_run`, for `audit --format`),
the store (`of_summary`: the stored summary's `lastRun` and `policy`, and every stored
registry, for `export` and the API) and the stored history at an instant (`of_history`, for
`export --at`). The policy is the one the run judged against, as the
run recorded it; a summary stored before runs recorded their policy has none, and then the
export states the policy configured where it is made, with `policyFromRun` false.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import Field
from typing_extensions import TypedDict

from auditor.control_summary import ControlStatus, control_summary
from auditor.policy import Policy, PolicyDocument, policy_document
from auditor.run_record import AuditRun
from auditor.summary import LastRun, RegistryRecord, RunInfo, iso, registry_document

SCHEMA_VERSION = 1
TOOL = "acr-auditor"


class ExportDocument(TypedDict):
    """A run's verdicts with the run and the policy they reflect."""

    schemaVersion: Annotated[int, Field(description="1")]
    run: Annotated[LastRun | None, Field(description="null before the first run has finished")]
    policy: PolicyDocument
    policyFromRun: Annotated[
        bool,
        Field(
            description="true: the policy the run recorded; false: the run recorded none "
            "(stored by an older version), so this is the policy configured at export"
        ),
    ]
    registries: Annotated[list[RegistryRecord], Field(description="in name order")]
    controls: Annotated[
        list[ControlStatus],
        Field(
            description="per mapped control, how many of these registries fail and pass it "
            "(the names: `GET /api/controls`)"
        ),
    ]


def of_run(run: AuditRun, policy: Policy) -> ExportDocument:
    """A run as the CLI's audit returns it: every registry checked at the run's finish."""
    records: list[RegistryRecord] = []
    for verdict in run.verdicts:
        evidence = run.evidence.get(verdict.registry.key)
        last_event = evidence.last_event if evidence is not None else None
        records.append(
            {
                **registry_document(verdict),
                "lastRunId": run.run_id,
                "checkedAt": iso(run.finished_at),
                "statusSince": None,  # known to the store, not to one run
                "lastEvent": iso(last_event) if last_event is not None else None,
            }
        )
    recorded = run.policy is not None
    return _document(
        RunInfo.of(run).to_dict(), policy_document(run.policy or policy), recorded, records
    )


def of_summary(
    summary: Mapping[str, Any] | None, configured: Policy, registries: Iterable[RegistryRecord]
) -> ExportDocument:
    """The stored last run: `summary` as `AuditReader.get_summary` returns it (None before
    the first run)."""
    summary = summary or {}
    recorded: PolicyDocument | None = summary.get("policy")
    return _document(
        summary.get("lastRun"),
        recorded if recorded is not None else policy_document(configured),
        recorded is not None,
        registries,
    )


def of_history(
    run: LastRun | None, configured: Policy, registries: Iterable[RegistryRecord]
) -> ExportDocument:
    """The fleet at an instant, from the stored history (`export --at`): `run` the newest
    finished by then. History does not record a run's policy, so the export states the one
    configured where it is made (`policyFromRun` false)."""
    return _document(run, policy_document(configured), False, registries)


def _document(
    run: LastRun | None,
    policy: PolicyDocument,
    from_run: bool,
    registries: Iterable[RegistryRecord],
) -> ExportDocument:
    ordered = sorted(registries, key=lambda r: (r["name"].casefold(), r["id"]))
    return {
        "schemaVersion": SCHEMA_VERSION,
        "run": run,
        "policy": policy,
        "policyFromRun": from_run,
        "registries": ordered,
        "controls": control_summary(ordered, limit=0)["controls"],
    }


def fingerprint(*parts: str) -> str:
    """A finding's identity across runs: SHA-256 of its parts (a registry id in lower case,
    as ARM ids compare, and a reason code)."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def registry_identity(record: RegistryRecord) -> str:
    return record["id"].strip().lower()
