"""The ARM clients' urllib3 transport side by side with azure-core's requests transport: the
same SDK calls give the same models, the same service errors and the same transport errors."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core import PipelineClient
from azure.core.exceptions import (
    HttpResponseError,
    IncompleteReadError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.core.rest import HttpRequest
from azure.identity import DefaultAzureCredential
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest
from azure.mgmt.subscription import SubscriptionClient

from auditor.azure.transport import Urllib3Transport
from emulator.knobs import Fault
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

SUB1 = "11111111-1111-1111-1111-111111111111"
RG_PROD = f"/subscriptions/{SUB1}/resourceGroups/rg-prod"
COMPLIANT = f"{RG_PROD}/providers/Microsoft.ContainerRegistry/registries/acrcompliant01"
MISSING = f"{RG_PROD}/providers/Microsoft.ContainerRegistry/registries/acrnosuchregistry"
QUERY = "resources | where type =~ 'microsoft.containerregistry/registries' | project id, name"

Factory = Callable[[str], HttpTransport]  # type: ignore[type-arg]


def ours(endpoint: str) -> HttpTransport:  # type: ignore[type-arg]
    return Urllib3Transport(endpoint, pool_size=4, connection_timeout=2.0, read_timeout=1.0)


def sdks(endpoint: str) -> HttpTransport:  # type: ignore[type-arg]
    return RequestsTransport(connection_timeout=2.0, read_timeout=1.0)


BOTH = pytest.mark.parametrize("make", [ours, sdks], ids=["urllib3", "requests"])


def options(endpoint: str, make: Factory) -> dict[str, Any]:
    return {"base_url": endpoint, "transport": make(endpoint), "retry_total": 0}


def settings_of(emu: RunningEmulator, credential: DefaultAzureCredential, make: Factory) -> Any:
    client = MonitorManagementClient(credential, SUB1, **options(emu.base_url, make))
    return [s.as_dict() for s in client.diagnostic_settings.list(resource_uri=COMPLIANT)]


def test_the_same_models_as_the_sdks_own_transport(
    emu: RunningEmulator, credential: DefaultAzureCredential
) -> None:
    got = {}
    for make in (ours, sdks):
        subscriptions = SubscriptionClient(credential, **options(emu.base_url, make))
        graph = ResourceGraphClient(credential, **options(emu.base_url, make))
        got[make] = (
            [s.as_dict() for s in subscriptions.subscriptions.list()],
            graph.resources(QueryRequest(subscriptions=[SUB1], query=QUERY)).data,  # a POST
            settings_of(emu, credential, make),  # monitor's older request type
        )
    assert got[ours] == got[sdks]
    subs, rows, settings = got[ours]
    assert SUB1 in {s["subscription_id"] for s in subs}
    assert COMPLIANT in {row["id"] for row in rows}
    assert settings  # the compliant registry has settings


@BOTH
def test_the_services_errors_are_the_same(
    emu: RunningEmulator, credential: DefaultAzureCredential, make: Factory
) -> None:
    client = MonitorManagementClient(credential, SUB1, **options(emu.base_url, make))
    with pytest.raises(ResourceNotFoundError) as missing:
        list(client.diagnostic_settings.list(resource_uri=MISSING))
    assert missing.value.status_code == 404 and missing.value.error is not None
    emu.world.knobs.faults = [
        Fault(kind="status", status=503, code="ServerBusy", message="try later", api="arm")
    ]
    with pytest.raises(HttpResponseError) as busy:
        list(client.diagnostic_settings.list(resource_uri=COMPLIANT))
    assert busy.value.status_code == 503 and "try later" in str(busy.value)


@BOTH
def test_a_read_timeout_is_a_response_timeout(
    emu: RunningEmulator, credential: DefaultAzureCredential, make: Factory
) -> None:
    emu.world.knobs.faults = [Fault(kind="slow", delay_s=3.0, api="arm", count=1)]
    with pytest.raises(ServiceResponseTimeoutError):
        settings_of(emu, credential, make)


@pytest.fixture
def dead_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@BOTH
def test_a_refused_connection_is_a_request_error(
    credential: DefaultAzureCredential, dead_port: int, make: Factory
) -> None:
    endpoint = f"https://127.0.0.1:{dead_port}"
    client = SubscriptionClient(credential, **options(endpoint, make))
    with pytest.raises(ServiceRequestError) as refused:
        list(client.subscriptions.list())
    assert not isinstance(refused.value, ServiceResponseError)


def one_bad_answer(answer: bytes) -> Iterator[str]:
    """A plain-HTTP endpoint that reads one request and answers `answer`, then closes."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def serve() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(answer)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
        thread.join(timeout=5)


def get(endpoint: str, make: Factory) -> Any:
    """A GET through azure-core's pipeline (no token: the endpoint is plain HTTP)."""
    client = PipelineClient(
        endpoint, policies=[RetryPolicy(retry_total=0)], transport=make(endpoint)
    )
    return client.send_request(HttpRequest("GET", endpoint + "/subscriptions"))


@BOTH
def test_a_body_cut_short_is_an_incomplete_read(make: Factory) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
    for endpoint in one_bad_answer(head + b'{"value": ['):
        with pytest.raises(IncompleteReadError):
            get(endpoint, make)


@BOTH
def test_a_connection_closed_without_an_answer_is_a_response_error(make: Factory) -> None:
    for endpoint in one_bad_answer(b""):
        with pytest.raises(ServiceResponseError):
            get(endpoint, make)


def test_unsupported_request_options_are_named(emu: RunningEmulator) -> None:
    transport = ours(emu.base_url)
    with pytest.raises(TypeError, match="connection_cert"):
        transport.send(HttpRequest("GET", emu.base_url + "/subscriptions"), connection_cert="x")
