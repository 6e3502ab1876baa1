"""Generated log rows (deterministic, realistic shape) and where they go: a row is in a
workspace only while a diagnostic setting sends its table there in resource-specific mode."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulator import scenario
from emulator.loganalytics import events, schemas
from emulator.loganalytics.store import LogStore, Scope
from emulator.state import SettingVersion, World

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SUB = "11111111-1111-1111-1111-111111111111"
SUB2 = "22222222-2222-2222-2222-222222222222"
WS = "aaaaaaaa-0000-0000-0000-000000000001"
WS2 = "aaaaaaaa-0000-0000-0000-000000000002"
LOGINS = schemas.LOGIN_EVENTS
REPO = schemas.REPOSITORY_EVENTS
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
FOREIGN_WS = (
    "/subscriptions/99999999-9999-9999-9999-999999999999/resourceGroups/rg"
    "/providers/Microsoft.OperationalInsights/workspaces/law-foreign"
)


def rid(name: str, rg: str = "rg-prod", sub: str = SUB) -> str:
    return (
        f"/subscriptions/{sub}/resourcegroups/{rg}"
        f"/providers/microsoft.containerregistry/registries/{name}"
    )


def traffic(**logins: Any) -> list[dict[str, Any]]:
    return [
        {"kind": "logins", "perHour": 10, "identities": ["ci@contoso.com"], **logins},
        {
            "kind": "repository",
            "perHour": 20,
            "repositories": ["app/web", "charts/web-helm"],
            "mix": {"pull": 0.6, "push": 0.2, "delete": 0.1, "untag": 0.05, "purge": 0.05},
        },
    ]


def both(**extra: Any) -> dict[str, Any]:
    return {
        "name": "to-law",
        "workspace": "law1",
        "logs": [{"categoryGroup": "allLogs", "enabled": True}],
        "metrics": [{"category": "AllMetrics", "enabled": True}],
        **extra,
    }


def estate(*registries: dict[str, Any], activity: list[dict[str, Any]] | None = None) -> World:
    data = {
        "now": NOW.isoformat(),
        "subscriptions": [
            {"id": SUB, "activityLogWorkspace": "law1"},
            {"id": SUB2, "tenantId": "33333333-3333-3333-3333-333333333333"},
        ],
        "workspaces": [
            {"name": "law1", "subscription": SUB, "resourceGroup": "rg-mon", "customerId": WS},
            {"name": "law2", "subscription": SUB, "resourceGroup": "rg-mon", "customerId": WS2},
        ],
        "registries": [{"subscription": SUB, "resourceGroup": "rg-prod", **r} for r in registries],
        "activity": activity or [],
    }
    return World(scenario.parse(data))


def q(store: LogStore, kql: str, *workspaces: str) -> list[dict[str, Any]]:
    result = store.query(Scope(workspaces or (WS,)), kql)
    names = [n for n, _ in result.columns]
    return [dict(zip(names, row, strict=True)) for row in result.rows]


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- shape


@pytest.fixture(scope="module")
def busy() -> tuple[World, LogStore]:
    world = estate(
        {
            "name": "acrbusy01",
            "settings": [both()],
            "adminUserEnabled": True,
            "anonymousPullEnabled": True,
            "location": "northeurope",
            "events": traffic(
                failureRate=0.1,
                identities=["ci@contoso.com", "$admin"],
                burst={
                    "count": 25,
                    "minutes": 5,
                    "agoHours": 2,
                    "ip": "192.0.2.66",
                    "identity": "admin",
                },
            ),
        },
    )
    return world, LogStore(world)


def test_login_rows_look_like_the_real_table(busy: tuple[World, LogStore]) -> None:
    _, store = busy
    result = store.query(Scope((WS,)), LOGINS)
    assert result.columns == [
        (n, "datetime" if t == "datetime" else "real" if t == "real" else "string")
        for n, t in schemas.TABLES[LOGINS]
    ]
    rows = q(store, LOGINS)
    assert 300 < len(rows) < 700  # 10/h over 48 h, plus the burst
    for r in rows:
        assert r["TenantId"] == WS
        assert r["_ResourceId"] == rid("acrbusy01")
        assert r["_SubscriptionId"] == SUB
        assert r["LoginServer"] == "acrbusy01.azurecr.io"
        assert r["Region"] == "northeurope"
        assert r["OperationName"] == "Login"
        assert r["Type"] == r["Category"] == LOGINS
        assert r["SourceSystem"] == "Azure"
        assert r["ResultDescription"] in ("200", "401")
        assert r["ResultType"] == ("Succeeded" if r["ResultDescription"] == "200" else "Failed")
        assert r["DurationMs"].isdigit()
        assert GUID.match(r["CorrelationId"])
        assert (r["JwtId"] == "") == (r["ResultDescription"] != "200")
        assert NOW - timedelta(hours=48) <= ts(r["TimeGenerated"]) <= NOW
    identities = {r["Identity"] for r in rows}
    assert identities == {"ci@contoso.com", "acrbusy01"}  # "$admin"/"admin" is the registry name
    assert events.ANONYMOUS_IDENTITY not in identities  # anonymous pulls never log in


def test_burst_of_failed_logins(busy: tuple[World, LogStore]) -> None:
    _, store = busy
    rows = q(store, f"{LOGINS} | where CallerIpAddress == '192.0.2.66'")
    assert len(rows) == 25
    assert {r["ResultDescription"] for r in rows} == {"401"}
    assert {r["Identity"] for r in rows} == {"acrbusy01"}
    times = sorted(ts(r["TimeGenerated"]) for r in rows)
    assert NOW - timedelta(hours=2, minutes=5) <= times[0] and times[-1] <= NOW - timedelta(hours=2)


def test_repository_rows(busy: tuple[World, LogStore]) -> None:
    _, store = busy
    rows = q(store, REPO)
    ops = {r["OperationName"] for r in rows}
    assert ops <= set(events.REPOSITORY_OPERATIONS) and {"Pull", "Push", "Delete"} <= ops
    for r in rows:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", r["Digest"])
        assert isinstance(r["Size"], int) and r["Size"] >= 0
        assert r["Repository"] in ("app/web", "charts/web-helm")
        if r["Identity"] == events.ANONYMOUS_IDENTITY:
            assert r["OperationName"] == "Pull" and r["UserTenantId"] == ""
        if r["Repository"] == "charts/web-helm":
            assert r["ArtifactType"] == "application/vnd.cncf.helm.config.v1+json"
            assert r["UserAgent"].startswith("Helm/")
    anonymous = [r for r in rows if r["Identity"] == events.ANONYMOUS_IDENTITY]
    pulls = [r for r in rows if r["OperationName"] == "Pull"]
    assert 0.15 < len(anonymous) / len(pulls) < 0.45
    # One tag, one manifest: every pull of a tag has the same digest and size.
    by_tag: dict[tuple[str, str], set[tuple[str, int]]] = {}
    for r in pulls:
        by_tag.setdefault((r["Repository"], r["Tag"]), set()).add((r["Digest"], r["Size"]))
    assert all(len(v) == 1 for v in by_tag.values())


def test_metrics_rows(busy: tuple[World, LogStore]) -> None:
    _, store = busy
    rows = q(store, "AzureMetrics | summarize n = count(), total = sum(Total) by MetricName")
    metrics = {r["MetricName"]: r for r in rows}
    assert set(metrics) == {
        "StorageUsed",
        "TotalPullCount",
        "SuccessfulPullCount",
        "TotalPushCount",
        "SuccessfulPushCount",
    }
    assert metrics["StorageUsed"]["n"] == 48  # hourly, each once its hour is over
    pulls = q(store, f"{REPO} | where OperationName == 'Pull' | count")[0]["Count"]
    assert metrics["TotalPullCount"]["total"] == pulls


def test_rows_are_deterministic() -> None:
    def snapshot() -> list[Any]:
        world = estate({"name": "acrdet01", "settings": [both()], "events": traffic()})
        store = LogStore(world)
        return [
            store.query(Scope((WS,)), f"{t} | order by TimeGenerated asc, CorrelationId asc").rows
            for t in (LOGINS, REPO)
        ]

    assert snapshot() == snapshot()


def test_seed_changes_the_rows() -> None:
    def times(seed: int) -> list[Any]:
        world = estate(
            {
                "name": "acrdet01",
                "settings": [both()],
                "events": [{"kind": "logins", "perHour": 5, "seed": seed}],
            }
        )
        return LogStore(world).query(Scope((WS,)), f"{LOGINS} | project TimeGenerated").rows

    assert times(1) != times(2)


def test_silent_since_and_created_at_bound_the_rows() -> None:
    world = estate(
        {
            "name": "acrsilent01",
            "settings": [both()],
            "events": [{"kind": "logins", "perHour": 20, "hours": 72, "silentSince": "-30h"}],
        },
        {
            "name": "acryoung01",
            "createdAt": "-5h",
            "settings": [both()],
            "events": [{"kind": "logins", "perHour": 20}],
        },
    )
    store = LogStore(world)
    rows = q(
        store,
        f"{LOGINS} | summarize firstSeen = min(TimeGenerated), lastSeen = "
        "max(TimeGenerated) by _ResourceId",
    )
    spans = {r["_ResourceId"]: (ts(r["firstSeen"]), ts(r["lastSeen"])) for r in rows}
    first, last = spans[rid("acrsilent01")]
    assert last < NOW - timedelta(hours=30) and first < NOW - timedelta(hours=60)
    first, last = spans[rid("acryoung01")]
    assert first >= NOW - timedelta(hours=5)


# --------------------------------------------------------------------------- routing


def test_enabled_tables() -> None:
    ws = "/subscriptions/x/resourceGroups/r/providers/Microsoft.OperationalInsights/workspaces/w"
    base = {"workspaceId": ws, "logAnalyticsDestinationType": "Dedicated", "metrics": []}
    cat = [{"category": LOGINS, "enabled": True}, {"category": REPO, "enabled": False}]
    assert events.enabled_tables({**base, "logs": cat}) == {LOGINS}
    groups = [{"categoryGroup": "AUDIT", "enabled": True}]
    assert events.enabled_tables({**base, "logs": groups}) == {LOGINS, REPO}
    metrics = [{"category": "AllMetrics", "enabled": True}]
    assert events.enabled_tables({**base, "logs": [], "metrics": metrics}) == {"AzureMetrics"}
    legacy = {**base, "logs": groups, "logAnalyticsDestinationType": None}
    assert events.enabled_tables(legacy) == set()
    storage = {"storageAccountId": "/s", "logs": groups, "logAnalyticsDestinationType": None}
    assert events.enabled_tables(storage) == set()


def test_compute_routes_merges_overlaps_and_skips_unknown_workspaces() -> None:
    props = {
        "workspaceId": "/ws/1",
        "logAnalyticsDestinationType": "Dedicated",
        "logs": [{"categoryGroup": "allLogs", "enabled": True}],
    }
    other = {**props, "workspaceId": "/ws/foreign"}
    history = [
        SettingVersion("a", props, NOW - timedelta(days=3), NOW - timedelta(days=1)),
        SettingVersion("b", props, NOW - timedelta(days=2), None),
        SettingVersion("c", other, NOW - timedelta(days=2), None),
    ]
    routes = events.compute_routes(rid("X"), history, {"/ws/1": WS}.get)
    assert {(r.table, r.workspace, r.start, r.end) for r in routes} == {
        (LOGINS, WS, NOW - timedelta(days=3), None),
        (REPO, WS, NOW - timedelta(days=3), None),
    }


@pytest.fixture(scope="module")
def cases() -> LogStore:
    world = estate(
        {"name": "acrnosetting", "events": traffic()},
        {
            "name": "acrdisabled",
            "events": traffic(),
            "settings": [
                {
                    "name": "s",
                    "workspace": "law1",
                    "logs": [
                        {"category": LOGINS, "enabled": True},
                        {"category": REPO, "enabled": False},
                    ],
                }
            ],
        },
        {
            "name": "acrlegacy",
            "events": traffic(),
            "settings": [
                {
                    "name": "s",
                    "workspace": "law1",
                    "logAnalyticsDestinationType": "AzureDiagnostics",
                    "logs": [{"categoryGroup": "allLogs", "enabled": True}],
                }
            ],
        },
        {
            "name": "acrforeign",
            "events": traffic(),
            "settings": [
                {
                    "name": "s",
                    "workspace": FOREIGN_WS,
                    "logs": [{"categoryGroup": "allLogs", "enabled": True}],
                }
            ],
        },
        {
            "name": "acrsplit",
            "events": traffic(),
            "settings": [
                {"name": "a", "workspace": "law1", "logs": [{"category": LOGINS, "enabled": True}]},
                {
                    "name": "b",
                    "workspace": "law2",
                    "logs": [{"category": REPO, "enabled": True}],
                    "metrics": [{"category": "AllMetrics", "enabled": True}],
                },
            ],
        },
        {
            "name": "acrnometrics",
            "events": traffic(),
            "settings": [
                {
                    "name": "s",
                    "workspace": "law1",
                    "logs": [{"categoryGroup": "audit", "enabled": True}],
                    "metrics": [{"category": "AllMetrics", "enabled": False}],
                }
            ],
        },
    )
    return LogStore(world)


def _tables(store: LogStore, *workspaces: str) -> set[tuple[str, str]]:
    rows = q(
        store,
        f"union withsource=T {LOGINS}, {REPO}, AzureMetrics | distinct T, _ResourceId",
        *workspaces,
    )
    return {(r["_ResourceId"].rsplit("/", 1)[1], r["T"]) for r in rows}


def test_data_follows_configuration(cases: LogStore) -> None:
    assert _tables(cases, WS) == {
        ("acrdisabled", LOGINS),
        ("acrsplit", LOGINS),
        ("acrnometrics", LOGINS),
        ("acrnometrics", REPO),
    }
    assert _tables(cases, WS2) == {("acrsplit", REPO), ("acrsplit", "AzureMetrics")}


def test_resource_scope_spans_workspaces(cases: LogStore) -> None:
    scope = cases.resource_scope(rid("acrsplit").upper())
    assert scope is not None and set(scope.workspaces) == {WS, WS2}
    result = cases.query(scope, f"union withsource=T {LOGINS}, {REPO} | distinct T, TenantId")
    assert sorted(map(tuple, result.rows)) == [(LOGINS, WS), (REPO, WS2)]
    assert cases.resource_scope("/subscriptions/" + SUB + "/resourceGroups/nope/x") is None
    empty = cases.resource_scope(rid("acrnosetting"))
    assert empty is not None
    assert cases.query(empty, f"{LOGINS} | count").rows == [[0]]


def test_generation_is_lazy_per_workspace(cases: LogStore) -> None:
    world = estate(
        {"name": "acrone", "events": traffic(), "settings": [both()]},
        {"name": "acrtwo", "events": traffic(), "settings": [{**both(), "workspace": "law2"}]},
    )
    store = LogStore(world)
    store.query(Scope((WS2,)), f"{LOGINS} | count")
    assert store.generations == 1
    store.query(Scope((WS,)), f"{LOGINS} | count")
    assert store.generations == 2


def test_warming_generates_every_workspace_once() -> None:
    world = estate(
        {"name": "acrone", "events": traffic(), "settings": [both()]},
        {"name": "acrtwo", "events": traffic(), "settings": [{**both(), "workspace": "law2"}]},
        {"name": "acrnone", "events": traffic()},
    )
    store = LogStore(world)
    store.warm()
    assert store.generations == 2  # the registry without a setting reaches no workspace
    store.query(Scope((WS,)), f"{LOGINS} | count")
    store.query(Scope((WS2,)), f"{LOGINS} | count")
    assert store.generations == 2


def test_runtime_setting_and_clock() -> None:
    world = estate({"name": "acrlate", "events": traffic()})
    store = LogStore(world)
    reg = rid("acrlate")
    assert q(store, f"{LOGINS} | count") == [{"Count": 0}]
    world.advance(timedelta(hours=1))
    created = world.now()
    props = {
        "workspaceId": world.scenario.workspaces[0].id,
        "logAnalyticsDestinationType": "Dedicated",
        "logs": [{"categoryGroup": "allLogs", "enabled": True}],
        "metrics": [],
    }
    world.put_setting(reg, "late", props, caller="tester")
    assert q(store, f"{LOGINS} | count") == [{"Count": 0}]  # nothing written since yet
    world.advance(timedelta(hours=3))
    rows = q(
        store,
        f"{LOGINS} | summarize n = count(), firstSeen = min(TimeGenerated), "
        "lastSeen = max(TimeGenerated)",
    )
    assert rows[0]["n"] > 10
    assert created <= ts(rows[0]["firstSeen"]) and ts(rows[0]["lastSeen"]) <= world.now()
    # Deleting the setting stops the flow; what arrived stays.
    world.delete_setting(reg, "late", caller="tester")
    deleted = world.now()
    arrived = q(store, f"{LOGINS} | count")[0]["Count"]
    world.advance(timedelta(hours=2))
    after = q(store, f"{LOGINS} | summarize n = count(), lastSeen = max(TimeGenerated)")[0]
    assert after["n"] == arrived and ts(after["lastSeen"]) < deleted
    # The ARM writes show in AzureActivity of the subscription's activity workspace: a start
    # and a final record each, ResourceId upper case, _ResourceId lower case.
    activity = q(
        store,
        "AzureActivity | project OperationNameValue, ActivityStatusValue, ResourceId, _ResourceId",
    )
    ops = sorted((a["OperationNameValue"], a["ActivityStatusValue"]) for a in activity)
    assert ops == [
        ("MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE", "Started"),
        ("MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE", "Succeeded"),
        ("MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE", "Started"),
        ("MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE", "Succeeded"),
    ]
    setting_id = reg + "/providers/microsoft.insights/diagnosticsettings/late"
    assert {a["_ResourceId"] for a in activity} == {setting_id}
    assert {a["ResourceId"] for a in activity} == {setting_id.upper()}


def test_clock_reveals_rows_and_extends_the_horizon() -> None:
    world = estate({"name": "acrclock", "events": traffic(), "settings": [both()]})
    store = LogStore(world)
    before = store.query(
        Scope((WS,)),
        f"{LOGINS} | order by TimeGenerated asc | project TimeGenerated, CorrelationId",
    ).rows
    assert ts(before[-1][0]) <= NOW
    world.advance(timedelta(hours=50))  # past the generated horizon (24 h by default)
    after = store.query(
        Scope((WS,)),
        f"{LOGINS} | order by TimeGenerated asc | project TimeGenerated, CorrelationId",
    ).rows
    assert after[: len(before)] == before  # extending changes nothing already written
    assert ts(after[-1][0]) > NOW + timedelta(hours=48)
    assert len(after) > len(before) * 1.8


def test_rows_stay_with_their_registry_as_registries_come_and_go() -> None:
    """Raw rows carry a registry key, the id comes from the routing: a registry added later
    (its id sorting before the others) and one deleted and re-created with other traffic show
    their own rows under their own id, and only those."""
    world = estate(
        {"name": "acrmid", "events": traffic(), "settings": [both()]},
        {"name": "acrzulu", "events": traffic(), "settings": [both()]},
    )
    store = LogStore(world)
    until = f"datetime({NOW.strftime('%Y-%m-%dT%H:%M:%SZ')})"
    counts = (
        f"union {LOGINS}, {REPO} | where TimeGenerated < {until}"
        " | summarize n = count() by _ResourceId, _SubscriptionId"
    )
    before = q(store, counts)
    assert {r["_ResourceId"] for r in before} == {rid("acrmid"), rid("acrzulu")}
    assert {r["_SubscriptionId"] for r in before} == {SUB}

    def registry(name: str, identity: str) -> dict[str, Any]:
        return {
            "name": name,
            "subscription": SUB,
            "resourceGroup": "rg-prod",
            "events": traffic(identities=[identity]),
            "settings": [both()],
        }

    world.add_registry(registry("acraaa", "late@contoso.com"))
    world.remove_registry("acrmid")
    world.add_registry(registry("acrmid", "new@contoso.com"))
    since = f"datetime({world.now().strftime('%Y-%m-%dT%H:%M:%SZ')})"
    world.advance(timedelta(hours=3))
    identities = q(
        store,
        f"{LOGINS} | where TimeGenerated >= {since}"
        " | summarize ids = make_set(Identity), servers = make_set(LoginServer) by _ResourceId",
    )
    seen = {r["_ResourceId"]: (json.loads(r["ids"]), json.loads(r["servers"])) for r in identities}
    assert seen == {
        rid("acraaa"): (["late@contoso.com"], ["acraaa.azurecr.io"]),
        rid("acrmid"): (["new@contoso.com"], ["acrmid.azurecr.io"]),
        rid("acrzulu"): (["ci@contoso.com"], ["acrzulu.azurecr.io"]),
    }
    # A re-created registry starts afresh: nothing of the first one's rows is left.
    assert q(store, f"{LOGINS} | where TimeGenerated < {since} | distinct _ResourceId") == [
        {"_ResourceId": rid("acrzulu")}
    ]
    assert q(store, counts) == [r for r in before if r["_ResourceId"] == rid("acrzulu")]
    picked = q(
        store,
        f"{LOGINS} | where _ResourceId in~ ('{rid('acraaa').upper()}') | distinct Identity",
    )
    assert picked == [{"Identity": "late@contoso.com"}]


def test_queries_of_one_shape_answer_for_their_own_registries() -> None:
    """The second query reuses the first one's translation and column types, with its own
    ids."""
    world = estate(
        {"name": "acrone", "events": traffic(), "settings": [both()]},
        {"name": "acrtwo", "events": traffic(), "settings": [both()]},
    )
    store = LogStore(world)
    shape = (
        f"{LOGINS} | where _ResourceId in~ ('{{}}')"
        " | summarize n = count(), t = max(TimeGenerated) by _ResourceId"
    )
    results = {
        name: store.query(Scope((WS,)), shape.format(rid(name))) for name in ("acrone", "acrtwo")
    }
    assert store.translator.translations == 1
    for name, result in results.items():
        assert result.columns == [("_ResourceId", "string"), ("n", "long"), ("t", "datetime")]
        [[registry, n, last]] = result.rows
        assert registry == rid(name) and n > 0 and ts(last) <= NOW


def test_metrics_rows_do_not_depend_on_when_they_are_first_read() -> None:
    """AzureMetrics rows are generated only once a query reads the table: read first after the
    clock moved past the generated horizon, they are the rows generated up front and extended."""
    stores = []
    for read_early in (True, False):
        world = estate({"name": "acrmetrics", "events": traffic(), "settings": [both()]})
        store = LogStore(world)
        q(store, "AzureMetrics | count" if read_early else f"{LOGINS} | count")
        world.advance(timedelta(hours=50))  # past the horizon (24 h by default)
        stores.append(store)
    early, late = (sorted(map(str, q(s, "AzureMetrics"))) for s in stores)
    assert early == late
    assert len(early) > 100 and "TotalPullCount" in "".join(early)
