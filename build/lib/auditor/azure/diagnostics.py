"""Reads diagnostic settings and their category metadata (azure-mgmt-monitor 6.0.2,
api-version 2021-05-01-preview, the first with category groups)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import DecodeError, DeserializationError

from auditor.facts import CategoryInfo, DiagnosticSetting, LogEntry, MetricEntry
from auditor.ports import SettingsReads

T = TypeVar("T")

# A 200 whose body is not what ARM documents (cut short by a proxy, a half-written answer)
# is retried like a 5xx: the next answer is usually whole.
INVALID_ATTEMPTS = 3
INVALID_BACKOFF_SECONDS = 0.5


class MalformedSettingError(ValueError):
    """The service returned a setting the auditor cannot interpret."""


def read_valid(
    read: Callable[[], T], what: str, *, sleep: Callable[[float], None] = time.sleep
) -> T:
    """`read()`, again while ARM's answer cannot be parsed or interpreted; then a
    MalformedSettingError whose text starts "invalid response" (the unknown reason's slug)."""
    problem = ""
    for attempt in range(1, INVALID_ATTEMPTS + 1):
        try:
            return read()
        except DecodeError:
            problem = "was not valid JSON"
        except DeserializationError:
            problem = "did not have the documented shape"
        except MalformedSettingError as exc:
            problem = f"held {exc}"
        if attempt < INVALID_ATTEMPTS:
            sleep(INVALID_BACKOFF_SECONDS * 2 ** (attempt - 1))
    raise MalformedSettingError(
        f"invalid response: ARM's answer for {what} {problem} ({INVALID_ATTEMPTS} attempts)"
    )


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def setting_from_model(model: Any) -> DiagnosticSetting:
    name = getattr(model, "name", None)
    if not isinstance(name, str) or not name:
        raise MalformedSettingError("a diagnostic setting without a name")
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


def read_settings(
    clients: SettingsReads, registry_id: str, **options: Any
) -> list[DiagnosticSetting]:
    """All settings of one resource (one response: the API does not page them, but the SDK
    wraps the list in a pager, so iterating is what sends the request). `options` go to the
    SDK call, e.g. `retry_total=0` for a caller that schedules its own retries."""

    def read() -> list[DiagnosticSetting]:
        pager = clients.monitor().diagnostic_settings.list(resource_uri=registry_id, **options)
        return [setting_from_model(v) for v in pager]

    return read_valid(read, "the diagnostic settings")


def read_categories(clients: SettingsReads, registry_id: str) -> list[CategoryInfo]:
    return read_valid(lambda: _categories(clients, registry_id), "the setting categories")


def _categories(clients: SettingsReads, registry_id: str) -> list[CategoryInfo]:
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
