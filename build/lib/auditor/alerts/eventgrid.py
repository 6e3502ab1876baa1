"""Which registry an Event Grid resource event is about, if it concerns a registry's logging.

Pure parsing of `Microsoft.Resources.ResourceWriteSuccess` / `ResourceDeleteSuccess` events from
a subscription system topic, in the Event Grid schema (`eventType`, `eventTime`) or as
CloudEvents 1.0 (`type`, `time`); see docs/reference/examples/eventgrid-*.json. Only events on
`<registry id>/providers/Microsoft.Insights/diagnosticSettings/<name>` count; ARM ids are
matched case-insensitively (Azure sends `resourcegroups` in lower case in some events).

Events come from outside: anything unexpected gives None (not ours) or ValueError (not an
event at all), never another exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from auditor.alerts.model import SettingChange, SettingOperation
from auditor.policy import GUID_PATTERN

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"
_OPERATIONS = {
    WRITE_SUCCESS.lower(): SettingOperation.WRITE,
    DELETE_SUCCESS.lower(): SettingOperation.DELETE,
}
# ARM ids are far shorter; a longer subject is not one we want to run a regex over.
MAX_SUBJECT_LENGTH = 1024
_SETTING_ID = re.compile(
    rf"/subscriptions/(?P<sub>{GUID_PATTERN})"
    r"/resourceGroups/(?P<rg>[-\w.()]{1,90})"
    r"/providers/Microsoft\.ContainerRegistry/registries/(?P<name>[A-Za-z0-9]{5,50})"
    r"/providers/Microsoft\.Insights/diagnosticSettings/(?P<setting>[^/?#\x00-\x1f]{1,260})/?",
    re.IGNORECASE,
)
# Claims Azure puts in resource events, most readable first.
_CALLER_CLAIMS = (
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "name",
    "appid",
)
_MAX_CALLER = 200


def _event_type(event: Mapping[str, Any]) -> str | None:
    value = event.get("eventType", event.get("type"))
    return value if isinstance(value, str) else None


def _setting_match(event: Mapping[str, Any]) -> re.Match[str] | None:
    if not isinstance(event, Mapping):
        raise ValueError("an Event Grid event must be a JSON object")
    kind = _event_type(event)
    if kind is None or kind.lower() not in _OPERATIONS:
        return None
    subject = event.get("subject")
    if not isinstance(subject, str):
        data = event.get("data")
        subject = data.get("resourceUri") if isinstance(data, Mapping) else None
    if not isinstance(subject, str) or len(subject) > MAX_SUBJECT_LENGTH:
        return None
    return _SETTING_ID.fullmatch(subject)


def registry_from_event(event: Mapping[str, Any]) -> str | None:
    """The registry's resource id (canonical casing) when the event is a successful write or
    delete of one of its diagnostic settings; else None. ValueError if `event` is no object."""
    match = _setting_match(event)
    if match is None:
        return None
    return (
        f"/subscriptions/{match['sub'].lower()}/resourceGroups/{match['rg']}"
        f"/providers/Microsoft.ContainerRegistry/registries/{match['name']}"
    )


def setting_change_from_event(event: Mapping[str, Any]) -> SettingChange | None:
    """The change the event reports (operation, setting, caller, time), for the alert text."""
    match = _setting_match(event)
    if match is None:
        return None
    registry_id = registry_from_event(event)
    assert registry_id is not None  # same match as above
    kind = _event_type(event) or ""
    data = event.get("data")
    data = data if isinstance(data, Mapping) else {}
    correlation = data.get("correlationId")
    return SettingChange(
        registry_id=registry_id,
        operation=_OPERATIONS[kind.lower()],
        setting_name=match["setting"].rstrip("/"),
        at=_time(event.get("eventTime", event.get("time"))),
        caller=_caller(data.get("claims")),
        source="eventgrid",
        correlation_id=_clean(correlation) if isinstance(correlation, str) else "",
    )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _clean(text: str) -> str:
    """Printable, bounded: the caller ends up in chat messages and log records."""
    printable = "".join(ch for ch in text if ch.isprintable())
    return printable.strip()[:_MAX_CALLER]


def _caller(claims: Any) -> str:
    if not isinstance(claims, Mapping):
        return ""
    for claim in _CALLER_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            return _clean(value)
    return ""
