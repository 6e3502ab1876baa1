"""The one error the store raises for Table Storage failures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)


def describe(exc: AzureError) -> str:
    """What went wrong, from the status and error code only: SDK messages can carry request
    URLs (with a SAS token when one is used), so their text is never repeated."""
    if isinstance(exc, HttpResponseError):
        error_code = getattr(exc, "error_code", None)  # set by the SDK, not declared
        error_code = getattr(error_code, "value", error_code)  # the tables SDK gives an enum
        code = f" {error_code}" if error_code else ""
        status = f"HTTP {exc.status_code}{code}"
        if isinstance(exc, ClientAuthenticationError) or exc.status_code in (401, 403):
            return f"access denied ({status}): check the identity's role or the account key"
        return status
    if isinstance(exc, ServiceRequestError):
        return "the service could not be reached"
    if isinstance(exc, ServiceResponseError):
        return "the connection failed before a complete response"
    return type(exc).__name__


class StorageError(RuntimeError):
    """Table Storage failed; `action` says what the store was doing."""

    def __init__(self, action: str, problem: str) -> None:
        super().__init__(f"Table Storage: {action} failed: {problem}")
        self.action = action
        self.problem = problem

    @classmethod
    def wrap(cls, action: str, exc: AzureError) -> StorageError:
        return cls(action, describe(exc))


@contextmanager
def guarded(action: str) -> Iterator[None]:
    """Azure errors inside become StorageError naming `action`."""
    try:
        yield
    except AzureError as exc:
        raise StorageError.wrap(action, exc) from exc
