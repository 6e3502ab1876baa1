"""What the adapters read from Azure, as plain immutable values.

Adapters build these; the judgement and the summaries only ever see these, never SDK models,
so the pure code can be tested without Azure and the SDK can change under it.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field
from datetime import datetime


def normalize_id(resource_id: str) -> str:
    """ARM ids are case-insensitive; every comparison and key uses this form. Interned: a
    run keys its maps by the same ids many times over, and 10,000 registries' copies of
    each were megabytes."""
    return sys.intern(resource_id.strip().rstrip("/").lower())


@dataclass(frozen=True, slots=True)
class Registry:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str = ""
    sku: str = ""
    admin_user_enabled: bool | None = None
    anonymous_pull_enabled: bool | None = None
    created_at: datetime | None = None
    # Only the tags the auditor reads (`auditor.tags`), as (name, value) pairs: a fleet of
    # 10,000 registries need not hold every tag, and pairs keep the fact hashable.
    tags: tuple[tuple[str, str], ...] = ()
    # `normalize_id(id)`, computed once: it keys most maps of a run.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", normalize_id(self.id))
        # A fleet's registries share a few subscriptions, groups, regions and SKUs: one copy.
        # Ids and names too: a run holds a registry from the inventory, the store and the
        # alert states, each with its own copy of the same text.
        for name in ("id", "name", "subscription_id", "resource_group", "location", "sku"):
            if type(value := getattr(self, name)) is str:
                object.__setattr__(self, name, sys.intern(value))


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of a setting's `logs` list: either a category or a category group."""

    enabled: bool
    category: str | None = None
    category_group: str | None = None


@dataclass(frozen=True, slots=True)
class MetricEntry:
    category: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class DiagnosticSetting:
    id: str
    name: str
    workspace_id: str | None = None
    storage_account_id: str | None = None
    event_hub_authorization_rule_id: str | None = None
    event_hub_name: str | None = None
    marketplace_partner_id: str | None = None
    log_analytics_destination_type: str | None = None
    logs: tuple[LogEntry, ...] = ()
    metrics: tuple[MetricEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    """One row of the diagnostic settings categories API for the registry resource type."""

    name: str
    category_type: str  # "Logs" or "Metrics"
    groups: tuple[str, ...] = ()


class Status(enum.StrEnum):
    COMPLIANT = "compliant"
    NONCOMPLIANT = "noncompliant"
    UNKNOWN = "unknown"
    REMOVED = "removed"
    # Excused from the logging requirement until a date (auditor.exemptions): the reasons
    # are kept, led by `exempted:<the status it would otherwise have>`.
    EXEMPT = "exempt"
    # The auditor remediated its setting (a stored action within the pending window) and its
    # first events have not arrived yet (auditor.evidence.judgement.remediation_pending).
    PENDING = "pending"


# Where compliance is measured (compliance percent, time in compliance, fixes, controls), a
# registry counts as compliant with these statuses: pending is a registry whose setting meets
# the policy and whose events are awaited, as a compliant one with the `pending` reason is.
# The totals still count each status apart.
PASSING = frozenset({Status.COMPLIANT, Status.PENDING})
# A judgement of the registry's logging either way; unknown, removed and exempt are not.
JUDGED = PASSING | {Status.NONCOMPLIANT}


@dataclass(frozen=True, slots=True)
class Reason:
    """A shortfall: `code` is stable (e.g. `category_missing:ContainerRegistryLoginEvents`);
    `detail` is plain words for people."""

    code: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    registry: Registry
    status: Status
    reasons: tuple[Reason, ...] = ()
    settings: tuple[DiagnosticSetting, ...] = field(default=(), compare=False)
