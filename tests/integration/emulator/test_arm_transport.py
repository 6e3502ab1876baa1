"""The ARM clients' HTTP session reads the environment's CA bundle and proxies once, when it is
built, rather than on every request: what it found then holds for the clients' life."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.identity import DefaultAzureCredential

from auditor.azure.clients import ArmClients
from auditor.pacing import TokenBucketPacer
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration


AUDIENCE = "https://management.azure.com"


@pytest.fixture
def credential(emu: RunningEmulator) -> DefaultAzureCredential:
    """Its token fetched before a test changes the environment (its own transport reads it
    per request), so only the ARM clients' session sees the change."""
    credential = DefaultAzureCredential()
    credential.get_token(AUDIENCE + "/.default")
    return credential


def clients_for(emu: RunningEmulator, credential: DefaultAzureCredential) -> ArmClients:
    return ArmClients(
        credential=credential,
        endpoint=emu.base_url,
        audience=AUDIENCE,
        pacer=TokenBucketPacer(rate=100, burst=100),
        retries=0,
        read_timeout=5,
    )


@pytest.fixture
def dead_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def subscription_ids(clients: ArmClients) -> list[str]:
    return [s.subscription_id for s in clients.subscriptions().subscriptions.list()]


def test_the_ca_bundle_found_at_build_time_is_kept(
    emu: RunningEmulator, credential: DefaultAzureCredential, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = clients_for(emu, credential)
    try:
        assert subscription_ids(clients)  # the emulator's CA, from REQUESTS_CA_BUNDLE
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        assert subscription_ids(clients)  # still trusted: read once
    finally:
        clients.close()
    fresh = clients_for(
        emu, credential
    )  # built without it: the emulator's certificate is not trusted
    try:
        with pytest.raises(ServiceRequestError):
            subscription_ids(fresh)
    finally:
        fresh.close()


@pytest.mark.parametrize("bypass", [False, True])
def test_a_proxy_set_at_build_time_is_used_unless_no_proxy_names_the_host(
    emu: RunningEmulator,
    credential: DefaultAzureCredential,
    monkeypatch: pytest.MonkeyPatch,
    dead_port: int,
    bypass: bool,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead_port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1" if bypass else "example.invalid")
    clients = clients_for(emu, credential)
    try:
        if bypass:
            assert subscription_ids(clients)
        else:
            with pytest.raises(ServiceRequestError, match=r"(?i)proxy"):
                subscription_ids(clients)
    finally:
        clients.close()
