"""The HTTP API over stored audit results; `create_app` builds it."""

from auditor.api.app import create_app

__all__ = ["create_app"]
