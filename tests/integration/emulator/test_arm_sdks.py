"""Every ARM SDK the auditor uses, against the emulator, parsing into the SDK's own models."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.loganalytics import LogAnalyticsManagementClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions
from azure.mgmt.subscription import SubscriptionClient

from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

SUB1 = "11111111-1111-1111-1111-111111111111"
SUB2 = "22222222-2222-2222-2222-222222222222"
RG_PROD = f"/subscriptions/{SUB1}/resourceGroups/rg-prod"
COMPLIANT = f"{RG_PROD}/providers/Microsoft.ContainerRegistry/registries/acrcompliant01"
GROUPS = f"{RG_PROD}/providers/Microsoft.ContainerRegistry/registries/acrgroups01"
REGISTRY_QUERY = (
    "resources | where type =~ 'microsoft.containerregistry/registries'"
    " | project id, name, subscriptionId, resourceGroup, location, sku, properties, systemData"
    " | order by id asc"
)


def test_subscriptions_list_follows_next_links(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    emu.world.knobs.paging.subscriptions_page_size = 1
    client = SubscriptionClient(credential, base_url=emu.base_url)
    subs = list(client.subscriptions.list())
    assert [s.subscription_id for s in subs] == [SUB1, SUB2]
    assert subs[0].display_name == "Production" and subs[0].state == "Enabled"
    listed = [e for e in emu.world.requests(api="arm") if e.path == "/subscriptions"]
    assert len(listed) >= 2  # two pages


def test_registries_list_pages_and_parses(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    emu.world.knobs.paging.registries_page_size = 2
    client = ContainerRegistryManagementClient(credential, SUB1, base_url=emu.base_url)
    before = len(emu.world.requests(api="arm"))
    regs = list(client.registries.list())
    pages = len(emu.world.requests(api="arm")) - before
    assert [r.name for r in regs] == [
        "acrcompliant01",
        "acrdisabled01",
        "acrgroups01",
        "acrstorage01",
    ]
    assert pages == 2
    first = regs[0]
    assert first.id == COMPLIANT and first.location == "westeurope"
    assert first.sku.name == "Premium"
    assert first.system_data.created_at.isoformat() == "2025-01-10T08:00:00+00:00"
    assert first.admin_user_enabled is False and first.anonymous_pull_enabled is False
    assert first.login_server == "acrcompliant01.azurecr.io"
    dev = ContainerRegistryManagementClient(credential, SUB2, base_url=emu.base_url)
    nosetting = dev.registries.get("rg-dev", "acrnosetting01")
    assert nosetting.admin_user_enabled is True and nosetting.system_data is None
    assert [r.name for r in dev.registries.list_by_resource_group("RG-DEV")] == [
        "acrlegacy01",
        "acrnosetting01",
    ]
    with pytest.raises(ResourceNotFoundError):
        dev.registries.get("rg-dev", "acrmissing01")


def test_unsupported_api_version_gets_arm_400(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    client = ContainerRegistryManagementClient(
        credential, SUB1, base_url=emu.base_url, api_version="2099-01-01"
    )
    with pytest.raises(HttpResponseError) as err:
        list(client.registries.list())
    assert err.value.status_code == 400
    assert err.value.error.code == "NoRegisteredProviderFound"


def test_resource_graph_pages_with_skip_token(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    client = ResourceGraphClient(credential, base_url=emu.base_url)
    rows: list[dict[str, object]] = []
    skip: str | None = None
    pages = 0
    while True:
        res = client.resources(
            QueryRequest(
                subscriptions=[SUB1, SUB2],
                query=REGISTRY_QUERY,
                options=QueryRequestOptions(top=4, skip_token=skip, result_format="objectArray"),
            )
        )
        pages += 1
        assert res.total_records == 6 and res.result_truncated == "false"
        rows.extend(res.data)
        skip = res.skip_token
        if not skip:
            break
    assert pages == 2 and len(rows) == 6
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, key=str.lower)
    compliant = next(r for r in rows if r["name"] == "acrcompliant01")
    assert compliant["subscriptionId"] == SUB1 and compliant["resourceGroup"] == "rg-prod"
    assert compliant["sku"] == {"name": "Premium", "tier": "Premium"}
    assert compliant["systemData"]["createdAt"].startswith("2025-01-10T08:00:00")
    assert compliant["properties"]["adminUserEnabled"] is False
    assert set(compliant) == {
        "id", "name", "subscriptionId", "resourceGroup", "location", "sku", "properties",
        "systemData",
    }  # fmt: skip
    only_dev = client.resources(QueryRequest(subscriptions=[SUB2], query=REGISTRY_QUERY))
    assert only_dev.total_records == 2
    assert emu.world.requests(api="resourcegraph")[-1].status == 200


def test_resource_graph_refuses_other_queries(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    client = ResourceGraphClient(credential, base_url=emu.base_url)
    for query in (
        "Resources | project id, name | limit 3",
        "resources | where type =~ 'microsoft.compute/disks' | project id",
        REGISTRY_QUERY.replace("subscriptionId", "subscriptionid"),
    ):
        with pytest.raises(HttpResponseError) as err:
            client.resources(QueryRequest(subscriptions=[SUB1], query=query))
        assert err.value.status_code == 400
        assert "InvalidQuery" in [d.code for d in err.value.error.details]


def test_diagnostic_settings_and_categories_read(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    monitor = MonitorManagementClient(credential, SUB1, base_url=emu.base_url)
    settings = list(monitor.diagnostic_settings.list(COMPLIANT))
    assert [s.name for s in settings] == ["to-law"]
    s = settings[0]
    assert s.workspace_id.endswith("/workspaces/law-central")
    assert s.log_analytics_destination_type == "Dedicated"
    assert {(x.category, x.enabled) for x in s.logs} == {
        ("ContainerRegistryLoginEvents", True),
        ("ContainerRegistryRepositoryEvents", True),
    }
    assert [(m.category, m.enabled) for m in s.metrics] == [("AllMetrics", True)]
    # Resource ids are case-insensitive, as in ARM.
    got = monitor.diagnostic_settings.get(GROUPS.lower(), "AUDIT-GROUP")
    assert got.name == "audit-group" and got.logs[0].category_group == "audit"
    with pytest.raises(ResourceNotFoundError):
        monitor.diagnostic_settings.get(GROUPS, "nope")
    cats = {c.name: c for c in monitor.diagnostic_settings_category.list(COMPLIANT)}
    assert cats["ContainerRegistryLoginEvents"].category_type == "Logs"
    assert set(cats["ContainerRegistryRepositoryEvents"].category_groups) == {"allLogs", "audit"}
    assert cats["AllMetrics"].category_type == "Metrics"


def test_old_api_version_hides_category_groups(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    """2017-05-01-preview (what Cloud Custodian's azure-mgmt-monitor 2.0.0 sends) predates
    category groups: an audit-group entry arrives without any category."""
    monitor = MonitorManagementClient(
        credential, SUB1, base_url=emu.base_url, api_version="2017-05-01-preview"
    )
    old = monitor.diagnostic_settings.list(GROUPS).value  # not paged in that version
    assert old[0].logs[0].category is None and old[0].logs[0].enabled is True


def test_unknown_resource_gets_arm_404(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    monitor = MonitorManagementClient(credential, SUB1, base_url=emu.base_url)
    missing = f"{RG_PROD}/providers/Microsoft.ContainerRegistry/registries/acrghost01"
    with pytest.raises(ResourceNotFoundError) as err:
        list(monitor.diagnostic_settings.list(missing))
    assert err.value.error.code == "ResourceNotFound"


def test_workspace_get_returns_customer_id(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    client = LogAnalyticsManagementClient(credential, SUB1, base_url=emu.base_url)
    ws = client.workspaces.get("rg-monitoring", "law-central")
    assert ws.properties.customer_id == "aaaaaaaa-0000-0000-0000-000000000001"
    assert ws.name == "law-central" and ws.location == "westeurope"
    with pytest.raises(ResourceNotFoundError):
        client.workspaces.get("rg-monitoring", "law-nowhere")
