"""Compliance over time, from the stored history alone: pure, no I/O and no clock.

The `history` table holds one row per registry each time its status or reason codes change
(first sight included, a removal too). Read back as `HistoryRow`s (oldest first or in any
order), they give:

- a registry's **intervals**: each state from the change that began it to the change that
  ended it (`to` null while it still holds), as recorded: not cut at a period's bounds;
- the **fleet at an instant** (`compliance_at`): each registry's last change at or before it,
  counted like the compliance summary; registries first seen later are not there, and a
  registry removed earlier is not counted (one removed by the run the state comes from is
  counted `removed`, as the summary counts the removals of its run);
- **a period's statistics** (`period_document`): per registry the seconds it was compliant
  and the seconds it was judged at all (compliant or noncompliant: `unknown`, `removed` and
  the time before first sight are not judgements), the seconds it was exempt, the mean time to
  fix, the registries never compliant, and the runs that covered the period.

Exempt time (docs/exemptions.md) is neither compliant nor noncompliant: it is left out of the
judged time (`knownSeconds`) and so of the ratio, as `compliancePercent` leaves exempt
registries out, and counted apart in `exemptSeconds`. A registry exempt the whole period has no
judged time (ratio null) and no compliant time, so it is among the never compliant, as an
unknown one is; noncompliant, then exempt, then compliant is not a fix (the exemption came
between).

Pending time (a registry the auditor remediated, its first events awaited) counts as compliant,
as `compliancePercent` counts pending registries: its setting meets the policy, as that of a
compliant registry with the `pending` reason does. It is also counted in `pendingSeconds`, and
noncompliant then pending is a fix (remediated); pending then noncompliant (its events never
came) starts a new noncompliant interval.

Each document is defined here as a `TypedDict` beside its builder; the API serves them as its
response schemas. The time is always a parameter (`now`: where a still-open interval ends).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Annotated

from pydantic import Field
from typing_extensions import TypedDict

from auditor.facts import JUDGED, PASSING, Reason, Status
from auditor.run_record import RunStatus
from auditor.summary import (
    LastRun,
    ReasonCount,
    RegistryRecord,
    Run,
    SubscriptionTotals,
    Totals,
    fleet_counts,
    iso,
)

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One stored change: the status and reasons a registry had from `observed_at` on."""

    registry: str  # the registry's key (its lower-case name): what groups the rows
    name: str
    resource_id: str
    subscription_id: str
    status: str  # as stored: a status this version does not know is kept as it is
    reasons: tuple[Reason, ...]
    observed_at: datetime
    run_id: str | None

    @property
    def reason_codes(self) -> tuple[str, ...]:
        return tuple(sorted({r.code for r in self.reasons}))


@dataclass(frozen=True, slots=True)
class Interval:
    """A state of one registry: `end` None while it still holds."""

    row: HistoryRow
    start: datetime
    end: datetime | None

    @property
    def status(self) -> str:
        return self.row.status

    def until(self, now: datetime) -> datetime:
        return self.end if self.end is not None else max(now, self.start)

    def overlap(self, start: datetime, end: datetime, now: datetime) -> float:
        """Seconds of this interval within [start, end]."""
        seconds = (min(self.until(now), end) - max(self.start, start)).total_seconds()
        return max(0.0, seconds)

    def meets(self, start: datetime, end: datetime) -> bool:
        """Whether it holds at some instant of [start, end]."""
        return self.start <= end and (self.end is None or self.end > start)


# --- documents --------------------------------------------------------------------------------

# `from` is a Python keyword: the documents with `from`/`to` keys use the functional form.
IntervalDocument = TypedDict(
    "IntervalDocument",
    {
        "status": Annotated[str, Field(description=", ".join(Status))],
        "reasonCodes": Annotated[list[str], Field(description="sorted, without details")],
        "from": Annotated[str, Field(description="when a run first found this state")],
        "to": Annotated[
            str | None,
            Field(description="when a run found the next state; null while it still holds"),
        ],
        "durationSeconds": Annotated[
            int,
            Field(
                description="the whole interval as recorded (an open one up to the request), "
                "not cut at the period's bounds"
            ),
        ],
    },
)

RegistryIntervalsDocument = TypedDict(
    "RegistryIntervalsDocument",
    {
        "schemaVersion": Annotated[int, Field(description="1")],
        "name": str,
        "from": Annotated[str, Field(description="start of the period (ISO 8601)")],
        "to": Annotated[str, Field(description="end of the period (ISO 8601)")],
        "intervals": Annotated[
            list[IntervalDocument],
            Field(description="the states that held at some time in the period, oldest first"),
        ],
    },
)


class RegistryPeriod(TypedDict):
    """One registry over the period."""

    name: str
    subscriptionId: Annotated[str, Field(description="lower case, as last recorded")]
    compliantSeconds: Annotated[
        int, Field(description="seconds compliant or pending within the period")
    ]
    knownSeconds: Annotated[
        int,
        Field(
            description="seconds within the period it was judged compliant, pending or "
            "noncompliant (not unknown, removed, exempt, or before it was first seen)"
        ),
    ]
    pendingSeconds: Annotated[
        int,
        Field(
            description="seconds within the period it was pending (remediated by the auditor, "
            "its first events awaited): part of compliantSeconds"
        ),
    ]
    exemptSeconds: Annotated[
        int,
        Field(
            description="seconds within the period it was exempt (docs/exemptions.md): "
            "neither compliant nor judged"
        ),
    ]
    complianceRatio: Annotated[
        float | None,
        Field(description="compliantSeconds / knownSeconds (4 decimals); null if never judged"),
    ]
    neverCompliant: Annotated[bool, Field(description="no compliant time in the period")]
    intervals: Annotated[list[IntervalDocument], Field(description="oldest first")]


class RunCoverage(TypedDict):
    """The runs started within the period, by outcome."""

    total: int
    succeeded: int
    partial: int
    failed: int
    unfinished: Annotated[int, Field(description="still running, or abandoned")]
    firstStartedAt: str | None
    lastFinishedAt: str | None


PeriodDocument = TypedDict(
    "PeriodDocument",
    {
        "schemaVersion": Annotated[int, Field(description="1")],
        "from": Annotated[str, Field(description="start of the period (ISO 8601)")],
        "to": Annotated[str, Field(description="end of the period (ISO 8601)")],
        "registries": Annotated[
            list[RegistryPeriod],
            Field(description="every registry present at some time in the period, by name"),
        ],
        "meanTimeToFixSeconds": Annotated[
            int | None,
            Field(
                description="mean duration of the noncompliant intervals that ended in "
                "compliant or pending within the period (whole intervals); null when none did"
            ),
        ],
        "fixes": Annotated[int, Field(description="how many such intervals")],
        "neverCompliant": Annotated[
            list[str], Field(description="names of the registries never compliant in the period")
        ],
        "runs": RunCoverage,
    },
)


class ComplianceAtDocument(TypedDict):
    """The fleet as the stored history shows it at an instant (`GET /api/compliance?at=`)."""

    schemaVersion: Annotated[int, Field(description="1")]
    at: Annotated[str, Field(description="the instant described (ISO 8601)")]
    lastRun: Annotated[
        LastRun | None,
        Field(description="the newest run finished at or before `at`: the state's source"),
    ]
    lastChangeAt: Annotated[
        str | None,
        Field(description="the newest change of any counted registry at or before `at`"),
    ]
    totals: Totals
    compliancePercent: Annotated[
        float | None,
        Field(
            description="compliant / (compliant + noncompliant) x 100, rounded down, pending "
            "registries counted as compliant"
        ),
    ]
    bySubscription: list[SubscriptionTotals]
    byReason: list[ReasonCount]


# --- the logic ----------------------------------------------------------------------------------


def intervals(rows: Iterable[HistoryRow]) -> dict[str, list[Interval]]:
    """Each registry's intervals (by its key), oldest first. A row repeating the state before
    it (written twice) does not start a new interval."""
    by_registry: dict[str, list[HistoryRow]] = defaultdict(list)
    for row in rows:
        by_registry[row.registry].append(row)
    found: dict[str, list[Interval]] = {}
    for key, changes in by_registry.items():
        changes.sort(key=lambda r: r.observed_at)
        kept = [
            row for i, row in enumerate(changes) if i == 0 or _state(changes[i - 1]) != _state(row)
        ]
        ends: list[datetime | None] = [row.observed_at for row in kept[1:]]
        found[key] = [
            Interval(row, row.observed_at, end)
            for row, end in zip(kept, [*ends, None], strict=True)
        ]
    return found


def _state(row: HistoryRow) -> tuple[str, tuple[str, ...]]:
    return row.status, row.reason_codes


def interval_document(interval: Interval, now: datetime) -> IntervalDocument:
    seconds = (interval.until(now) - interval.start).total_seconds()
    return {
        "status": interval.status,
        "reasonCodes": list(interval.row.reason_codes),
        "from": iso(interval.start),
        "to": iso(interval.end) if interval.end is not None else None,
        "durationSeconds": max(0, int(seconds)),
    }


def registry_intervals(
    name: str, rows: Iterable[HistoryRow], *, start: datetime, end: datetime, now: datetime
) -> RegistryIntervalsDocument:
    """One registry's states that held at some time in [start, end]."""
    found = [
        interval_document(i, now)
        for ivs in intervals(rows).values()
        for i in ivs
        if i.meets(start, end)
    ]
    return {
        "schemaVersion": SCHEMA_VERSION,
        "name": name,
        "from": iso(start),
        "to": iso(end),
        "intervals": found,
    }


def state_at(rows: Iterable[HistoryRow], at: datetime, run_id: str | None) -> list[HistoryRow]:
    """Each registry's last change at or before `at`, by name: the fleet at that instant.
    A registry removed by then is left out, unless `run_id` (the run the state comes from)
    removed it."""
    latest: dict[str, HistoryRow] = {}
    for row in rows:
        if row.observed_at > at:
            continue
        held = latest.get(row.registry)
        if held is None or row.observed_at >= held.observed_at:
            latest[row.registry] = row
    kept = (
        row
        for row in latest.values()
        if row.status != Status.REMOVED.value or (run_id is not None and row.run_id == run_id)
    )
    return sorted(kept, key=lambda r: (r.name.casefold(), r.registry))


def _status(value: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        return Status.UNKNOWN  # a status this version does not know: not a judgement


def last_run(runs: Iterable[Run], at: datetime) -> LastRun | None:
    """The newest run finished at or before `at`, as the summary names its run."""
    finished = [
        (moment, run)
        for run in runs
        if (moment := _time(run["finishedAt"])) is not None and moment <= at
    ]
    if not finished:
        return None
    _, run = max(finished, key=lambda item: item[0])
    return {
        "id": run["id"] or "",
        "startedAt": run["startedAt"] or "",
        "finishedAt": run["finishedAt"] or "",
        "status": run["status"] or "",
        "trigger": run["trigger"] or "",
        "errorCount": run["errorCount"],
    }


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def compliance_at(
    rows: Iterable[HistoryRow], runs: Iterable[Run], at: datetime
) -> ComplianceAtDocument:
    """The fleet at `at`: counts as in the compliance summary, from the stored history."""
    source = last_run(runs, at)
    fleet = state_at(rows, at, source["id"] if source is not None else None)
    counts = fleet_counts(
        ((row.subscription_id, _status(row.status), row.reason_codes) for row in fleet),
        generated_at=at,
    ).to_dict()
    newest = max((row.observed_at for row in fleet), default=None)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "at": iso(at),
        "lastRun": source,
        "lastChangeAt": iso(newest) if newest is not None else None,
        "totals": counts["totals"],
        "compliancePercent": counts["compliancePercent"],
        "bySubscription": counts["bySubscription"],
        "byReason": counts["byReason"],
    }


def registry_records(fleet: Sequence[HistoryRow]) -> list[RegistryRecord]:
    """The fleet at an instant (`state_at`) as the exports take registries. History keeps no
    location or check time: `location` is empty, `checkedAt` null, and `statusSince` is when
    the state was first found."""
    return [
        {
            "id": row.resource_id,
            "name": row.name,
            "subscriptionId": row.subscription_id,
            "resourceGroup": _resource_group(row.resource_id),
            "location": "",
            "status": _status(row.status),
            "reasons": [{"code": r.code, "detail": r.detail} for r in row.reasons],
            "lastRunId": row.run_id,
            "checkedAt": None,
            "statusSince": iso(row.observed_at),
            "lastEvent": None,
        }
        for row in fleet
    ]


def _resource_group(resource_id: str) -> str:
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    if "resourcegroups" in lowered:
        at = lowered.index("resourcegroups") + 1
        return parts[at] if at < len(parts) else ""
    return ""


def _registry_period(
    ivs: Sequence[Interval], start: datetime, end: datetime, now: datetime
) -> RegistryPeriod | None:
    shown = [i for i in ivs if i.meets(start, end)]
    if not any(i.status != Status.REMOVED.value for i in shown):
        return None  # not there in the period (first seen after it, or removed before)
    compliant = sum(i.overlap(start, end, now) for i in shown if i.status in PASSING)
    known = sum(i.overlap(start, end, now) for i in shown if i.status in JUDGED)
    exempt = sum(i.overlap(start, end, now) for i in shown if i.status == Status.EXEMPT.value)
    pending = sum(i.overlap(start, end, now) for i in shown if i.status == Status.PENDING.value)
    row = shown[-1].row
    return {
        "name": row.name,
        "subscriptionId": row.subscription_id,
        "compliantSeconds": int(compliant),
        "knownSeconds": int(known),
        "exemptSeconds": int(exempt),
        "pendingSeconds": int(pending),
        "complianceRatio": round(compliant / known, 4) if known > 0 else None,
        "neverCompliant": compliant == 0,
        "intervals": [interval_document(i, now) for i in shown],
    }


def fixes(ivs: Sequence[Interval], start: datetime, end: datetime) -> list[timedelta]:
    """Durations of the noncompliant intervals that ended in compliant or pending (remediated)
    within [start, end]."""
    return [
        before.end - before.start
        for before, after in pairwise(ivs)
        if before.status == Status.NONCOMPLIANT.value
        and after.status in PASSING
        and before.end is not None
        and start <= before.end <= end
    ]


def run_coverage(runs: Iterable[Run], start: datetime, end: datetime) -> RunCoverage:
    """The runs started within [start, end], by outcome."""
    within = [
        run
        for run in runs
        if (begun := _time(run["startedAt"])) is not None and start <= begun <= end
    ]
    outcomes = [run["status"] for run in within]
    started = [s for run in within if (s := _time(run["startedAt"])) is not None]
    finished = [f for run in within if (f := _time(run["finishedAt"])) is not None]
    ended = {RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value, RunStatus.FAILED.value}
    return {
        "total": len(within),
        "succeeded": outcomes.count(RunStatus.SUCCEEDED.value),
        "partial": outcomes.count(RunStatus.PARTIAL.value),
        "failed": outcomes.count(RunStatus.FAILED.value),
        "unfinished": sum(1 for status in outcomes if status not in ended),
        "firstStartedAt": iso(min(started)) if started else None,
        "lastFinishedAt": iso(max(finished)) if finished else None,
    }


def period_document(
    rows: Iterable[HistoryRow],
    runs: Iterable[Run],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
) -> PeriodDocument:
    """The fleet over [start, end] (`end` at most `now`: an open interval ends there)."""
    end = min(end, now)
    registries: list[RegistryPeriod] = []
    fixed: list[timedelta] = []
    for ivs in intervals(rows).values():
        document = _registry_period(ivs, start, end, now)
        if document is None:
            continue
        registries.append(document)
        fixed.extend(fixes(ivs, start, end))
    registries.sort(key=lambda r: r["name"].casefold())
    mean = sum(fixed, timedelta()) / len(fixed) if fixed else None
    return {
        "schemaVersion": SCHEMA_VERSION,
        "from": iso(start),
        "to": iso(end),
        "registries": registries,
        "meanTimeToFixSeconds": int(mean.total_seconds()) if mean is not None else None,
        "fixes": len(fixed),
        "neverCompliant": [r["name"] for r in registries if r["neverCompliant"]],
        "runs": run_coverage(runs, start, end),
    }


def noncompliant_intervals(
    document: PeriodDocument,
) -> list[tuple[RegistryPeriod, IntervalDocument]]:
    """Every noncompliant interval of the period, by registry then start: the report's list."""
    return [
        (registry, interval)
        for registry in document["registries"]
        for interval in registry["intervals"]
        if interval["status"] == Status.NONCOMPLIANT.value
    ]
