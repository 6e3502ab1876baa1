"""POSTs with timeouts and retries, shared by the webhook, Teams and Slack sinks.

Retries with exponential backoff (and jitter, so sinks failing together do not retry in step)
on timeouts, connection errors, 5xx, 408 and 429, honouring a short Retry-After. Other 4xx
fail at once: the receiver understood and refused, and trying again cannot help. Redirects
are not followed, so an alert never goes to a host that was not configured.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from auditor.alerts.budget import BUDGET_SPENT
from auditor.alerts.sinks.base import DeliveryError, redact, register_secret

if TYPE_CHECKING:
    import httpx

USER_AGENT = "acr-auditor-alerts/1"
_RETRYABLE_STATUS = frozenset({408, 429})
_MAX_RETRY_AFTER = 30.0
_SNIPPET = 120


@dataclass(frozen=True)
class HttpOptions:
    timeout: float = 10.0  # seconds for each of connect, read and write
    retries: int = 3  # after the first attempt
    backoff: float = 0.5  # first delay; doubles each retry
    max_backoff: float = 8.0


class HttpPoster:
    """One destination URL; the URL is held privately and never appears in repr or errors."""

    def __init__(
        self,
        sink: str,
        url: str,
        *,
        options: HttpOptions | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._sink = sink
        self._url = url
        self._options = options or HttpOptions()
        self._sleep = sleep
        register_secret(url)
        # Imported here: httpx (and the console libraries it brings) costs a run without
        # a webhook sink 40 ms of start-up and a few MB.
        import httpx

        self._client = httpx.Client(
            timeout=httpx.Timeout(self._options.timeout),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"HttpPoster(sink={self._sink!r}, url=[redacted])"

    def post(
        self, body: bytes, headers: Mapping[str, str], *, deadline: float | None = None
    ) -> None:
        """Send `body`; DeliveryError (naming only the sink) when every attempt failed, or
        when `deadline` (`time.monotonic()` seconds) comes first: no attempt or backoff
        runs past it."""
        import httpx

        options = self._options
        attempts = options.retries + 1
        problem = ""
        for attempt in range(1, attempts + 1):
            retry_after: float | None = None
            timeout = self._timeout_before(deadline, problem)
            try:
                response = self._client.post(
                    self._url, content=body, headers=dict(headers), timeout=timeout
                )
            except httpx.TimeoutException:
                problem = "timed out"
            except httpx.TransportError as exc:
                # The exception text can hold the URL; its type says enough.
                problem = f"connection failed ({type(exc).__name__})"
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise DeliveryError(
                    self._sink, f"request failed ({type(exc).__name__})", retryable=False
                ) from None
            else:
                if 200 <= response.status_code < 300:
                    return
                problem = f"HTTP {response.status_code}{self._snippet(response)}"
                if response.status_code < 500 and response.status_code not in _RETRYABLE_STATUS:
                    raise DeliveryError(self._sink, problem, retryable=False)
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt == attempts:
                suffix = f" after {attempts} attempts" if attempts > 1 else ""
                raise DeliveryError(self._sink, problem + suffix)
            delay = min(options.backoff * 2 ** (attempt - 1), options.max_backoff)
            delay = delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
            delay = max(delay, retry_after or 0.0)
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise DeliveryError(self._sink, f"{BUDGET_SPENT} (last try: {problem})")
            self._sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _timeout_before(self, deadline: float | None, problem: str) -> httpx.Timeout:
        """This attempt's timeout: the configured one, cut to what the deadline leaves."""
        seconds = self._options.timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                tried = f" (last try: {problem})" if problem else ""
                raise DeliveryError(self._sink, BUDGET_SPENT + tried)
            seconds = min(seconds, left)
        import httpx

        return httpx.Timeout(seconds)

    def _snippet(self, response: httpx.Response) -> str:
        import httpx

        try:
            text = response.text
        except (UnicodeDecodeError, httpx.HTTPError):
            return ""
        # Redacted whole, then cut: cutting first could leave the head of a token behind.
        text = redact("".join(ch if ch.isprintable() else " " for ch in text), [self._url])
        text = text.strip()[:_SNIPPET]
        return f": {text}" if text else ""

    def close(self) -> None:
        self._client.close()


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)
