"""Builds the Table Storage client, for the results store and the alert state alike, with
bounded waits: the SDK's default is 300 s per attempt to connect and again to read."""

from __future__ import annotations

from typing import Any

from azure.core.credentials import TokenCredential
from azure.data.tables import TableServiceClient

# Seconds per attempt. The service gives an operation at most 30 s (its own maximum server
# timeout, which it also applies to every write); 10 s more lets that answer arrive, so an
# answer still missing after 40 s is not coming. Timed-out reads are retried by the SDK.
TABLE_CONNECTION_TIMEOUT_SECONDS = 10.0
TABLE_READ_TIMEOUT_SECONDS = 40.0


def table_service_client(
    *,
    connection_string: str | None = None,
    endpoint: str | None = None,
    credential: TokenCredential | None = None,
    connection_timeout: float = TABLE_CONNECTION_TIMEOUT_SECONDS,
    read_timeout: float = TABLE_READ_TIMEOUT_SECONDS,
    **options: Any,
) -> TableServiceClient:
    """From a connection string, or from the account's table `endpoint` and a `credential`
    (identity-based access). `options` go to the SDK (e.g. `retry_total`). Raises ValueError
    for a malformed connection string, whose message may quote it: callers must not echo it."""
    limits = {"connection_timeout": connection_timeout, "read_timeout": read_timeout, **options}
    if connection_string is not None:
        return TableServiceClient.from_connection_string(connection_string, **limits)
    if endpoint is None or credential is None:
        raise ValueError("give a connection string, or an endpoint and a credential")
    return TableServiceClient(endpoint=endpoint, credential=credential, **limits)
