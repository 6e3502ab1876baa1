"""Short, secret-free descriptions of Azure SDK errors for findings and run records."""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseTimeoutError,
)

_MAX = 300


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
