"""An azure-core pipeline policy that paces ARM reads per subscription.

Placed among the per-retry policies, so every attempt (first try and SDK retries alike) takes a
token, and every response teaches the pacer what the server reported.
"""

from __future__ import annotations

import re
from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

from auditor.azure.errors import retry_after_seconds
from auditor.pacing import TokenBucketPacer

_SUBSCRIPTION = re.compile(r"/subscriptions/([0-9a-fA-F-]{36})(?:/|$)")
REMAINING_READS = "x-ms-ratelimit-remaining-subscription-reads"
# Calls outside any subscription (subscription list, Resource Graph) share one tenant bucket.
TENANT_SCOPE = "tenant"


def pacing_scope(url: str) -> str:
    path = url.split("?", 1)[0]
    match = _SUBSCRIPTION.search(path)
    return match.group(1).lower() if match else TENANT_SCOPE


class ArmPacingPolicy(HTTPPolicy[Any, Any]):
    def __init__(self, pacer: TokenBucketPacer) -> None:
        super().__init__()
        self._pacer = pacer

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        scope = pacing_scope(request.http_request.url)
        reserved_at = self._pacer.now()
        self._pacer.acquire(scope, in_flight=True)
        try:
            response = self.next.send(request)
        except BaseException:
            self._pacer.finished(scope, reserved_at, counted=False)
            raise
        headers = response.http_response.headers
        remaining = headers.get(REMAINING_READS)
        # The server's count: it has counted this request (an answer without it, such as a
        # gateway's error, may never have reached the throttle).
        counted = remaining is not None and remaining.strip().isdigit()
        self._pacer.finished(scope, reserved_at, counted=counted)
        if remaining is not None and counted:
            self._pacer.observe_remaining(scope, int(remaining))
        if response.http_response.status_code == 429:
            retry_after = retry_after_seconds(headers.get("Retry-After"))
            self._pacer.observe_throttled(scope, retry_after if retry_after is not None else 1.0)
        return response
