"""One audit's record: what was in scope, the verdicts, the log evidence and the errors.

It joins the settings verdicts (`auditor.facts`) and the log evidence
(`auditor.evidence.model`), so it sits above both rather than among the facts.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from auditor.evidence.model import ActivityEvent, LogEvidence
from auditor.facts import Verdict
from auditor.policy import Policy


class RunMode(enum.StrEnum):
    FULL = "full"  # every registry's settings read
    CHANGES = "changes"  # only registries the activity log says changed (issue #15)


class RunStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"  # every registry judged
    PARTIAL = "partial"  # finished, but some registries or subscriptions are unknown
    FAILED = "failed"  # the audit itself could not complete


@dataclass(frozen=True)
class AuditRun:
    """One audit: what was in scope, what was judged, and what went wrong on the way."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    status: RunStatus
    verdicts: tuple[Verdict, ...]
    # Subscriptions whose registries were listed completely; only these may mark a
    # previously seen registry as removed.
    inventoried_subscriptions: frozenset[str] = frozenset()
    errors: tuple[str, ...] = ()
    trigger: str = "cli"  # "timer", "cli", "http", "event"
    # What the logs themselves showed, per registry key (empty when logs were not checked).
    evidence: Mapping[str, LogEvidence] = field(default_factory=dict, compare=False)
    # Activity-log events of registries no longer in the inventory (deleted since).
    orphan_activity: tuple[ActivityEvent, ...] = field(default=(), compare=False)
    log_queries: int = 0
    # Why the run's results could not be stored (they are in this record, and the next run
    # stores them); None when they were, or when the run had no store.
    storage_error: str | None = None
    # What the verdicts were judged against (None: a record made without a policy, e.g. a
    # run that died before judging).
    policy: Policy | None = field(default=None, compare=False)
    mode: RunMode = RunMode.FULL
    # A change-driven run: why each registry re-read was (registry key -> reasons), and which
    # subscriptions were read in full and why; the other registries were judged again from
    # the settings the last run read.
    rereads: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    full_reads: Mapping[str, str] = field(default_factory=dict, compare=False)
    settings_reads: int = 0  # registries whose settings this run read from ARM


@dataclass(frozen=True)
class Sweeps:
    """What a change-driven run starts from. `covered`: per subscription (lower case), when
    the newest finished run that listed it completely started; its activity log is read from
    there (less the overlap), so a run scoped to other subscriptions costs none of their
    changes. `latest`: when the newest finished fleet run started; `last_full`: the newest
    finished full sweep."""

    covered: Mapping[str, datetime] = field(default_factory=dict)
    latest: datetime | None = None
    last_full: datetime | None = None
