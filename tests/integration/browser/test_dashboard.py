"""The dashboard (`/api/ui`) in a real browser: Debian's headless Chromium driven by Selenium,
against the API served by uvicorn over the demo fleet after real audits (emulator + Azurite).

The browser is the system's (`chromium`, `chromedriver`: `scripts/bootstrap.sh` installs them
where it can); Selenium is given both paths, so its manager never downloads one. Without them
these tests skip, except under `CI=true`, where they fail. Screenshots of each view go to
`build/screenshots/` for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from auditor.api import create_app
from auditor.runtime import alerts_provider, audit_once, build_store
from auditor.settings import Settings
from emulator.azurite import Azurite
from emulator.testing import sdk_environment, start_emulator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "emulator" / "scenarios" / "demo.yaml"
SCREENSHOTS = REPO / "build" / "screenshots"
KEY = "k3y-for-the-test"
WIDTH, HEIGHT = 1366, 768  # a laptop screen


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        chromium = None
    if chromium and driver:
        return chromium, driver
    why = "the browser tests need Debian's chromium and chromium-driver, and selenium"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (bash scripts/bootstrap.sh installs them as root)", pytrace=False)
    pytest.skip(f"{why}: run bash scripts/bootstrap.sh as root to install them")


class KeyRecorder:
    """ASGI middleware: the `x-functions-key` each API request carried (None: none)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str | None]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            key = headers.get(b"x-functions-key")
            self.seen.append((scope["path"], key.decode() if key else None))
        await self.app(scope, receive, send)


class Served:
    def __init__(self, base: str, recorder: KeyRecorder) -> None:
        self.base = base
        self.recorder = recorder
        self.http = httpx.Client(base_url=base, timeout=30)

    def api(self, path: str, **params: Any) -> Any:
        response = self.http.get("/api" + path, params=params)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def served(azurite_server: Azurite) -> Iterator[Served]:
    """The demo fleet audited twice (a trend to draw), the API on a free loopback port."""
    from datetime import UTC, datetime

    emulator = start_emulator(DEMO, now=datetime.now(UTC))
    env = {
        **emulator.environ(),
        "AUDITOR_STORAGE": azurite_server.connection_string,
        "AUDITOR_TABLE_PREFIX": "ui" + uuid.uuid4().hex[:10],
        "AUDITOR_MAX_CONCURRENCY": "8",
    }
    with sdk_environment(env):
        settings = Settings.from_env(env)
        for _ in range(2):
            audit_once(settings, trigger="demo")
        store = build_store(settings)
        recorder = KeyRecorder(
            create_app(
                lambda: store, alerts_provider=alerts_provider(settings), policy=settings.policy
            )
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(recorder, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        try:
            yield Served(f"http://127.0.0.1:{port}", recorder)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()
            emulator.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={WIDTH},{HEIGHT}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    # The page itself at the laptop size, whatever room the window keeps for itself.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(served: Served, browser: Any) -> Iterator[Callable[[str], Any]]:
    """Opens the dashboard at a hash route (the key given as `?code=`, as in Azure), waits
    until the view is built; after the test, the browser console must hold no error or
    warning."""
    browser.get_log("browser")  # what earlier tests left

    def open_view(route: str) -> Any:
        browser.get(f"{served.base}/api/ui?code={KEY}#{route}")
        settle(browser)
        return browser

    yield open_view
    problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []


def settle(browser: Any, *, timeout: float = 15) -> None:
    """Waits until the main area is built and no API call is outstanding."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = browser.execute_script(
            "const m = document.getElementById('main');"
            "return m && m.children.length > 0 && !m.hasAttribute('aria-busy')"
            " && !document.body.innerText.includes('Loading…');"
        )
        if ready:
            return
        time.sleep(0.05)
    raise AssertionError("the dashboard did not finish loading: " + browser.page_source[:2000])


def wait_for(browser: Any, script: str, *, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def screenshot(browser: Any, name: str) -> Path:
    """The whole page at the laptop width, as a person would scroll through it."""
    import base64

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    path = SCREENSHOTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def texts(browser: Any, selector: str) -> list[str]:
    return list(
        browser.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent.trim())",
            selector,
        )
    )


def registry_rows(browser: Any) -> list[str]:
    return list(
        browser.execute_script(
            "return [...document.querySelectorAll('#registries tbody tr')].map(r => r.dataset.name)"
        )
    )


def test_the_overview_shows_the_apis_numbers(served: Served, page: Any) -> None:
    browser = page("/")
    summary = served.api("/compliance")
    cards = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('[data-total]')]"
        ".map(c => [c.dataset.total, c.querySelector('.value').textContent]))"
    )
    totals = summary["totals"]
    assert cards == {
        **{name: str(totals[name]) for name in ("total", *STATUSES)},
        "percent": f"{summary['compliancePercent']}%".replace(".0%", "%"),
    }
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#by-subscription tbody tr')]"
        ".map(r => [...r.children].map(c => c.textContent))"
    )
    assert [row[: 2 + len(STATUSES)] for row in rows] == [
        [s["subscriptionId"], *(str(s[k]) for k in ("total", *STATUSES))]
        for s in summary["bySubscription"]
    ]
    reasons = browser.execute_script(
        "return [...document.querySelectorAll('#by-reason tbody tr')]"
        ".map(r => [...r.children].map(c => c.textContent))"
    )
    assert reasons == [[r["code"], str(r["count"])] for r in summary["byReason"]]
    # The trend: one bar per finished run.
    runs = served.api("/runs", limit=30)["items"]
    bars = browser.execute_script("return document.querySelectorAll('#trend [data-run]').length")
    assert bars == len([r for r in runs if r["totals"] and r["finishedAt"]]) == 2
    # The demo fleet has a workspace nobody can read: the last run is partial, and says so.
    assert summary["lastRun"]["status"] == "partial"
    banner = browser.find_element("id", "banner")
    assert banner.is_displayed() and "partial" in banner.text
    assert "ago" in browser.find_element("id", "data-age").text
    # Compliance over time: the period route's facts, or a note while the API lacks it.
    period = texts(browser, "#period-facts, #period-missing")
    assert len(period) == 1
    screenshot(browser, "dashboard")


STATUSES = ("compliant", "noncompliant", "unknown", "removed", "exempt", "pending")


def test_exempt_registries_are_counted_and_listed_apart(served: Served, page: Any) -> None:
    browser = page("/")
    summary = served.api("/compliance")
    exempt = [r["name"] for r in served.api("/registries", status="exempt")["items"]]
    assert "acrlegacyreports" in exempt  # the demo's tag, in force
    card = browser.find_element("css selector", "[data-total=exempt]")
    assert card.find_element("css selector", ".value").text == str(summary["totals"]["exempt"])
    assert summary["totals"]["exempt"] == len(exempt)
    # Compliant (and pending) of judged leaves them out, as the API's percentage does.
    passing = summary["totals"]["compliant"] + summary["totals"]["pending"]
    judged = passing + summary["totals"]["noncompliant"]
    assert summary["compliancePercent"] == passing * 1000 // judged / 10
    assert "exempt" in texts(browser, "#trend .legend li")
    segments = browser.execute_script(
        "return document.querySelectorAll('#trend rect[data-status=exempt]').length"
    )
    assert segments == 2  # one per run: both audits saw the exemption
    # Its card links to the filtered list, which shows exactly the API's exempt registries.
    card.find_element("tag name", "a").click()
    settle(browser)
    assert "status=exempt" in browser.current_url
    _wait_for_rows(browser, exempt)
    assert texts(browser, "#registries tbody td:nth-child(2)") == ["exempt"] * len(exempt)
    selected = browser.execute_script("return document.getElementById('filter-status').value")
    assert selected == "exempt"
    screenshot(browser, "registries-exempt")
    # The registry page: its badge and the reason that says what it would otherwise be.
    browser = page("/registry/acrlegacyreports")
    assert texts(browser, "h2 .badge") == ["exempt"]
    codes = browser.execute_script(
        "return [...document.querySelectorAll('.finding')].map(f => f.dataset.code)"
    )
    assert codes[0].startswith("exempted")
    screenshot(browser, "registry-exempt")


def _select(browser: Any, name: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", f"filter-{name}")).select_by_value(value)


def _wait_for_rows(browser: Any, expected: list[str]) -> None:
    deadline = time.monotonic() + 10
    while registry_rows(browser) != expected:
        if time.monotonic() > deadline:
            assert registry_rows(browser) == expected
        time.sleep(0.05)


def test_the_registries_table_filters_and_pages_as_the_api_does(served: Served, page: Any) -> None:
    browser = page("/registries")
    everything = served.api("/registries", pageSize=50)
    assert registry_rows(browser) == [r["name"] for r in everything["items"]]

    _select(browser, "status", "noncompliant")
    noncompliant = [r["name"] for r in served.api("/registries", status="noncompliant")["items"]]
    _wait_for_rows(browser, noncompliant)
    shown = texts(browser, "#registries tbody td:nth-child(2)")
    assert shown == ["noncompliant"] * len(noncompliant) and noncompliant
    assert "status=noncompliant" in browser.current_url
    screenshot(browser, "registries")

    reason = served.api("/compliance")["byReason"][0]["code"]
    _select(browser, "reason", reason)
    both = served.api("/registries", status="noncompliant", reason=reason)["items"]
    _wait_for_rows(browser, [r["name"] for r in both])

    _select(browser, "status", "")
    _select(browser, "reason", "")
    name_input = browser.find_element("id", "filter-namePrefix")
    name_input.send_keys("acrp")
    prefixed = [r["name"] for r in served.api("/registries", namePrefix="acrp")["items"]]
    assert prefixed and all(n.startswith("acrp") for n in prefixed)
    _wait_for_rows(browser, prefixed)
    name_input.clear()
    name_input.send_keys("\n")

    # Paging follows the API's continuation tokens.
    _select(browser, "pageSize", "25")
    first = served.api("/registries", pageSize=25)
    _wait_for_rows(browser, [r["name"] for r in first["items"]])
    assert first["continuation"]
    browser.find_element("xpath", "//button[text()='Next page']").click()
    second = served.api("/registries", pageSize=25, continuation=first["continuation"])
    _wait_for_rows(browser, [r["name"] for r in second["items"]])
    browser.find_element("xpath", "//button[text()='Previous page']").click()
    _wait_for_rows(browser, [r["name"] for r in first["items"]])


def test_sorting_works_from_the_keyboard(page: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    browser = page("/registries?status=noncompliant")
    names = registry_rows(browser)
    status_button = browser.find_element("xpath", "//th/button[starts-with(., 'Name')]")
    status_button.send_keys(Keys.ENTER)  # ascending: the order it had
    status_button = browser.find_element("xpath", "//th/button[starts-with(., 'Name')]")
    status_button.send_keys(Keys.ENTER)  # descending
    wait_for(browser, "return document.querySelector('th[aria-sort=descending]')")
    assert registry_rows(browser) == sorted(names, reverse=True)
    focused = browser.execute_script("return document.activeElement.textContent")
    assert focused.startswith("Name")
    outline = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible


def test_a_registry_page_shows_reasons_fixes_history_and_evidence(
    served: Served, page: Any
) -> None:
    name = "acrreportingprod"
    browser = page(f"/registry/{name}")
    detail = served.api(f"/registries/{name}")
    assert detail["findings"]
    codes = browser.execute_script(
        "return [...document.querySelectorAll('.finding')].map(f => f.dataset.code)"
    )
    assert codes == [f["code"] for f in detail["findings"]]
    fixes = texts(browser, ".finding .fix")
    with_fix = [f for f in detail["findings"] if f["remediation"]]
    assert len(fixes) == len(with_fix)
    assert all("az " in fix and "<registry-id>" not in fix for fix in fixes)
    explanations = texts(browser, ".finding .explanation")
    assert explanations == [f["explanation"] for f in detail["findings"] if f["explanation"]]
    history = texts(browser, "#history li")
    assert len(history) == len(detail["history"]) >= 1
    assert browser.find_element("id", "evidence").is_displayed()
    assert texts(browser, "#intervals .note, #intervals figure")
    screenshot(browser, "registry")

    busy = page("/registry/acrcustomerportal")  # failed-login bursts, admin logins
    logins = served.api("/registries/acrcustomerportal/logins", since="7d", limit=1)["items"][0]
    captions = texts(busy, "#evidence caption")
    assert ("Failed-login bursts" in captions) == bool(logins["bursts"])
    assert f"{logins['attempts']} attempts" in busy.find_element("id", "evidence").text


def test_runs_show_status_duration_and_errors(served: Served, page: Any) -> None:
    browser = page("/runs")
    runs = served.api("/runs")["items"]
    assert texts(browser, "#runs tbody tr td:nth-child(2)") == [r["status"] for r in runs]
    assert texts(browser, "#runs tbody tr td:nth-child(3)") == [
        f"{r['trigger']} ({r['mode']}"
        + (f", {r['settingsReads']} read)" if r["mode"] == "changes" else ")")
        for r in runs
    ]
    exempt = texts(browser, "#runs tbody tr td:nth-child(8)")  # the Exempt column
    assert exempt == [str(r["totals"]["exempt"]) for r in runs] and "0" not in exempt
    pending = texts(browser, "#runs tbody tr td:nth-child(9)")  # the Pending column
    assert pending == [str(r["totals"]["pending"]) for r in runs]
    errors = texts(browser, "#runs tbody summary")
    assert errors == [f"{r['errorCount']} error" + ("s" * (r["errorCount"] != 1))
                      for r in runs if r["errorCount"]]  # fmt: skip
    screenshot(browser, "runs")


def test_the_key_is_sent_as_a_header_and_kept_out_of_the_url(served: Served, page: Any) -> None:
    served.recorder.seen.clear()
    browser = page("/")
    assert "code=" not in browser.current_url
    stored = browser.execute_script("return sessionStorage.getItem('acr-auditor:function-key')")
    assert stored == KEY
    calls = [(path, key) for path, key in served.recorder.seen if path != "/api/ui"]
    assert calls and all(key == KEY for _, key in calls), calls
    # A reload without ?code= keeps using the key of this tab.
    served.recorder.seen.clear()
    browser.refresh()
    settle(browser)
    assert all(key == KEY for path, key in served.recorder.seen if path != "/api/ui")


# Run in the page: every form control labelled, images and charts described, table headers
# scoped, buttons and links named, ids unique. What an axe run would flag first, offline.
_A11Y = """
const problems = [];
const name = (e) => (e.getAttribute('aria-label') || '').trim()
  || (e.getAttribute('aria-labelledby') || '').split(' ').map(id => document.getElementById(id))
     .filter(Boolean).map(n => n.textContent).join(' ').trim()
  || (e.labels ? [...e.labels].map(l => l.textContent).join(' ').trim() : '')
  || e.textContent.trim() || (e.getAttribute('title') || '').trim();
if (!document.documentElement.lang) problems.push('html has no lang');
for (const e of document.querySelectorAll('input, select, textarea'))
  if (e.type !== 'hidden' && !name(e)) problems.push('unlabelled ' + e.outerHTML.slice(0, 80));
for (const e of document.querySelectorAll('img'))
  if (!e.hasAttribute('alt')) problems.push('img without alt');
for (const e of document.querySelectorAll('svg[role=img]'))
  if (!name(e)) problems.push('svg without a name');
for (const e of document.querySelectorAll('th'))
  if (!['col', 'row'].includes(e.getAttribute('scope'))) problems.push('th without scope');
for (const e of document.querySelectorAll('button, a[href]'))
  if (!name(e)) problems.push('unnamed ' + e.outerHTML.slice(0, 80));
const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
if (new Set(ids).size !== ids.length) problems.push('duplicate ids');
if (!document.querySelector('[aria-live]')) problems.push('no live region');
return problems;
"""

# Foreground and background of the main kinds of text, as the browser computed them.
_COLOURS = """
const background = (e) => {
  for (; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor;
    if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c;
  }
  return 'rgb(255, 255, 255)';
};
return arguments[0].flatMap(sel => [...document.querySelectorAll(sel)].slice(0, 3)
  .map(e => [sel, getComputedStyle(e).color, background(e)]));
"""
_TEXT = ["body", "a", ".note", "th", "td", ".badge", "#banner", ".data-age",
         "nav a[aria-current]", ".fix", "button", "label", "caption", "figcaption"]  # fmt: skip


def _luminance(rgb: str) -> float:
    parts = [float(p) for p in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    linear = [c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4
              for c in parts]  # fmt: skip
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    light, dark = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize(
    "route",
    [
        "/",
        "/registries?status=noncompliant",
        "/registries?status=exempt",
        "/registry/acrreportingprod",
        "/registry/acrlegacyreports",
        "/runs",
    ],
)
def test_each_view_passes_basic_accessibility_checks(page: Any, route: str) -> None:
    browser = page(route)
    assert browser.execute_script(_A11Y) == []
    low = [
        (selector, fg, bg, round(contrast(fg, bg), 2))
        for selector, fg, bg in browser.execute_script(_COLOURS, _TEXT)
        if contrast(fg, bg) < 4.5
    ]
    assert low == []


def test_the_page_loads_nothing_from_elsewhere(served: Served, page: Any) -> None:
    browser = page("/")
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources and all(r.startswith(served.base + "/api/") for r in resources), resources
    entries = json.dumps(resources)
    assert "code=" not in entries  # the key travels as a header only
