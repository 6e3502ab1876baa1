"""The demo estate (emulator/scenarios/demo.yaml) shows each compliance case in its logs."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from emulator import scenario
from emulator.loganalytics.store import LogStore, Scope
from emulator.state import World

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[3] / "emulator" / "scenarios" / "demo.yaml"
LOGINS = "ContainerRegistryLoginEvents"
REPO = "ContainerRegistryRepositoryEvents"


@pytest.fixture(scope="module")
def demo() -> tuple[World, LogStore, dict[str, str]]:
    world = World(scenario.load(DEMO))
    workspaces = {w.name: w.customer_id for w in world.workspaces()}
    return world, LogStore(world), workspaces


def rows(store: LogStore, kql: str, *workspaces: str) -> list[dict[str, Any]]:
    result = store.query(Scope(workspaces), kql)
    names = [n for n, _ in result.columns]
    return [dict(zip(names, r, strict=True)) for r in result.rows]


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_size_and_shape(demo: tuple[World, LogStore, dict[str, str]]) -> None:
    world, _, workspaces = demo
    assert len(world.subscriptions()) >= 3 and len(world.registries()) >= 25
    assert {"law-central", "law-security", "law-sandbox"} <= set(workspaces)


def test_each_case_in_the_logs(demo: tuple[World, LogStore, dict[str, str]]) -> None:
    world, store, ws = demo
    every = tuple(ws.values())
    found = rows(
        store,
        f"union withsource=T {LOGINS}, {REPO} | extend R = tostring(split(_ResourceId, '/')[8])"
        " | summarize n = count(), lastSeen = max(TimeGenerated) by R, T, TenantId",
        *every,
    )
    seen = {(r["R"], r["T"]): r for r in found}
    where = {(r["R"], r["T"]): r["TenantId"] for r in found}
    central, security, sandbox = ws["law-central"], ws["law-security"], ws["law-sandbox"]
    for name in ("acrpaymentsprod", "acrcheckoutprod", "acrplatformshared", "acrwebdev"):
        assert where[(name, LOGINS)] == where[(name, REPO)] == central, name
    assert where[("acridentityprod", REPO)] == security
    # split coverage: one category in each of two accepted workspaces
    assert where[("acrshippingprod", LOGINS)] == central
    assert where[("acrshippingprod", REPO)] == security
    # missing category / disabled entry: login events only
    for name in ("acrsearchprod", "acrordersprod"):
        assert (name, LOGINS) in seen and (name, REPO) not in seen
    # wrong destination inside the estate: the sandbox workspace
    assert where[("acrbillingprod", LOGINS)] == sandbox
    # nothing reaches a resource-specific table
    for name in (
        "acrpartnerprod", "acrarchiveprod", "acrlegacyerp", "acrtoolsdev", "acrscratchdev01",
        "acrreportingprod", "acrnewservice", "acrmlmodels", "acrstreamingprod", "acrmetricsonly",
    ):  # fmt: skip
        assert not any(r == name for r, _ in seen), name
    # configured but silent for three days
    silent = ts(seen[("acrbatchprod", LOGINS)]["lastSeen"])
    assert silent < world.now() - timedelta(days=3)


def test_brute_force_and_anonymous_pulls(demo: tuple[World, LogStore, dict[str, str]]) -> None:
    _, store, ws = demo
    burst = rows(
        store,
        f"{LOGINS} | where CallerIpAddress == '192.0.2.66' and ResultDescription == '401'"
        " | summarize n = count(), a = min(TimeGenerated), z = max(TimeGenerated) by Identity",
        ws["law-central"],
    )
    assert [b["Identity"] for b in burst] == ["acrcustomerportal"]  # the admin user
    assert burst[0]["n"] == 60
    assert ts(burst[0]["z"]) - ts(burst[0]["a"]) <= timedelta(minutes=5)
    anonymous = rows(
        store,
        f"{REPO} | where Identity == '<anonymous>' | summarize n = count() by _ResourceId",
        ws["law-central"],
    )
    assert [a["_ResourceId"].rsplit("/", 1)[1] for a in anonymous] == ["acrpublicimages"]
    assert anonymous[0]["n"] > 100


def test_activity_log(demo: tuple[World, LogStore, dict[str, str]]) -> None:
    world, store, ws = demo
    deleted = rows(
        store,
        "AzureActivity | where OperationNameValue =~ 'microsoft.insights/diagnosticsettings/delete'"
        " and ActivityStatusValue == 'Succeeded' | project TimeGenerated, Caller, _ResourceId",
        ws["law-central"],
    )
    assert len(deleted) == 1
    assert "/registries/acrreportingprod/" in deleted[0]["_ResourceId"]
    assert ts(deleted[0]["TimeGenerated"]) > world.now() - timedelta(days=1)
    # The pending registry: created 30 minutes ago, activity but no log rows yet.
    created = rows(
        store,
        "AzureActivity | where _ResourceId endswith '/acrnewservice'"
        " and ActivityStatusValue == 'Succeeded' | project OperationNameValue",
        ws["law-central"],
    )
    assert created == [{"OperationNameValue": "MICROSOFT.CONTAINERREGISTRY/REGISTRIES/WRITE"}]
