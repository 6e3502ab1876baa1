"""The judgement: is one registry's logging configured as the policy requires?

Pure: it sees only fact values and the policy, does no I/O and imports no SDK, so every rule
is tested with plain data (tests/unit/test_judgement.py).

The registry is judged on the union of its settings, not setting by setting: a required
category is covered when some setting enables it (by name, or through an enabled category
group that contains it) and that same setting sends to an accepted destination. Each
uncovered category gets exactly one reason, the most specific that applies:

    covered  >  not_resource_specific  >  destination_not_allowed  >  category_disabled
             >  category_missing

i.e. the closer the registry is to compliant, the more precise the advice (switch the mode,
change the destination, flip `enabled`, add the category).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence

from auditor.facts import (
    CategoryInfo,
    DiagnosticSetting,
    LogEntry,
    Reason,
    Registry,
    Status,
    Verdict,
)
from auditor.policy import ACR_LOG_CATEGORIES, Destination, Policy
from auditor.reasons import catalog
from auditor.reasons.catalog import reason

# Azure allows at most 5 diagnostic settings per resource (azure-facts §2).
MAX_SETTINGS_PER_RESOURCE = 5

# Used when the categories API gave us nothing to go on (empty: metadata unavailable, or rows
# without categoryGroups as older api-versions return). Without it our own outage would turn
# every registry configured with `allLogs`/`audit` non-compliant, the mistake azure-facts §3
# describes for Cloud Custodian. Both ACR categories are in both groups per Azure's docs.
_WELL_KNOWN_GROUPS: Mapping[str, frozenset[str]] = {
    "alllogs": frozenset(c.casefold() for c in ACR_LOG_CATEGORIES),
    "audit": frozenset(c.casefold() for c in ACR_LOG_CATEGORIES),
}


class _Route(enum.IntEnum):
    """Where a setting sends its data, as far as the policy is concerned; higher is better."""

    REJECTED = 0
    AZURE_DIAGNOSTICS = 1  # an accepted workspace, but not in Dedicated mode when required
    ACCEPTED = 2


# Destination problems are one reason each, listing every category or metric they affect:
# code -> (subjects, quoted setting names).
_Misrouted = dict[str, tuple[list[str], list[str]]]


def judge(
    registry: Registry,
    settings: Sequence[DiagnosticSetting] | None,
    categories: Sequence[CategoryInfo],
    policy: Policy,
    *,
    read_error: str | None = None,
) -> Verdict:
    """Judge one registry's diagnostic settings against the policy.

    `settings` is None (or `read_error` is given) when they could not be read: the verdict is
    then UNKNOWN, never "no settings", so an outage cannot pass for a misconfiguration.
    `categories` is what the categories API reported for the registry; it may be empty.
    """
    if settings is None or read_error is not None:
        return Verdict(
            registry=registry,
            status=Status.UNKNOWN,
            reasons=(
                reason(
                    f"{catalog.UNKNOWN}:{unknown_kind(read_error)}",
                    error=_why(read_error),
                ),
            ),
            settings=tuple(settings or ()),
        )
    given = tuple(settings)
    if not given:
        return Verdict(
            registry=registry,
            status=Status.NONCOMPLIANT,
            reasons=(reason(catalog.NO_DIAGNOSTIC_SETTING),),
            settings=given,
        )

    groups = _group_members(categories)
    misrouted: _Misrouted = {
        catalog.NOT_RESOURCE_SPECIFIC: ([], []),
        catalog.DESTINATION_NOT_ALLOWED: ([], []),
    }
    reasons = [
        found
        for category in policy.required_categories
        if (found := _category_reason(category, given, groups, policy, misrouted)) is not None
    ]
    if policy.require_metrics:
        found = _metrics_reason(given, policy, misrouted)
        if found is not None:
            reasons.append(found)
    reasons += _misrouted_reasons(misrouted, policy)

    # Reported on top of the other reasons: it changes the fix (edit or delete a setting,
    # since a sixth cannot be added).
    if reasons and len(given) >= MAX_SETTINGS_PER_RESOURCE:
        reasons.append(
            reason(
                catalog.SETTINGS_LIMIT_REACHED,
                count=len(given),
                limit=MAX_SETTINGS_PER_RESOURCE,
            )
        )

    return Verdict(
        registry=registry,
        status=Status.NONCOMPLIANT if reasons else Status.COMPLIANT,
        reasons=tuple(sorted(reasons, key=lambda r: r.code)),
        settings=given,
    )


def _category_reason(
    category: str,
    given: Sequence[DiagnosticSetting],
    groups: Mapping[str, frozenset[str]],
    policy: Policy,
    misrouted: _Misrouted,
) -> Reason | None:
    """The reason a required category is not covered, or None when it is covered or only
    misrouted (then it joins the destination problem in `misrouted`)."""
    key = category.casefold()
    enabled = [s for s in given if any(_covers(e, key, groups) for e in s.logs if e.enabled)]
    routes = [_route(s, policy, dedicated_matters=True) for s in enabled]
    best = max(routes, default=None)
    if best is _Route.ACCEPTED:
        return None
    if best is _Route.AZURE_DIAGNOSTICS:
        in_diag_mode = [
            s for s, r in zip(enabled, routes, strict=True) if r is _Route.AZURE_DIAGNOSTICS
        ]
        _add(misrouted[catalog.NOT_RESOURCE_SPECIFIC], category, in_diag_mode)
        return None
    if best is _Route.REJECTED:
        _add(misrouted[catalog.DESTINATION_NOT_ALLOWED], category, enabled)
        return None
    mentioned = [s for s in given if any(_covers(e, key, groups) for e in s.logs)]
    if mentioned:
        return reason(f"{catalog.CATEGORY_DISABLED}:{category}", settings=_names(mentioned))
    return reason(f"{catalog.CATEGORY_MISSING}:{category}")


def _metrics_reason(
    given: Sequence[DiagnosticSetting], policy: Policy, misrouted: _Misrouted
) -> Reason | None:
    """The reason the required metrics are not sent, as `_category_reason`."""
    metric = policy.metrics_category
    enabled = [
        s
        for s in given
        if any(m.enabled and m.category.casefold() == metric.casefold() for m in s.metrics)
    ]
    # Metrics land in the AzureMetrics table whatever logAnalyticsDestinationType says, so
    # Dedicated mode is not required of the setting that carries them.
    best = max((_route(s, policy, dedicated_matters=False) for s in enabled), default=None)
    if best is None:
        return reason(catalog.METRICS_MISSING, metric=metric)
    if best is not _Route.ACCEPTED:
        _add(misrouted[catalog.DESTINATION_NOT_ALLOWED], metric, enabled)
    return None


def _misrouted_reasons(misrouted: _Misrouted, policy: Policy) -> list[Reason]:
    return [
        reason(
            code,
            subjects=", ".join(subjects),
            settings=", ".join(setting_names),
            accepted=_accepted(policy),
        )
        for code, (subjects, setting_names) in misrouted.items()
        if subjects
    ]


def enabled_log_categories(
    setting: DiagnosticSetting,
    categories: Sequence[CategoryInfo],
    candidates: Iterable[str] = ACR_LOG_CATEGORIES,
) -> frozenset[str]:
    """The `candidates` this setting enables, by name or through an enabled category group,
    under the same rules (and the same fallback groups) as `judge`. Used by the log evidence
    to know which tables a registry should be filling."""
    groups = _group_members(categories)
    enabled = [e for e in setting.logs if e.enabled]
    return frozenset(
        c for c in candidates if any(_covers(e, c.casefold(), groups) for e in enabled)
    )


def is_resource_specific(setting: DiagnosticSetting) -> bool:
    """Whether the setting's workspace data lands in resource-specific tables (Dedicated)."""
    return (setting.log_analytics_destination_type or "").strip().casefold() == "dedicated"


def _why(read_error: str | None) -> str:
    why = " ".join((read_error or "").split())
    return why or "settings could not be read"


_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")
_KNOWN_PREFIXES = (
    ("subscription unreadable", "subscription_unreadable"),
    ("inventory failed", "inventory_failed"),
    ("connection failed", "connection"),
    ("timed out", "timeout"),
    ("invalid response", "invalid_response"),
    ("configuration error", "configuration"),
)


def unknown_kind(read_error: str | None) -> str:
    """A short stable slug for `unknown:<why>` (e.g. `http_403`), so codes aggregate and filter
    cleanly; the full error text goes into the reason's detail instead."""
    text = _why(read_error) if read_error else ""
    if not text:
        return "unreadable"
    for prefix, kind in _KNOWN_PREFIXES:
        if text.lower().startswith(prefix):
            status = _HTTP_STATUS.search(text)
            return f"{kind}_http_{status.group(1)}" if status else kind
    status = _HTTP_STATUS.search(text)
    if status:
        return f"http_{status.group(1)}"
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40].rstrip("_")
    return slug or "unreadable"


def _group_members(categories: Iterable[CategoryInfo]) -> Mapping[str, frozenset[str]]:
    """Category group (casefolded) -> its log categories (casefolded), as the API reports."""
    members: dict[str, set[str]] = {}
    for info in categories:
        if info.category_type.casefold() != "logs":
            continue
        for group in info.groups:
            members.setdefault(group.casefold(), set()).add(info.name.casefold())
    if not members:
        return _WELL_KNOWN_GROUPS
    return {group: frozenset(names) for group, names in members.items()}


def _covers(entry: LogEntry, category: str, groups: Mapping[str, frozenset[str]]) -> bool:
    """Whether this entry names the (casefolded) category, directly or through its group."""
    if entry.category is not None and entry.category.casefold() == category:
        return True
    if entry.category_group is not None:
        return category in groups.get(entry.category_group.casefold(), frozenset())
    return False


def _route(setting: DiagnosticSetting, policy: Policy, *, dedicated_matters: bool) -> _Route:
    """The best of the setting's destinations: one accepted destination is enough."""
    accepted = policy.accepted_destinations
    if Destination.STORAGE in accepted and _present(setting.storage_account_id):
        return _Route.ACCEPTED
    if Destination.EVENTHUB in accepted and _present(setting.event_hub_authorization_rule_id):
        return _Route.ACCEPTED
    workspace = setting.workspace_id
    if workspace is not None and _present(workspace) and policy.accepts_workspace(workspace):
        dedicated = is_resource_specific(setting)
        if dedicated or not (dedicated_matters and policy.require_dedicated):
            return _Route.ACCEPTED
        return _Route.AZURE_DIAGNOSTICS
    return _Route.REJECTED


def _present(value: str | None) -> bool:
    # ARM returns "" for an unset destination in some responses (see the PUT example).
    return bool(value and value.strip())


def _add(
    bucket: tuple[list[str], list[str]], subject: str, settings: Iterable[DiagnosticSetting]
) -> None:
    subjects, names = bucket
    subjects.append(subject)
    for name in _quoted(settings):
        if name not in names:
            names.append(name)


def _quoted(settings: Iterable[DiagnosticSetting]) -> list[str]:
    return [f"'{s.name or s.id}'" for s in settings]


def _names(settings: Iterable[DiagnosticSetting]) -> str:
    return ", ".join(dict.fromkeys(_quoted(settings)))


def _accepted(policy: Policy) -> str:
    kinds = []
    if Destination.WORKSPACE in policy.accepted_destinations:
        text = "Log Analytics workspace"
        if policy.accepted_workspaces:
            text += " on the allow-list"
        if policy.require_dedicated:
            text += " (resource-specific mode)"
        kinds.append(text)
    if Destination.STORAGE in policy.accepted_destinations:
        kinds.append("storage account")
    if Destination.EVENTHUB in policy.accepted_destinations:
        kinds.append("event hub")
    return ", ".join(kinds)
