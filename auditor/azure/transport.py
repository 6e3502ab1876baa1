"""The ARM clients' HTTP transport: azure-core's transport interface on urllib3's connection
pool, without requests in between.

ARM calls are small JSON reads, a run makes one or more per registry, and with no throttle to
wait for their client CPU sets a run's pace. requests costs about a third of that CPU per call
(preparing the request, merging session settings, building its own response over urllib3's),
none of which an ARM read needs. This sends through urllib3 directly and hands azure-core the
same errors its requests transport raises, so the SDK's retry policy treats failures alike.

The environment's proxies and CA bundle are read once, when the transport is built, with the
rules requests applies (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE): every client
here talks to one endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import certifi
import requests
import urllib3
from azure.core.exceptions import (
    IncompleteReadError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpResponse as LegacyHttpResponse
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest as RestHttpRequest
from azure.core.rest._http_response_impl import HttpResponseImpl
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

# Per-request options azure-core's pipeline may pass down; any other is refused by name.
_IGNORED_OPTIONS = frozenset({"stream"})


def environment_settings(endpoint: str) -> tuple[str | None, str | bool]:
    """The proxy URL and the CA bundle (or True for certifi's, False for none) the environment
    gives `endpoint`, by requests' own rules."""
    session = requests.Session()
    try:
        found = session.merge_environment_settings(endpoint, {}, None, True, None)
    finally:
        session.close()
    scheme = "https" if endpoint.lower().startswith("https:") else "http"
    proxies = found["proxies"] or {}
    proxy = proxies.get(scheme) or proxies.get("all")
    verify: str | bool | None = found["verify"]
    return proxy, True if verify is None else verify


def _pool(endpoint: str, pool_size: int) -> urllib3.PoolManager:
    proxy, verify = environment_settings(endpoint)
    options: dict[str, Any] = {"num_pools": 4, "maxsize": pool_size, "block": False}
    if verify is False:
        options["cert_reqs"] = "CERT_NONE"
    else:
        options["cert_reqs"] = "CERT_REQUIRED"
        options["ca_certs"] = certifi.where() if verify is True else str(verify)
    if proxy:
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


class _RestResponse(HttpResponseImpl):
    """An answer for SDK operations built on `azure.core.rest`; its body already read."""

    def __init__(self, request: RestHttpRequest, raw: urllib3.BaseHTTPResponse, body: bytes):
        headers: MutableMapping[str, str] = raw.headers
        super().__init__(
            request=request,
            internal_response=raw,
            status_code=raw.status,
            headers=headers,
            reason=raw.reason or "",
            content_type=headers.get("content-type"),
            stream_download_generator=_chunks,
        )
        self._content = body


class _LegacyResponse(LegacyHttpResponse):
    """An answer for SDK operations still on the pipeline's own request type (some of
    azure-mgmt-monitor's)."""

    def __init__(self, request: Any, raw: urllib3.BaseHTTPResponse, body: bytes) -> None:
        super().__init__(request, raw)
        self.status_code = raw.status
        self.headers = raw.headers
        self.reason = raw.reason or ""
        self.content_type = raw.headers.get("content-type")
        self._body = body

    def body(self) -> bytes:
        return self._body

    def stream_download(self, pipeline: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


def _chunks(response: _RestResponse, **kwargs: Any) -> Iterator[bytes]:
    yield response.content


class Urllib3Transport(HttpTransport):  # type: ignore[type-arg]
    """Sends azure-core's requests through one urllib3 pool. Bodies are read whole: ARM
    answers are pages of JSON, never downloads."""

    def __init__(
        self,
        endpoint: str,
        *,
        pool_size: int,
        connection_timeout: float,
        read_timeout: float,
    ) -> None:
        self._pool = _pool(endpoint, pool_size)
        self._connection_timeout = connection_timeout
        self._read_timeout = read_timeout

    def __enter__(self) -> Urllib3Transport:
        return self

    def __exit__(self, *args: object) -> None:
        pass  # shared by every client of a run; `close` ends it

    def open(self) -> None:
        pass

    def close(self) -> None:
        self._pool.clear()

    def send(self, request: Any, **kwargs: Any) -> Any:
        timeout = urllib3.Timeout(
            connect=kwargs.pop("connection_timeout", self._connection_timeout),
            read=kwargs.pop("read_timeout", self._read_timeout),
        )
        unknown = set(kwargs) - _IGNORED_OPTIONS
        if unknown:
            raise TypeError(f"ARM transport: unsupported request options {sorted(unknown)}")
        if getattr(request, "files", None):
            raise TypeError("ARM transport: multipart file uploads are not supported")
        try:
            raw = self._pool.urlopen(
                request.method,
                request.url,
                body=request.data,
                headers=dict(request.headers),
                retries=False,
                redirect=False,
                timeout=timeout,
            )
            body = raw.data
        except HTTPError as error:
            raise _azure_error(error) from error
        if isinstance(request, RestHttpRequest):
            return _RestResponse(request, raw, body)
        return _LegacyResponse(request, raw, body)


def _azure_error(error: HTTPError) -> Exception:
    """The azure-core error requests' transport raises for the same failure: the retry policy
    retries ServiceRequestError (nothing was sent) and ServiceResponseError (no answer)."""
    # NewConnectionError is a ConnectTimeoutError to urllib3: refused, not slow.
    if isinstance(error, (NewConnectionError, ProxyError, SSLError)):
        return ServiceRequestError(error, error=error)
    if isinstance(error, ConnectTimeoutError):
        return ServiceRequestTimeoutError(error, error=error)
    if isinstance(error, ReadTimeoutError):
        return ServiceResponseTimeoutError(error, error=error)
    if isinstance(error, ProtocolError) and "IncompleteRead" in str(error):
        return IncompleteReadError(error, error=error)
    return ServiceResponseError(error, error=error)
