"""Alert sinks: one module per destination, all behind `base.Sink`."""

from auditor.alerts.sinks.base import DeliveryError, Sink, redact
from auditor.alerts.sinks.logrecord import LogRecordSink
from auditor.alerts.sinks.queue import QueueSink
from auditor.alerts.sinks.slack import SlackSink
from auditor.alerts.sinks.teams import TeamsSink
from auditor.alerts.sinks.webhook import WebhookSink

__all__ = [
    "DeliveryError",
    "LogRecordSink",
    "QueueSink",
    "Sink",
    "SlackSink",
    "TeamsSink",
    "WebhookSink",
    "redact",
]
