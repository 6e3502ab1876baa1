"""The suite does not depend on the date it runs on.

The small-estate audit runs with the whole process's wall clock moved a year back, left as it
is, and moved a year ahead (time-machine moves `time.time()` and `datetime.now()` for every
thread: the auditor, the in-process emulator and its identity endpoint). The fixtures anchor the
scenario to that clock as they do in every test, so the three runs must agree on every verdict,
on what the API serves and on which alerts go out, now and a day later. A fixed instant anywhere
on that path (a scenario's `now`, a fixture date, a window) makes the runs disagree.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from fastapi.testclient import TestClient

from auditor.alerts.sinks.logrecord import LOGGER_NAME, PREFIX
from auditor.api import create_app
from auditor.run_record import AuditRun, RunStatus
from auditor.runtime import audit_once, build_store
from auditor.settings import Settings
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]
YEAR = timedelta(days=365)
SHIFTS = {"a year back": -YEAR, "today": timedelta(0), "a year ahead": YEAR}
REMIND_HOURS = 24


def verdicts(run: AuditRun) -> dict[str, tuple[str, ...]]:
    return {v.registry.name: (v.status.value, *(r.code for r in v.reasons)) for v in run.verdicts}


def alerts_sent(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    sent = []
    for record in caplog.records:
        message = record.getMessage()
        if record.name == LOGGER_NAME and message.startswith(PREFIX):
            alert = json.loads(message[len(PREFIX) :])
            sent.append((alert["kind"], alert["registry"]["name"]))
    caplog.clear()
    return sorted(sent)


def day_of_audits(
    local_azure: LocalAzure, caplog: pytest.LogCaptureFixture, shift: timedelta
) -> dict[str, Any]:
    """Two audits a day apart, on a wall clock moved by `shift`: what each judged, served and
    alerted, with every time expressed relative to that clock."""
    start = datetime.now(UTC) + shift
    with time_machine.travel(start, tick=True) as traveller:
        emu, env = local_azure()
        settings = Settings.from_env(
            {
                **env,
                # Each date its own tables: nothing one run stored is seen by another.
                "AUDITOR_TABLE_PREFIX": env["AUDITOR_TABLE_PREFIX"] + f"d{shift.days + 400}",
                "AUDITOR_ALERT_LOG_RECORDS": "true",
                "AUDITOR_ALERT_REMIND_HOURS": str(REMIND_HOURS),
            }
        )
        store = build_store(settings)
        api = TestClient(create_app(lambda: store))
        with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
            first = audit_once(settings, trigger="test")
            first_alerts = alerts_sent(caplog)
            compliance = api.get("/api/compliance").json()
            runs = api.get("/api/runs").json()
            recent = api.get("/api/registries/acrcompliant01/logins", params={"since": "2h"})

            # A day later, logs still flowing where they flowed: the failing registries are
            # reminded of, nothing else changes.
            later = timedelta(hours=REMIND_HOURS, minutes=5)
            emu.world.advance(later)
            traveller.shift(later)
            second = audit_once(settings, trigger="test")
            second_alerts = alerts_sent(caplog)
    # The auditor ran on the moved clock: the shift really happened.
    assert abs(first.started_at - start) < timedelta(minutes=1)
    return {
        "first": (first.status, verdicts(first)),
        "first alerts": first_alerts,
        "served": {
            "totals": compliance["totals"],
            "fresh data": 0 <= compliance["dataAgeSeconds"] < 600,
            "last run": compliance["lastRun"]["id"] == first.run_id,
            "runs": [(r["id"] == first.run_id, r["status"]) for r in runs["items"]],
            "recent logins": (recent.status_code, len(recent.json()["items"])),
        },
        "second": (second.status, verdicts(second)),
        "second alerts": second_alerts,
    }


def test_the_small_estate_audit_is_the_same_on_any_date(
    local_azure: LocalAzure, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = {name: day_of_audits(local_azure, caplog, shift) for name, shift in SHIFTS.items()}
    today = outcomes["today"]
    # What "the same" is measured against is itself right: the small estate as designed.
    status, judged = today["first"]
    assert status is RunStatus.SUCCEEDED
    assert judged["acrcompliant01"] == ("compliant",) and judged["acrgroups01"] == ("compliant",)
    failing = sorted(name for name, (s, *_) in judged.items() if s == "noncompliant")
    assert len(failing) == 4 and "logs_silent" in judged["acrdisabled01"]
    assert today["first alerts"] == [("opened", name) for name in failing]
    assert today["second alerts"] == [("reminder", name) for name in failing]
    assert today["second"] == today["first"]
    assert today["served"]["totals"]["compliant"] == 2
    assert today["served"]["fresh data"] and today["served"]["last run"]
    assert today["served"]["runs"] == [(True, "succeeded")]
    assert today["served"]["recent logins"] == (200, 1)
    for name in ("a year back", "a year ahead"):
        assert outcomes[name] == today, name
