"""The generic webhook: the alert document as JSON, signed with HMAC-SHA256 when a secret is set.

The signature covers the exact bytes sent, so a receiver verifies with
`hmac.compare_digest(header, "sha256=" + hmac_sha256(secret, raw_body).hexdigest())` before
parsing (docs/alerts.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json

from auditor.alerts.model import Alert
from auditor.alerts.payload import to_document
from auditor.alerts.sinks.base import register_secret
from auditor.alerts.sinks.http import HttpOptions, HttpPoster

SIGNATURE_HEADER = "X-Auditor-Signature"
ALERT_ID_HEADER = "X-Auditor-Alert-Id"


def encode(document: object) -> bytes:
    """The body as sent: compact UTF-8 JSON (the signature is over these bytes)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookSink:
    name = "webhook"

    def __init__(
        self, url: str, secret: str | None = None, *, options: HttpOptions | None = None
    ) -> None:
        self._poster = HttpPoster(self.name, url, options=options)
        self._secret = secret
        if secret:
            register_secret(secret)

    def __repr__(self) -> str:
        return f"WebhookSink(url=[redacted], signed={self._secret is not None})"

    def send(self, alert: Alert, *, deadline: float | None = None) -> None:
        body = encode(to_document(alert))
        headers = {"Content-Type": "application/json; charset=utf-8", ALERT_ID_HEADER: alert.id}
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        self._poster.post(body, headers, deadline=deadline)

    def close(self) -> None:
        self._poster.close()
