"""Reads diagnostic settings and their category metadata (azure-mgmt-monitor 6.0.2,
api-version 2021-05-01-preview, the first with category groups)."""

from __future__ import annotations

from typing import Any

from auditor.azure.clients import ArmClients
from auditor.facts import CategoryInfo, DiagnosticSetting, LogEntry, MetricEntry


class MalformedSettingError(ValueError):
    """The service returned a setting the auditor cannot interpret."""


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def setting_from_model(model: Any) -> DiagnosticSetting:
    name = getattr(model, "name", None)
    if not isinstance(name, str) or not name:
        raise MalformedSettingError("diagnostic setting without a name")
    logs = []
    for entry in getattr(model, "logs", None) or []:
        category = _opt_str(getattr(entry, "category", None))
        group = _opt_str(getattr(entry, "category_group", None))
        # A missing `enabled` is treated as off: only an explicit true turns logging on.
        logs.append(
            LogEntry(
                enabled=getattr(entry, "enabled", None) is True,
                category=category,
                category_group=group,
            )
        )
    metrics = []
    for entry in getattr(model, "metrics", None) or []:
        category = _opt_str(getattr(entry, "category", None))
        if category is None:
            continue  # pre-2021 shape without a category: cannot name what it covers
        metrics.append(
            MetricEntry(category=category, enabled=getattr(entry, "enabled", None) is True)
        )
    return DiagnosticSetting(
        id=str(getattr(model, "id", "") or ""),
        name=name,
        workspace_id=_opt_str(getattr(model, "workspace_id", None)),
        storage_account_id=_opt_str(getattr(model, "storage_account_id", None)),
        event_hub_authorization_rule_id=_opt_str(
            getattr(model, "event_hub_authorization_rule_id", None)
        ),
        event_hub_name=_opt_str(getattr(model, "event_hub_name", None)),
        marketplace_partner_id=_opt_str(getattr(model, "marketplace_partner_id", None)),
        log_analytics_destination_type=_opt_str(
            getattr(model, "log_analytics_destination_type", None)
        ),
        logs=tuple(logs),
        metrics=tuple(metrics),
    )


def read_settings(clients: ArmClients, registry_id: str) -> list[DiagnosticSetting]:
    """All settings of one resource (one response: the API does not page them, but the SDK
    wraps the list in a pager, so iterating is what sends the request)."""
    pager = clients.monitor().diagnostic_settings.list(resource_uri=registry_id)
    return [setting_from_model(v) for v in pager]


def read_categories(clients: ArmClients, registry_id: str) -> list[CategoryInfo]:
    pager = clients.monitor().diagnostic_settings_category.list(resource_uri=registry_id)
    out = []
    for item in pager:
        name = _opt_str(getattr(item, "name", None))
        if name is None:
            continue
        groups = tuple(
            g for g in (getattr(item, "category_groups", None) or []) if isinstance(g, str)
        )
        out.append(
            CategoryInfo(
                name=name,
                category_type=str(getattr(item, "category_type", "") or ""),
                groups=groups,
            )
        )
    return out
