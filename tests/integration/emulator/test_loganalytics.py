"""The emulated Log Analytics query API through the real `azure.monitor.query.LogsQueryClient`
(and raw HTTP where the SDK hides the wire): workspace and resource-centric queries, typed
columns, timespans, Kusto errors, partial results, per-caller limits and authentication."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.monitor.models import DiagnosticSettingsResource, LogSettings
from azure.monitor.query import (
    LogsBatchQuery,
    LogsQueryClient,
    LogsQueryError,
    LogsQueryPartialResult,
    LogsQueryResult,
    LogsQueryStatus,
)

from emulator.identity import ARM_AUDIENCE, LOGS_AUDIENCE
from emulator.loganalytics.limits import CallerLimits
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

SUB1 = "11111111-1111-1111-1111-111111111111"
SUB2 = "22222222-2222-2222-2222-222222222222"
LAW = "aaaaaaaa-0000-0000-0000-000000000001"
LAW_DEV = "aaaaaaaa-0000-0000-0000-000000000002"
COMPLIANT = (
    f"/subscriptions/{SUB1}/resourceGroups/rg-prod/providers"
    "/Microsoft.ContainerRegistry/registries/acrcompliant01"
)
NOSETTING = (
    f"/subscriptions/{SUB2}/resourceGroups/rg-dev/providers"
    "/Microsoft.ContainerRegistry/registries/acrnosetting01"
)
LAW_ARM = (
    f"/subscriptions/{SUB1}/resourceGroups/rg-monitoring/providers"
    "/Microsoft.OperationalInsights/workspaces/law-central"
)
COUNTS = (
    "union withsource=T ContainerRegistryLoginEvents, ContainerRegistryRepositoryEvents"
    " | summarize n = count(), lastSeen = max(TimeGenerated) by T, _ResourceId"
    " | order by _ResourceId asc, T asc"
)


def logs_client(emu: RunningEmulator, credential: object, **kwargs: object) -> LogsQueryClient:
    kwargs.setdefault("audience", LOGS_AUDIENCE)
    return LogsQueryClient(credential, endpoint=emu.base_url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(emu: RunningEmulator, credential: DefaultAzureCredential) -> LogsQueryClient:
    return logs_client(emu, credential)


def token(emu: RunningEmulator, audience: str = LOGS_AUDIENCE) -> str:
    return emu.world.identity.issue(audience)[0]


def post(emu: RunningEmulator, path: str, body: object, **headers: str) -> httpx.Response:
    with httpx.Client(verify=emu.ssl_context()) as http:
        return http.post(
            emu.base_url + path,
            json=body,
            headers={"Authorization": f"Bearer {token(emu)}", **headers},
        )


def test_workspace_query_with_typed_columns(client: LogsQueryClient, emu: RunningEmulator) -> None:
    result = client.query_workspace(LAW, COUNTS, timespan=timedelta(hours=24))
    assert isinstance(result, LogsQueryResult) and result.status == LogsQueryStatus.SUCCESS
    [table] = result.tables
    assert table.columns == ["T", "_ResourceId", "n", "lastSeen"]
    assert table.columns_types == ["string", "string", "long", "datetime"]
    seen = {(row["_ResourceId"].rsplit("/", 1)[1], row["T"]) for row in table.rows}
    assert seen == {
        ("acrcompliant01", "ContainerRegistryLoginEvents"),
        ("acrcompliant01", "ContainerRegistryRepositoryEvents"),
        ("acrgroups01", "ContainerRegistryLoginEvents"),
    }
    for row in table.rows:
        assert isinstance(row["n"], int) and row["n"] > 0
        assert isinstance(row["lastSeen"], datetime) and row["lastSeen"].tzinfo is not None
        assert emu.world.now() - timedelta(hours=1) < row["lastSeen"] <= emu.world.now()


def test_timespan_start_end(client: LogsQueryClient, emu: RunningEmulator) -> None:
    end = emu.world.now() - timedelta(hours=6)
    start = end - timedelta(hours=2)
    result = client.query_workspace(
        LAW,
        "ContainerRegistryLoginEvents | summarize a = min(TimeGenerated), z = max(TimeGenerated)",
        timespan=(start, end),
    )
    assert isinstance(result, LogsQueryResult)
    [[a, z]] = result.tables[0].rows
    assert start <= a < z <= end


def test_resource_centric_query(client: LogsQueryClient) -> None:
    result = client.query_resource(
        COMPLIANT.upper(),
        "ContainerRegistryRepositoryEvents | summarize n = count() by _ResourceId, TenantId",
        timespan=timedelta(hours=12),
    )
    assert isinstance(result, LogsQueryResult)
    [[resource, tenant, n]] = result.tables[0].rows
    assert resource == COMPLIANT.lower() and tenant == LAW and n > 50
    empty = client.query_resource(NOSETTING, "ContainerRegistryLoginEvents | count", timespan=None)
    assert isinstance(empty, LogsQueryResult) and empty.tables[0].rows[0][0] == 0
    with pytest.raises(HttpResponseError) as err:
        client.query_resource(NOSETTING + "x", "AzureActivity | count", timespan=None)
    assert err.value.status_code == 404


def test_additional_workspaces_and_statistics(client: LogsQueryClient) -> None:
    result = client.query_workspace(
        LAW,
        "AzureMetrics | distinct TenantId",
        timespan=timedelta(days=1),
        additional_workspaces=[LAW_DEV],
        include_statistics=True,
    )
    assert isinstance(result, LogsQueryResult)
    assert sorted(r[0] for r in result.tables[0].rows) == [LAW]  # law-dev gets AzureDiagnostics
    assert result.statistics is not None and "query" in result.statistics


def test_get_query(emu: RunningEmulator) -> None:
    with httpx.Client(verify=emu.ssl_context()) as http:
        response = http.get(
            f"{emu.base_url}/v1/workspaces/{LAW}/query",
            params={"query": "ContainerRegistryLoginEvents | take 3", "timespan": "PT6H"},
            headers={"Authorization": f"Bearer {token(emu)}", "Prefer": "wait=600"},
        )
    assert response.status_code == 200
    table = response.json()["tables"][0]
    assert table["name"] == "PrimaryResult" and len(table["rows"]) == 3
    types = {c["name"]: c["type"] for c in table["columns"]}
    assert types["TimeGenerated"] == "datetime" and types["_BilledSize"] == "real"


def test_invalid_kql_is_a_400_with_the_kusto_diagnostic(client: LogsQueryClient) -> None:
    with pytest.raises(HttpResponseError) as err:
        client.query_workspace(LAW, "ContainerRegistryLoginEvents | where Nope == 1", timespan=None)
    assert err.value.status_code == 400
    text = str(err.value)
    assert "BadArgumentError" in text and "KS142" in text and "Nope" in text


@pytest.mark.parametrize(
    ("query", "kind", "code"),
    [
        ("ContainerRegistryLoginEvents | where", "SyntaxError", "KS006"),
        ("ContainerRegistryEvents | take 1", "SemanticError", "KS204"),
        ("ContainerRegistryLoginEvents | where DurationMs > 100", "SemanticError", "KS106"),
    ],
)
def test_error_body_matches_the_service(
    emu: RunningEmulator, query: str, kind: str, code: str
) -> None:
    response = post(emu, f"/v1/workspaces/{LAW}/query", {"query": query})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadArgumentError"
    assert error["message"] == "The request had some invalid properties"
    assert error["details"][0]["code"] == kind
    assert error["details"][0]["message"].startswith(code)
    assert error["innererror"]["code"] == kind
    assert error["innererror"]["innererror"]["code"] == code


def test_engine_gaps_are_a_clear_400(emu: RunningEmulator) -> None:
    query = "ContainerRegistryLoginEvents | make-series count() on TimeGenerated step 1h"
    response = post(emu, f"/v1/workspaces/{LAW}/query", {"query": query})
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["code"] == "UnsupportedQueryError"


def test_partial_error(client: LogsQueryClient, emu: RunningEmulator) -> None:
    emu.world.add_fault({"kind": "partial", "api": "logs", "count": 1})
    result = client.query_workspace(LAW, "ContainerRegistryLoginEvents | take 5", timespan=None)
    assert isinstance(result, LogsQueryPartialResult)
    assert result.status == LogsQueryStatus.PARTIAL
    assert len(result.partial_data[0].rows) == 5
    assert result.partial_error is not None and result.partial_error.code == "PartialError"
    again = client.query_workspace(LAW, "ContainerRegistryLoginEvents | take 5", timespan=None)
    assert isinstance(again, LogsQueryResult)


def test_row_limit_is_a_partial_result(client: LogsQueryClient, emu: RunningEmulator) -> None:
    emu.world.knobs = {"logs": {"max_rows": 10}}
    result = client.query_workspace(LAW, "ContainerRegistryLoginEvents", timespan=None)
    assert isinstance(result, LogsQueryPartialResult)
    assert len(result.partial_data[0].rows) == 10


def test_batch(client: LogsQueryClient) -> None:
    count = "ContainerRegistryLoginEvents | count"
    results = client.query_batch(
        [
            LogsBatchQuery(LAW, count, timespan=timedelta(hours=1)),
            LogsBatchQuery(LAW, "ContainerRegistryLoginEvents | where", timespan=None),
            LogsBatchQuery(LAW_DEV, count, timespan=None),
        ]
    )
    assert isinstance(results[0], LogsQueryResult) and results[0].tables[0].rows[0][0] > 0
    assert isinstance(results[1], LogsQueryError) and "KS006" in results[1].message
    assert isinstance(results[2], LogsQueryResult) and results[2].tables[0].rows[0][0] == 0


def test_rate_limit_per_caller(emu: RunningEmulator, client: LogsQueryClient) -> None:
    emu.world.knobs = {"logs": {"queries_per_window": 3, "window_seconds": 30}}
    # Another caller (a user-assigned identity) has its own window; no SDK retries.
    other = ManagedIdentityCredential(client_id="5c1e0a8e-0000-4000-8000-00000000beef")
    throttled = logs_client(emu, other, retry_total=0)
    for _ in range(3):
        throttled.query_workspace(LAW, "ContainerRegistryLoginEvents | count", timespan=None)
    with pytest.raises(HttpResponseError) as err:
        throttled.query_workspace(LAW, "ContainerRegistryLoginEvents | count", timespan=None)
    assert err.value.status_code == 429
    assert err.value.response.headers["Retry-After"].isdigit()
    assert "ThrottledError" in str(err.value)
    [refused] = [e for e in emu.world.requests(api="logs") if e.status == 429]
    assert refused.throttled and refused.caller != emu.world.identity.principal_id
    # Other callers keep their own window (the default identity made more than 3 queries in
    # this module already, but its window is separate from the one just exhausted).
    emu.world.knobs = {"logs": {"queries_per_window": 1000, "window_seconds": 30}}
    client.query_workspace(LAW, "ContainerRegistryLoginEvents | count", timespan=None)


def test_concurrent_queries_queue_then_refuse() -> None:
    async def scenario() -> None:
        limits = CallerLimits()
        assert await limits.acquire("u", concurrent=1, queue_size=1)
        waiting = asyncio.ensure_future(limits.acquire("u", concurrent=1, queue_size=1))
        await asyncio.sleep(0)
        assert not waiting.done() and limits.queued("u") == 1
        assert not await limits.acquire("u", concurrent=1, queue_size=1)  # queue full: 429
        assert await limits.acquire("v", concurrent=1, queue_size=1)  # callers are separate
        limits.release("u")
        assert await asyncio.wait_for(waiting, 1)
        assert limits.running("u") == 1
        limits.release("u")
        assert limits.running("u") == 0

    asyncio.run(scenario())


def test_wrong_audience_is_401(emu: RunningEmulator, credential: DefaultAzureCredential) -> None:
    wrong = logs_client(emu, credential, audience=ARM_AUDIENCE)
    with pytest.raises(HttpResponseError) as err:
        wrong.query_workspace(LAW, "ContainerRegistryLoginEvents | count", timespan=None)
    assert err.value.status_code == 401
    assert "InvalidTokenError" in str(err.value)
    with httpx.Client(verify=emu.ssl_context()) as http:
        response = http.post(
            f"{emu.base_url}/v1/workspaces/{LAW}/query",
            json={"query": "AzureActivity | count"},
            headers={"Authorization": f"Bearer {token(emu, ARM_AUDIENCE)}"},
        )
    assert response.status_code == 401


def test_unknown_workspace_is_404(client: LogsQueryClient) -> None:
    with pytest.raises(HttpResponseError) as err:
        client.query_workspace(
            "bbbbbbbb-0000-0000-0000-00000000dead", "AzureActivity | count", timespan=None
        )
    assert err.value.status_code == 404
    assert "WorkspaceNotFoundError" in str(err.value)


def test_bad_requests(emu: RunningEmulator) -> None:
    assert post(emu, f"/v1/workspaces/{LAW}/query", {"timespan": "PT1H"}).status_code == 400
    bad_span = post(emu, f"/v1/workspaces/{LAW}/query", {"query": "print 1", "timespan": "1h"})
    assert bad_span.status_code == 400
    assert bad_span.json()["error"]["details"][0]["code"] == "InvalidTimespan"
    unknown = post(emu, f"/v1/workspaces/{LAW}/query", {"query": "print 1", "workspaces": ["x"]})
    assert unknown.status_code == 400


def test_settings_written_through_arm_route_new_rows(
    fresh_emulator: Callable[..., RunningEmulator],
) -> None:
    """Data follows configuration end to end: a setting created through ARM at runtime sends
    the registry's rows to the workspace from that moment on."""
    emu = fresh_emulator()
    credential = DefaultAzureCredential()
    logs = logs_client(emu, credential)
    world = emu.world
    world.add_registry(
        {
            "name": "acrlate01",
            "subscription": SUB2,
            "resourceGroup": "rg-dev",
            "events": [{"kind": "logins", "perHour": 30}],
        }
    )
    registry = NOSETTING.replace("acrnosetting01", "acrlate01")
    query = "ContainerRegistryLoginEvents | summarize n = count(), a = min(TimeGenerated)"
    assert logs.query_resource(registry, query, timespan=None).tables[0].rows[0][0] == 0
    world.advance(timedelta(hours=2))
    monitor = MonitorManagementClient(credential, SUB2, base_url=emu.base_url)
    created_at = world.now()
    monitor.diagnostic_settings.create_or_update(
        registry,
        "to-central",
        DiagnosticSettingsResource(
            workspace_id=LAW_ARM,
            log_analytics_destination_type="Dedicated",
            logs=[LogSettings(category_group="audit", enabled=True)],
        ),
    )
    world.advance(timedelta(hours=1))
    by_registry = f"{query} by _ResourceId | where _ResourceId endswith 'acrlate01' | project n, a"
    [[n, first]] = logs.query_workspace(LAW, by_registry, timespan=None).tables[0].rows
    assert 10 < n < 60 and first >= created_at
    # The resource-centric view sees the same rows.
    [[n2, _]] = logs.query_resource(registry, query, timespan=None).tables[0].rows
    assert n2 == n
