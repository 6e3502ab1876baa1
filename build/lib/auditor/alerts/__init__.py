"""Alerts: tell people when a registry stops logging (docs/alerts.md).

`transitions` decides (pure), `state`/`outbox` remember (Table Storage), `sinks` deliver,
`dispatch` ties them with ETag claims, `service.AlertService` is what a run calls.
"""

from auditor.alerts.config import AlertOptions, build_sinks, options_from_settings
from auditor.alerts.dispatch import DeliveryReport, flush_outbox, send_alerts
from auditor.alerts.eventgrid import registry_from_event, setting_change_from_event
from auditor.alerts.model import (
    Alert,
    AlertKind,
    AlertState,
    Change,
    SettingChange,
    SettingOperation,
    Topic,
)
from auditor.alerts.service import AlertService, send_test_alert
from auditor.alerts.transitions import AlertPlan, plan_alerts

__all__ = [
    "Alert",
    "AlertKind",
    "AlertOptions",
    "AlertPlan",
    "AlertService",
    "AlertState",
    "Change",
    "DeliveryReport",
    "SettingChange",
    "SettingOperation",
    "Topic",
    "build_sinks",
    "flush_outbox",
    "options_from_settings",
    "plan_alerts",
    "registry_from_event",
    "send_alerts",
    "send_test_alert",
    "setting_change_from_event",
]
