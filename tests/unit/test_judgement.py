"""The judgement, table-driven: each row is one registry's settings and the exact verdict."""

from __future__ import annotations

import random
from dataclasses import dataclass

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
from auditor.judgement import judge, unknown_kind
from auditor.policy import Destination, Policy
from auditor.reasons import describe

SUB = "00000000-0000-0000-0000-000000000001"
REGISTRY = Registry(
    id=f"/subscriptions/{SUB}/resourceGroups/rg-apps/providers/Microsoft.ContainerRegistry/registries/acrprod",
    name="acrprod",
    subscription_id=SUB,
    resource_group="rg-apps",
)
WS = (
    f"/subscriptions/{SUB}/resourceGroups/rg-logs/providers/"
    "Microsoft.OperationalInsights/workspaces/law-central"
)
WS_OTHER = (
    f"/subscriptions/{SUB}/resourceGroups/rg-logs/providers/"
    "Microsoft.OperationalInsights/workspaces/law-team"
)
SA = f"/subscriptions/{SUB}/resourceGroups/rg-logs/providers/Microsoft.Storage/storageAccounts/sa1"
EH_RULE = (
    f"/subscriptions/{SUB}/resourceGroups/rg-logs/providers/Microsoft.EventHub/namespaces/ns1/"
    "authorizationRules/RootManageSharedAccessKey"
)
PARTNER = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Datadog/monitors/dd1"

LOGIN = "ContainerRegistryLoginEvents"
REPO = "ContainerRegistryRepositoryEvents"

# As the categories API reports them for Microsoft.ContainerRegistry/registries.
ACR_CATEGORIES = (
    CategoryInfo(LOGIN, "Logs", ("allLogs", "audit")),
    CategoryInfo(REPO, "Logs", ("allLogs", "audit")),
    CategoryInfo("AllMetrics", "Metrics"),
)
# A variant where the repository events are in allLogs only: the API's word must win.
REPO_NOT_AUDIT = (
    CategoryInfo(LOGIN, "Logs", ("allLogs", "audit")),
    CategoryInfo(REPO, "Logs", ("allLogs",)),
    CategoryInfo("AllMetrics", "Metrics"),
)
# Older api-versions answer without categoryGroups.
NO_GROUP_INFO = (CategoryInfo(LOGIN, "Logs"), CategoryInfo(REPO, "Logs"))


def cat(name: str, enabled: bool = True) -> LogEntry:
    return LogEntry(enabled=enabled, category=name)


def group(name: str, enabled: bool = True) -> LogEntry:
    return LogEntry(enabled=enabled, category_group=name)


METRICS_ON = (MetricEntry("AllMetrics", True),)
METRICS_OFF = (MetricEntry("AllMetrics", False),)


def setting(
    name: str,
    *logs: LogEntry,
    metrics: tuple[MetricEntry, ...] = METRICS_ON,
    workspace: str | None = WS,
    mode: str | None = "Dedicated",
    storage: str | None = None,
    event_hub: str | None = None,
    partner: str | None = None,
) -> DiagnosticSetting:
    return DiagnosticSetting(
        id=f"{REGISTRY.id}/providers/microsoft.insights/diagnosticSettings/{name}",
        name=name,
        workspace_id=workspace,
        storage_account_id=storage,
        event_hub_authorization_rule_id=event_hub,
        event_hub_name="acr-logs" if event_hub else None,
        marketplace_partner_id=partner,
        log_analytics_destination_type=mode if workspace else None,
        logs=logs,
        metrics=metrics,
    )


def storage_only(
    name: str, *logs: LogEntry, metrics: tuple[MetricEntry, ...] = METRICS_ON
) -> DiagnosticSetting:
    return setting(name, *logs, metrics=metrics, workspace=None, storage=SA)


BOTH = (cat(LOGIN), cat(REPO))
DEFAULT = Policy()


@dataclass(frozen=True)
class Case:
    id: str
    settings: tuple[DiagnosticSetting, ...] | None
    expected_status: Status
    expected_codes: tuple[str, ...]
    policy: Policy = DEFAULT
    categories: tuple[CategoryInfo, ...] = ACR_CATEGORIES
    read_error: str | None = None


CASES = [
    # --- how a category is enabled: by name or through a group -----------------------------------
    Case("explicit-categories", (setting("diag", *BOTH),), Status.COMPLIANT, ()),
    Case("group-allLogs", (setting("diag", group("allLogs")),), Status.COMPLIANT, ()),
    Case("group-audit", (setting("diag", group("audit")),), Status.COMPLIANT, ()),
    Case(
        "names-in-other-letter-case",
        (setting("diag", group("AllLogs"), cat(LOGIN.lower())),),
        Status.COMPLIANT,
        (),
    ),
    Case(
        "no-category-metadata-falls-back-to-well-known-groups",
        (setting("diag", group("audit")),),
        Status.COMPLIANT,
        (),
        categories=(),
    ),
    Case(
        "metadata-without-groups-falls-back",
        (setting("diag", group("allLogs")),),
        Status.COMPLIANT,
        (),
        categories=NO_GROUP_INFO,
    ),
    Case(
        "group-membership-comes-from-the-api",
        (setting("diag", group("audit")),),
        Status.NONCOMPLIANT,
        (f"category_missing:{REPO}",),
        categories=REPO_NOT_AUDIT,
    ),
    Case(
        "unknown-group-covers-nothing",
        (setting("diag", group("somethingElse")),),
        Status.NONCOMPLIANT,
        (f"category_missing:{LOGIN}", f"category_missing:{REPO}"),
    ),
    # --- disabled entries ------------------------------------------------------------------------
    Case(
        "one-category-disabled",
        (setting("diag", cat(LOGIN), cat(REPO, enabled=False)),),
        Status.NONCOMPLIANT,
        (f"category_disabled:{REPO}",),
    ),
    Case(
        "group-disabled",
        (setting("diag", group("allLogs", enabled=False)),),
        Status.NONCOMPLIANT,
        (f"category_disabled:{LOGIN}", f"category_disabled:{REPO}"),
    ),
    Case(
        "disabled-here-enabled-there",
        (setting("a", cat(LOGIN, enabled=False), cat(REPO)), setting("b", cat(LOGIN))),
        Status.COMPLIANT,
        (),
    ),
    # --- the union over settings -----------------------------------------------------------------
    Case(
        "coverage-split-across-two-settings",
        (setting("logins", cat(LOGIN), metrics=()), setting("repos", cat(REPO))),
        Status.COMPLIANT,
        (),
    ),
    Case(
        "one-category-accepted-the-other-only-to-storage",
        (setting("logins", cat(LOGIN)), storage_only("repos", cat(REPO))),
        Status.NONCOMPLIANT,
        ("destination_not_allowed",),
    ),
    Case(
        "accepted-setting-wins-over-storage-copy",
        (storage_only("archive", group("allLogs")), setting("law", group("allLogs"))),
        Status.COMPLIANT,
        (),
    ),
    # --- destinations ----------------------------------------------------------------------------
    Case(
        "storage-only",
        (storage_only("archive", group("allLogs")),),
        Status.NONCOMPLIANT,
        ("destination_not_allowed",),
    ),
    Case(
        "storage-accepted-by-policy",
        (storage_only("archive", group("allLogs")),),
        Status.COMPLIANT,
        (),
        policy=Policy(accepted_destinations=frozenset({Destination.STORAGE})),
    ),
    Case(
        "event-hub-accepted-by-policy",
        (setting("siem", group("allLogs"), workspace=None, event_hub=EH_RULE),),
        Status.COMPLIANT,
        (),
        policy=Policy(accepted_destinations=frozenset({Destination.EVENTHUB})),
    ),
    Case(
        "event-hub-not-accepted",
        (setting("siem", group("allLogs"), workspace=None, event_hub=EH_RULE),),
        Status.NONCOMPLIANT,
        ("destination_not_allowed",),
    ),
    Case(
        "partner-destination-never-accepted",
        (setting("dd", group("allLogs"), workspace=None, partner=PARTNER),),
        Status.NONCOMPLIANT,
        ("destination_not_allowed",),
        policy=Policy(accepted_destinations=frozenset(Destination)),
    ),
    Case(
        "empty-workspace-id-is-no-workspace",
        (setting("diag", group("allLogs"), workspace="", storage=SA),),
        Status.NONCOMPLIANT,
        ("destination_not_allowed",),
    ),
    Case(
        "workspace-plus-storage-counts-for-the-workspace",
        (setting("both", group("allLogs"), storage=SA),),
        Status.COMPLIANT,
        (),
    ),
    Case(
        "workspace-plus-storage-counts-for-the-storage",
        (setting("both", group("allLogs"), mode=None, storage=SA),),
        Status.COMPLIANT,
        (),
        policy=Policy(
            accepted_destinations=frozenset({Destination.WORKSPACE, Destination.STORAGE})
        ),
    ),
    # --- Dedicated (resource-specific) mode ------------------------------------------------------
    Case(
        "azure-diagnostics-mode",
        (setting("diag", group("allLogs"), mode=None),),
        Status.NONCOMPLIANT,
        ("not_resource_specific",),
    ),
    Case(
        "azure-diagnostics-mode-allowed-by-policy",
        (setting("diag", group("allLogs"), mode=None),),
        Status.COMPLIANT,
        (),
        policy=Policy(require_dedicated=False),
    ),
    Case(
        "dedicated-in-lower-case",
        (setting("diag", group("allLogs"), mode="dedicated"),),
        Status.COMPLIANT,
        (),
    ),
    Case(
        "azure-diagnostics-mode-plus-storage-copy-still-names-the-mode",
        (setting("diag", group("allLogs"), mode=None), storage_only("archive", group("allLogs"))),
        Status.NONCOMPLIANT,
        ("not_resource_specific",),
    ),
    Case(
        "azure-diagnostics-mode-on-a-workspace-off-the-allow-list",
        (setting("diag", group("allLogs"), workspace=WS_OTHER, mode=None),),
        Status.NONCOMPLIANT,
        ("destination_not_allowed",),
        policy=Policy(accepted_workspaces=frozenset({WS})),
    ),
    # --- precedence: one most-specific reason per category ---------------------------------------
    Case(
        "wrong-destination-beats-disabled",
        (setting("law", cat(LOGIN), cat(REPO, enabled=False)), storage_only("archive", cat(REPO))),
        Status.NONCOMPLIANT,
        ("destination_not_allowed",),
    ),
    Case(
        "disabled-beats-missing-and-mode-reported-separately",
        (setting("diag", cat(LOGIN), cat(REPO, enabled=False), mode=None),),
        Status.NONCOMPLIANT,
        (f"category_disabled:{REPO}", "not_resource_specific"),
    ),
    # --- several reasons at once, reported in code order -----------------------------------------
    Case(
        "mode-for-one-category-storage-for-the-other",
        (setting("logins", cat(LOGIN), mode=None), storage_only("repos", cat(REPO))),
        Status.NONCOMPLIANT,
        ("destination_not_allowed", "not_resource_specific"),
    ),
    Case(
        "storage-only-without-metrics",
        (storage_only("archive", group("allLogs"), metrics=()),),
        Status.NONCOMPLIANT,
        ("destination_not_allowed", "metrics_missing"),
    ),
    # --- odd shapes ------------------------------------------------------------------------------
    Case(
        "empty-logs-list",
        (setting("metrics-only"),),
        Status.NONCOMPLIANT,
        (f"category_missing:{LOGIN}", f"category_missing:{REPO}"),
    ),
    Case(
        "extra-unknown-categories-ignored",
        (setting("diag", *BOTH, cat("SomethingNew"), cat("Legacy", enabled=False)),),
        Status.COMPLIANT,
        (),
    ),
    Case(
        "entry-without-category-or-group-ignored",
        (setting("old-api", LogEntry(enabled=True), cat(LOGIN)),),
        Status.NONCOMPLIANT,
        (f"category_missing:{REPO}",),
    ),
    Case(
        "policy-requiring-one-category",
        (setting("diag", cat(LOGIN)),),
        Status.COMPLIANT,
        (),
        policy=Policy(required_categories=(LOGIN,)),
    ),
    # --- no settings, and the 5-settings limit ---------------------------------------------------
    Case("no-settings", (), Status.NONCOMPLIANT, ("no_diagnostic_setting",)),
    Case(
        "five-settings-none-compliant",
        tuple(storage_only(f"s{i}", group("allLogs")) for i in range(5)),
        Status.NONCOMPLIANT,
        ("destination_not_allowed", "settings_limit_reached"),
    ),
    Case(
        "five-settings-compliant-union",
        (
            *(storage_only(f"s{i}", group("allLogs")) for i in range(4)),
            setting("law", group("allLogs")),
        ),
        Status.COMPLIANT,
        (),
    ),
    Case(
        "four-settings-none-compliant-no-limit-reason",
        tuple(storage_only(f"s{i}", group("allLogs")) for i in range(4)),
        Status.NONCOMPLIANT,
        ("destination_not_allowed",),
    ),
    # --- workspace allow-list --------------------------------------------------------------------
    Case(
        "allow-list-hit-different-casing",
        (setting("diag", group("allLogs"), workspace=WS.lower()),),
        Status.COMPLIANT,
        (),
        policy=Policy(accepted_workspaces=frozenset({WS.upper()})),
    ),
    Case(
        "allow-list-hit-trailing-slash",
        (setting("diag", group("allLogs"), workspace=WS + "/"),),
        Status.COMPLIANT,
        (),
        policy=Policy(accepted_workspaces=frozenset({WS})),
    ),
    Case(
        "allow-list-miss",
        (setting("diag", group("allLogs"), workspace=WS_OTHER),),
        Status.NONCOMPLIANT,
        ("destination_not_allowed",),
        policy=Policy(accepted_workspaces=frozenset({WS})),
    ),
    # --- metrics --------------------------------------------------------------------------------
    Case(
        "metrics-missing",
        (setting("diag", group("allLogs"), metrics=()),),
        Status.NONCOMPLIANT,
        ("metrics_missing",),
    ),
    Case(
        "metrics-disabled",
        (setting("diag", group("allLogs"), metrics=METRICS_OFF),),
        Status.NONCOMPLIANT,
        ("metrics_missing",),
    ),
    Case(
        "metrics-only-to-storage",
        (setting("diag", group("allLogs"), metrics=()), storage_only("metrics")),
        Status.NONCOMPLIANT,
        ("destination_not_allowed",),
    ),
    Case(
        "metrics-in-azure-diagnostics-mode-count",
        (setting("logs", group("allLogs"), metrics=()), setting("metrics", mode=None)),
        Status.COMPLIANT,
        (),
    ),
    Case(
        "metrics-not-required",
        (setting("diag", group("allLogs"), metrics=()),),
        Status.COMPLIANT,
        (),
        policy=Policy(require_metrics=False),
    ),
    Case(
        "metrics-only-policy",
        (setting("diag", metrics=METRICS_OFF),),
        Status.NONCOMPLIANT,
        ("metrics_missing",),
        policy=Policy(required_categories=()),
    ),
    # --- settings that could not be read ---------------------------------------------------------
    Case(
        "read-error",
        None,
        Status.UNKNOWN,
        ("unknown:authorizationfailed",),
        read_error="AuthorizationFailed",
    ),
    Case("settings-none-without-error", None, Status.UNKNOWN, ("unknown:unreadable",)),
    Case(
        "read-error-wins-over-partial-settings",
        (setting("diag", group("allLogs")),),
        Status.UNKNOWN,
        ("unknown:http_429",),
        read_error="HTTP 429\n  throttled ",
    ),
    Case(
        "all-together-missing",
        (setting("x", metrics=()),),
        Status.NONCOMPLIANT,
        (
            f"category_missing:{LOGIN}",
            f"category_missing:{REPO}",
            "metrics_missing",
        ),
    ),
]


def run(case: Case) -> Verdict:
    return judge(REGISTRY, case.settings, case.categories, case.policy, read_error=case.read_error)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_verdict(case: Case) -> None:
    verdict = run(case)
    assert verdict.status is case.expected_status
    assert tuple(r.code for r in verdict.reasons) == case.expected_codes
    assert verdict.registry == REGISTRY
    assert verdict.settings == tuple(case.settings or ())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_reason_is_described_and_has_words(case: Case) -> None:
    for reason in run(case).reasons:
        assert describe(reason.code).code == reason.code
        assert reason.detail.strip()
        assert "{" not in reason.detail  # every template field was filled


SHUFFLABLE = [c for c in CASES if c.settings]


@pytest.mark.parametrize("case", SHUFFLABLE, ids=[c.id for c in SHUFFLABLE])
def test_setting_order_does_not_change_the_verdict(case: Case) -> None:
    shuffled = list(case.settings)
    random.Random(7).shuffle(shuffled)
    reversed_case = Case(**{**case.__dict__, "settings": tuple(reversed(shuffled))})
    assert tuple(r.code for r in run(reversed_case).reasons) == case.expected_codes


def test_ids_cover_the_issue_checklist() -> None:
    # Guards against the table losing a scenario the issue asks for.
    ids = {c.id for c in CASES}
    for needed in (
        "explicit-categories",
        "group-allLogs",
        "group-audit",
        "one-category-disabled",
        "coverage-split-across-two-settings",
        "one-category-accepted-the-other-only-to-storage",
        "storage-only",
        "azure-diagnostics-mode",
        "empty-logs-list",
        "extra-unknown-categories-ignored",
        "no-settings",
        "five-settings-none-compliant",
        "allow-list-hit-different-casing",
        "allow-list-miss",
        "metrics-missing",
        "metrics-disabled",
        "metrics-not-required",
        "read-error",
        "storage-accepted-by-policy",
        "event-hub-accepted-by-policy",
    ):
        assert needed in ids


def test_details_name_what_and_where() -> None:
    verdict = judge(
        REGISTRY,
        (setting("law", cat(LOGIN), cat(REPO, enabled=False), metrics=()), storage_only("blob")),
        ACR_CATEGORIES,
        DEFAULT,
    )
    details = {r.code: r.detail for r in verdict.reasons}
    assert details == {
        f"category_disabled:{REPO}": f"{REPO} appears only in disabled entries (settings: 'law').",
        "destination_not_allowed": (
            "Enabled only in settings whose destinations the policy does not accept: "
            "AllMetrics (settings: 'blob'). Accepted destinations: "
            "Log Analytics workspace (resource-specific mode)."
        ),
    }


def test_misrouted_categories_share_one_reason_naming_each() -> None:
    verdict = judge(
        REGISTRY,
        (storage_only("a", cat(LOGIN)), storage_only("b", cat(REPO)), storage_only("c", cat(REPO))),
        ACR_CATEGORIES,
        Policy(accepted_workspaces=frozenset({WS})),
    )
    (reason,) = verdict.reasons
    assert reason.code == "destination_not_allowed"
    assert f"{LOGIN}, {REPO}, AllMetrics (settings: 'a', 'b', 'c')" in reason.detail
    assert "Log Analytics workspace on the allow-list (resource-specific mode)" in reason.detail


def test_not_resource_specific_names_only_the_settings_in_that_mode() -> None:
    verdict = judge(
        REGISTRY,
        (setting("diag-mode", group("allLogs"), mode=None), storage_only("blob", group("allLogs"))),
        ACR_CATEGORIES,
        DEFAULT,
    )
    (reason,) = verdict.reasons
    assert reason.code == "not_resource_specific"
    assert "'diag-mode'" in reason.detail
    assert "'blob'" not in reason.detail


def test_settings_limit_detail() -> None:
    settings = tuple(storage_only(f"s{i}", group("allLogs")) for i in range(5))
    verdict = judge(REGISTRY, settings, ACR_CATEGORIES, DEFAULT)
    limit = next(r for r in verdict.reasons if r.code == "settings_limit_reached")
    assert "5 of 5" in limit.detail


def test_read_error_detail_and_settings_kept() -> None:
    given = (setting("diag", group("allLogs")),)
    verdict = judge(REGISTRY, given, ACR_CATEGORIES, DEFAULT, read_error="timed out")
    assert verdict.reasons[0].detail == "The diagnostic settings could not be read: timed out."
    assert verdict.settings == given


def test_accepts_lists_and_returns_tuples() -> None:
    verdict = judge(REGISTRY, [setting("diag", group("allLogs"))], list(ACR_CATEGORIES), DEFAULT)
    assert verdict.status is Status.COMPLIANT
    assert isinstance(verdict.settings, tuple)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("HTTP 403 AuthorizationFailed: no access", "http_403"),
        ("HTTP 500: boom", "http_500"),
        (
            "subscription unreadable: HTTP 403 AuthorizationFailed: x",
            "subscription_unreadable_http_403",
        ),
        ("inventory failed: connection failed: refused", "inventory_failed"),
        ("connection failed: timed out", "connection"),
        (
            "MalformedSettingError: diagnostic setting without a name",
            "malformedsettingerror_diagnostic_setting",
        ),
        ("invalid response: ARM's answer for the settings was not valid JSON", "invalid_response"),
        ("", "unreadable"),
        (None, "unreadable"),
        ("'; drop table --", "drop_table"),
    ],
)
def test_unknown_kind_is_a_short_stable_slug(error: str | None, kind: str) -> None:
    assert unknown_kind(error) == kind
