"""What an Azure SDK error means: a short, secret-free description for findings and run
records, and whether (and when) trying again may succeed."""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)

_MAX = 300
_TRANSIENT_STATUS = frozenset({408, 429})


def transient(exc: AzureError) -> bool:
    """Whether trying again may succeed: the service unreachable or overloaded, the
    connection lost, a timeout. Not a 4xx other than 408 and 429."""
    if isinstance(exc, IncompleteReadError):
        return True  # the connection dropped inside a response body
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        return status is not None and (status in _TRANSIENT_STATUS or status >= 500)
    return isinstance(exc, (ServiceRequestError, ServiceResponseError))


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds; None when absent or an HTTP date (then the caller's
    own backoff applies)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def retry_after(exc: AzureError) -> float | None:
    """The Retry-After of the response that failed with `exc`, if it gave one."""
    response = getattr(exc, "response", None)
    return retry_after_seconds(response.headers.get("Retry-After") if response else None)


# What a person can do when no credential could sign in (the SDK lists every credential it
# tried over fifteen lines, none of which says that).
NO_CREDENTIAL = (
    "no Azure credential could sign in: run `az login` (or `azd auth login`), run where a "
    "managed identity is assigned, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
    "AZURE_CLIENT_SECRET for a service principal"
)


def describe_error(exc: BaseException) -> str:
    """`HTTP 403 AuthorizationFailed: <message>` style; the message is cut short and never holds
    request headers, so tokens cannot leak into stored findings."""
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        return NO_CREDENTIAL  # raised by the credential itself, before any request was sent
    if isinstance(exc, HttpResponseError):
        status = exc.status_code if exc.status_code is not None else "?"
        code = getattr(exc.error, "code", None) if exc.error is not None else None
        message = getattr(exc.error, "message", None) if exc.error is not None else None
        text = message or exc.reason or exc.__class__.__name__
        head = f"HTTP {status}" + (f" {code}" if code else "")
        return _clip(f"{head}: {text}")
    if isinstance(exc, ServiceResponseTimeoutError):
        # Reported apart from other failures: the answer may come in a later run.
        return _clip(f"timed out: no answer within the read timeout ({exc.message})")
    if isinstance(exc, ServiceRequestError):
        return _clip(f"connection failed: {exc.message}")
    if isinstance(exc, AzureError):
        return _clip(f"{exc.__class__.__name__}: {exc.message}")
    return _clip(f"{exc.__class__.__name__}: {exc}")


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX else text[: _MAX - 1] + "…"
