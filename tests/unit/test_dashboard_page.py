"""The dashboard page as served (`auditor/api/dashboard.py`): one self-contained document,
nothing from elsewhere, no way for an API string to become HTML. The browser tests
(tests/integration/browser/) check what it shows."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.testclient import TestClient

from auditor.api import create_app
from auditor.api.dashboard import UI_DIR, page


def _never_called() -> None:
    raise AssertionError("the page needs no store")


def test_the_page_is_one_document_with_its_script_and_style_inlined() -> None:
    client = TestClient(create_app(_never_called))  # type: ignore[arg-type]
    for path in ("/api/ui", "/api/ui/", "/api/ui?code=k3y"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert response.text == page().html
    html = page().html
    assert 'src="app.js"' not in html and 'href="style.css"' not in html
    # Nothing loaded from anywhere: no src or href to another origin, no @import or url().
    assert not re.findall(r"""(?:src|href)=["'](?:https?:)?//""", html)
    assert "@import" not in html and "url(" not in html


def test_the_content_security_policy_allows_only_the_inlined_code() -> None:
    served = page()
    policy = dict(
        part.strip().split(" ", 1) for part in served.headers["Content-Security-Policy"].split(";")
    )
    script = (UI_DIR / "app.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert served.headers["Referrer-Policy"] == "no-referrer"


def test_the_script_never_turns_a_string_into_html() -> None:
    script = (UI_DIR / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "DOMParser", "createContextualFragment"):  # fmt: skip
        assert sink not in script, sink
