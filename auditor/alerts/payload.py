"""The alert document: the JSON every sink starts from (schema: alerts/alert.schema.json).

The webhook and the queue send it as is, Teams and Slack render it, the log record carries it,
and the outbox stores it so an alert retried days later is the one that was planned. Reason
titles, explanations and fixes come from the reason catalog, never from strings here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from auditor.alerts.model import (
    Alert,
    AlertKind,
    Change,
    SettingChange,
    SettingOperation,
    Topic,
    alert_key,
)
from auditor.facts import Reason, Registry
from auditor.reasons import Severity, describe

SCHEMA_VERSION = 1
SOURCE = "acr-auditor"
PORTAL = "https://portal.azure.com/#resource"

_SEVERITY_ORDER = (Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH)


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as most consumers parse it."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def reason_view(reason: Reason) -> dict[str, Any]:
    """A reason with its catalog metadata; a code the catalog lacks keeps only what it has."""
    try:
        info = describe(reason.code)
    except KeyError:
        return {
            "code": reason.code,
            "title": reason.code.replace("_", " ").capitalize(),
            "severity": Severity.MEDIUM.value,
            "detail": reason.detail,
            "explanation": "",
            "remediation": None,
            "docs": None,
        }
    return {
        "code": reason.code,
        "title": info.title,
        "severity": info.severity.value,
        "detail": reason.detail,
        "explanation": info.explanation,
        "remediation": info.remediation,
        "docs": info.docs_url,
    }


def severity(alert: Alert) -> str:
    """The worst of the reasons' catalog severities; resolved notices are info."""
    if alert.kind is AlertKind.RESOLVED:
        return Severity.INFO.value
    levels = [Severity(reason_view(r)["severity"]) for r in alert.reasons]
    return max(levels, key=_SEVERITY_ORDER.index, default=Severity.MEDIUM).value


def _first_title(alert: Alert) -> str:
    views = [reason_view(r) for r in alert.reasons]
    if not views:
        return ""
    first = str(views[0]["title"])
    return first + (f" (+{len(views) - 1} more)" if len(views) > 1 else "")


def _by(change: SettingChange | None) -> str:
    if change is None:
        return ""
    name = f" '{change.setting_name}'" if change.setting_name else ""
    who = f" by {change.caller}" if change.caller else ""
    return f"{name}{who}"


def summary(alert: Alert) -> str:
    """One line for people: what happened to which registry."""
    name = alert.registry.name
    title = _first_title(alert)
    change = alert.setting_change
    lines = {
        Change.NEW_REGISTRY: f"{name} has never been compliant: {title}",
        Change.BECAME_NONCOMPLIANT: f"{name} is no longer compliant: {title}",
        Change.SETTING_DELETED: (
            f"{name}: diagnostic setting{_by(change)} was deleted; the registry no longer "
            f"records what it should: {title}"
        ),
        Change.SETTING_DISABLED: f"{name}: log collection was switched off: {title}",
        Change.SETTING_CHANGED: (
            f"{name}: a diagnostic setting change{_by(change)} left it noncompliant: {title}"
        ),
        Change.WENT_SILENT: f"{name}: registry events stopped arriving in the workspace",
        Change.UNREADABLE: f"{name}: diagnostic settings could not be read: {title}",
        Change.STILL_FAILING: (
            f"{name} is still not compliant (since {timestamp(alert.opened_at)}): {title}"
        ),
        Change.LOGGING_INTERRUPTED: (
            f"{name}: a diagnostic setting was deleted, so events may be missing: {_detail(alert)}"
        ),
        Change.LOGIN_FAILURE_BURST: f"{name}: burst of failed logins: {_detail(alert)}",
        Change.ANONYMOUS_PULL: f"{name}: anonymous pulls: {_detail(alert)}",
        Change.RECOVERED: (
            f"{name} is compliant again" + (f" (diagnostic setting{_by(change)})" if change else "")
            if alert.topic is Topic.COMPLIANCE
            else f"{name}: no more {alert.topic.value.replace('_', ' ')} seen"
        ),
        Change.REMEDIATED: (
            f"{name} was remediated"
            + (f" (diagnostic setting{_by(change)})" if change else "")
            + "; its alert is closed while its first events are awaited"
        ),
        Change.REGISTRY_REMOVED: f"{name} no longer exists; its alert is closed",
        Change.EXEMPTED: f"{name} is exempt; its alert is closed: {_detail(alert)}",
        Change.EXEMPTION_EXPIRED: f"{name}: its exemption ended and it fails: {title}",
        Change.TEST: f"Test alert from {SOURCE}: {name} (not a real registry)",
    }
    line = lines[alert.change].rstrip(": ")
    return f"Possible repeat of alert {alert.id}: {line}" if alert.repeat else line


def _detail(alert: Alert) -> str:
    return alert.reasons[0].detail if alert.reasons else ""


def portal_url(registry_id: str) -> str:
    return PORTAL + registry_id


def to_document(alert: Alert) -> dict[str, Any]:
    """The documented alert document (docs/alerts.md); keys are stable within schemaVersion."""
    change = alert.setting_change
    return {
        "schemaVersion": SCHEMA_VERSION,
        "source": SOURCE,
        "id": alert.id,
        "incidentId": alert.incident_id,
        "kind": alert.kind.value,
        "topic": alert.topic.value,
        "change": alert.change.value,
        "summary": summary(alert),
        "severity": severity(alert),
        "registry": {
            "id": alert.registry.id,
            "name": alert.registry.name,
            "subscriptionId": alert.registry.subscription_id,
            "resourceGroup": alert.registry.resource_group,
        },
        "status": alert.status,
        "reasons": [reason_view(r) for r in alert.reasons],
        "detectedAt": timestamp(alert.detected_at),
        "openedAt": timestamp(alert.opened_at),
        "settingChange": None
        if change is None
        else {
            "operation": change.operation.value,
            "setting": change.setting_name,
            "at": timestamp(change.at) if change.at else None,
            "caller": change.caller,
            "source": change.source,
            "correlationId": change.correlation_id,
        },
        "portalUrl": portal_url(alert.registry.id),
        "runId": alert.run_id or None,
        "test": alert.test,
    }


def from_document(doc: dict[str, Any]) -> Alert:
    """An alert back from its document (the outbox stores documents). Raises KeyError or
    ValueError for a document this version did not write."""
    reg = doc["registry"]
    registry = Registry(
        id=reg["id"],
        name=reg["name"],
        subscription_id=reg["subscriptionId"],
        resource_group=reg.get("resourceGroup", ""),
    )
    raw_change = doc.get("settingChange")
    change = None
    if raw_change:
        change = SettingChange(
            registry_id=registry.id,
            operation=SettingOperation(raw_change["operation"]),
            setting_name=raw_change.get("setting") or "",
            at=parse_timestamp(raw_change["at"]) if raw_change.get("at") else None,
            caller=raw_change.get("caller") or "",
            source=raw_change.get("source") or "",
            correlation_id=raw_change.get("correlationId") or "",
        )
    return Alert(
        id=doc["id"],
        incident_id=doc["incidentId"],
        key=alert_key(registry.key, Topic(doc["topic"])),
        kind=AlertKind(doc["kind"]),
        topic=Topic(doc["topic"]),
        change=Change(doc["change"]),
        registry=registry,
        status=doc["status"],
        reasons=tuple(Reason(code=r["code"], detail=r.get("detail", "")) for r in doc["reasons"]),
        detected_at=parse_timestamp(doc["detectedAt"]),
        opened_at=parse_timestamp(doc["openedAt"]),
        setting_change=change,
        run_id=doc.get("runId") or "",
        test=bool(doc.get("test", False)),
    )
