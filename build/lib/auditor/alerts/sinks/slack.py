"""Slack incoming webhook: the alert as a Block Kit message, with `text` as the notification
fallback. Text from Azure (names, callers, details) is escaped, so it cannot ping a channel."""

from __future__ import annotations

from typing import Any

from auditor.alerts.model import Alert, AlertKind
from auditor.alerts.payload import portal_url, reason_view, summary, timestamp
from auditor.alerts.sinks.http import HttpOptions, HttpPoster
from auditor.alerts.sinks.webhook import encode

MAX_REASONS = 5
_SECTION_LIMIT = 3000  # Slack rejects longer section text
_HEADER_LIMIT = 150
_EMOJI = {
    AlertKind.OPENED: ":rotating_light:",
    AlertKind.REMINDER: ":warning:",
    AlertKind.RESOLVED: ":white_check_mark:",
}


def escape(text: str) -> str:
    """Slack's three control characters; `<!channel>` and links need `<` and `>`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:_SECTION_LIMIT]}}


def message(alert: Alert) -> dict[str, Any]:
    reg = alert.registry
    line = summary(alert)
    header = f"{alert.kind.value.capitalize()}: {reg.name}" + (" (test)" if alert.test else "")
    fields = [
        f"*Subscription*\n{escape(reg.subscription_id)}",
        f"*Resource group*\n{escape(reg.resource_group or '-')}",
        f"*Status*\n{escape(alert.status)}",
        f"*Detected*\n{timestamp(alert.detected_at)}",
    ]
    if alert.setting_change is not None and alert.setting_change.caller:
        fields.append(f"*Changed by*\n{escape(alert.setting_change.caller)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header[:_HEADER_LIMIT]}},
        _section(f"{_EMOJI[alert.kind]} {escape(line)}"),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    views = [reason_view(r) for r in alert.reasons]
    for view in views[:MAX_REASONS]:
        text = f"*{escape(view['title'])}*\n{escape(view['detail'] or view['explanation'])}"
        if view["remediation"] and alert.kind is not AlertKind.RESOLVED:
            text += f"\n```{escape(view['remediation'])}```"
        blocks.append(_section(text))
    if len(views) > MAX_REASONS:
        blocks.append(_section(f"and {len(views) - MAX_REASONS} more"))
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"<{portal_url(reg.id)}|Open in Azure portal> · alert {alert.id}",
                }
            ],
        }
    )
    return {"text": f"{_EMOJI[alert.kind]} {escape(line)}", "blocks": blocks}


class SlackSink:
    name = "slack"

    def __init__(self, url: str, *, options: HttpOptions | None = None) -> None:
        self._poster = HttpPoster(self.name, url, options=options)

    def __repr__(self) -> str:
        return "SlackSink(url=[redacted])"

    def send(self, alert: Alert, *, deadline: float | None = None) -> None:
        body = encode(message(alert))
        self._poster.post(body, {"Content-Type": "application/json"}, deadline=deadline)

    def close(self) -> None:
        self._poster.close()
