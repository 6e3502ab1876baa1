"""OCSF Compliance Finding (class 2003) for Sentinel, Security Lake and other SIEMs: one
finding per registry, built with `py-ocsf-models` (as Prowler builds its OCSF output), so
the models validate every field as it is set.

`compliance.status_id` is Pass (compliant, or pending: remediated, its first events awaited),
Fail (noncompliant) or Warning (unknown: the auditor lacked information); a removed registry
is not exported. An exempt registry keeps the
compliance status it would otherwise have, and the finding is `status_id` Suppressed with the
exemption as `status_detail`. `compliance.requirements`
are the controls the registry's reasons violate (every mapped control when it passes), one
`checks` entry per reason. `finding_info.uid` is the SHA-256 of the registry id, so a SIEM
follows one registry across runs; `metadata.correlation_uid` is the run, and `unmapped`
holds the run and the policy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from py_ocsf_models.events.findings.activity_id import ActivityID
from py_ocsf_models.events.findings.compliance_finding import ComplianceFinding
from py_ocsf_models.events.findings.compliance_finding_type_id import ComplianceFindingTypeID
from py_ocsf_models.events.findings.severity_id import SeverityID
from py_ocsf_models.events.findings.status_id import StatusID as FindingStatusID
from py_ocsf_models.objects.check import Check
from py_ocsf_models.objects.compliance import Compliance
from py_ocsf_models.objects.compliance_status import StatusID
from py_ocsf_models.objects.finding_info import FindingInformation
from py_ocsf_models.objects.group import Group
from py_ocsf_models.objects.metadata import Metadata
from py_ocsf_models.objects.product import Product
from py_ocsf_models.objects.remediation import Remediation
from py_ocsf_models.objects.resource_details import ResourceDetails

from auditor.exemptions import otherwise
from auditor.exports.document import TOOL, ExportDocument, fingerprint, registry_identity
from auditor.facts import PASSING, Status
from auditor.reasons import catalog
from auditor.reasons.catalog import ReasonInfo, Severity
from auditor.summary import ReasonItem, RegistryRecord

RESOURCE_TYPE = "Microsoft.ContainerRegistry/registries"
_STATUS = {
    **dict.fromkeys(PASSING, StatusID.Pass),
    Status.NONCOMPLIANT: StatusID.Fail,
    Status.UNKNOWN: StatusID.Warning,
}
_SEVERITY = {
    Severity.HIGH: SeverityID.High,
    Severity.MEDIUM: SeverityID.Medium,
    Severity.LOW: SeverityID.Low,
    Severity.INFO: SeverityID.Informational,
}


def _info(code: str) -> ReasonInfo | None:
    try:
        return catalog.describe(code)
    except KeyError:  # a code from another catalog version: exported without metadata
        return None


def _check(item: ReasonItem) -> Check:
    info = _info(item["code"])
    return Check(
        uid=item["code"],
        name=info.title if info is not None else item["code"],
        desc=item["detail"],
        severity=info.severity.value if info is not None else None,
        severity_id=_SEVERITY[info.severity] if info is not None else SeverityID.Unknown,
        status="Fail",
        status_id=StatusID.Fail,
    )


def _severity(infos: list[ReasonInfo]) -> SeverityID:
    ranks = [_SEVERITY[info.severity] for info in infos]
    return max(ranks, default=SeverityID.Informational)


def _time(record: RegistryRecord) -> tuple[int, datetime | None]:
    if record["checkedAt"] is None:
        return 0, None
    moment = datetime.fromisoformat(record["checkedAt"])
    return int(moment.timestamp() * 1000), moment


def _exemption(record: RegistryRecord) -> tuple[Status, ReasonItem | None]:
    """The status the registry is judged to have, and for an exempt one its exemption
    (`exempted:<the status it would otherwise have>`)."""
    status = Status(record["status"])
    if status is not Status.EXEMPT:
        return status, None
    for item in record["reasons"]:
        if (judged := otherwise(item["code"])) is not None:
            return judged, item
    return Status.UNKNOWN, None  # no `exempted:` reason: nothing says how it was judged


def _finding(record: RegistryRecord, document: ExportDocument) -> ComplianceFinding:
    status = Status(record["status"])
    judged, exemption = _exemption(record)
    reasons = [item for item in record["reasons"] if item is not exemption]
    infos = [i for item in reasons if (i := _info(item["code"])) is not None]
    # A registry that passes meets every mapped control; one that does not, fails these.
    controls = (
        catalog.CONTROLS.controls
        if judged in PASSING
        else catalog.violated_controls(item["code"] for item in reasons)
    )
    millis, moment = _time(record)
    identity = registry_identity(record)
    fixes = [i.remediation for i in infos if i.remediation]
    return ComplianceFinding(
        activity_id=ActivityID.Create,
        activity_name=ActivityID.Create.name,
        type_uid=ComplianceFindingTypeID.Create,
        type_name=f"Compliance Finding: {ActivityID.Create.name}",
        severity_id=_severity(infos),
        severity=_severity(infos).name,
        status=status.value,
        # An exemption suppresses the finding (OCSF: reviewed and accepted); the compliance
        # status stays what the registry was judged to be.
        status_id=FindingStatusID.Suppressed if exemption is not None else None,
        status_detail=exemption["detail"] if exemption is not None else None,
        message=f"{record['name']} is {status.value}",
        time=millis,
        time_dt=moment,
        metadata=Metadata(
            product=Product(name=TOOL, vendor_name=TOOL),
            event_code="acr_resource_logging",
            correlation_uid=record["lastRunId"],
            uid=fingerprint(identity, record["lastRunId"] or ""),
        ),
        finding_info=FindingInformation(
            uid=fingerprint(identity),
            title=f"Resource logging of container registry {record['name']}",
            desc="; ".join(item["detail"] for item in reasons) or judged.value,
            types=["Resource logging"],
        ),
        compliance=Compliance(
            status_id=_STATUS[judged],
            requirements=[c.id for c in controls],
            standards=sorted({f"{c.document} {c.version}" for c in controls}),
            checks=[_check(item) for item in reasons],
            desc="Diagnostic settings send the registry's resource logs to an accepted "
            "destination, and its events arrive there",
        ),
        remediation=Remediation(
            desc="\n".join(fixes) or "none needed",
            references=sorted({i.docs_url for i in infos}) or None,
        ),
        resources=[
            ResourceDetails(
                uid=record["id"],
                name=record["name"],
                type=RESOURCE_TYPE,
                region=record["location"],
                group=Group(name=record["resourceGroup"]),
                data={
                    "subscriptionId": record["subscriptionId"],
                    "resourceGroup": record["resourceGroup"],
                    "lastEvent": record["lastEvent"],
                    "statusSince": record["statusSince"],
                },
            )
        ],
        unmapped={
            "run": document["run"],
            "policy": document["policy"],
            "policyFromRun": document["policyFromRun"],
        },
    )


def ocsf_findings(document: ExportDocument) -> list[dict[str, Any]]:
    """The findings as JSON-ready dicts (the models' `mode="json"` dump, without nulls)."""
    return [
        _finding(record, document).model_dump(mode="json", exclude_none=True)
        for record in document["registries"]
        if Status(record["status"]) is not Status.REMOVED
    ]
