"""Compliance summaries and the registry JSON shape: pure functions over an `AuditRun`.

The summary document (`ComplianceSummary.to_dict()`, schema version 1) has these keys:

- `schemaVersion`: 1.
- `generatedAt`: ISO 8601 time the summary describes (the store passes the run's finish time).
- `lastRun`: `{id, startedAt, finishedAt, status, trigger, errorCount}` of the run summarised,
  or null in the empty state (no run yet).
- `totals`: `{total, compliant, noncompliant, unknown, removed}`; `total` is their sum.
  `removed` counts registries that disappeared in this run (earlier removals are not repeated).
- `compliancePercent`: compliant / (compliant + noncompliant) * 100, rounded DOWN to one
  decimal so 100.0 means every judged registry is compliant; null when none was judged.
  Unknown and removed registries are left out: neither is a judgement on the registry.
- `bySubscription`: `[{subscriptionId, total, compliant, noncompliant, unknown, removed,
  compliancePercent}]` sorted by subscription id (lower case).
- `byReason`: `[{code, count}]`, the number of registries having each reason code, codes as
  they are (`category_missing:ContainerRegistryLoginEvents` is its own entry), most frequent
  first, then by code.
- `omitted`: `{subscriptions, reasons}`: entries left out of the two lists by `trimmed()` to
  fit a size limit (0 normally); the totals always cover everything.
- `logs`: what the run's log check found, as registry counts (all 0 when logs were not
  checked; a summary stored before log checks existed has no `logs` key):
  `checked` (registries with log evidence), `silent` (reason `logs_silent`), `pending`
  (reason `pending`), `unknown` (any `logs_unreadable:*` reason), `interrupted` (reason
  `logging_interrupted`), `loginAlerts` (registries with at least one login observation:
  `login_failure_burst`, `anonymous_pull`, `admin_user_login` or `new_login_source`),
  `byObservation` (`[{code, count}]`, registries per observation code, most first, then by
  code; `artifact_deleted` included) and `logQueries` (Log Analytics queries the run sent).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from auditor.facts import Status, Verdict
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


def iso(moment: datetime) -> str:
    """ISO 8601 with an explicit offset; a naive time is taken to be UTC (the project's clock)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def compliance_percent(compliant: int, noncompliant: int) -> float | None:
    judged = compliant + noncompliant
    if judged == 0:
        return None
    # Integer floor: 999 of 1000 compliant is 99.9, never a rounded-up 100.0.
    return (compliant * 1000 // judged) / 10


@dataclass(frozen=True)
class StatusCounts:
    compliant: int = 0
    noncompliant: int = 0
    unknown: int = 0
    removed: int = 0

    @classmethod
    def of(cls, statuses: Iterable[Status]) -> StatusCounts:
        counted = Counter(statuses)
        return cls(
            compliant=counted[Status.COMPLIANT],
            noncompliant=counted[Status.NONCOMPLIANT],
            unknown=counted[Status.UNKNOWN],
            removed=counted[Status.REMOVED],
        )

    @property
    def total(self) -> int:
        return self.compliant + self.noncompliant + self.unknown + self.removed

    @property
    def compliance_percent(self) -> float | None:
        return compliance_percent(self.compliant, self.noncompliant)

    def to_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "compliant": self.compliant,
            "noncompliant": self.noncompliant,
            "unknown": self.unknown,
            "removed": self.removed,
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

    def to_dict(self) -> dict[str, Any]:
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


@dataclass(frozen=True)
class LogCounts:
    """Registry counts of the run's log findings (see the module docstring, `logs`)."""

    checked: int = 0
    silent: int = 0
    pending: int = 0
    unknown: int = 0
    interrupted: int = 0
    login_alerts: int = 0
    by_observation: tuple[tuple[str, int], ...] = ()
    log_queries: int = 0

    @classmethod
    def of(cls, run: AuditRun) -> LogCounts:
        by_reason: Counter[str] = Counter()
        for verdict in run.verdicts:
            by_reason.update({_base(r.code) for r in verdict.reasons})
        observed: Counter[str] = Counter()
        login_alerts = 0
        checked = 0
        for verdict in run.verdicts:
            evidence = run.evidence.get(verdict.registry.key)
            if evidence is None or verdict.status is Status.REMOVED:
                continue
            checked += 1
            codes = {_base(r.code) for r in evidence.observations}
            observed.update(codes)
            login_alerts += bool(codes & LOGIN_OBSERVATIONS)
        return cls(
            checked=checked,
            silent=by_reason[catalog.LOGS_SILENT],
            pending=by_reason[catalog.PENDING],
            unknown=by_reason[catalog.LOGS_UNREADABLE],
            interrupted=by_reason[catalog.LOGGING_INTERRUPTED],
            login_alerts=login_alerts,
            by_observation=tuple(sorted(observed.items(), key=lambda item: (-item[1], item[0]))),
            log_queries=run.log_queries,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "silent": self.silent,
            "pending": self.pending,
            "unknown": self.unknown,
            "interrupted": self.interrupted,
            "loginAlerts": self.login_alerts,
            "byObservation": [{"code": c, "count": n} for c, n in self.by_observation],
            "logQueries": self.log_queries,
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
    logs: LogCounts = LogCounts()

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

    def to_dict(self) -> dict[str, Any]:
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
            "logs": self.logs.to_dict(),
        }


def summarize(run: AuditRun, *, generated_at: datetime) -> ComplianceSummary:
    """Counts over `run.verdicts` as given: pass the run `AuditStore.finish_run` returned to
    include the registries it marked removed."""
    by_subscription: dict[str, list[Status]] = defaultdict(list)
    by_reason: Counter[str] = Counter()
    for verdict in run.verdicts:
        by_subscription[verdict.registry.subscription_id.lower()].append(verdict.status)
        # A registry counts once per code, however many settings repeat it.
        by_reason.update({reason.code for reason in verdict.reasons})
    return ComplianceSummary(
        generated_at=generated_at,
        last_run=RunInfo.of(run),
        totals=StatusCounts.of(v.status for v in run.verdicts),
        by_subscription=tuple(
            (subscription, StatusCounts.of(statuses))
            for subscription, statuses in sorted(by_subscription.items())
        ),
        by_reason=tuple(sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))),
        logs=LogCounts.of(run),
    )


def empty_summary(*, generated_at: datetime) -> ComplianceSummary:
    """The document served before any run has finished: zero totals, `lastRun` null."""
    return ComplianceSummary(generated_at=generated_at, last_run=None, totals=StatusCounts())


def registry_document(verdict: Verdict) -> dict[str, Any]:
    """The one JSON shape of a registry, shared by the CLI's JSON output and the API."""
    registry = verdict.registry
    return {
        "id": registry.id,
        "name": registry.name,
        "subscriptionId": registry.subscription_id,
        "resourceGroup": registry.resource_group,
        "location": registry.location,
        "status": verdict.status.value,
        "reasons": [{"code": r.code, "detail": r.detail} for r in verdict.reasons],
    }
