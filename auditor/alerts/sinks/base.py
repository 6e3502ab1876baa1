"""What every alert sink is, and the one error type a failed delivery raises.

A sink is configured once with its destination (a URL or queue) and sends one alert per call.
Errors name the sink, never the destination: Slack and Teams URLs are credentials, and so is
the webhook secret, so nothing a sink raises or logs may contain them (`redact` is the last
line of defence for text that comes from a library).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Protocol
from urllib.parse import urlsplit

from auditor.alerts.model import Alert

REDACTED = "[redacted]"


class DeliveryError(Exception):
    """An alert did not reach a sink. `retryable` is False when trying again cannot help
    (the receiver rejected the request as malformed or unauthorised)."""

    def __init__(self, sink: str, problem: str, *, retryable: bool = True) -> None:
        super().__init__(f"{sink}: {problem}")
        self.sink = sink
        self.problem = problem
        self.retryable = retryable


class Sink(Protocol):
    @property
    def name(self) -> str:
        """Stable sink name (`webhook`, `teams`, `slack`, `queue`, `log`); keys the outbox."""
        ...

    def send(self, alert: Alert) -> None:
        """Deliver one alert, retrying transient failures; DeliveryError when it cannot."""
        ...

    def close(self) -> None: ...


def _fragments(secret: str) -> list[str]:
    """The secret and, for a URL, its path and query: a library may print either on its own."""
    parts = [secret]
    try:
        url = urlsplit(secret)
    except ValueError:
        return parts
    if url.scheme and url.netloc:
        parts += [p for p in (url.path, url.query) if len(p) >= 8]
    return parts


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret (and a URL's path and query, which carry its token) replaced."""
    for secret in secrets:
        if not secret:
            continue
        for fragment in sorted(_fragments(secret), key=len, reverse=True):
            text = text.replace(fragment, REDACTED)
    return text


class _RedactingFilter(logging.Filter):
    """Rewrites records of HTTP libraries that log request URLs (httpx logs every request at
    INFO with the full URL), so a sink URL never reaches a log handler."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        with self._lock:
            self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets = list(self._secrets)
        if secrets:
            message = record.getMessage()
            cleaned = redact(message, secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


_FILTER = _RedactingFilter()
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_FILTER)


def register_secret(secret: str) -> None:
    """Redact `secret` from the records of the HTTP libraries' loggers from now on."""
    _FILTER.add(secret)
