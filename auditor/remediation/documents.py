"""The remediation documents, defined once and built here: a plan (CLI, API dry run), an
action (stored, served by the API, printed by the CLI) and the CLI's `remediate --format json`.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import Field
from typing_extensions import TypedDict

from auditor.facts import DiagnosticSetting
from auditor.remediation.plan import Plan

SCHEMA_VERSION = 1


class Actor(enum.StrEnum):
    """Who or what remediated."""

    CLI = "cli"
    TIMER = "timer"
    API = "api"


class Result(enum.StrEnum):
    APPLIED = "applied"
    FORBIDDEN = "forbidden"  # ARM refused the write (403): a right is missing
    CONFLICT = "conflict"  # the setting changed between the read and the write
    FAILED = "failed"


class LogDocument(TypedDict):
    category: str | None
    categoryGroup: str | None
    enabled: bool


class MetricDocument(TypedDict):
    category: str
    enabled: bool


class SettingDocument(TypedDict):
    """A diagnostic setting as the auditor reads it (the REST properties it judges)."""

    name: str
    workspaceId: str | None
    storageAccountId: str | None
    eventHubAuthorizationRuleId: str | None
    eventHubName: str | None
    logAnalyticsDestinationType: str | None
    logs: list[LogDocument]
    metrics: list[MetricDocument]


class PlanDocument(TypedDict):
    registry: str
    registryId: str
    subscriptionId: str
    action: Annotated[
        Literal["none", "create", "update", "blocked"],
        Field(description="none: already compliant; blocked: `why` says why not"),
    ]
    statusBefore: str
    reasonsBefore: list[str]
    settingName: str | None
    before: Annotated[SettingDocument | None, Field(description="the setting updated")]
    after: Annotated[SettingDocument | None, Field(description="the setting as written")]
    changes: Annotated[list[str], Field(description="what the write changes, in plain words")]
    why: str


class ActionDocument(TypedDict):
    """One remediation write: who, when, which setting before and after, and what came of it."""

    id: str
    at: str
    actor: Annotated[Literal["cli", "timer", "api"], Field(description="who or what wrote")]
    registry: str
    registryId: str
    subscriptionId: str
    operation: Literal["create", "update"]
    settingName: str
    before: SettingDocument | None
    after: SettingDocument
    result: Annotated[
        Literal["applied", "forbidden", "conflict", "failed"],
        Field(description="forbidden: ARM refused the write (a right is missing)"),
    ]
    message: str
    statusBefore: str
    reasonsBefore: list[str]
    statusAfter: Annotated[
        str | None,
        Field(
            description="the registry re-read and re-judged after the write: `pending` when "
            "the write made it meet the policy (its first events are awaited)"
        ),
    ]
    reasonsAfter: list[str]
    pendingSince: Annotated[
        str | None,
        Field(
            description="applied: when; its logs can take up to 90 minutes to arrive, and the "
            "next audit shows whether they do"
        ),
    ]


class RemediationEntry(TypedDict):
    plan: PlanDocument
    action: Annotated[ActionDocument | None, Field(description="with --apply, the write")]


class RemediationDocument(TypedDict):
    """`python -m auditor remediate --format json`."""

    schemaVersion: int
    mode: Literal["dry-run", "apply"]
    workspace: str | None
    registries: list[RemediationEntry]
    errors: list[str]


def setting_document(setting: DiagnosticSetting) -> SettingDocument:
    return {
        "name": setting.name,
        "workspaceId": setting.workspace_id,
        "storageAccountId": setting.storage_account_id,
        "eventHubAuthorizationRuleId": setting.event_hub_authorization_rule_id,
        "eventHubName": setting.event_hub_name,
        "logAnalyticsDestinationType": setting.log_analytics_destination_type,
        "logs": [
            {"category": e.category, "categoryGroup": e.category_group, "enabled": e.enabled}
            for e in setting.logs
        ],
        "metrics": [{"category": m.category, "enabled": m.enabled} for m in setting.metrics],
    }


def plan_document(plan: Plan) -> PlanDocument:
    return {
        "registry": plan.registry.name,
        "registryId": plan.registry.id,
        "subscriptionId": plan.registry.subscription_id,
        "action": plan.kind.value,
        "statusBefore": plan.status_before.value,
        "reasonsBefore": list(plan.reasons_before),
        "settingName": plan.setting_name,
        "before": setting_document(plan.before) if plan.before is not None else None,
        "after": setting_document(plan.after) if plan.after is not None else None,
        "changes": list(plan.changes),
        "why": plan.why,
    }
