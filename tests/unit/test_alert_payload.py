"""The alert document and its renderings: schema, catalog texts, Teams card, Slack blocks."""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditor.alerts.model import (
    Alert,
    AlertKind,
    Change,
    SettingChange,
    SettingOperation,
    Topic,
    alert_key,
)
from auditor.alerts.payload import from_document, severity, summary, to_document
from auditor.alerts.schema import alert_schema, validate
from auditor.alerts.service import make_test_alert
from auditor.alerts.sinks import slack, teams
from auditor.alerts.sinks.logrecord import PREFIX, LogRecordSink
from auditor.alerts.sinks.webhook import encode, signature
from auditor.facts import Reason, Registry, Status
from auditor.reasons import describe
from auditor.reasons.catalog import reason

SUB = "0000aaaa-0000-0000-0000-000000000001"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REG = Registry(
    id=f"/subscriptions/{SUB}/resourceGroups/rg-prod/providers/"
    "Microsoft.ContainerRegistry/registries/acrprod",
    name="acrprod",
    subscription_id=SUB,
    resource_group="rg-prod",
)


def alert(**changes: Any) -> Alert:
    base = Alert(
        id="abc-001",
        incident_id="abc",
        key=REG.key,
        kind=AlertKind.OPENED,
        topic=Topic.COMPLIANCE,
        change=Change.SETTING_DELETED,
        registry=REG,
        status="noncompliant",
        reasons=(
            reason("no_diagnostic_setting"),
            reason("metrics_missing", metric="AllMetrics"),
        ),
        detected_at=NOW,
        opened_at=NOW,
        setting_change=SettingChange(
            registry_id=REG.id,
            operation=SettingOperation.DELETE,
            setting_name="to-law",
            at=NOW - timedelta(seconds=3),
            caller="bob@contoso.com",
            correlation_id="c0ffee",
        ),
        run_id="20260301T120000Z-1234abcd",
    )
    return dataclasses.replace(base, **changes)


ALERTS = {
    "opened": alert(),
    "reminder": alert(kind=AlertKind.REMINDER, change=Change.STILL_FAILING, setting_change=None),
    "resolved": alert(
        kind=AlertKind.RESOLVED,
        change=Change.RECOVERED,
        status="compliant",
        reasons=(),
        setting_change=None,
    ),
    "remediated": alert(
        kind=AlertKind.RESOLVED,
        change=Change.REMEDIATED,
        status="pending",
        reasons=(reason("pending"),),
        setting_change=dataclasses.replace(
            alert().setting_change,
            operation=SettingOperation.WRITE,
            setting_name="acr-auditor",
            caller="acr-auditor remediation (api)",
            source="remediation",
        ),
    ),
    "removed": alert(
        kind=AlertKind.RESOLVED,
        change=Change.REGISTRY_REMOVED,
        status="removed",
        reasons=(reason("removed"),),
        setting_change=None,
    ),
    "login": alert(
        key=alert_key(REG.key, Topic.LOGIN_FAILURE_BURST),
        topic=Topic.LOGIN_FAILURE_BURST,
        change=Change.LOGIN_FAILURE_BURST,
        status="compliant",
        reasons=(Reason("login_failure_burst", "40 failed logins from caller IP 203.0.113.9."),),
        setting_change=None,
        run_id="",
    ),
    "uncatalogued": alert(reasons=(Reason("something_new", "detail"),), setting_change=None),
    "test": make_test_alert(NOW),
}


@pytest.mark.parametrize("name", ALERTS)
def test_documents_conform_to_the_schema(name: str) -> None:
    document = to_document(ALERTS[name])
    assert validate(document) == []
    json.dumps(document)  # serialisable as is


def test_document_carries_what_the_issue_asks_for() -> None:
    doc = to_document(ALERTS["opened"])
    assert doc["kind"] == "opened"
    assert doc["registry"] == {
        "id": REG.id,
        "name": "acrprod",
        "subscriptionId": SUB,
        "resourceGroup": "rg-prod",
    }
    assert doc["status"] == "noncompliant"
    assert doc["detectedAt"] == "2026-03-01T12:00:00Z"
    assert [r["code"] for r in doc["reasons"]] == ["no_diagnostic_setting", "metrics_missing"]
    assert doc["settingChange"]["caller"] == "bob@contoso.com"


def test_reason_texts_come_from_the_catalog() -> None:
    doc = to_document(ALERTS["opened"])
    info = describe("no_diagnostic_setting")
    first = doc["reasons"][0]
    assert first["title"] == info.title
    assert first["explanation"] == info.explanation
    assert first["remediation"] == info.remediation
    assert first["docs"] == info.docs_url
    assert first["severity"] == "high"
    assert doc["severity"] == "high"  # the worst reason
    assert info.title in doc["summary"]


def test_login_reason_texts_come_from_the_catalog_too() -> None:
    doc = to_document(ALERTS["login"])
    assert doc["reasons"][0]["title"] == describe("login_failure_burst").title
    assert doc["severity"] == describe("login_failure_burst").severity.value


def test_uncatalogued_codes_still_render() -> None:
    doc = to_document(ALERTS["uncatalogued"])
    assert doc["reasons"][0]["title"] == "Something new"
    assert doc["reasons"][0]["docs"] is None


def test_resolved_is_info() -> None:
    assert severity(ALERTS["resolved"]) == "info"
    assert summary(ALERTS["resolved"]) == "acrprod is compliant again"
    remediated = SettingChange(
        ALERTS["resolved"].registry.id,
        SettingOperation.WRITE,
        "acr-auditor",
        caller="acr-auditor remediation (timer)",
        source="remediation",
    )
    assert summary(replace(ALERTS["resolved"], setting_change=remediated)) == (
        "acrprod is compliant again (diagnostic setting 'acr-auditor' by acr-auditor "
        "remediation (timer))"
    )


@pytest.mark.parametrize("name", ALERTS)
def test_documents_round_trip(name: str) -> None:
    original = ALERTS[name]
    back = from_document(json.loads(json.dumps(to_document(original))))
    assert to_document(back) == to_document(original)
    assert back.key == original.key


def test_every_change_has_a_summary() -> None:
    for change in Change:
        line = summary(alert(change=change))
        assert line.startswith("acrprod") or line.startswith("Test alert")


# -- the schema check can fail ------------------------------------------------------------------


def _mutations() -> dict[str, Any]:
    def drop(key: str) -> Any:
        return lambda d: d.pop(key)

    return {
        "missing kind": drop("kind"),
        "missing registry": drop("registry"),
        "bad kind": lambda d: d.update(kind="reopened"),
        "extra key": lambda d: d.update(url="https://example.com"),
        "registry without subscription": lambda d: d["registry"].pop("subscriptionId"),
        "bad registry id": lambda d: d["registry"].update(id="acrprod"),
        "naive time": lambda d: d.update(detectedAt="2026-03-01T12:00:00"),
        "not a time": lambda d: d.update(openedAt="yesterday"),
        "reason without title": lambda d: d["reasons"][0].pop("title"),
        "wrong type": lambda d: d.update(test="yes"),
        "wrong version": lambda d: d.update(schemaVersion=2),
    }


@pytest.mark.parametrize("mutation", _mutations().values(), ids=_mutations().keys())
def test_schema_rejects_broken_documents(mutation: Any) -> None:
    doc = copy.deepcopy(to_document(ALERTS["opened"]))
    mutation(doc)
    assert validate(doc) != []


def test_schema_uses_only_supported_keywords() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        validate({}, {"type": "object", "oneOf": []})
    assert alert_schema()["properties"]["kind"]["enum"] == ["opened", "reminder", "resolved"]


def test_the_schemas_enums_are_the_codes() -> None:
    # The schema is written by hand: it must follow the one definition of each value.
    properties = alert_schema()["properties"]
    assert properties["status"]["enum"] == [s.value for s in Status]
    assert properties["change"]["enum"] == [c.value for c in Change]
    assert properties["topic"]["enum"] == [t.value for t in Topic]


# -- renderings ---------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = encode(to_document(ALERTS["opened"]))
    # Known-answer: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
    assert signature("key", b"The quick brown fox jumps over the lazy dog") == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )
    assert signature("s" * 16, body) != signature("s" * 16, body + b" ")


def test_teams_message_is_an_adaptive_card_envelope() -> None:
    msg = teams.message(ALERTS["opened"])
    assert msg["type"] == "message"
    [attachment] = msg["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    texts = json.dumps(card["body"])
    assert "acrprod" in texts and "bob@contoso.com" in texts
    assert describe("no_diagnostic_setting").title in texts
    assert card["actions"][0]["url"].endswith(REG.id)


def test_teams_resolved_card_has_no_remediation() -> None:
    card = teams.card(ALERTS["removed"])
    assert "az monitor" not in json.dumps(card)
    assert card["body"][0]["color"] == "Good"


def test_slack_message_is_block_kit_and_escaped() -> None:
    hostile = alert(
        setting_change=SettingChange(
            registry_id=REG.id, operation=SettingOperation.DELETE, caller="<!channel> & co"
        )
    )
    msg = slack.message(hostile)
    assert msg["text"]
    assert msg["blocks"][0]["type"] == "header"
    dumped = json.dumps(msg)
    assert "<!channel>" not in dumped
    assert "&lt;!channel&gt; &amp; co" in dumped
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in msg["blocks"])


def test_log_record_has_prefix_json_and_dimensions(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="auditor.alerts.record")
    LogRecordSink().send(ALERTS["opened"])
    LogRecordSink().send(ALERTS["resolved"])
    opened, resolved = caplog.records
    assert opened.levelname == "WARNING" and resolved.levelname == "INFO"
    message = opened.getMessage()
    assert message.startswith(PREFIX + " ")
    doc = json.loads(message[len(PREFIX) + 1 :])
    assert validate(doc) == [] and doc["id"] == "abc-001"
    dims = opened.__dict__["custom_dimensions"]
    assert dims["kind"] == "opened" and dims["registryName"] == "acrprod"
