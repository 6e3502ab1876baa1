"""An Azure Storage queue in the auditor's storage account, for Logic Apps and other consumers.

Each message is the alert document as plain UTF-8 JSON (no base64), which Logic Apps read with
`json(triggerBody()?['MessageText'])`. An Azure Functions queue trigger decodes base64 by
default: set `"extensions": {"queues": {"messageEncoding": "none"}}` in its host.json.
The queue is created on first use.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError

from auditor.alerts.budget import BUDGET_SPENT
from auditor.alerts.model import Alert
from auditor.alerts.payload import to_document
from auditor.alerts.sinks.base import DeliveryError, redact

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

# Pinned: the SDK's newest default can be ahead of Azurite (the local emulator), and Azure
# keeps accepting older versions; put and create have not changed for years.
API_VERSION = "2025-11-05"
# Queue messages are at most 64 KiB.
MAX_MESSAGE_BYTES = 64 * 1024


class QueueSink:
    name = "queue"

    def __init__(
        self,
        queue_name: str,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: TokenCredential | None = None,
        retries: int = 3,
        timeout: float = 10.0,
    ) -> None:
        if (connection_string is None) == (account_url is None):
            raise ValueError("give exactly one of connection_string or account_url")
        self.queue_name = queue_name
        self._connection_string = connection_string
        self._timeout = timeout
        options: dict[str, Any] = {
            "retry_total": retries,
            "connection_timeout": timeout,
            "read_timeout": timeout,
        }
        # Imported here: the queue SDK costs a tenth of a second of every run's start-up, and
        # most configurations have no queue sink.
        from azure.storage.queue import QueueClient

        self._client: QueueClient
        if connection_string is not None:
            self._client = QueueClient.from_connection_string(
                connection_string, queue_name, api_version=API_VERSION, **options
            )
        else:
            assert account_url is not None
            self._client = QueueClient(
                account_url, queue_name, credential=credential, api_version=API_VERSION, **options
            )
        self._created = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"QueueSink(queue={self.queue_name!r})"

    def send(self, alert: Alert, *, deadline: float | None = None) -> None:
        text = json.dumps(to_document(alert), separators=(",", ":"), ensure_ascii=False)
        if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
            raise DeliveryError(self.name, "alert larger than 64 KiB", retryable=False)
        limits: dict[str, Any] = {}
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeliveryError(self.name, BUDGET_SPENT)
            # One attempt, bounded by what is left: retries would run past the deadline.
            seconds = min(self._timeout, remaining)
            limits = {"connection_timeout": seconds, "read_timeout": seconds, "retry_total": 0}
        try:
            try:
                self._client.send_message(text, **limits)
            except ResourceNotFoundError:
                self._create()
                self._client.send_message(text, **limits)
        except AzureError as exc:
            raise DeliveryError(self.name, self._describe(exc)) from None

    def _create(self) -> None:
        with self._lock:
            if not self._created:
                try:
                    self._client.create_queue()
                except HttpResponseError as exc:
                    if exc.status_code != 409:  # created by a concurrent run: fine
                        raise
                self._created = True

    def _describe(self, exc: AzureError) -> str:
        status = getattr(exc, "status_code", None)
        code = getattr(exc, "error_code", None)
        parts = [type(exc).__name__] + [str(p) for p in (status, code) if p]
        return redact(" ".join(parts), [self._connection_string])

    def close(self) -> None:
        self._client.close()
