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


class ObservationCount(BaseModel):
    code: str
    count: int


class LogCounts(BaseModel):
    """Registry counts of the last run's log check (auditor.summary, `logs`)."""

    checked: int = Field(description="registries whose logs were checked")
    silent: int = Field(description="registries with `logs_silent`")
    pending: int = Field(description="registries with `pending`: too new to expect events")
    unknown: int = Field(description="registries with a `logs_unreadable:*` reason")
    interrupted: int = Field(description="registries with `logging_interrupted`")
    loginAlerts: int = Field(
        description="registries with a login observation: failure burst, anonymous pull, "
        "admin-user login or new login source"
    )
    byObservation: list[ObservationCount] = Field(description="registries per observation")
    logQueries: int = Field(description="Log Analytics queries the run sent")


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
    logs: LogCounts | None = Field(
        default=None, description="null only for a summary stored before logs were checked"
    )
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
    status: str | None = Field(
        description="running, succeeded, partial or failed; abandoned: still running a day "
        "after it started (its process stopped)"
    )
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


class Window(BaseModel):
    start: str
    end: str


class TableFreshness(BaseModel):
    table: str
    lastEvent: str | None
    events: int = Field(description="events in the window")
    previousEvents: int = Field(description="events in the window of the same length before")


class WorkspaceFreshness(BaseModel):
    workspaceId: str
    lastEvent: str | None
    events: int
    unknown: str | None = Field(description="why arrival could not be checked, if it was not")
    partial: bool
    tables: list[TableFreshness]


class EvidenceEntry(BaseModel):
    runId: str | None
    observedAt: str | None = Field(description="when the run finished")
    window: Window = Field(description="the time range the logs were read for")
    lastEvent: str | None = Field(description="newest event seen in any workspace")
    workspaces: list[WorkspaceFreshness]
    observations: list[ReasonItem]
    problems: list[str] = Field(description="queries that failed, came back partial or capped")
    omitted: dict[str, int] = Field(
        description="per list, entries left out to fit storage (busiest or newest kept)"
    )


class LoginItem(BaseModel):
    identity: str
    callerIp: str
    attempts: int
    failures: int
    firstSeen: str | None
    lastSeen: str | None


class LoginTotals(BaseModel):
    key: str = Field(description="the identity or caller IP")
    attempts: int
    failures: int


class FailureBurst(BaseModel):
    kind: str = Field(description="ip or identity")
    key: str
    failures: int = Field(description="the most failures within the burst window")
    start: str | None
    end: str | None
    totalFailures: int


class FirstSeen(BaseModel):
    kind: str = Field(description="ip or identity")
    value: str
    firstSeen: str | None
    attempts: int
    failures: int


class AnonymousPull(BaseModel):
    repository: str
    count: int
    failures: int
    callerIps: list[str]
    firstSeen: str | None
    lastSeen: str | None


class LoginEntry(EvidenceEntry):
    attempts: int
    failures: int
    logins: list[LoginItem] = Field(description="per identity and caller IP, busiest first")
    byIdentity: list[LoginTotals]
    byIp: list[LoginTotals]
    bursts: list[FailureBurst]
    firstSeen: list[FirstSeen] = Field(description="not seen in the previous window")
    adminLogins: list[LoginItem]
    anonymousPulls: list[AnonymousPull]


class LoginPage(BaseModel):
    items: list[LoginEntry] = Field(description="one entry per run, newest first")
    continuation: str | None


class TrailCount(BaseModel):
    operation: str = Field(description="push, pull, delete, untag, purge or other")
    operationName: str
    identity: str
    repository: str
    count: int
    failures: int
    callerIps: list[str]
    firstSeen: str | None
    lastSeen: str | None


class Deletion(BaseModel):
    at: str | None
    operation: str
    operationName: str
    identity: str
    callerIp: str
    repository: str
    tag: str
    digest: str
    result: str


class ActivityLogEvent(BaseModel):
    at: str | None
    kind: str = Field(description="setting_write, setting_delete, registry_write, ...")
    operation: str
    resourceId: str
    settingName: str | None
    caller: str
    callerIp: str
    status: str


class ActivityEntry(EvidenceEntry):
    operations: dict[str, int] = Field(description="events per operation kind")
    trail: list[TrailCount] = Field(description="per operation, identity and repository")
    deletions: list[Deletion] = Field(description="every delete, untag and purge, newest first")
    activityLog: list[ActivityLogEvent] = Field(description="newest first")


class ActivityPage(BaseModel):
    items: list[ActivityEntry] = Field(description="one entry per run, newest first")
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
