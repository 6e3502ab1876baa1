"""Response schemas: they document the JSON in /api/openapi.json and check it on the way out.

The documents themselves are defined once in the core, as the `TypedDict`s their builders
return: the compliance summary and registries in `auditor.summary`, the evidence per run in
`auditor.evidence.documents`. Pydantic reads those classes as they are (field descriptions
included), so this module only adds what is the API's own: pages, the request-time
`dataAgeSeconds`, the catalog's findings, the alerts listing, health and problems.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from auditor.evidence.documents import ActivityEntry, LoginEntry
from auditor.reasons.controls import ControlDocument
from auditor.summary import ComplianceDocument, HistoryEntry, RegistryRecord, Run


class Compliance(ComplianceDocument):
    dataAgeSeconds: Annotated[
        int | None,
        Field(description="seconds since the summarised run finished, at the time of the request"),
    ]


class RegistryPage(BaseModel):
    items: list[RegistryRecord]
    continuation: str | None = Field(description="pass as ?continuation= for the next page")


class Finding(TypedDict):
    code: str
    detail: str
    title: str
    severity: str | None
    explanation: str | None
    remediation: str | None
    docsUrl: str | None
    controls: Annotated[
        list[ControlDocument], Field(description="the controls the reason violates, and sources")
    ]


class RegistryDetail(RegistryRecord):
    findings: Annotated[list[Finding], Field(description="the reasons with their catalog metadata")]
    history: Annotated[
        list[HistoryEntry], Field(description="changes of status or reasons, newest first")
    ]


class RunPage(BaseModel):
    items: list[Run]
    continuation: str | None


class LoginPage(BaseModel):
    items: list[LoginEntry] = Field(
        description="newest first: one entry per run whose evidence differed from the one "
        "before (its window aside), and at least one every 12 hours"
    )
    continuation: str | None


class ActivityPage(BaseModel):
    items: list[ActivityEntry] = Field(
        description="newest first: one entry per run whose evidence differed from the one "
        "before (its window aside), and at least one every 12 hours"
    )
    continuation: str | None


class AlertRegistry(BaseModel):
    id: str | None
    name: str | None
    subscriptionId: str | None
    resourceGroup: str | None


class OpenAlert(BaseModel):
    key: str
    topic: str
    incidentId: str | None
    registry: AlertRegistry
    status: str | None
    reasonCodes: list[str]
    openedAt: str | None
    lastNotifiedAt: str | None
    notices: int


class AlertNotice(BaseModel):
    id: str | None
    incidentId: str | None
    kind: str | None
    topic: str | None
    change: str | None
    summary: str | None
    severity: str | None
    registry: AlertRegistry
    status: str | None
    reasonCodes: list[str]
    detectedAt: str | None
    runId: str | None
    deliveries: dict[str, str] = Field(description="outcome per sink name")


class UndeliveredAlert(BaseModel):
    alertId: str | None
    sink: str
    summary: str | None
    attempts: int
    lastError: str | None = Field(description="redacted: never a URL or a secret")
    nextAttemptAt: str | None
    createdAt: str | None


class Alerts(BaseModel):
    sinks: list[str] = Field(description="configured sinks, by name only")
    open: list[OpenAlert]
    history: list[AlertNotice] = Field(description="notices, newest first")
    undelivered: list[UndeliveredAlert]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    storage: Literal["ok", "unavailable"]


class InvalidParam(BaseModel):
    name: str
    # `in` is a Python keyword: the attribute is aliased.
    location: str = Field(alias="in")
    reason: str


class Problem(BaseModel):
    """RFC 7807 problem details."""

    type: str
    title: str
    status: int
    detail: str
    invalidParams: list[InvalidParam] | None = None
