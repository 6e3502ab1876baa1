"""The activity-log adapter through ArmClients (real SDK, timeouts, pacing) against the
emulator: the world's changes come back as registry changes; a failure is a ChangeLog error.
Instants come from the emulator's clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from azure.identity import DefaultAzureCredential
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.monitor.models import DiagnosticSettingsResource, LogSettings

from auditor.azure.activity_log import ActivityLogReader
from auditor.azure.clients import ArmClients
from auditor.change_feed import ChangeKind, StoredRegistry, select
from auditor.pacing import TokenBucketPacer
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

SUB2 = "22222222-2222-2222-2222-222222222222"
RG = f"/subscriptions/{SUB2}/resourceGroups/rg-dev"
NOSETTING = f"{RG}/providers/Microsoft.ContainerRegistry/registries/acrnosetting01"
LEGACY = f"{RG}/providers/Microsoft.ContainerRegistry/registries/acrlegacy01"
LAW = (
    f"/subscriptions/{SUB2}/resourceGroups/rg-dev-monitoring/providers"
    "/Microsoft.OperationalInsights/workspaces/law-dev"
)


@pytest.fixture
def emu(fresh_emulator: Callable[..., RunningEmulator]) -> RunningEmulator:
    return fresh_emulator(activity_log={"page_size": 2})


@pytest.fixture
def reader(emu: RunningEmulator) -> Iterator[ActivityLogReader]:
    clients = ArmClients(
        credential=DefaultAzureCredential(),
        endpoint=emu.base_url,
        audience="https://management.azure.com",
        pacer=TokenBucketPacer(rate=100, burst=100),
        retries=1,
        read_timeout=5,
    )
    yield ActivityLogReader(clients)
    clients.close()


def test_the_worlds_changes_come_back_as_registry_changes(
    emu: RunningEmulator, reader: ActivityLogReader
) -> None:
    start = emu.world.now()
    body = DiagnosticSettingsResource(
        workspace_id=LAW, logs=[LogSettings(category_group="audit", enabled=True)]
    )
    monitor = MonitorManagementClient(DefaultAzureCredential(), SUB2, base_url=emu.base_url)
    monitor.diagnostic_settings.create_or_update(NOSETTING, "Central", body)
    emu.world.advance(timedelta(minutes=2))
    emu.world.remove_registry("acrlegacy01")
    log = reader.changes(SUB2, start - timedelta(minutes=5), emu.world.now())
    assert log.error is None and log.skipped == {}
    finals = {
        (c.registry_id, c.kind, c.setting_name) for c in log.changes if c.status == "Succeeded"
    }
    assert finals == {
        (NOSETTING.lower(), ChangeKind.SETTING_WRITTEN, "Central"),
        (LEGACY.lower(), ChangeKind.REGISTRY_DELETED, None),
    }
    assert len(log.changes) == 4  # each with its Started event, over pages of two
    stored = [
        StoredRegistry(NOSETTING, SUB2, last_read_ok=True),
        StoredRegistry(LEGACY, SUB2, last_read_ok=True),
    ]
    plan = select(
        stored,
        {SUB2: log},
        watermarks={SUB2: start},
        now=emu.world.now(),
        overlap=timedelta(minutes=5),
    )
    assert set(plan.reads) == {NOSETTING.lower(), LEGACY.lower()} and plan.full == {}


def test_a_refused_or_garbled_listing_is_an_error_not_an_empty_feed(
    emu: RunningEmulator, reader: ActivityLogReader
) -> None:
    now = emu.world.now()
    too_old = reader.changes(SUB2, now - timedelta(days=120), now)
    assert too_old.changes == ()
    assert too_old.error is not None and too_old.error.startswith("HTTP 400 BadRequest: ")
    emu.world.add_fault({"kind": "malformed", "api": "arm", "path": "eventtypes", "count": 1})
    garbled = reader.changes(SUB2, now - timedelta(hours=1), now)
    assert garbled.error is not None and garbled.changes == ()
    emu.world.add_fault({"kind": "status", "status": 403, "api": "arm", "path": "eventtypes"})
    forbidden = reader.changes(SUB2, now - timedelta(hours=1), now)
    assert forbidden.error is not None and forbidden.error.startswith(
        "HTTP 403 AuthorizationFailed"
    )
