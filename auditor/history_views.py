"""Compliance over time as the API and the CLI serve it: each view reads what it needs
through a `ports.HistoryReads` (the store's `AuditReader`), never Azure, and hands the rows
to the pure `compliance_history`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from auditor.compliance_history import (
    ComplianceAtDocument,
    PeriodDocument,
    compliance_at,
    last_run,
    period_document,
    registry_records,
    state_at,
)
from auditor.exports import ExportDocument, of_history
from auditor.period_report import render_report
from auditor.policy import Policy, policy_document
from auditor.ports import HistoryReads


def fleet_at(reads: HistoryReads, at: datetime) -> ComplianceAtDocument:
    """The fleet at `at`."""
    return compliance_at(reads.fleet_history(), reads.runs_finished_by(at), at)


def fleet_period(
    reads: HistoryReads, since: datetime, until: datetime, *, now: datetime
) -> PeriodDocument:
    """The fleet over [since, until]."""
    return period_document(
        reads.fleet_history(), reads.runs_between(since, until), start=since, end=until, now=now
    )


def period_html(
    reads: HistoryReads,
    since: datetime,
    until: datetime,
    *,
    now: datetime,
    policy: Policy,
    scope: Sequence[str],
) -> str:
    """The printable report of [since, until]: one read of the history for both documents."""
    rows = reads.fleet_history()
    period = period_document(
        rows, reads.runs_between(since, until), start=since, end=until, now=now
    )
    end_state = compliance_at(rows, reads.runs_finished_by(until), until)
    return render_report(
        period, end_state, policy=policy_document(policy), scope=scope, generated_at=now
    )


def export_at(reads: HistoryReads, at: datetime, policy: Policy) -> ExportDocument:
    """The exports' document of the fleet at `at` (`run` null when no run had finished)."""
    source = last_run(reads.runs_finished_by(at), at)
    fleet = state_at(reads.fleet_history(), at, source["id"] if source is not None else None)
    return of_history(source, policy, registry_records(fleet))
