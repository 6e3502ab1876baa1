"""The API as deployed: its OpenAPI document says how to call it (function keys, tags) and its
docs page works offline and behind a key.

In Azure every route but `/api/health` needs a function key, as the `x-functions-key` header or
the `code` query parameter. The Functions host checks it, not this app, so the document
declares it for people and tools. The Swagger UI assets come from the pinned `fastapi-offline`
package rather than a CDN, and a key given to the page as `?code=` is passed on to its assets
and to the document it loads, so the page opens in a browser with one link.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS_URL = "/api/docs"
ASSETS_URL = "/api/docs-assets"
_ASSETS = Path(fastapi_offline.__file__).parent / "static"

# The function key, as the Functions host accepts it.
SECURITY_SCHEMES = {
    "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
    "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
}
ANONYMOUS_PATHS = frozenset({"/api/health"})

# path prefix -> tag, most specific first: how the operations are grouped for people.
_TAGS = (
    ("/api/registries/{name}/intervals", "compliance"),
    ("/api/registries/{name}/", "evidence"),
    ("/api/registries", "registries"),
    ("/api/compliance", "compliance"),
    ("/api/controls", "compliance"),
    ("/api/report", "compliance"),
    ("/api/export", "exports"),
    ("/api/runs", "runs"),
    ("/api/alerts", "alerts"),
    ("/api/health", "health"),
)


def as_deployed(schema: dict[str, Any]) -> dict[str, Any]:
    """The generated document with the function-key schemes, required everywhere but on the
    anonymous routes, and each operation tagged by what it is about."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    schema["security"] = [{name: []} for name in SECURITY_SCHEMES]
    for path, operations in schema.get("paths", {}).items():
        tag = next((tag for prefix, tag in _TAGS if path.startswith(prefix)), None)
        for operation in operations.values():
            if tag is not None:
                operation["tags"] = [tag]
            if path in ANONYMOUS_PATHS:
                operation["security"] = []
    return schema


def install(app: FastAPI) -> None:
    app.mount(ASSETS_URL, StaticFiles(directory=_ASSETS), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        key = request.query_params.get("code")
        suffix = f"?{urlencode({'code': key})}" if key else ""
        return get_swagger_ui_html(
            openapi_url=f"{app.openapi_url}{suffix}",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js{suffix}",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css{suffix}",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png{suffix}",
        )
