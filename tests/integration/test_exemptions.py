"""Exemptions end to end: registry tags served by the emulator (Resource Graph and ARM), the
AUDITOR_EXEMPTIONS setting, results in Azurite, alerts at a local webhook receiver and the
API (the CLI's table: tests/integration/test_cli.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from auditor.api import create_app
from auditor.facts import Status
from auditor.runtime import audit_once, build_store
from auditor.settings import Settings
from emulator.webhooks import Receiver

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "tests" / "integration" / "scenarios" / "exemptions.yaml"
SUB = "11111111-1111-1111-1111-111111111111"
LISTED = (
    f"/subscriptions/{SUB}/resourceGroups/rg-legacy/providers/Microsoft.ContainerRegistry"
    "/registries/acrlisted01"
)
SECRET = "hmac-secret-for-tests-0123456789"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def days_ahead(days: int) -> str:
    """A date relative to the wall clock: no fixed date ever meets it."""
    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()


def environment(env: dict[str, str], receiver: Receiver) -> dict[str, str]:
    listed = [
        {
            "registryId": LISTED,
            "reason": "Logs go to Splunk",
            "expiresOn": days_ahead(60),
            "exemptionCategory": "Mitigated",
            "ticket": "CHG-9",
        }
    ]
    return {
        **env,
        "AUDITOR_EXEMPTIONS": json.dumps(listed),
        "AUDITOR_ALERT_WEBHOOK_URL": receiver.url("/hook/x"),
        "AUDITOR_ALERT_WEBHOOK_SECRET": SECRET,
    }


def notices_of(receiver: Receiver, name: str) -> list[dict[str, Any]]:
    return [a for a in (r.json() for r in receiver.on("/hook/")) if a["registry"]["name"] == name]


def test_exempt_registries_are_reported_and_never_alerted(
    local_azure: Callable[..., Any], receiver: Receiver
) -> None:
    _, env = local_azure(SCENARIO)
    settings = Settings.from_env(environment(env, receiver))
    run = audit_once(settings, trigger="test")
    by_name = {v.registry.name: v for v in run.verdicts}
    assert {n: v.status for n, v in by_name.items()} == {
        "acrwaived01": Status.EXEMPT,
        "acrlisted01": Status.EXEMPT,
        "acrlapsed01": Status.NONCOMPLIANT,
        "acrbadtag01": Status.NONCOMPLIANT,
        "acrplain01": Status.NONCOMPLIANT,
    }
    waived = by_name["acrwaived01"].reasons
    assert [r.code for r in waived] == ["exempted:noncompliant", "no_diagnostic_setting"]
    assert "'Decommissioning end of quarter, CHG-1234'" in waived[0].detail
    assert "(exemptions setting): 'Logs go to Splunk'" in by_name["acrlisted01"].reasons[0].detail
    assert "exemption_expired" in {r.code for r in by_name["acrlapsed01"].reasons}
    assert "exemption_malformed" in {r.code for r in by_name["acrbadtag01"].reasons}

    # Alerts: the three failing registries only; the lapsed one says its exemption ended.
    alerts = {a["registry"]["name"]: a for a in (r.json() for r in receiver.on("/hook/"))}
    assert sorted(alerts) == ["acrbadtag01", "acrlapsed01", "acrplain01"]
    assert alerts["acrlapsed01"]["change"] == "exemption_expired"
    assert alerts["acrplain01"]["change"] == "new_registry"

    # The API: counted apart, and filterable by status.
    api = TestClient(create_app(lambda: build_store(settings)))
    totals = api.get("/api/compliance").json()["totals"]
    assert (totals["exempt"], totals["noncompliant"], totals["total"]) == (2, 3, 5)
    page = api.get("/api/registries", params={"status": "exempt"}).json()
    assert sorted(item["name"] for item in page["items"]) == ["acrlisted01", "acrwaived01"]
    enum = api.get("/api/openapi.json").json()["components"]["schemas"]["Status"]["enum"]
    assert "exempt" in enum


def test_an_open_alert_is_resolved_when_the_registry_is_exempted(
    local_azure: Callable[..., Any], receiver: Receiver
) -> None:
    emu, env = local_azure(SCENARIO)
    settings = Settings.from_env(environment(env, receiver))
    audit_once(settings, trigger="test")
    opened = notices_of(receiver, "acrplain01")
    assert [a["kind"] for a in opened] == ["opened"]

    plain = emu.world.registry_by_name("acrplain01")
    assert plain is not None
    plain.tags["acr-auditor-exempt"] = f"Retired next week; until={days_ahead(7)}"
    audit_once(settings, trigger="test")
    notices = notices_of(receiver, "acrplain01")
    assert [(a["kind"], a["change"], a["status"]) for a in notices[1:]] == [
        ("resolved", "exempted", "exempt")
    ]
    assert notices[1]["incidentId"] == opened[0]["incidentId"]
    assert "Retired next week" in notices[1]["summary"]
