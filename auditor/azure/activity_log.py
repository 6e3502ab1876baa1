"""Reads a subscription's ACR-relevant changes from the Activity Log (azure-mgmt-monitor 6.0.2
`activity_logs.list(filter, select)`, api-version 2015-04-01) and returns them as plain
`change_feed.RegistryChange` values. Not wired into the run yet (issue #15).

The filter grammar allows one `resourceProvider eq` and no `or`, so a window costs two
listings: Microsoft.ContainerRegistry (registries written or deleted) and Microsoft.Insights
(diagnostic settings, whose resource id is `<registry id>/providers/microsoft.insights/
diagnosticSettings/<name>`; settings on other resource types are skipped). Listing the whole
subscription instead would page through every VM and storage event.

An event the auditor cannot use (no timestamp, no resource id, another operation or resource
type) is skipped and counted by reason. A listing that fails (HTTP error, timeout, a page the
SDK cannot deserialize, more events than `max_events`) makes the whole `ChangeLog` an error:
the caller then reads that subscription in full.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError, DeserializationError

from auditor import odata
from auditor.azure.errors import describe_error
from auditor.change_feed import ChangeKind, ChangeLog, RegistryChange
from auditor.facts import normalize_id
from auditor.ports import ActivityLogReads

PROVIDERS = ("Microsoft.ContainerRegistry", "Microsoft.Insights")
# Only what the facts need: smaller pages (claims and httpRequest are most of an event).
SELECT = "eventTimestamp,operationName,resourceId,status,caller,correlationId,subscriptionId"
# More events than this in one window is not a change feed any more: read in full.
MAX_EVENTS = 20_000

_OPERATIONS = {
    "microsoft.insights/diagnosticsettings/write": ChangeKind.SETTING_WRITTEN,
    "microsoft.insights/diagnosticsettings/delete": ChangeKind.SETTING_DELETED,
    "microsoft.containerregistry/registries/write": ChangeKind.REGISTRY_WRITTEN,
    "microsoft.containerregistry/registries/delete": ChangeKind.REGISTRY_DELETED,
}
_REGISTRY = (
    r"(?P<registry>/subscriptions/(?P<sub>[^/]+)/resourcegroups/[^/]+"
    r"/providers/microsoft\.containerregistry/registries/[^/]+)"
)
_REGISTRY_ID = re.compile(_REGISTRY + "$", re.IGNORECASE)
_SETTING_ID = re.compile(
    _REGISTRY + r"/providers/microsoft\.insights/diagnosticsettings/(?P<name>[^/]+)$", re.IGNORECASE
)


class TooManyEvents(RuntimeError):
    pass


def event_filter(start: datetime, end: datetime, provider: str) -> str:
    """The documented "events for a resource provider" pattern."""
    return (
        f"eventTimestamp ge {odata.datetime_literal(start)}"
        f" and eventTimestamp le {odata.datetime_literal(end)}"
        f" and resourceProvider eq {odata.string_literal(provider)}"
    )


class ActivityLogReader:
    """`changes(subscription, start, end)`: one subscription's registry changes in a window.
    The SDK clients come from `ArmClients` (its timeouts, retries and pacing)."""

    def __init__(self, clients: ActivityLogReads, *, max_events: int = MAX_EVENTS) -> None:
        self._clients = clients
        self._max_events = max_events

    def changes(self, subscription_id: str, start: datetime, end: datetime, /) -> ChangeLog:
        skipped: Counter[str] = Counter()
        changes: list[RegistryChange] = []
        try:
            for event in self._events(subscription_id, start, end):
                change, reason = change_from_event(event, subscription_id)
                if change is None:
                    skipped[reason] += 1
                else:
                    changes.append(change)
        except (AzureError, DeserializationError, TooManyEvents) as exc:
            return ChangeLog(subscription_id, start, end, error=_describe(exc))
        return ChangeLog(subscription_id, start, end, tuple(changes), dict(skipped))

    def _events(self, subscription_id: str, start: datetime, end: datetime) -> Iterator[object]:
        """Every event of both providers' listings (iterating the pager sends the requests)."""
        client = self._clients.activity_monitor(subscription_id)
        count = 0
        for provider in PROVIDERS:
            found = client.activity_logs.list(
                filter=event_filter(start, end, provider), select=SELECT
            )
            for event in found:
                count += 1
                if count > self._max_events:
                    raise TooManyEvents(f"more than {self._max_events} events in the window")
                yield event


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DeserializationError):
        return "invalid response: the activity log answered a page without the documented shape"
    if isinstance(exc, TooManyEvents):
        return str(exc)
    return describe_error(exc)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _localized(model: Any, name: str) -> str:
    return _text(getattr(getattr(model, name, None), "value", None))


def change_from_event(event: Any, subscription_id: str) -> tuple[RegistryChange | None, str]:
    """The change an EventData tells, or (None, why it was skipped)."""
    kind = _OPERATIONS.get(_localized(event, "operation_name").lower())
    if kind is None:
        return None, "other_operation"
    at = getattr(event, "event_timestamp", None)
    if not isinstance(at, datetime) or at.tzinfo is None:
        return None, "no_timestamp"
    resource = _text(getattr(event, "resource_id", None)).strip().rstrip("/")
    pattern = _REGISTRY_ID if kind.name.startswith("REGISTRY") else _SETTING_ID
    match = pattern.match(resource)
    if match is None:
        return None, "not_a_registry" if resource else "no_resource_id"
    if match["sub"].lower() != subscription_id.lower():
        return None, "other_subscription"
    change = RegistryChange(
        registry_id=normalize_id(match["registry"]),
        kind=kind,
        at=at,
        status=_localized(event, "status"),
        setting_name=match.groupdict().get("name"),
        caller=_text(getattr(event, "caller", None)),
        correlation_id=_text(getattr(event, "correlation_id", None)).lower(),
    )
    return change, ""
