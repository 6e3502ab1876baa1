"""HTTP delivery: retries and backoff, what is not retried, and URLs that never leak."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from auditor.alerts.sinks import DeliveryError, Sink, SlackSink, TeamsSink, WebhookSink, redact
from auditor.alerts.sinks.http import HttpOptions, HttpPoster

URL = "https://hooks.example.com/services/T000/B000/s3cr3tT0k3nXYZ?sig=abcdef123456"
FAST = HttpOptions(timeout=1.0, retries=3, backoff=0.25, max_backoff=1.0)


def poster(
    handler: Callable[[httpx.Request], httpx.Response],
    sleeps: list[float] | None = None,
    options: HttpOptions = FAST,
) -> HttpPoster:
    record = sleeps if sleeps is not None else []
    return HttpPoster(
        "webhook", URL, options=options, sleep=record.append, transport=httpx.MockTransport(handler)
    )


class Answers:
    """The receiver: each request gets the next status, or raises the next transport error;
    `calls` keeps the requests."""

    def __init__(self, *statuses: int | type[httpx.TransportError]) -> None:
        self._next: Iterator[int | type[httpx.TransportError]] = iter(statuses)
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        answer = next(self._next)
        if isinstance(answer, type):
            raise answer(f"failed talking to {request.url}", request=request)
        return httpx.Response(answer, text=f"echo {request.url}")


def test_success_first_time() -> None:
    handler = Answers(200)
    poster(handler).post(b"{}", {"Content-Type": "application/json"})
    assert len(handler.calls) == 1


def test_retries_5xx_with_growing_backoff_then_succeeds() -> None:
    sleeps: list[float] = []
    handler = Answers(500, 503, 502, 204)
    poster(handler, sleeps).post(b"{}", {})
    assert len(handler.calls) == 4
    # 0.25, 0.5, 1.0 (capped), each scaled by jitter into [50 %, 100 %].
    assert len(sleeps) == 3
    for slept, nominal in zip(sleeps, (0.25, 0.5, 1.0), strict=True):
        assert nominal / 2 <= slept <= nominal


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
def test_retries_transport_errors(error: type[httpx.TransportError]) -> None:
    handler = Answers(error, 200)
    poster(handler).post(b"{}", {})
    assert len(handler.calls) == 2


@pytest.mark.parametrize("status", [408, 429])
def test_retries_throttling_and_request_timeout(status: int) -> None:
    handler = Answers(status, 200)
    poster(handler).post(b"{}", {})
    assert len(handler.calls) == 2


def test_honours_a_short_retry_after() -> None:
    sleeps: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if not sleeps:
            return httpx.Response(429, headers={"Retry-After": "7"})
        return httpx.Response(200)

    poster(handle, sleeps).post(b"{}", {})
    assert sleeps == [7.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 301])
def test_client_errors_and_redirects_are_not_retried(status: int) -> None:
    handler = Answers(status, 200)
    with pytest.raises(DeliveryError) as caught:
        poster(handler).post(b"{}", {})
    assert len(handler.calls) == 1
    assert caught.value.retryable is False
    assert f"HTTP {status}" in str(caught.value)


def test_gives_up_after_the_configured_attempts() -> None:
    handler = Answers(500, 500, 500, 500, 200)
    with pytest.raises(DeliveryError) as caught:
        poster(handler).post(b"{}", {})
    assert len(handler.calls) == 4
    assert caught.value.retryable is True
    assert "after 4 attempts" in str(caught.value)


def test_errors_and_logs_never_contain_the_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # httpx logs every request URL at INFO
    for handler in (Answers(500, 500, 500, 500), Answers(*[httpx.ConnectError] * 4)):
        with pytest.raises(DeliveryError) as caught:
            poster(handler).post(b"{}", {})
        text = f"{caught.value!s} {caught.value!r} {caught.value.problem}"
        assert "s3cr3tT0k3nXYZ" not in text and "hooks.example.com/services" not in text
    assert caplog.records  # httpx did log...
    assert "s3cr3tT0k3nXYZ" not in caplog.text  # ...but without the token
    assert "abcdef123456" not in caplog.text


def test_response_body_echoing_the_url_is_redacted() -> None:
    with pytest.raises(DeliveryError) as caught:
        poster(Answers(400)).post(b"{}", {})
    assert "echo" in str(caught.value)
    assert "s3cr3tT0k3nXYZ" not in str(caught.value)


def test_sinks_never_show_urls_or_secrets() -> None:
    secret = "hmac-secret-0123456789"
    sinks: list[Sink] = [WebhookSink(URL, secret), TeamsSink(URL), SlackSink(URL)]
    for sink in sinks:
        shown = f"{sink!r} {sink!s} {sink.__dict__!r}"
        assert "s3cr3tT0k3nXYZ" not in shown
        assert secret not in repr(sink)
        sink.close()


def test_redact_removes_the_url_and_its_parts() -> None:
    text = f"POST {URL} failed; path /services/T000/B000/s3cr3tT0k3nXYZ; query sig=abcdef123456"
    cleaned = redact(text, [URL, None, ""])
    assert "s3cr3tT0k3nXYZ" not in cleaned and "abcdef123456" not in cleaned
    assert cleaned.count("[redacted]") == 3


TEAMS = (
    "https://prod.example.logic.azure.com/workflows/abc123def456/triggers/manual/paths/invoke"
    "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun"
    "&sig=Zx9sIgNaTuReVaLuE0123456789abcdefGHIJKLmnop"
)
SIG = "Zx9sIgNaTuReVaLuE0123456789abcdefGHIJKLmnop"


def leaks(text: str, secret: str, piece: int = 6) -> list[str]:
    """Every `piece`-character run of `secret` found in `text`."""
    runs = (secret[i : i + piece] for i in range(len(secret) - piece + 1))
    return [run for run in runs if run in text]


def test_a_receiver_echoing_its_token_alone_leaks_nothing() -> None:
    """The receiver quotes only the query value, percent-encoded or not, so far into its
    answer that the error snippet's cut falls inside the token."""
    for echoed in (SIG, SIG.replace("a", "%61", 1), f"sig%3D{SIG}"):
        for pad in range(95, 125, 4):
            body = "x" * pad + f" invalid signature {echoed} for this flow"

            def handler(request: httpx.Request, body: str = body) -> httpx.Response:
                return httpx.Response(401, text=body)

            teams = HttpPoster("teams", TEAMS, options=FAST, transport=httpx.MockTransport(handler))
            with pytest.raises(DeliveryError) as caught:
                teams.post(b"{}", {})
            teams.close()
            shown = f"{caught.value} {caught.value.problem}"
            assert "HTTP 401" in shown
            assert leaks(shown, SIG) == [], (echoed, pad, shown)


def test_every_secret_part_of_a_sink_url_is_redacted_and_words_stay() -> None:
    slack = "https://hooks.slack.com/services/T0AAAA/B0BBBB/XyZ123abcDEF456ghiJKL789"
    connection = (
        "DefaultEndpointsProtocol=https;AccountName=stalerts;"
        "AccountKey=QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=;EndpointSuffix=core.windows.net"
    )
    text = (
        f"sig={SIG}; token XyZ123abcDEF456ghiJKL789;"
        " key QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=;"
        " see /services/ and /workflows/ for details"
    )
    cleaned = redact(text, [TEAMS, slack, connection])
    for secret in (SIG, "XyZ123abcDEF456ghiJKL789", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk"):
        assert leaks(cleaned, secret) == [], cleaned
    assert "/services/ and /workflows/ for details" in cleaned  # plain words stay readable


def test_delivery_errors_never_carry_a_registered_secret() -> None:
    HttpPoster("teams", TEAMS, options=FAST).close()  # registers the URL, as building a sink does
    error = DeliveryError("teams", f"upstream said: bad sig {SIG}")
    assert leaks(f"{error} {error.problem}", SIG) == []
    assert "upstream said: bad sig" in error.problem


def test_no_attempt_starts_after_the_deadline() -> None:
    handler = Answers(200)
    with pytest.raises(DeliveryError, match="time budget for this run ran out"):
        poster(handler).post(b"{}", {}, deadline=time.monotonic() - 0.1)
    assert handler.calls == []


def test_attempts_and_waits_are_cut_to_the_deadline() -> None:
    timeouts: list[float] = []

    def hanging_then_busy(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        if len(timeouts) == 1:
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(429, headers={"Retry-After": "30"})

    sleeps: list[float] = []
    slow = HttpOptions(timeout=10.0, retries=3, backoff=0.01, max_backoff=0.01)
    with pytest.raises(DeliveryError, match="time budget for this run ran out") as caught:
        poster(hanging_then_busy, sleeps, slow).post(b"{}", {}, deadline=time.monotonic() + 2.0)
    # Each attempt waited at most what was left, not 10 s; the 30 s Retry-After was not slept.
    assert len(timeouts) == 2 and all(t <= 2.0 for t in timeouts)
    assert len(sleeps) == 1 and sleeps[0] < 2.0
    assert "HTTP 429" in caught.value.problem
