"""Response schemas: they document the JSON in /api/openapi.json and check it on the way out.

Field names are the JSON keys, camelCase by contract; the documents themselves are built by
`auditor.summary` and `auditor.storage`, and the tests hold the two together.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from auditor.facts import Status


class Totals(BaseModel):
    total: int
    compliant: int
    noncompliant: int
    unknown: int
    removed: int


class LastRun(BaseModel):
    id: str
    startedAt: str
    finishedAt: str
    status: str
    trigger: str
    errorCount: int


class SubscriptionTotals(Totals):
    subscriptionId: str
    compliancePercent: float | None


class ReasonCount(BaseModel):
    code: str
    count: int


class Omitted(BaseModel):
    subscriptions: int
    reasons: int


class Compliance(BaseModel):
    schemaVersion: int
    generatedAt: str
    lastRun: LastRun | None = Field(description="null until the first run has finished")
    totals: Totals
    compliancePercent: float | None = Field(
        description="compliant / (compliant + noncompliant) x 100, rounded down to one decimal"
    )
    bySubscription: list[SubscriptionTotals]
    byReason: list[ReasonCount] = Field(description="registries per reason code, most first")
    omitted: Omitted
    dataAgeSeconds: int | None = Field(
        description="seconds since the summarised run finished, at the time of the request"
    )


class ReasonItem(BaseModel):
    code: str
    detail: str


class Registry(BaseModel):
    id: str
    name: str
    subscriptionId: str
    resourceGroup: str
    location: str
    status: Status
    reasons: list[ReasonItem]
    lastRunId: str | None
    checkedAt: str | None
    statusSince: str | None = Field(description="since when the status and reasons are as now")


class RegistryPage(BaseModel):
    items: list[Registry]
    continuation: str | None = Field(description="pass as ?continuation= for the next page")


class Finding(BaseModel):
    code: str
    detail: str
    title: str
    severity: str | None
    explanation: str | None
    remediation: str | None
    docsUrl: str | None


class HistoryEntry(BaseModel):
    runId: str | None
    observedAt: str | None
    subscriptionId: str | None
    status: str | None
    previousStatus: str | None
    reasons: list[ReasonItem]


class RegistryDetail(Registry):
    findings: list[Finding] = Field(description="the reasons with their catalog metadata")
    history: list[HistoryEntry] = Field(description="changes of status or reasons, newest first")


class Run(BaseModel):
    id: str | None
    status: str | None = Field(description="running, succeeded, partial or failed")
    trigger: str | None
    startedAt: str | None
    finishedAt: str | None
    totals: Totals | None
    errorCount: int
    errors: list[str]
    errorsOmitted: int = Field(description="errors counted but too long to keep")


class RunPage(BaseModel):
    items: list[Run]
    continuation: str | None


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
