"""Diagnostic settings writes through azure-mgmt-monitor 6.0.2: ARM's validation, and the
world's history, version and activity records (what the Log Analytics side reads)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.monitor.models import DiagnosticSettingsResource, LogSettings, MetricSettings

from emulator.state import DIAG_DELETE, DIAG_WRITE
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

SUB1 = "11111111-1111-1111-1111-111111111111"
REGISTRIES = (
    f"/subscriptions/{SUB1}/resourceGroups/rg-prod/providers/Microsoft.ContainerRegistry/registries"
)
COMPLIANT = f"{REGISTRIES}/acrcompliant01"
SUB2 = "22222222-2222-2222-2222-222222222222"
NOSETTING = (
    f"/subscriptions/{SUB2}/resourceGroups/rg-dev/providers"
    "/Microsoft.ContainerRegistry/registries/acrnosetting01"
)
LAW = (
    f"/subscriptions/{SUB1}/resourceGroups/rg-monitoring/providers"
    "/Microsoft.OperationalInsights/workspaces/law-central"
)
STORAGE = (
    f"/subscriptions/{SUB1}/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/st"
)


def setting(
    *,
    workspace: str | None = LAW,
    storage: str | None = None,
    group: str | None = "allLogs",
    categories: tuple[str, ...] = (),
    metrics: bool = True,
) -> DiagnosticSettingsResource:
    logs = [LogSettings(category_group=group, enabled=True)] if group else []
    logs += [LogSettings(category=c, enabled=True) for c in categories]
    return DiagnosticSettingsResource(
        workspace_id=workspace,
        storage_account_id=storage,
        log_analytics_destination_type="Dedicated",
        logs=logs,
        metrics=[MetricSettings(category="AllMetrics", enabled=True)] if metrics else [],
    )


@pytest.fixture
def monitor(
    fresh_emulator: Callable[..., RunningEmulator],
) -> tuple[RunningEmulator, MonitorManagementClient]:
    emu = fresh_emulator()
    return emu, MonitorManagementClient(DefaultAzureCredential(), SUB1, base_url=emu.base_url)


def test_create_update_delete_keep_history_and_activity(
    monitor: tuple[RunningEmulator, MonitorManagementClient],
) -> None:
    emu, client = monitor
    world = emu.world
    v0 = world.version
    created = client.diagnostic_settings.create_or_update(NOSETTING, "full", setting())
    assert created.name == "full" and created.logs[0].category_group == "allLogs"
    assert created.id.endswith("/providers/microsoft.insights/diagnosticSettings/full")
    assert world.version == v0 + 1
    t_create = world.now()
    world.advance(timedelta(hours=1))
    client.diagnostic_settings.create_or_update(NOSETTING, "full", setting(group="audit"))
    names = sorted(s.name for s in client.diagnostic_settings.list(NOSETTING))
    assert names == ["full"]
    history = [v for v in world.setting_history(NOSETTING) if v.name == "full"]
    assert [(v.start, v.end) for v in history] == [
        (t_create, t_create + timedelta(hours=1)),
        (t_create + timedelta(hours=1), None),
    ]
    assert history[1].properties["logs"][0]["categoryGroup"] == "audit"
    world.advance(timedelta(minutes=5))
    client.diagnostic_settings.delete(NOSETTING.upper(), "FULL")
    assert list(client.diagnostic_settings.list(NOSETTING)) == []
    closed = [v for v in world.setting_history(NOSETTING) if v.name == "full"][-1]
    assert closed.end == world.now()
    client.diagnostic_settings.delete(NOSETTING, "never-existed")  # 204, no error
    ops = [(a.operation, a.resource_id.rsplit("/", 1)[-1]) for a in world.activity_records()]
    assert ops[-3:] == [(DIAG_WRITE, "full"), (DIAG_WRITE, "full"), (DIAG_DELETE, "full")]
    last = world.activity_records()[-1]
    assert last.caller == world.identity.principal_id and last.status == "Succeeded"
    assert last.subscription_id == SUB2


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (setting(workspace=None), "destination"),
        (setting(categories=("ContainerRegistryLoginEvents",)), "mixing"),
        (setting(group=None, categories=("NotACategory",)), "Category 'NotACategory'"),
        (setting(group="everything"), "Category group 'everything'"),
        (setting(workspace="/not/a/workspace"), "workspace"),
    ],
)
def test_invalid_settings_are_refused(
    monitor: tuple[RunningEmulator, MonitorManagementClient],
    body: DiagnosticSettingsResource,
    fragment: str,
) -> None:
    emu, client = monitor
    v0 = emu.world.version
    with pytest.raises(HttpResponseError) as err:
        client.diagnostic_settings.create_or_update(COMPLIANT, "bad", body)
    assert err.value.status_code == 400
    assert fragment in err.value.message
    assert emu.world.version == v0


def test_at_most_five_settings_and_no_sink_reuse(
    monitor: tuple[RunningEmulator, MonitorManagementClient],
) -> None:
    _, client = monitor
    # acrcompliant01 already sends both categories and AllMetrics to law-central.
    with pytest.raises(HttpResponseError) as err:
        client.diagnostic_settings.create_or_update(COMPLIANT, "dup", setting())
    assert "already used" in err.value.message
    for i in range(4):
        client.diagnostic_settings.create_or_update(
            COMPLIANT, f"s{i}", setting(workspace=None, storage=f"{STORAGE}{i}")
        )
    with pytest.raises(HttpResponseError) as err:
        client.diagnostic_settings.create_or_update(
            COMPLIANT, "sixth", setting(workspace=None, storage=f"{STORAGE}9")
        )
    assert "at most 5" in err.value.message
    # Replacing an existing one is still allowed.
    client.diagnostic_settings.create_or_update(
        COMPLIANT, "s0", setting(workspace=None, storage=f"{STORAGE}8")
    )


def test_registry_removed_and_added_at_run_time(
    monitor: tuple[RunningEmulator, MonitorManagementClient],
) -> None:
    emu, client = monitor
    world = emu.world
    v0, inv0 = world.version, world.inventory_version
    world.remove_registry("acrcompliant01")
    assert world.registry(COMPLIANT) is None
    assert world.version > v0 and world.inventory_version == inv0 + 1
    assert all(v.end == world.now() for v in world.setting_history(COMPLIANT))
    with pytest.raises(ResourceNotFoundError):
        list(client.diagnostic_settings.list(COMPLIANT))
    added = world.add_registry(
        {
            "name": "acrnewcomer01",
            "subscription": SUB1,
            "resourceGroup": "rg-new",
            "settings": [
                {
                    "name": "to-law",
                    "workspace": "law-central",
                    "logs": [{"categoryGroup": "allLogs"}],
                }
            ],
        }
    )
    got = list(client.diagnostic_settings.list(added.id))
    assert [s.name for s in got] == ["to-law"]
    assert world.setting_history(added.id)[0].start == world.now()
    assert "acrnewcomer01" in [r.name for r in world.registries_sorted(SUB1)]


def test_hostile_bodies_get_400_not_500(
    monitor: tuple[RunningEmulator, MonitorManagementClient],
) -> None:
    emu, _ = monitor
    token = DefaultAzureCredential().get_token("https://management.azure.com/.default").token
    url = (
        f"{COMPLIANT}/providers/Microsoft.Insights/diagnosticSettings/x"
        "?api-version=2021-05-01-preview"
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bodies: list[bytes] = [
        b"{not json", b"", b"[]", b'{"properties": []}', b"\xff\xfe", b"[" * 100_000,
        b'{"properties": {"workspaceId": 5, "logs": "x"}}',
        b'{"properties": {"workspaceId": "' + LAW.encode() + b'", "logs": [{"category": null}]}}',
    ]  # fmt: skip
    with httpx.Client(base_url=emu.base_url, verify=emu.ssl_context()) as http:
        for body in bodies:
            r = http.put(url, content=body, headers=headers)
            assert r.status_code == 400, (body[:40], r.text)
            assert r.json()["error"]["code"]
        huge = http.put(url, content=b" " * (5 * 1024 * 1024), headers=headers)
        assert huge.status_code == 413
        for path in (
            "/subscriptions/%2e%2e/x",
            "/" + "a" * 9000,
            "/subscriptions/\u00e9/providers",
            "/providers/Microsoft.ResourceGraph/resources",
        ):
            r = http.get(path, headers=headers)
            assert 400 <= r.status_code < 500, (path[:50], r.status_code)
    assert all(e.status < 500 for e in emu.world.requests())
