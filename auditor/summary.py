"""Compliance summaries and the registry JSON shape: pure functions over an `AuditRun`.

Each document is defined once here as a `TypedDict`, its keys described where they are
declared: `ComplianceDocument` (`ComplianceSummary.to_dict()`, schema version 1, served by
`GET /api/compliance`), `RegistryDocument` (the CLI's and the API's registry) and what the
store serves back about registries and runs. mypy checks the builders against them, and the
API serves them as its response schemas (`auditor.api.models` refers to these classes).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, NotRequired

from pydantic import Field
from typing_extensions import TypedDict

from auditor.facts import PASSING, Status, Verdict
from auditor.policy import PolicyDocument, policy_document
from auditor.reasons import catalog
from auditor.run_record import AuditRun

SCHEMA_VERSION = 1

# Observations about who logs in (as opposed to what they did): a registry with any of these
# counts as a login alert.
LOGIN_OBSERVATIONS = frozenset(
    {
        catalog.LOGIN_FAILURE_BURST,
        catalog.ANONYMOUS_PULL,
        catalog.ADMIN_USER_LOGIN,
        catalog.NEW_LOGIN_SOURCE,
    }
)

# The documents: plain dicts at run time, so building one costs what a dict costs. Their
# docstrings and field descriptions are the OpenAPI schema's. `typing_extensions.TypedDict`:
# Pydantic reads the standard one only from Python 3.12 on.


class ReasonItem(TypedDict):
    code: str
    detail: str


class Totals(TypedDict):
    total: Annotated[int, Field(description="the sum of the other counts")]
    compliant: int
    noncompliant: int
    unknown: int
    removed: Annotated[
        int,
        Field(description="registries gone since the run before (earlier removals not repeated)"),
    ]
    # Absent from a summary stored before exemptions; read back as 0.
    exempt: NotRequired[
        Annotated[
            int,
            Field(
                default=0,
                description="registries excused by an exemption in force (docs/exemptions.md): "
                "neither compliant nor noncompliant",
            ),
        ]
    ]
    # Absent from a summary stored before the `pending` status; read back as 0.
    pending: NotRequired[
        Annotated[
            int,
            Field(
                default=0,
                description="registries the auditor remediated whose first events have not "
                "arrived yet: counted as compliant in `compliancePercent`",
            ),
        ]
    ]


class SubscriptionTotals(Totals):
    subscriptionId: Annotated[str, Field(description="lower case")]
    compliancePercent: float | None


class LastRun(TypedDict):
    id: str
    startedAt: str
    finishedAt: str
    status: str
    trigger: str
    errorCount: int


class ReasonCount(TypedDict):
    code: str
    count: int


class Omitted(TypedDict):
    """Entries left out of `bySubscription` and `byReason` to fit the store's size limit
    (0 normally); the totals always cover everything."""

    subscriptions: int
    reasons: int


class ObservationCount(TypedDict):
    code: str
    count: int


class LogCounts(TypedDict):
    """Registry counts of the last run's log check; all 0 when logs were not checked."""

    checked: Annotated[int, Field(description="registries whose logs were checked")]
    silent: Annotated[int, Field(description="registries with `logs_silent`")]
    pending: Annotated[
        int, Field(description="registries with `pending`: too new to expect events")
    ]
    unknown: Annotated[int, Field(description="registries with a `logs_unreadable:*` reason")]
    interrupted: Annotated[int, Field(description="registries with `logging_interrupted`")]
    loginAlerts: Annotated[
        int,
        Field(
            description="registries with a login observation: failure burst, anonymous pull, "
            "admin-user login or new login source"
        ),
    ]
    byObservation: Annotated[
        list[ObservationCount],
        Field(
            description="registries per observation code (`artifact_deleted` included), "
            "most first, then by code"
        ),
    ]
    logQueries: Annotated[int, Field(description="Log Analytics queries the run sent")]


class ComplianceDocument(TypedDict):
    """The compliance summary of a run, as stored (the API adds `dataAgeSeconds`)."""

    schemaVersion: Annotated[int, Field(description="1")]
    generatedAt: Annotated[
        str, Field(description="the time the summary describes: its run's finish (ISO 8601)")
    ]
    lastRun: Annotated[
        LastRun | None,
        Field(description="the run summarised; null until the first run has finished"),
    ]
    totals: Totals
    compliancePercent: Annotated[
        float | None,
        Field(
            description="compliant / (compliant + noncompliant) x 100, rounded down to one "
            "decimal (100.0 only when every judged registry is compliant), pending registries "
            "counted as compliant; unknown, removed and exempt registries are left out; null "
            "when none was judged"
        ),
    ]
    bySubscription: Annotated[
        list[SubscriptionTotals], Field(description="by subscription id (lower case)")
    ]
    byReason: Annotated[
        list[ReasonCount],
        Field(
            description="registries per reason code, codes as they are "
            "(`category_missing:ContainerRegistryLoginEvents` is its own entry), most first, "
            "then by code"
        ),
    ]
    omitted: Omitted
    # Absent from a summary stored before runs kept their policy; read back as null.
    policy: NotRequired[
        Annotated[
            PolicyDocument | None,
            Field(
                default=None,
                description="the policy the run judged against; null for a summary stored "
                "before runs kept it",
            ),
        ]
    ]
    # Absent from a summary stored before logs were checked; read back as null.
    logs: NotRequired[
        Annotated[
            LogCounts | None,
            Field(
                default=None, description="null only for a summary stored before logs were checked"
            ),
        ]
    ]


class RegistryDocument(TypedDict):
    """A registry and its verdict: the CLI's JSON and the base of the API's registries."""

    id: str
    name: str
    subscriptionId: str
    resourceGroup: str
    location: str
    status: Status
    reasons: list[ReasonItem]


# What the store serves back (`auditor.storage.entities`: `registry_doc`, `history_doc`,
# `run_doc`).


class RegistryRecord(RegistryDocument):
    """A registry as last checked: its verdict, by which run and when."""

    lastRunId: Annotated[str | None, Field(description="the run that last wrote this record")]
    checkedAt: Annotated[
        str | None,
        Field(
            description="when a run last read the registry's settings or found its verdict "
            "changed; a change-driven run leaves an unchanged registry's record as it was "
            "(the activity log showed no change)"
        ),
    ]
    statusSince: Annotated[
        str | None, Field(description="since when the status and reasons are as now")
    ]
    lastEvent: Annotated[
        str | None,
        Field(
            description="the newest log event of the registry in any workspace when it was "
            "last checked; null when its logs were not checked or showed none"
        ),
    ]


class HistoryEntry(TypedDict):
    """A change of a registry's status or reasons."""

    runId: str | None
    observedAt: str | None
    subscriptionId: str | None
    status: str | None
    previousStatus: str | None
    reasons: list[ReasonItem]


class Run(TypedDict):
    """An audit run: its status, totals and errors."""

    id: str | None
    status: Annotated[
        str | None,
        Field(
            description="running, succeeded, partial or failed; abandoned: still running a day "
            "after it started (its process stopped)"
        ),
    ]
    trigger: str | None
    startedAt: str | None
    finishedAt: str | None
    totals: Totals | None
    errorCount: int
    errors: list[str]
    errorsOmitted: Annotated[int, Field(description="errors counted but too long to keep")]
    mode: Annotated[
        str,
        Field(
            description="full: every registry's settings read; changes: only those the "
            "activity log says changed, the rest judged from the settings last read"
        ),
    ]
    settingsReads: Annotated[
        int | None, Field(description="registries whose settings the run read from ARM")
    ]
    fullReads: Annotated[
        dict[str, str],
        Field(
            description="a change-driven run: subscriptions whose registries were all read, "
            "and why (no watermark yet, the activity log unreadable)"
        ),
    ]


def iso(moment: datetime) -> str:
    """ISO 8601 with an explicit offset; a naive time is taken to be UTC (the project's clock)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def compliance_percent(compliant: int, noncompliant: int) -> float | None:
    """`compliant`: every registry that counts as compliant (`facts.PASSING`: pending ones too)."""
    judged = compliant + noncompliant
    if judged == 0:
        return None
    # Integer floor: 999 of 1000 compliant is 99.9, never a rounded-up 100.0.
    return (compliant * 1000 // judged) / 10


@dataclass(frozen=True)
class StatusCounts:
    """A count per `Status`, each field named by its value."""

    compliant: int = 0
    noncompliant: int = 0
    unknown: int = 0
    removed: int = 0
    exempt: int = 0
    pending: int = 0

    @classmethod
    def of(cls, statuses: Iterable[Status]) -> StatusCounts:
        counted = Counter(statuses)
        return cls(**{status.value: counted[status] for status in Status})

    @property
    def total(self) -> int:
        return sum(getattr(self, status.value) for status in Status)

    @property
    def compliance_percent(self) -> float | None:
        passing = sum(getattr(self, status.value) for status in PASSING)
        return compliance_percent(passing, self.noncompliant)

    def to_dict(self) -> Totals:
        return {
            "total": self.total,
            "compliant": self.compliant,
            "noncompliant": self.noncompliant,
            "unknown": self.unknown,
            "removed": self.removed,
            "exempt": self.exempt,
            "pending": self.pending,
        }


@dataclass(frozen=True)
class RunInfo:
    id: str
    started_at: datetime
    finished_at: datetime
    status: str
    trigger: str
    error_count: int

    @classmethod
    def of(cls, run: AuditRun) -> RunInfo:
        return cls(
            id=run.run_id,
            started_at=run.started_at,
            finished_at=run.finished_at,
            status=run.status.value,
            trigger=run.trigger,
            error_count=len(run.errors),
        )

    def to_dict(self) -> LastRun:
        return {
            "id": self.id,
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "status": self.status,
            "trigger": self.trigger,
            "errorCount": self.error_count,
        }


def _base(code: str) -> str:
    return code.partition(catalog.SEPARATOR)[0]


def log_counts(run: AuditRun | None = None) -> LogCounts:
    """Registry counts of the run's log findings (see the module docstring, `logs`); all 0
    without a run."""
    verdicts = run.verdicts if run is not None else ()
    found = run.evidence if run is not None else {}
    by_reason: Counter[str] = Counter()
    observed: Counter[str] = Counter()
    login_alerts = checked = 0
    for verdict in verdicts:
        by_reason.update({_base(r.code) for r in verdict.reasons})
        evidence = found.get(verdict.registry.key)
        if evidence is None or verdict.status is Status.REMOVED:
            continue
        checked += 1
        codes = {_base(r.code) for r in evidence.observations}
        observed.update(codes)
        login_alerts += bool(codes & LOGIN_OBSERVATIONS)
    return {
        "checked": checked,
        "silent": by_reason[catalog.LOGS_SILENT],
        "pending": by_reason[catalog.PENDING],
        "unknown": by_reason[catalog.LOGS_UNREADABLE],
        "interrupted": by_reason[catalog.LOGGING_INTERRUPTED],
        "loginAlerts": login_alerts,
        "byObservation": [
            {"code": code, "count": count}
            for code, count in sorted(observed.items(), key=lambda item: (-item[1], item[0]))
        ],
        "logQueries": run.log_queries if run is not None else 0,
    }


@dataclass(frozen=True)
class ComplianceSummary:
    generated_at: datetime
    last_run: RunInfo | None
    totals: StatusCounts
    by_subscription: tuple[tuple[str, StatusCounts], ...] = ()
    by_reason: tuple[tuple[str, int], ...] = ()
    omitted_subscriptions: int = 0
    omitted_reasons: int = 0
    logs: LogCounts = field(default_factory=log_counts)
    policy: PolicyDocument | None = None

    @property
    def compliance_percent(self) -> float | None:
        return self.totals.compliance_percent

    def trimmed(self, *, max_subscriptions: int, max_reasons: int) -> ComplianceSummary:
        """The same summary with at most this many list entries (the most frequent reasons and
        the first subscriptions are kept); totals are unchanged and the cut is counted."""
        subs, reasons = self.by_subscription, self.by_reason
        cut_subs = max(0, len(subs) - max_subscriptions)
        cut_reasons = max(0, len(reasons) - max_reasons)
        return replace(
            self,
            by_subscription=subs[:max_subscriptions],
            by_reason=reasons[:max_reasons],
            omitted_subscriptions=self.omitted_subscriptions + cut_subs,
            omitted_reasons=self.omitted_reasons + cut_reasons,
        )

    def to_dict(self) -> ComplianceDocument:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "generatedAt": iso(self.generated_at),
            "lastRun": self.last_run.to_dict() if self.last_run is not None else None,
            "totals": self.totals.to_dict(),
            "compliancePercent": self.compliance_percent,
            "bySubscription": [
                {
                    "subscriptionId": subscription,
                    **counts.to_dict(),
                    "compliancePercent": counts.compliance_percent,
                }
                for subscription, counts in self.by_subscription
            ],
            "byReason": [{"code": code, "count": count} for code, count in self.by_reason],
            "omitted": {
                "subscriptions": self.omitted_subscriptions,
                "reasons": self.omitted_reasons,
            },
            "logs": self.logs,
            "policy": self.policy,
        }


def fleet_counts(
    registries: Iterable[tuple[str, Status, Iterable[str]]], *, generated_at: datetime
) -> ComplianceSummary:
    """The counts of a fleet given as (subscription id, status, reason codes) per registry:
    totals, by subscription (lower case) and by reason; no run, logs or policy."""
    by_subscription: dict[str, list[Status]] = defaultdict(list)
    by_reason: Counter[str] = Counter()
    statuses: list[Status] = []
    for subscription, status, codes in registries:
        by_subscription[subscription.lower()].append(status)
        statuses.append(status)
        # A registry counts once per code, however many settings repeat it.
        by_reason.update(set(codes))
    return ComplianceSummary(
        generated_at=generated_at,
        last_run=None,
        totals=StatusCounts.of(statuses),
        by_subscription=tuple(
            (subscription, StatusCounts.of(found))
            for subscription, found in sorted(by_subscription.items())
        ),
        by_reason=tuple(sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))),
    )


def summarize(run: AuditRun, *, generated_at: datetime) -> ComplianceSummary:
    """Counts over `run.verdicts` as given: pass the run `AuditStore.finish_run` returned to
    include the registries it marked removed."""
    counts = fleet_counts(
        (
            (v.registry.subscription_id, v.status, (reason.code for reason in v.reasons))
            for v in run.verdicts
        ),
        generated_at=generated_at,
    )
    return replace(
        counts,
        last_run=RunInfo.of(run),
        logs=log_counts(run),
        policy=policy_document(run.policy) if run.policy is not None else None,
    )


def empty_summary(*, generated_at: datetime) -> ComplianceSummary:
    """The document served before any run has finished: zero totals, `lastRun` null."""
    return ComplianceSummary(generated_at=generated_at, last_run=None, totals=StatusCounts())


def reason_items(verdict: Verdict) -> list[ReasonItem]:
    return [{"code": r.code, "detail": r.detail} for r in verdict.reasons]


def registry_document(verdict: Verdict) -> RegistryDocument:
    """The one JSON shape of a registry, shared by the CLI's JSON output and the API."""
    registry = verdict.registry
    return {
        "id": registry.id,
        "name": registry.name,
        "subscriptionId": registry.subscription_id,
        "resourceGroup": registry.resource_group,
        "location": registry.location,
        "status": verdict.status,
        "reasons": reason_items(verdict),
    }
