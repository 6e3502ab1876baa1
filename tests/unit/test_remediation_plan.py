"""The remediation plan: the one setting to create or update, never weakening one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from auditor.facts import (
    CategoryInfo,
    DiagnosticSetting,
    LogEntry,
    MetricEntry,
    Registry,
    Status,
    Verdict,
)
from auditor.judgement import judge
from auditor.policy import Policy
from auditor.remediation.plan import Plan, PlanKind, free_name, plan_remediation

SUB = "11111111-1111-1111-1111-111111111111"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-mon/providers/Microsoft.OperationalInsights"
WS = f"{RG}/workspaces/law-central"
OTHER = f"{RG}/workspaces/law-sandbox"
STORAGE = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"
HUB = (
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.EventHub/namespaces/ns"
    "/authorizationRules/RootManageSharedAccessKey"
)
LOGIN = "ContainerRegistryLoginEvents"
REPO = "ContainerRegistryRepositoryEvents"
REGISTRY = Registry(
    id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acrx",
    name="acrx",
    subscription_id=SUB,
    resource_group="rg",
)
POLICY = Policy()
ALL_LOGS = (LogEntry(True, category_group="allLogs"),)
METRICS = (MetricEntry("AllMetrics", True),)


def setting(name: str, **fields: object) -> DiagnosticSetting:
    return DiagnosticSetting(id=f"{REGISTRY.id}/providers/x/{name}", name=name, **fields)  # type: ignore[arg-type]


def plan(
    *settings: DiagnosticSetting,
    policy: Policy = POLICY,
    workspace: str | None = WS,
    categories: tuple[CategoryInfo, ...] = (),
    status: Status = Status.NONCOMPLIANT,
) -> Plan:
    verdict = Verdict(REGISTRY, status, settings=settings)
    return plan_remediation(verdict, categories, policy, workspace)


def compliant_with(result: Plan, settings: tuple[DiagnosticSetting, ...]) -> bool:
    assert result.after is not None
    kept = [s for s in settings if s.name.casefold() != result.after.name.casefold()]
    return judge(REGISTRY, [*kept, result.after], (), POLICY).status is Status.COMPLIANT


def never_weakened(before: DiagnosticSetting, after: DiagnosticSetting) -> None:
    """Everything the setting sent it still sends, to the same destinations."""
    assert after.name == before.name
    for field in ("storage_account_id", "event_hub_authorization_rule_id", "event_hub_name"):
        assert getattr(after, field) == getattr(before, field)
    if before.workspace_id:
        assert after.workspace_id == before.workspace_id
    assert {e for e in before.logs if e.enabled} <= set(after.logs)
    assert {m for m in before.metrics if m.enabled} <= set(after.metrics)
    assert len(after.logs) >= len(before.logs) and len(after.metrics) >= len(before.metrics)


def test_a_registry_without_settings_gets_a_new_dedicated_all_logs_setting() -> None:
    result = plan()
    assert result.kind is PlanKind.CREATE
    assert result.after == DiagnosticSetting(
        id="",
        name="acr-auditor",
        workspace_id=WS,
        log_analytics_destination_type="Dedicated",
        logs=ALL_LOGS,
        metrics=METRICS,
    )
    assert result.before is None
    assert result.reasons_before == ("no_diagnostic_setting",)
    assert compliant_with(result, ())


def test_a_compliant_registry_needs_nothing() -> None:
    good = setting(
        "ok", workspace_id=WS, log_analytics_destination_type="Dedicated", logs=ALL_LOGS,
        metrics=METRICS,
    )  # fmt: skip
    result = plan(good)
    assert result.kind is PlanKind.NONE and not result.writes
    assert result.status_before is Status.COMPLIANT


def test_a_verdict_noncompliant_for_its_logs_alone_is_not_a_settings_problem() -> None:
    good = setting(
        "ok", workspace_id=WS, log_analytics_destination_type="Dedicated", logs=ALL_LOGS,
        metrics=METRICS,
    )  # fmt: skip
    assert plan(good, status=Status.NONCOMPLIANT).kind is PlanKind.NONE


def test_a_disabled_category_is_enabled_in_the_setting_that_sends_to_the_workspace() -> None:
    partial = setting(
        "partial",
        workspace_id=WS,
        log_analytics_destination_type="Dedicated",
        logs=(LogEntry(True, LOGIN), LogEntry(False, REPO)),
        metrics=METRICS,
    )
    result = plan(partial)
    assert result.kind is PlanKind.UPDATE
    assert result.before == partial
    assert result.after == replace(partial, logs=(LogEntry(True, LOGIN), LogEntry(True, REPO)))
    assert result.changes == (f"enable the log category {REPO}",)
    never_weakened(partial, result.after)


def test_azure_diagnostics_mode_is_switched_on_the_same_workspace_in_any_letter_case() -> None:
    legacy = setting("legacy", workspace_id=WS.upper(), logs=ALL_LOGS, metrics=METRICS)
    result = plan(legacy)
    assert result.kind is PlanKind.UPDATE
    assert result.after == replace(legacy, log_analytics_destination_type="Dedicated")
    assert len(result.changes) == 1 and "Dedicated" in result.changes[0]


def test_a_setting_using_groups_gets_all_logs_not_categories_by_name() -> None:
    # ARM refuses categories and groups mixed in one setting.
    grouped = setting(
        "grouped",
        workspace_id=WS,
        log_analytics_destination_type="Dedicated",
        logs=(LogEntry(False, category_group="audit"),),
        metrics=METRICS,
    )
    result = plan(grouped)
    assert result.after is not None
    assert all(e.category is None for e in result.after.logs)
    assert compliant_with(result, (grouped,))
    never_weakened(grouped, result.after)


def test_a_setting_to_another_workspace_is_left_alone_and_a_new_one_created() -> None:
    policy = Policy(accepted_workspaces=[WS])
    elsewhere = setting(
        "sandbox", workspace_id=OTHER, log_analytics_destination_type="Dedicated",
        logs=ALL_LOGS, metrics=METRICS,
    )  # fmt: skip
    result = plan(elsewhere, policy=policy)
    assert result.kind is PlanKind.CREATE
    assert result.after is not None and result.after.workspace_id == WS


def test_what_another_setting_already_sends_to_the_workspace_is_not_added_again() -> None:
    # ARM refuses a category sent twice to one destination; the judgement takes the union.
    logins = setting(
        "logins", workspace_id=WS, log_analytics_destination_type="Dedicated",
        logs=(LogEntry(True, LOGIN),),
    )  # fmt: skip
    repo = setting(
        "repo", workspace_id=WS, log_analytics_destination_type="Dedicated",
        logs=(LogEntry(True, REPO),),
    )  # fmt: skip
    result = plan(logins, repo)
    assert result.kind is PlanKind.UPDATE
    assert result.after == replace(logins, metrics=METRICS)
    assert compliant_with(result, (logins, repo))


@pytest.mark.parametrize("taken", ["acr-auditor", "ACR-Auditor", "acr-AUDITOR"])
def test_the_new_setting_never_takes_the_name_of_an_existing_one(taken: str) -> None:
    archive = setting(taken, storage_account_id=STORAGE, logs=ALL_LOGS)
    result = plan(archive)
    assert result.kind is PlanKind.CREATE
    assert result.setting_name == "acr-auditor-2"
    assert free_name([archive, setting("acr-auditor-2")]) == "acr-auditor-3"


def test_at_five_settings_a_storage_only_setting_gains_the_workspace() -> None:
    archive = setting("archive", storage_account_id=STORAGE, logs=ALL_LOGS, metrics=METRICS)
    others = [
        setting(f"s{i}", workspace_id=OTHER, logs=(LogEntry(False, LOGIN),)) for i in range(4)
    ]
    policy = Policy(accepted_workspaces=[WS])
    result = plan(archive, *others, policy=policy)
    assert result.kind is PlanKind.UPDATE
    assert result.after == replace(
        archive, workspace_id=WS, log_analytics_destination_type="Dedicated"
    )
    never_weakened(archive, result.after)


def test_at_five_settings_none_updatable_it_cannot_remediate_and_deletes_nothing() -> None:
    others = [
        setting(f"s{i}", workspace_id=OTHER, logs=(LogEntry(False, LOGIN),)) for i in range(5)
    ]
    result = plan(*others, policy=Policy(accepted_workspaces=[WS]))
    assert result.kind is PlanKind.BLOCKED and not result.writes
    assert result.why.startswith("cannot remediate: 5 settings")
    assert result.after is None


def test_without_a_workspace_or_with_one_the_policy_refuses_nothing_is_planned() -> None:
    assert "AUDITOR_REMEDIATION_WORKSPACE" in plan(workspace=None).why
    refused = plan(policy=Policy(accepted_workspaces=[OTHER]))
    assert refused.kind is PlanKind.BLOCKED and "does not accept" in refused.why


@pytest.mark.parametrize("status", [Status.UNKNOWN, Status.REMOVED])
def test_a_registry_whose_settings_were_not_read_is_not_planned(status: Status) -> None:
    result = plan(status=status)
    assert result.kind is PlanKind.BLOCKED and status.value in result.why


def test_an_exempt_registry_is_never_planned_whoever_asks() -> None:
    result = plan(status=Status.EXEMPT)
    assert result.kind is PlanKind.BLOCKED and not result.writes
    assert "exempt" in result.why


def test_categories_by_name_when_all_logs_does_not_cover_them() -> None:
    # The categories API is the authority on group membership, as for the judgement.
    categories = (
        CategoryInfo(LOGIN, "Logs", ("allLogs",)),
        CategoryInfo(REPO, "Logs", ("audit",)),
        CategoryInfo("AllMetrics", "Metrics"),
    )
    result = plan(categories=categories)
    assert result.after is not None
    assert result.after.logs == (LogEntry(True, LOGIN), LogEntry(True, REPO))


def test_no_metrics_when_the_policy_does_not_require_them() -> None:
    result = plan(policy=Policy(require_metrics=False))
    assert result.after is not None and result.after.metrics == ()


@pytest.mark.parametrize(
    "hostile",
    [
        'it\'s "quoted"',
        "new\nline",
        "ünïcödé-名前",
        "a" * 260,
        "acr-auditor-2",
        "$(rm -rf /)",
    ],
)
def test_hostile_setting_names_are_kept_exactly_and_never_reused(hostile: str) -> None:
    existing = setting(
        hostile, workspace_id=WS, log_analytics_destination_type="Dedicated",
        logs=(LogEntry(True, LOGIN),), metrics=METRICS,
    )  # fmt: skip
    result = plan(existing)
    assert result.kind is PlanKind.UPDATE
    assert result.after is not None and result.after.name == hostile
    never_weakened(existing, result.after)
    created = plan(setting(hostile, storage_account_id=STORAGE, logs=ALL_LOGS))
    assert created.setting_name not in (None, hostile)


def test_event_hub_and_storage_destinations_survive_an_update() -> None:
    both = setting(
        "both",
        workspace_id=WS,
        storage_account_id=STORAGE,
        event_hub_authorization_rule_id=HUB,
        event_hub_name="acr",
        logs=(LogEntry(True, LOGIN),),
    )
    result = plan(both)
    assert result.kind is PlanKind.UPDATE and result.after is not None
    never_weakened(both, result.after)
    assert compliant_with(result, (both,))
