"""Microsoft Teams through a Workflows webhook ("When a Teams webhook request is received"):
the alert as an Adaptive Card 1.4 in the message envelope the Workflows trigger expects.

Workflows accept Adaptive Cards only (the old connector MessageCard format is not supported).
"""

from __future__ import annotations

from typing import Any

from auditor.alerts.model import Alert, AlertKind
from auditor.alerts.payload import portal_url, reason_view, summary, timestamp
from auditor.alerts.sinks.http import HttpOptions, HttpPoster
from auditor.alerts.sinks.webhook import encode

MAX_REASONS = 5
_COLOR = {AlertKind.OPENED: "Attention", AlertKind.REMINDER: "Warning", AlertKind.RESOLVED: "Good"}
_HEADING = {
    AlertKind.OPENED: "Registry logging alert",
    AlertKind.REMINDER: "Still failing",
    AlertKind.RESOLVED: "Resolved",
}


def card(alert: Alert) -> dict[str, Any]:
    """The Adaptive Card for one alert (without the message envelope)."""
    reg = alert.registry
    facts = [
        {"title": "Registry", "value": reg.name},
        {"title": "Subscription", "value": reg.subscription_id},
        {"title": "Resource group", "value": reg.resource_group or "-"},
        {"title": "Status", "value": alert.status},
        {"title": "Detected", "value": timestamp(alert.detected_at)},
    ]
    if alert.kind is not AlertKind.OPENED:
        facts.append({"title": "Open since", "value": timestamp(alert.opened_at)})
    if alert.setting_change is not None and alert.setting_change.caller:
        facts.append({"title": "Changed by", "value": alert.setting_change.caller})
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"{_HEADING[alert.kind]}: {reg.name}" + (" (test)" if alert.test else ""),
            "weight": "Bolder",
            "size": "Medium",
            "color": _COLOR[alert.kind],
            "wrap": True,
        },
        {"type": "TextBlock", "text": summary(alert), "wrap": True},
        {"type": "FactSet", "facts": facts},
    ]
    views = [reason_view(r) for r in alert.reasons]
    for view in views[:MAX_REASONS]:
        body.append(
            {
                "type": "TextBlock",
                "text": f"**{view['title']}** ({view['severity']})",
                "wrap": True,
                "spacing": "Medium",
            }
        )
        text = view["explanation"] or view["detail"]
        if text:
            body.append({"type": "TextBlock", "text": text, "wrap": True, "isSubtle": True})
        if view["remediation"] and alert.kind is not AlertKind.RESOLVED:
            body.append(
                {
                    "type": "TextBlock",
                    "text": view["remediation"],
                    "wrap": True,
                    "fontType": "Monospace",
                    "size": "Small",
                }
            )
    if len(views) > MAX_REASONS:
        body.append(
            {"type": "TextBlock", "text": f"and {len(views) - MAX_REASONS} more", "wrap": True}
        )
    body.append(
        {"type": "TextBlock", "text": f"Alert {alert.id}", "isSubtle": True, "size": "Small"}
    )
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
        "actions": [
            {"type": "Action.OpenUrl", "title": "Open in Azure portal", "url": portal_url(reg.id)}
        ],
    }


def message(alert: Alert) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card(alert),
            }
        ],
    }


class TeamsSink:
    name = "teams"

    def __init__(self, url: str, *, options: HttpOptions | None = None) -> None:
        self._poster = HttpPoster(self.name, url, options=options)

    def __repr__(self) -> str:
        return "TeamsSink(url=[redacted])"

    def send(self, alert: Alert, *, deadline: float | None = None) -> None:
        body = encode(message(alert))
        self._poster.post(body, {"Content-Type": "application/json"}, deadline=deadline)

    def close(self) -> None:
        self._poster.close()
