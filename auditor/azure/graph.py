"""Resource Graph queries through the SDK client's pipeline (credential, pacing, retries,
transport), answered as plain rows.

The SDK's `resources` decodes each answer twice (the pipeline's `ContentDecodePolicy`, then its
deserializer, which is not handed that result) and then walks every value of every row to
build a model whose `data` is the same rows: 60-100 ms for a page of 1,000 registries, on the
way to the run's first settings read. `GraphQueries.resources` sends the same request with
the client's `_send_request` (the generated clients' documented way to send a request of
one's own through their pipeline; the underscore is this SDK generation's), streamed, so the
pipeline leaves the body alone, and decodes it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    map_error,
)
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest

_PATH = "/providers/Microsoft.ResourceGraph/resources"
# The SDK's own error map for this operation.
_ERRORS: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    304: ResourceNotModifiedError,
}


@dataclass(frozen=True)
class GraphPage:
    """One page of a query's answer: its rows as sent, and the token of the next page."""

    data: object
    skip_token: str | None


class GraphQueries:
    """`auditor.ports.GraphClient` on a `ResourceGraphClient`."""

    def __init__(self, client: ResourceGraphClient) -> None:
        self._client = client

    def resources(self, query: QueryRequest, /) -> GraphPage:
        api_version = self._client._config.api_version  # the SDK's own default
        request = HttpRequest(
            "POST",
            _PATH,
            params={"api-version": api_version},
            json=query.serialize(),
        )
        response = self._client._send_request(request, stream=True)
        response.read()
        if response.status_code != 200:
            map_error(status_code=response.status_code, response=response, error_map=_ERRORS)
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        try:
            body: Any = response.json()
        except ValueError as exc:
            raise DecodeError(
                f"Resource Graph answered with a body that is not JSON: {exc}", response=response
            ) from exc
        if not isinstance(body, dict):
            raise DecodeError("Resource Graph answered with JSON that is not an object")
        token = body.get("$skipToken")
        return GraphPage(body.get("data"), token if isinstance(token, str) and token else None)

    def close(self) -> None:
        self._client.close()
