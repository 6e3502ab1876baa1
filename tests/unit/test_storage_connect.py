"""The Table Storage client waits a bounded time for an answer, not the SDK's 300 s."""

from __future__ import annotations

import contextlib
import socket

import pytest
from azure.core.exceptions import ServiceResponseTimeoutError

from auditor.storage.connect import table_service_client
from emulator.azurite import DEV_KEY


def held_connections(listener: socket.socket) -> int:
    """Connections the kernel accepted for `listener` and nobody answered."""
    listener.setblocking(False)
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            listener.accept()[0].close()
            count += 1
    return count


def test_a_table_service_that_never_answers_times_out_on_every_attempt() -> None:
    # A listening socket nobody accepts from: connections complete, answers never come.
    with socket.create_server(("127.0.0.1", 0), backlog=16) as hole:
        connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};"
            f"TableEndpoint=http://127.0.0.1:{hole.getsockname()[1]}/devstoreaccount1;"
        )
        service = table_service_client(
            connection_string=connection_string,
            read_timeout=0.3,
            retry_total=1,
            retry_backoff_factor=0,
        )
        with service, pytest.raises(ServiceResponseTimeoutError):
            service.get_table_client("summary").get_entity("p", "r")
        assert held_connections(hole) == 2  # the first try and one retry, each timed out


def test_a_client_needs_a_connection_string_or_an_endpoint_and_credential() -> None:
    with pytest.raises(ValueError):
        table_service_client(endpoint="https://account.table.core.windows.net")
