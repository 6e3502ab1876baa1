"""The configured sinks and alert options, from validated Settings.

Settings has already checked every value (auditor/settings.py); this only builds objects. The
sinks hold their URLs privately: neither a sink's repr nor any error it raises shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential

from auditor.alerts.dispatch import DEFAULT_LEASE, DEFAULT_MAX_AGE
from auditor.alerts.sinks import (
    LogRecordSink,
    QueueSink,
    Sink,
    SlackSink,
    TeamsSink,
    WebhookSink,
)
from auditor.alerts.sinks.http import HttpOptions
from auditor.alerts.transitions import DEFAULT_NEW_REGISTRY_GRACE
from auditor.errors import ConfigError
from auditor.settings import AlertSettings, Settings, StorageSettings

# Sink name -> the setting that configures it (for messages such as "not configured").
SINK_SETTINGS: dict[str, str] = {
    "webhook": AlertSettings.variable("webhook_url"),
    "teams": AlertSettings.variable("teams_url"),
    "slack": AlertSettings.variable("slack_url"),
    "queue": AlertSettings.variable("queue"),
    "log": AlertSettings.variable("log_records"),
}
ALERT_QUEUE = SINK_SETTINGS["queue"]
STORAGE = StorageSettings.variable("auditor_storage")
_DECLARED = AlertSettings()  # the settings' declared defaults


@dataclass(frozen=True)
class AlertOptions:
    remind_after: timedelta | None = timedelta(hours=24)  # None: no reminders
    login_alerts: bool = False
    alert_on_unknown: bool = False
    new_registry_grace: timedelta = DEFAULT_NEW_REGISTRY_GRACE
    lease: timedelta = DEFAULT_LEASE
    max_age: timedelta = DEFAULT_MAX_AGE
    # Seconds each sink may spend delivering in one run (auditor.alerts.budget).
    sink_budget: float = _DECLARED.sink_budget_seconds


def options_from_settings(settings: Settings) -> AlertOptions:
    remind_after = settings.alerts.remind_after
    return AlertOptions(
        remind_after=remind_after if remind_after > timedelta(0) else None,
        login_alerts=settings.alerts.login,
        alert_on_unknown=settings.alerts.on_unknown,
        sink_budget=settings.alerts.sink_budget_seconds,
    )


def queue_account_url(table_endpoint: str) -> str:
    """The queue endpoint of the account whose table endpoint is given (identity-based access:
    `https://<account>.table.core.windows.net` -> `https://<account>.queue.core.windows.net`)."""
    parts = urlsplit(table_endpoint)
    labels = (parts.hostname or "").split(".")
    if len(labels) < 3 or labels[1] != "table":
        raise ConfigError(
            ALERT_QUEUE,
            "cannot derive the queue endpoint from the table endpoint; "
            f"set {STORAGE} to a connection string",
        )
    labels[1] = "queue"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{'.'.join(labels)}{port}"


def build_sinks(
    settings: Settings,
    *,
    credential: TokenCredential | None = None,
    http: HttpOptions | None = None,
) -> list[Sink]:
    """Every configured sink, in a fixed order. `credential` is needed only for a queue in an
    account reached by managed identity."""
    sinks: list[Sink] = []
    alerts = settings.alerts
    if alerts.webhook_url:
        sinks.append(WebhookSink(alerts.webhook_url, alerts.webhook_secret, options=http))
    if alerts.teams_url:
        sinks.append(TeamsSink(alerts.teams_url, options=http))
    if alerts.slack_url:
        sinks.append(SlackSink(alerts.slack_url, options=http))
    if alerts.queue:
        sinks.append(_queue(settings, credential))
    if alerts.log_records:
        sinks.append(LogRecordSink())
    return sinks


def _queue(settings: Settings, credential: TokenCredential | None) -> QueueSink:
    name = settings.alerts.queue
    assert name is not None
    if settings.storage.connection_string:
        return QueueSink(name, connection_string=settings.storage.connection_string)
    if settings.storage.table_endpoint:
        if credential is None:
            raise ConfigError(ALERT_QUEUE, "identity-based storage needs a credential")
        return QueueSink(
            name,
            account_url=queue_account_url(settings.storage.table_endpoint),
            credential=credential,
        )
    raise ConfigError(ALERT_QUEUE, f"needs a storage account: set {STORAGE}")
