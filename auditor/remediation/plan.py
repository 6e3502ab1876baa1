"""The remediation plan: the one diagnostic setting to create or update so that a registry
meets the policy (pure: facts in, a plan out; no I/O).

Rules, in order:
- never delete a setting, never take anything away from one (a category, a destination, a
  mode that would send less), never point one somewhere else: a remediation only adds;
- prefer updating a setting that already sends to the remediation workspace (adding what it
  lacks); else create a new setting named `acr-auditor` (or `acr-auditor-2`... when a setting
  has that name, in any case: ARM compares them case-insensitively);
- Azure allows five settings per resource: at the limit, a setting without any workspace (a
  storage account or event hub only) may gain the workspace as one more destination; else
  the plan says it cannot remediate rather than deleting anything;
- a new setting sends `allLogs` (when the group covers the required categories, as the
  judgement counts groups: it follows the categories Azure adds) and `AllMetrics` in
  resource-specific (Dedicated) mode; an update adds categories by name to a setting that
  names categories, `allLogs` to one that uses groups (ARM refuses a mix);
- ARM refuses a setting that sends a category to a destination another setting of the
  resource already sends it to: such an addition is left out;
- the judgement is the oracle: a plan is only offered when `judge` finds the registry
  compliant with it, and every addition it does not need is left out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from auditor.facts import (
    CategoryInfo,
    DiagnosticSetting,
    LogEntry,
    MetricEntry,
    Registry,
    Status,
    Verdict,
    normalize_id,
)
from auditor.judgement import (
    MAX_SETTINGS_PER_RESOURCE,
    enabled_log_categories,
    is_resource_specific,
    judge,
)
from auditor.policy import ACR_LOG_CATEGORIES, Policy

SETTING_NAME = "acr-auditor"
ALL_LOGS = "allLogs"
DEDICATED = "Dedicated"


class PlanKind(enum.StrEnum):
    NONE = "none"  # the settings already meet the policy
    CREATE = "create"
    UPDATE = "update"
    BLOCKED = "blocked"  # cannot remediate: `why` says why


@dataclass(frozen=True)
class Plan:
    registry: Registry
    kind: PlanKind
    status_before: Status
    reasons_before: tuple[str, ...] = ()
    before: DiagnosticSetting | None = None  # the setting updated (None: created, or none)
    after: DiagnosticSetting | None = None  # the setting as it will be written
    changes: tuple[str, ...] = ()  # what the write changes, in plain words
    why: str = ""  # for NONE and BLOCKED

    @property
    def writes(self) -> bool:
        return self.kind in (PlanKind.CREATE, PlanKind.UPDATE)

    @property
    def setting_name(self) -> str | None:
        return self.after.name if self.after is not None else None


class _Kind(enum.Enum):
    WORKSPACE = "workspace"
    DEDICATED = "dedicated"
    CATEGORY = "category"
    GROUP = "group"
    METRIC = "metric"


@dataclass(frozen=True)
class _Add:
    """One addition to a setting."""

    kind: _Kind
    value: str = ""

    def words(self) -> str:
        return {
            _Kind.WORKSPACE: f"add the workspace {self.value} as a destination",
            _Kind.DEDICATED: "switch to resource-specific (Dedicated) mode: its logs go to the "
            "ContainerRegistry* tables instead of AzureDiagnostics",
            _Kind.CATEGORY: f"enable the log category {self.value}",
            _Kind.GROUP: f"enable the category group {self.value}",
            _Kind.METRIC: f"enable the metrics {self.value}",
        }[self.kind]


def plan_remediation(
    verdict: Verdict,
    categories: Sequence[CategoryInfo],
    policy: Policy,
    workspace: str | None,
    *,
    name: str = SETTING_NAME,
) -> Plan:
    """The plan for the registry of `verdict`, judged anew on its settings alone (a verdict
    may be noncompliant for its logs, which no setting fixes)."""
    registry = verdict.registry
    if verdict.status in (Status.UNKNOWN, Status.REMOVED):
        return Plan(
            registry,
            PlanKind.BLOCKED,
            verdict.status,
            tuple(r.code for r in verdict.reasons),
            why=f"its settings were not read (status {verdict.status.value})",
        )
    if verdict.status is Status.EXEMPT:
        # Its owners accepted it as it is: the exemption is lifted first, by whoever set it.
        return Plan(
            registry,
            PlanKind.BLOCKED,
            verdict.status,
            tuple(r.code for r in verdict.reasons),
            why="it is exempt: lift the exemption (tag or AUDITOR_EXEMPTIONS) to remediate it",
        )
    settings = tuple(verdict.settings)
    judged = judge(registry, settings, categories, policy)
    base = Plan(registry, PlanKind.BLOCKED, judged.status, tuple(r.code for r in judged.reasons))
    if judged.status is Status.COMPLIANT:
        return replace(base, kind=PlanKind.NONE, why="its diagnostic settings meet the policy")
    if workspace is None:
        return replace(base, why="no remediation workspace is set (AUDITOR_REMEDIATION_WORKSPACE)")
    if not policy.accepts_workspace(workspace):
        return replace(base, why=f"the policy does not accept the workspace {workspace}")
    oracle = _Oracle(registry, settings, categories, policy)
    for candidate in _candidates(settings, workspace):
        found = oracle.smallest(candidate, _additions(candidate, workspace, categories, policy))
        if found is not None:
            after, added = found
            return replace(base, kind=PlanKind.UPDATE, before=candidate, after=after, changes=added)
    if len(settings) >= MAX_SETTINGS_PER_RESOURCE:
        return replace(
            base,
            why=f"cannot remediate: {len(settings)} settings, Azure's limit, and none can be "
            "updated to send to the workspace without weakening it; change or delete one by hand",
        )
    new = DiagnosticSetting(
        id="",
        name=free_name(settings, name),
        workspace_id=workspace,
        log_analytics_destination_type=DEDICATED,
    )
    found = oracle.smallest(new, _new_additions(categories, policy))
    if found is None:
        return replace(base, why="no single setting sent to the workspace makes it compliant")
    after, added = found
    return replace(
        base,
        kind=PlanKind.CREATE,
        after=after,
        changes=(f"create the setting '{after.name}' sending to {workspace}", *added),
    )


def free_name(settings: Sequence[DiagnosticSetting], name: str = SETTING_NAME) -> str:
    """`name`, or `name-2`, `name-3`... whichever no setting has (ARM names compare
    case-insensitively, so `ACR-Auditor` takes `acr-auditor`)."""
    taken = {s.name.casefold() for s in settings}
    candidate, number = name, 1
    while candidate.casefold() in taken:
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def _candidates(settings: Sequence[DiagnosticSetting], workspace: str) -> list[DiagnosticSetting]:
    """Settings that may be updated: those sending to the workspace; at the limit also those
    with no workspace at all (adding one takes nothing from them)."""
    target = normalize_id(workspace)
    same = [s for s in settings if s.workspace_id and normalize_id(s.workspace_id) == target]
    if len(settings) < MAX_SETTINGS_PER_RESOURCE:
        return same
    return same + [s for s in settings if not s.workspace_id]


def _known_categories(categories: Sequence[CategoryInfo], policy: Policy) -> tuple[str, ...]:
    logs = [c.name for c in categories if c.category_type.casefold() == "logs"]
    return tuple(dict.fromkeys([*(logs or ACR_LOG_CATEGORIES), *policy.required_categories]))


def _all_logs_covers(categories: Sequence[CategoryInfo], required: Sequence[str]) -> bool:
    probe = DiagnosticSetting(id="", name="", logs=(LogEntry(True, category_group=ALL_LOGS),))
    return len(enabled_log_categories(probe, categories, required)) == len(required)


def _additions(
    setting: DiagnosticSetting, workspace: str, categories: Sequence[CategoryInfo], policy: Policy
) -> list[_Add]:
    """Everything the policy could need of this setting, as additions to it."""
    adds: list[_Add] = []
    if not setting.workspace_id:
        adds.append(_Add(_Kind.WORKSPACE, workspace))
    if policy.require_dedicated and not is_resource_specific(setting):
        adds.append(_Add(_Kind.DEDICATED))
    has = enabled_log_categories(setting, categories, policy.required_categories)
    lacking = [c for c in policy.required_categories if c not in has]
    uses_groups = any(e.category_group for e in setting.logs)
    if lacking and uses_groups:
        if _all_logs_covers(categories, lacking):
            adds.append(_Add(_Kind.GROUP, ALL_LOGS))
    else:
        adds.extend(_Add(_Kind.CATEGORY, c) for c in lacking)
    if policy.require_metrics and not _sends_metric(setting, policy.metrics_category):
        adds.append(_Add(_Kind.METRIC, policy.metrics_category))
    return adds


def _new_additions(categories: Sequence[CategoryInfo], policy: Policy) -> list[_Add]:
    required = policy.required_categories
    adds: list[_Add]
    if required and _all_logs_covers(categories, required):
        adds = [_Add(_Kind.GROUP, ALL_LOGS)]
    else:
        adds = [_Add(_Kind.CATEGORY, c) for c in required]
    if policy.require_metrics:
        adds.append(_Add(_Kind.METRIC, policy.metrics_category))
    return adds


def _sends_metric(setting: DiagnosticSetting, metric: str) -> bool:
    return any(m.enabled and m.category.casefold() == metric.casefold() for m in setting.metrics)


def _with(setting: DiagnosticSetting, adds: Sequence[_Add]) -> DiagnosticSetting:
    """The setting with the additions made: entries present but disabled are enabled in place,
    others appended; nothing is removed."""
    for add in adds:
        if add.kind is _Kind.WORKSPACE:
            setting = replace(setting, workspace_id=add.value)
        elif add.kind is _Kind.DEDICATED:
            setting = replace(setting, log_analytics_destination_type=DEDICATED)
        elif add.kind is _Kind.METRIC:
            setting = replace(setting, metrics=_enabled_metric(setting.metrics, add.value))
        else:
            setting = replace(setting, logs=_enabled_log(setting.logs, add))
    return setting


def _enabled_log(logs: tuple[LogEntry, ...], add: _Add) -> tuple[LogEntry, ...]:
    group = add.kind is _Kind.GROUP

    def same(entry: LogEntry) -> bool:
        name = entry.category_group if group else entry.category
        return name is not None and name.casefold() == add.value.casefold()

    if any(same(e) for e in logs):
        return tuple(replace(e, enabled=True) if same(e) else e for e in logs)
    entry = LogEntry(True, category_group=add.value) if group else LogEntry(True, add.value)
    return (*logs, entry)


def _enabled_metric(metrics: tuple[MetricEntry, ...], name: str) -> tuple[MetricEntry, ...]:
    if any(m.category.casefold() == name.casefold() for m in metrics):
        return tuple(
            replace(m, enabled=True) if m.category.casefold() == name.casefold() else m
            for m in metrics
        )
    return (*metrics, MetricEntry(name, True))


class _Oracle:
    """Asks the judgement whether a registry would be compliant with one setting written."""

    def __init__(
        self,
        registry: Registry,
        settings: Sequence[DiagnosticSetting],
        categories: Sequence[CategoryInfo],
        policy: Policy,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._categories = categories
        self._policy = policy
        self._known = _known_categories(categories, policy)

    def smallest(
        self, setting: DiagnosticSetting, adds: Sequence[_Add]
    ) -> tuple[DiagnosticSetting, tuple[str, ...]] | None:
        """The setting with the fewest of `adds` that makes the registry compliant (each
        addition ARM would refuse left out, then each one not needed), with the words of
        what was added; None when even all of them do not."""
        others = [s for s in self._settings if s.name.casefold() != setting.name.casefold()]
        conflicts = self._conflicts_with(others)
        kept = [a for a in adds if not conflicts(_with(setting, [a]))]
        full = _with(setting, kept)
        if not kept or conflicts(full) or not self._compliant(others, full):
            return None
        for add in list(kept):
            fewer = [a for a in kept if a is not add]
            if self._compliant(others, _with(setting, fewer)):
                kept = fewer
        return _with(setting, kept), tuple(a.words() for a in kept)

    def _compliant(self, others: list[DiagnosticSetting], setting: DiagnosticSetting) -> bool:
        verdict = judge(self._registry, [*others, setting], self._categories, self._policy)
        return verdict.status is Status.COMPLIANT

    def _conflicts_with(
        self, others: Sequence[DiagnosticSetting]
    ) -> Callable[[DiagnosticSetting], bool]:
        """Whether a setting would send a category to a destination that another setting
        already sends that category to (ARM refuses the write)."""

        def conflicts(setting: DiagnosticSetting) -> bool:
            mine = self._sent(setting)
            return any(
                _sinks(setting) & _sinks(other) and mine & self._sent(other) for other in others
            )

        return conflicts

    def _sent(self, setting: DiagnosticSetting) -> set[str]:
        logs = enabled_log_categories(setting, self._categories, self._known)
        metrics = {m.category for m in setting.metrics if m.enabled}
        return {name.casefold() for name in (*logs, *metrics)}


def _sinks(setting: DiagnosticSetting) -> set[str]:
    sinks = set()
    if setting.workspace_id:
        sinks.add("workspace:" + normalize_id(setting.workspace_id))
    if setting.storage_account_id:
        sinks.add("storage:" + normalize_id(setting.storage_account_id))
    if setting.event_hub_authorization_rule_id:
        rule = normalize_id(setting.event_hub_authorization_rule_id)
        sinks.add(f"eventhub:{rule}|{(setting.event_hub_name or '').lower()}")
    return sinks
