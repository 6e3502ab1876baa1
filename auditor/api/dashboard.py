"""The dashboard: one HTML page at `/api/ui`, served by the API app itself (so by the Functions
app, `python -m auditor serve` and the demo), that reads the API with `fetch`.

The page's files live in `auditor/api/ui/` (`index.html`, `style.css`, `app.js`). They are
served as one document, the stylesheet and the script inlined, for two reasons:

- In Azure every route but `/api/health` needs a function key. A person opens
  `https://<app>.azurewebsites.net/api/ui?code=<key>`: that one request carries the key, and
  the page then keeps it in `sessionStorage` and sends it as `x-functions-key` on each API
  call. Separate asset files would each need the key in their URL as well.
- Nothing else is loaded from anywhere (no CDN, no font, no image), so it works offline.

The Content-Security-Policy allows exactly the inlined script and stylesheet (by hash) and
`fetch` to this origin, so a hostile string that slipped into the DOM could run nothing. The
page also never inserts API strings as HTML. `/api/ui` and `/api/ui/` both serve the page
rather than one redirecting to the other: the Functions host may trim a trailing slash, and a
redirect would then loop. The page uses no relative URL, so either address works.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import HTMLResponse

UI_URL = "/api/ui"
UI_DIR = Path(__file__).parent / "ui"
_STYLE_TAG = '<link rel="stylesheet" href="style.css">'
_SCRIPT_TAG = '<script type="module" src="app.js"></script>'


@dataclass(frozen=True)
class Page:
    html: str
    headers: dict[str, str]


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@functools.cache
def page() -> Page:
    """index.html with style.css and app.js inlined, and the headers it is served with."""
    html = (UI_DIR / "index.html").read_text(encoding="utf-8")
    style = (UI_DIR / "style.css").read_text(encoding="utf-8")
    script = (UI_DIR / "app.js").read_text(encoding="utf-8")
    if _STYLE_TAG not in html or _SCRIPT_TAG not in html:
        raise RuntimeError("auditor/api/ui/index.html must link style.css and app.js")
    # Neither file may close its own element early.
    if "</style" in style.lower() or "</script" in script.lower():
        raise RuntimeError("style.css and app.js must not contain a closing tag")
    html = html.replace(_STYLE_TAG, f"<style>{style}</style>").replace(
        _SCRIPT_TAG, f'<script type="module">{script}</script>'
    )
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_digest(script)}",
            f"style-src {_digest(style)}",
            "connect-src 'self'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    headers = {
        "Content-Security-Policy": policy,
        # The first request's URL holds the key: never send it on as a Referer.
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
    return Page(html, headers)


def install(app: FastAPI) -> None:
    def dashboard() -> HTMLResponse:
        served = page()
        return HTMLResponse(served.html, headers=served.headers)

    for path in (UI_URL, f"{UI_URL}/"):
        app.add_api_route(path, dashboard, methods=["GET"], include_in_schema=False)
