"""KQL execution (duckdb-kql) behind the emulated query API: Kusto column types and value
formats, the request timespan, truncation, and errors for what the engine cannot run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from emulator import scenario
from emulator.loganalytics import routes, store
from emulator.loganalytics.store import LogStore, QueryError, Scope
from emulator.state import World

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SUB = "11111111-1111-1111-1111-111111111111"
WS = "aaaaaaaa-0000-0000-0000-000000000001"


@pytest.fixture(scope="module")
def engine() -> LogStore:
    world = World(
        scenario.parse(
            {
                "now": NOW.isoformat(),
                "subscriptions": [{"id": SUB}],
                "workspaces": [
                    {"name": "law", "subscription": SUB, "resourceGroup": "rg", "customerId": WS}
                ],
                "registries": [
                    {
                        "name": "acrtypes01",
                        "subscription": SUB,
                        "resourceGroup": "rg",
                        "settings": [
                            {
                                "name": "s",
                                "workspace": "law",
                                "logs": [{"categoryGroup": "allLogs", "enabled": True}],
                            }
                        ],
                        "events": [
                            {"kind": "logins", "perHour": 30},
                            {"kind": "repository", "perHour": 30},
                        ],
                    }
                ],
            }
        )
    )
    return LogStore(world)


def run(engine: LogStore, kql: str, **kw: object) -> store.QueryResult:
    return engine.query(Scope((WS,)), kql, **kw)  # type: ignore[arg-type]


def test_kusto_column_types_and_values(engine: LogStore) -> None:
    result = run(
        engine,
        "ContainerRegistryRepositoryEvents | take 1"
        " | project c = 1, l = tolong(2), i = toint(3), r = 1.5, b = true, s = 'x',"
        " t = TimeGenerated, d = 1d + 2h + 3s, j = pack('a', 1, 'b', pack_array(1, 2)),"
        " z = Size, now_ = now()",
    )
    assert result.columns == [
        ("c", "long"),
        ("l", "long"),
        ("i", "int"),
        ("r", "real"),
        ("b", "bool"),
        ("s", "string"),
        ("t", "datetime"),
        ("d", "timespan"),
        ("j", "dynamic"),
        ("z", "int"),
        ("now_", "datetime"),
    ]
    [row] = result.rows
    assert row[:6] == [1, 2, 3, 1.5, True, "x"]
    assert row[6].endswith("Z") and row[6] < "2026-11-25T12:00:01"
    assert row[7] == "1.02:00:03"
    assert row[8] == '{"a":1,"b":[1,2]}'  # dynamic values travel as JSON text
    assert row[10] == "2026-11-25T12:00:00Z"  # now() is the emulated clock


def test_value_formats() -> None:
    assert store.format_datetime(datetime(2026, 1, 2, 3, 4, 5, 120000)) == "2026-01-02T03:04:05.12Z"
    assert store.format_datetime(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00Z"
    assert store.format_timespan(timedelta(minutes=5)) == "00:05:00"
    assert store.format_timespan(timedelta(days=-1, seconds=1)) == "-23:59:59"
    assert store.format_timespan(timedelta(seconds=1.5)) == "00:00:01.5000000"


def test_timespan_filters_every_table(engine: LogStore) -> None:
    start, end = NOW - timedelta(hours=2), NOW - timedelta(hours=1)
    kql = (
        "union ContainerRegistryLoginEvents, ContainerRegistryRepositoryEvents | summarize"
        " n = count(), a = min(TimeGenerated), z = max(TimeGenerated)"
    )
    [[n, a, z]] = run(engine, kql, start=start, end=end).rows
    assert 30 < n < 200
    assert "2026-11-25T10:00:00" <= a and z <= "2026-11-25T11:00:00Z"
    [[total, *_]] = run(engine, kql).rows
    assert total > n


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("PT1H", (NOW - timedelta(hours=1), NOW)),
        ("PT3600.0S", (NOW - timedelta(hours=1), NOW)),
        ("P1DT12H", (NOW - timedelta(hours=36), NOW)),
        (
            "2026-11-25T10:00:00Z/2026-11-25T11:00:00.000Z",
            (NOW - timedelta(hours=2), NOW - timedelta(hours=1)),
        ),
        ("2026-11-25T10:00:00Z/PT30M", (NOW - timedelta(hours=2), NOW - timedelta(minutes=90))),
        ("PT30M/2026-11-25T10:00:00Z", (NOW - timedelta(minutes=150), NOW - timedelta(hours=2))),
        (None, (None, None)),
    ],
)
def test_timespan_formats(text: str | None, span: tuple[datetime | None, ...]) -> None:
    assert routes.parse_timespan(text, NOW) == span


@pytest.mark.parametrize("text", ["1h", "P", "PT", "-PT1H", "2026-13-01/PT1H", "a/b/c"])
def test_bad_timespans(text: str) -> None:
    with pytest.raises(QueryError) as err:
        routes.parse_timespan(text, NOW)
    assert err.value.status == 400 and err.value.details[0]["code"] == "InvalidTimespan"


def test_results_are_truncated_at_max_rows(engine: LogStore) -> None:
    result = run(engine, "ContainerRegistryLoginEvents", max_rows=5)
    assert len(result.rows) == 5 and result.truncated
    assert not run(engine, "ContainerRegistryLoginEvents | take 5", max_rows=5).truncated


def test_constructs_the_engine_lacks_are_a_clear_400(engine: LogStore) -> None:
    with pytest.raises(QueryError) as err:
        run(engine, "ContainerRegistryLoginEvents | make-series count() on TimeGenerated step 1h")
    assert err.value.status == 400 and err.value.code == "BadArgumentError"
    assert err.value.details[0]["code"] == "UnsupportedQueryError"
    assert "duckdb-kql" in err.value.details[0]["message"]


def test_no_workspace_means_empty_tables(engine: LogStore) -> None:
    result = engine.query(Scope(()), "ContainerRegistryLoginEvents | count")
    assert result.rows == [[0]]


def test_strings_are_never_null(engine: LogStore) -> None:
    result = run(
        engine,
        "union ContainerRegistryLoginEvents, ContainerRegistryRepositoryEvents"
        " | where isempty(Repository) | take 1 | project Repository, JwtId, Size",
    )
    assert result.rows[0][0] == ""  # a login row has no Repository column: "" as in Kusto
    assert result.rows[0][2] is None  # numbers stay null
