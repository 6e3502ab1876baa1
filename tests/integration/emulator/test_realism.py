"""Realism knobs seen through the real SDKs: ARM throttling honoured via Retry-After, the
Resource Graph quota, injected faults, latency, the request log and the admin API."""

from __future__ import annotations

import time

import httpx
import pytest
from azure.core.exceptions import DecodeError, HttpResponseError
from azure.identity import DefaultAzureCredential
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest

from emulator.knobs import parse_knobs
from emulator.loganalytics.routes import service_for
from emulator.loganalytics.store import Scope
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

SUB1 = "11111111-1111-1111-1111-111111111111"
SUB2 = "22222222-2222-2222-2222-222222222222"
COMPLIANT = (
    f"/subscriptions/{SUB1}/resourceGroups/rg-prod/providers"
    "/Microsoft.ContainerRegistry/registries/acrcompliant01"
)
QUERY = "resources | where type =~ 'microsoft.containerregistry/registries' | project id"


def registries(emu: RunningEmulator, cred: DefaultAzureCredential, sub: str = SUB1, **kw: object):
    return ContainerRegistryManagementClient(cred, sub, base_url=emu.base_url, **kw).registries


def test_throttled_read_is_retried_after_retry_after(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    emu.world.knobs = parse_knobs({"arm_throttle": {"burst": 1, "refill_per_second": 1}})
    monitor = MonitorManagementClient(credential, SUB1, base_url=emu.base_url)
    since = time.time()
    list(monitor.diagnostic_settings.list(COMPLIANT))
    started = time.monotonic()
    settings = list(monitor.diagnostic_settings.list(COMPLIANT))  # 429, then the SDK retries
    assert [s.name for s in settings] == ["to-law"]
    assert time.monotonic() - started >= 0.9  # it waited for Retry-After: 1
    log = emu.world.requests(api="arm", since=since)
    assert [e.status for e in log] == [200, 429, 200]
    assert log[1].throttled and emu.world.counters["throttled:arm"] >= 1


def test_every_arm_read_reports_remaining_reads(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    emu.world.knobs = parse_knobs({"arm_throttle": {"refill_per_second": 0.001}})
    token = credential.get_token("https://management.azure.com/.default").token
    with httpx.Client(base_url=emu.base_url, verify=emu.ssl_context()) as http:
        url = f"{COMPLIANT}/providers/Microsoft.Insights/diagnosticSettings"
        params = {"api-version": "2021-05-01-preview"}
        headers = {"Authorization": f"Bearer {token}"}
        first = http.get(url, params=params, headers=headers)
        second = http.get(url, params=params, headers=headers)
        missing = http.get(
            url.replace("acrcompliant01", "acrghost01"), params=params, headers=headers
        )
    remaining = [
        int(r.headers["x-ms-ratelimit-remaining-subscription-reads"]) for r in (first, second)
    ]
    assert remaining == [249, 248]
    assert (
        missing.status_code == 404
        and "x-ms-ratelimit-remaining-subscription-reads" in missing.headers
    )
    assert first.headers["x-ms-request-id"]


def test_buckets_are_per_subscription_and_caller(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    emu.world.knobs = parse_knobs({"arm_throttle": {"burst": 1, "refill_per_second": 0.01}})
    list(registries(emu, credential, SUB1).list())
    list(registries(emu, credential, SUB2).list())  # another subscription: its own bucket
    from azure.identity import ManagedIdentityCredential

    other = ManagedIdentityCredential(client_id="second-principal")
    list(registries(emu, other, SUB1).list())  # another caller: its own bucket
    with pytest.raises(HttpResponseError) as err:
        list(registries(emu, credential, SUB1, retry_total=0).list())
    assert err.value.status_code == 429
    assert err.value.error.code == "SubscriptionRequestsThrottled"
    assert int(err.value.response.headers["Retry-After"]) >= 1


def test_resource_graph_quota(emu: RunningEmulator, credential: DefaultAzureCredential) -> None:
    emu.world.knobs = parse_knobs({"resourcegraph": {"quota": 2, "window_seconds": 60}})
    client = ResourceGraphClient(credential, base_url=emu.base_url, retry_total=0)
    for _ in range(2):
        client.resources(QueryRequest(subscriptions=[SUB1], query=QUERY))
    with pytest.raises(HttpResponseError) as err:
        client.resources(QueryRequest(subscriptions=[SUB1], query=QUERY))
    headers = err.value.response.headers
    assert err.value.status_code == 429
    assert headers["x-ms-user-quota-remaining"] == "0"
    assert headers["x-ms-user-quota-resets-after"].startswith("00:00:") or headers[
        "x-ms-user-quota-resets-after"
    ].startswith("00:01:")
    assert int(headers["Retry-After"]) >= 1


def test_forbidden_subscription_fault(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    emu.world.add_fault({"kind": "status", "status": 403, "subscription": SUB2})
    assert [r.name for r in registries(emu, credential, SUB1).list()]
    with pytest.raises(HttpResponseError) as err:
        list(registries(emu, credential, SUB2).list())
    assert err.value.status_code == 403
    assert err.value.error.code == "AuthorizationFailed"
    assert emu.world.identity.principal_id in err.value.message
    assert "Microsoft.ContainerRegistry/registries/read" in err.value.message


def test_transient_503_is_retried_by_the_sdk(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    emu.world.add_fault({"kind": "status", "status": 503, "api": "arm", "path": "/registries$",
                         "count": 1, "retry_after": 0})  # fmt: skip
    since = time.time()
    assert len(list(registries(emu, credential).list())) == 4
    assert [e.status for e in emu.world.requests(api="arm", since=since)] == [503, 200]


def test_malformed_json_raises_a_clear_sdk_error(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    fault = emu.world.add_fault({"kind": "malformed", "path": "diagnosticSettings$", "count": 1})
    monitor = MonitorManagementClient(credential, SUB1, base_url=emu.base_url)
    with pytest.raises(DecodeError):
        list(monitor.diagnostic_settings.list(COMPLIANT))
    assert fault.fired == 1 and fault.exhausted()
    assert [s.name for s in monitor.diagnostic_settings.list(COMPLIANT)] == ["to-law"]


def test_latency_and_slow_faults_show_in_the_request_log(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    emu.world.knobs = parse_knobs(
        {
            "latency": {"arm": {"distribution": "uniform", "min_ms": 40, "max_ms": 60, "seed": 1}},
            "faults": [{"kind": "slow", "delay_s": 0.2, "path": "/registries$", "count": 1}],
        }
    )
    since = time.time()
    list(registries(emu, credential).list())
    list(registries(emu, credential).list())
    slow, normal = emu.world.requests(api="arm", since=since)
    assert slow.latency_ms >= 240 and 40 <= normal.latency_ms < 240
    assert normal.method == "GET" and normal.status == 200 and not normal.throttled
    assert normal.caller == emu.world.identity.principal_id
    assert normal.path == f"/subscriptions/{SUB1}/providers/Microsoft.ContainerRegistry/registries"


def test_admin_api(emu: RunningEmulator, credential: DefaultAzureCredential) -> None:
    with httpx.Client(base_url=emu.base_url, verify=emu.ssl_context()) as http:
        assert http.get("/_emulator/health").json()["ok"] is True
        knobs = http.get("/_emulator/knobs").json()
        assert knobs["arm_throttle"]["burst"] == 250
        bad = http.put("/_emulator/knobs", json={"arm_throttle": {"burst": "lots"}})
        assert (
            bad.status_code == 400 and "knobs.arm_throttle.burst" in bad.json()["error"]["message"]
        )
        ok = http.put("/_emulator/knobs", json={"paging": {"registries_page_size": 3}})
        assert ok.json()["paging"]["registries_page_size"] == 3
        assert emu.world.knobs.paging.registries_page_size == 3
        added = http.post("/_emulator/faults", json={"kind": "status", "status": 500, "count": 1,
                                                     "path": "/registries$"})  # fmt: skip
        assert added.status_code == 201
        with pytest.raises(HttpResponseError):
            list(registries(emu, credential, retry_total=0).list())
        before = emu.world.now()
        moved = http.post("/_emulator/clock/advance", json={"hours": 2}).json()
        assert emu.world.now() > before and moved["version"] == emu.world.version
        log = http.get("/_emulator/requests", params={"api": "arm", "limit": 1}).json()
        assert log["entries"][-1]["status"] == 500 and log["counters"]["arm:500"] >= 1
        assert http.post("/_emulator/clock/advance", json={"hours": -1}).status_code == 400
        assert http.post("/_emulator/faults", json={"kind": "nope"}).status_code == 400


def test_admin_api_warms_the_logs(emu: RunningEmulator) -> None:
    store = service_for(emu.world).store
    with httpx.Client(base_url=emu.base_url, verify=emu.ssl_context()) as http:
        warmed = http.post("/_emulator/logs/warm")
    assert warmed.status_code == 200
    assert warmed.json()["generated"] == store.generations > 0
    for ws in emu.world.workspaces():
        store.query(Scope((ws.customer_id.lower(),)), "ContainerRegistryLoginEvents | count")
    assert store.generations == warmed.json()["generated"]  # nothing left to generate


def test_log_analytics_faults_use_its_error_shape_and_partial_is_left_to_it(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    world = emu.world
    world.add_fault({"kind": "status", "status": 404, "api": "logs", "path": "/v1/workspaces/",
                     "code": "WorkspaceNotFoundError", "count": 1})  # fmt: skip
    partial = world.add_fault({"kind": "partial", "count": 1})
    token = credential.get_token("https://api.loganalytics.io/.default").token
    with httpx.Client(base_url=emu.base_url, verify=emu.ssl_context()) as http:
        r = http.post(
            "/v1/workspaces/aaaaaaaa-0000-0000-0000-000000000001/query",
            json={"query": "AzureActivity | take 1"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "WorkspaceNotFoundError"
    assert "correlationId" in r.json()["error"]
    # The core middleware never takes a partial fault; the Log Analytics handler does.
    assert partial.count == 1
    assert world.take_fault("logs", "/v1/workspaces/x/query", kinds=("partial",)) is partial
    assert world.take_fault("logs", "/v1/workspaces/x/query", kinds=("partial",)) is None


def test_clock_scale_speeds_up_refill(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    slow = {"burst": 1, "refill_per_second": 0.01}
    emu.world.knobs = parse_knobs({"arm_throttle": {**slow, "clock_scale": 1_000_000}})
    client = registries(emu, credential, retry_total=0)
    for _ in range(5):
        list(client.list())  # 10,000 tokens/s: never throttled
    emu.world.knobs = parse_knobs({"arm_throttle": slow})
    emu.world.arm_buckets.reset()
    list(client.list())
    with pytest.raises(HttpResponseError):
        list(client.list())
