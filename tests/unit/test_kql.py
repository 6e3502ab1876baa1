"""KQL text building: the one escaping function against hostile strings, the literal helpers,
and the query builders' handling of ids, windows and chunks.

A literal is proven safe two ways: duckdb-kql (the emulator's engine, Microsoft's grammar)
evaluates it back to the exact value and matches exactly one row with it, and Microsoft's own
lexer (Kusto.Language, through Node) sees exactly one string literal holding the exact value,
with the tokens around it unchanged.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb_kql
import pytest

from auditor import kql
from auditor.kql import Window, kql_datetime, kql_int, kql_string, kql_timespan

HOSTILE: list[str] = [
    "",
    "plain",
    '"',
    "'",
    "\\",
    "\\\\",
    "ends with a backslash\\",
    '\\"',
    "\\'",
    "'\"'\"",
    '" | take 1 //',
    "' | take 1 //",
    '") | union (ContainerRegistryLoginEvents | take 1) | where ("',
    '" or 1 == 1 or "',
    'x" ; ContainerRegistryLoginEvents | take 1; let y = "',
    "line\nbreak",
    "carriage\rreturn",
    "crlf\r\n| take 1",
    "tab\there",
    "a|b||c",
    "// comment",
    "/* not a comment */",
    "a;b;",
    "```multi-line```",
    '@"verbatim"',
    'h"obfuscated"',
    "{braces} $dollar %percent",
    "\x00",
    "nul\x00inside",
    "".join(chr(c) for c in range(32)) + "\x7f",
    "\u0085next line\u2028line sep\u2029para sep",
    "\ufeffbom \u200bzero-width \u202eright-to-left",
    "café ñandú straße",
    "中文 日本語 한국어",
    "emoji 😀🔥 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "\\u0041 is not an escape here",
    "\\n is two characters",
    "a" * 10_000,
    ('"\\\n|//;' * 1000)[: kql.MAX_LITERAL_CHARS],
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg(1).x"
    "/providers/Microsoft.ContainerRegistry/registries/acrA",
]


def _ids(values: list[str]) -> list[str]:
    return [f"{i}:{v[:20]!r}" for i, v in enumerate(values)]


# --------------------------------------------------------------------------- kql_string


@pytest.mark.parametrize("value", HOSTILE, ids=_ids(HOSTILE))
def test_literal_evaluates_back_to_the_value(value: str) -> None:
    con = duckdb_kql.connect()
    rows = duckdb_kql.kql(con, f"print v = {kql_string(value)}").fetchall()
    assert rows == [(value,)]


@pytest.fixture(scope="module")
def identities() -> Iterator[object]:
    con = duckdb_kql.connect()
    con.sql("CREATE TABLE T (Identity VARCHAR, n INTEGER)")
    con.executemany("INSERT INTO T VALUES (?, ?)", [(v, i) for i, v in enumerate(HOSTILE)])
    yield con
    con.close()


@pytest.mark.parametrize("index", range(len(HOSTILE)), ids=_ids(HOSTILE))
def test_literal_in_a_filter_matches_exactly_its_row(identities: object, index: int) -> None:
    value = HOSTILE[index]
    query = f"T | where Identity == {kql_string(value)} | project n"
    rows = duckdb_kql.kql(identities, query).fetchall()
    assert rows == [(index,)]


def test_only_quote_backslash_and_line_breaks_are_escaped() -> None:
    assert kql_string('a"b') == '"a\\"b"'
    assert kql_string("a\\b") == '"a\\\\b"'
    assert kql_string("a\nb\rc\td") == '"a\\nb\\rc\\td"'
    assert kql_string("it's") == '"it\'s"'
    assert kql_string("é|//") == '"é|//"'


@pytest.mark.parametrize("value", HOSTILE, ids=_ids(HOSTILE))
def test_literal_never_holds_a_raw_line_break_or_unescaped_quote(value: str) -> None:
    literal = kql_string(value)
    assert "\n" not in literal and "\r" not in literal
    body = literal[1:-1]
    # Walk the body: every backslash starts a two-character escape; no bare `"` remains.
    i = 0
    while i < len(body):
        if body[i] == "\\":
            assert body[i + 1] in '\\"nrt'
            i += 2
            continue
        assert body[i] != '"'
        i += 1


@pytest.mark.parametrize(
    "bad",
    ["\ud800", "lone \udfff surrogate", "x" * (kql.MAX_LITERAL_CHARS + 1)],
    ids=["high-surrogate", "low-surrogate", "too-long"],
)
def test_values_that_cannot_be_sent_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        kql_string(bad)


@pytest.mark.parametrize("bad", [None, 1, b"bytes", ["list"]])
def test_non_strings_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        kql_string(bad)  # type: ignore[arg-type]  # a wrong type on purpose: refused at run time


# --------------------------------------------------------------------------- Microsoft's lexer

_LEXER = Path(__file__).with_name("kql_literals.js")


def _lex(queries: list[str]) -> list[dict[str, list[object]]]:
    from emulator.loganalytics.kusto_parser import PACKAGE, find_node, find_node_modules

    completed = subprocess.run(
        [find_node(), str(_LEXER), str(find_node_modules() / PACKAGE)],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=True,
    )
    result: list[dict[str, list[object]]] = json.loads(completed.stdout)
    return result


@pytest.mark.integration
def test_microsoft_lexer_sees_one_literal_with_the_exact_value() -> None:
    template = "ContainerRegistryLoginEvents | where Identity == {} | summarize count() by Identity"
    queries = [template.format(kql_string("baseline"))]
    queries += [template.format(kql_string(v)) for v in HOSTILE]
    baseline, *lexed = _lex(queries)
    assert baseline["literals"] == ["baseline"] and not baseline["errors"]
    for value, result in zip(HOSTILE, lexed, strict=True):
        assert result["literals"] == [value], repr(value[:40])
        assert result["kinds"] == baseline["kinds"], repr(value[:40])
        assert result["errors"] == [], repr(value[:40])


@pytest.mark.integration
def test_the_lexer_check_can_fail() -> None:
    # A naive literal (no escaping) of a hostile value changes the structure.
    naive = '"' + '" | take 1 //' + '"'
    template = "ContainerRegistryLoginEvents | where Identity == {} | count"
    baseline, broken = _lex([template.format('"x"'), template.format(naive)])
    assert broken["kinds"] != baseline["kinds"]


# --------------------------------------------------------------------------- other literals


def test_datetime_literal_is_utc_with_microseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert kql_datetime(datetime(2026, 11, 25, 14, 0, 1, 5, tzinfo=plus_two)) == (
        "datetime(2026-11-25T12:00:01.000005Z)"
    )


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="time-zone"):
        kql_datetime(datetime(2026, 11, 25, 12))


def test_datetime_literal_evaluates_in_kql() -> None:
    at = datetime(2026, 11, 25, 12, 30, 15, 250000, tzinfo=UTC)
    rows = duckdb_kql.kql(duckdb_kql.connect(), f"print v = {kql_datetime(at)}").fetchall()
    assert rows[0][0].replace(tzinfo=UTC) == at


@pytest.mark.parametrize(
    ("value", "text"), [(timedelta(minutes=1), "60s"), (timedelta(hours=2), "7200s")]
)
def test_timespan_literal(value: timedelta, text: str) -> None:
    assert kql_timespan(value) == text


@pytest.mark.parametrize(
    "bad", [timedelta(0), timedelta(seconds=-5), timedelta(milliseconds=1500), 60]
)
def test_bad_timespans_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        kql_timespan(bad)  # type: ignore[arg-type]  # wrong on purpose, `60` included


@pytest.mark.parametrize("bad", [True, -1, 2**53, 1.5, "10"])
def test_bad_integers_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        kql_int(bad)  # type: ignore[arg-type]  # wrong on purpose, `True` and `1.5` included


def test_integer_literal() -> None:
    assert kql_int(0) == "0" and kql_int(500_000) == "500000"


# --------------------------------------------------------------------------- builders

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW = Window.ending(NOW, timedelta(hours=24))
REG = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/RG-Prod"
    "/providers/Microsoft.ContainerRegistry/registries/AcrOne"
)


def _all_builders(ids: list[str]) -> list[kql.Query]:
    return [
        kql.freshness_query(ids, WINDOW, reach_back=timedelta(days=7)),
        kql.logins_query(ids, WINDOW),
        kql.bursts_query(ids, WINDOW, min_failures=10),
        kql.repository_query(ids, WINDOW),
        kql.deletions_query(ids, WINDOW, cap=500),
        kql.activity_query(["11111111-1111-1111-1111-111111111111"], WINDOW),
    ]


def test_one_builder_per_purpose() -> None:
    assert [q.purpose for q in _all_builders([REG])] == list(kql.Purpose)


def test_resource_ids_are_lower_cased_and_escaped() -> None:
    hostile = REG + '") | take 1 // x'
    for query in _all_builders([REG, REG.upper(), hostile])[:5]:
        assert kql_string(REG.lower()) in query.text
        assert REG not in query.text  # the mixed-case form never appears
        assert kql_string(hostile.lower()) in query.text
        assert query.text.count(kql_string(REG.lower())) == 1  # de-duplicated


def test_time_window_is_in_the_text_and_the_timespan() -> None:
    logins = kql.logins_query([REG], WINDOW)
    assert logins.timespan == (NOW - timedelta(hours=48), NOW)
    assert kql_datetime(NOW - timedelta(hours=48)) in logins.text
    assert kql_datetime(WINDOW.start) in logins.text  # the current/previous boundary
    fresh = kql.freshness_query([REG], WINDOW, reach_back=timedelta(days=7))
    assert fresh.timespan == (NOW - timedelta(days=7), NOW)
    trail = kql.repository_query([REG], WINDOW)
    assert trail.timespan == (WINDOW.start, NOW)


def test_a_span_narrows_the_filter_but_keeps_the_window_boundary() -> None:
    span = (NOW - timedelta(hours=12), NOW)
    query = kql.logins_query([REG], WINDOW, span=span)
    assert query.timespan == span
    assert f"between ({kql_datetime(span[0])} .. {kql_datetime(NOW)})" in query.text
    assert kql_datetime(WINDOW.start) in query.text


def test_listings_are_capped_and_bursts_thresholded() -> None:
    assert "| top 500 by TimeGenerated desc" in kql.deletions_query([REG], WINDOW, cap=500).text
    assert "| where Total >= 7" in kql.bursts_query([REG], WINDOW, min_failures=7).text


def test_window_must_be_aware_and_ordered() -> None:
    with pytest.raises(ValueError):
        Window(start=NOW, end=NOW)
    with pytest.raises(ValueError):
        Window(start=datetime(2026, 1, 1), end=datetime(2026, 1, 2))  # naive


def test_normalize_and_chunk_ids() -> None:
    ids = kql.normalize_ids([" /A/ ", "/a", "/b", ""])
    assert ids == ["/a", "/b"]
    assert list(kql.chunks([str(i) for i in range(5)], 2)) == [["0", "1"], ["2", "3"], ["4"]]
    with pytest.raises(ValueError):
        list(kql.chunks(["x"], 0))


def test_an_empty_id_list_is_refused() -> None:
    with pytest.raises(ValueError):
        kql.logins_query([], WINDOW)


def test_a_selection_by_subscription_filters_on_the_subscription_column() -> None:
    pick = kql.Selection.of_subscriptions([" AAAA-1/ ", "aaaa-1", 'x" | take 1 // y'])
    query = kql.freshness_query(pick, WINDOW)
    assert '| where _SubscriptionId in~ ("aaaa-1", "x\\" | take 1 // y")' in query.text
    assert "_ResourceId in~" not in query.text
    by_id = kql.repository_query(kql.Selection.of_registries([REG, REG.upper()]), WINDOW)
    assert by_id.text == kql.repository_query([REG], WINDOW).text
    with pytest.raises(ValueError):
        kql.logins_query(kql.Selection.of_subscriptions([]), WINDOW)
