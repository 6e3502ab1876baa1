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
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from auditor.alerts.model import Alert

REDACTED = "[redacted]"


class DeliveryError(Exception):
    """An alert did not reach a sink. `retryable` is False when trying again cannot help
    (the receiver rejected the request as malformed or unauthorised)."""

    def __init__(self, sink: str, problem: str, *, retryable: bool = True) -> None:
        # The last line of defence: a problem is stored in the outbox, logged and served.
        problem = redact_known(problem)
        super().__init__(f"{sink}: {problem}")
        self.sink = sink
        self.problem = problem
        self.retryable = retryable


class Sink(Protocol):
    @property
    def name(self) -> str:
        """Stable sink name (`webhook`, `teams`, `slack`, `queue`, `log`); keys the outbox."""
        ...

    def send(self, alert: Alert, *, deadline: float | None = None) -> None:
        """Deliver one alert, retrying transient failures; DeliveryError when it cannot.
        `deadline` (`time.monotonic()` seconds): no attempt or wait may run past it."""
        ...

    def close(self) -> None: ...


def _looks_secret(part: str) -> bool:
    """A URL part that can carry a credential on its own: long, and not a plain word (so
    `/services/` or `/workflows/` stay readable while `T0k3n...`, `sig` values do not)."""
    if len(part) < 8:
        return False
    return len(part) >= 20 or not (part.isalpha() and part.islower())


def _fragments(secret: str) -> set[str]:
    """Every piece of a secret that text could hold on its own: the whole of it; for a URL its
    path, query, user info, each query value and each token-like path segment; for a
    connection string each value; each in its plain, percent-decoded and percent-encoded
    form. A receiver or a library may echo any of them."""
    parts = {secret}
    try:
        url = urlsplit(secret)
    except ValueError:
        url = None
    if url is not None and url.scheme and url.netloc:
        parts |= {url.path, url.query, url.fragment, url.password or "", url.username or ""}
        parts |= set(url.path.split("/"))
        parts |= {value for _, value in parse_qsl(url.query, keep_blank_values=True)}
    elif ";" in secret or "=" in secret:
        parts |= {value for item in secret.split(";") for _, _, value in [item.partition("=")]}
    forms = {form for part in parts for form in (part, unquote(part), quote(part, safe=""))}
    return {form for form in forms if form == secret or _looks_secret(form)}


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret, and every piece of it that could stand alone, replaced."""
    fragments: set[str] = set()
    for secret in secrets:
        if secret:
            fragments |= _fragments(secret)
    if fragments and "%" in text:
        # An echo may percent-encode any part of a token: compare decoded text.
        text = unquote(text)
    for fragment in sorted(fragments, key=len, reverse=True):
        text = text.replace(fragment, REDACTED)
    return text


def redact_known(text: str) -> str:
    """`text` without any secret a sink registered: for everything stored, logged or served
    about a delivery, whichever sink or library wrote it."""
    return redact(text, _FILTER.secrets())


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

    def secrets(self) -> list[str]:
        with self._lock:
            return list(self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets()
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
