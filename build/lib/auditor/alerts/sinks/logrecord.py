"""Alerts as log records, for an Azure Monitor log alert rule on Application Insights.

The message is `ACR_AUDITOR_ALERT <alert document as JSON>`: the rule's query (docs/alerts.md)
matches the fixed prefix and parses the JSON, which works whichever exporter carries the
Functions logs. The same fields go in `custom_dimensions` for exporters that turn `extra` into
customDimensions. Opened alerts and reminders are warnings, resolved notices info.
"""

from __future__ import annotations

import json
import logging

from auditor.alerts.model import Alert, AlertKind
from auditor.alerts.payload import to_document

PREFIX = "ACR_AUDITOR_ALERT"
LOGGER_NAME = "auditor.alerts.record"


class LogRecordSink:
    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(LOGGER_NAME)

    def __repr__(self) -> str:
        return f"LogRecordSink(logger={self._logger.name!r})"

    def send(self, alert: Alert, *, deadline: float | None = None) -> None:
        document = to_document(alert)
        level = logging.INFO if alert.kind is AlertKind.RESOLVED else logging.WARNING
        dimensions = {
            "alertId": alert.id,
            "incidentId": alert.incident_id,
            "kind": alert.kind.value,
            "topic": alert.topic.value,
            "change": alert.change.value,
            "registryId": alert.registry.id,
            "registryName": alert.registry.name,
            "subscriptionId": alert.registry.subscription_id,
            "status": alert.status,
            "severity": document["severity"],
        }
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        # Pre-formatted (no %-args): the stored message must be exactly prefix + JSON.
        self._logger.log(level, f"{PREFIX} {text}", extra={"custom_dimensions": dimensions})

    def close(self) -> None:
        return None
