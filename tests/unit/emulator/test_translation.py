"""The emulator's KQL -> SQL cache: a query gets exactly the SQL duckdb-kql gives it, whether
it was translated or built from the template of a query with other `in` list literals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb_kql
import pytest

from emulator.loganalytics import translation
from emulator.loganalytics.store import QUERY_COLUMNS
from emulator.loganalytics.translation import Translation, Translator

NOW = datetime(2026, 11, 25, 12, 0)
LOGINS = "ContainerRegistryLoginEvents"


def rid(n: int) -> str:
    return (
        f"/subscriptions/{n:08d}-1111-1111-1111-111111111111/resourcegroups/rg-team_{n}"
        f"/providers/microsoft.containerregistry/registries/acrteam{n}"
    )


def ids(*numbers: int, quote: str = '"') -> str:
    return "(" + ", ".join(f"{quote}{rid(n)}{quote}" for n in numbers) + ")"


def pair(t: Translation) -> tuple[str, dict[str, Any] | None]:
    return t.sql, t.parameters


def direct(kql: str) -> tuple[str, dict[str, Any] | None]:
    sql = duckdb_kql.to_sql(kql, schema=QUERY_COLUMNS, query_now=NOW, allow_write=False)
    return str(sql), (dict(sql.parameters) if sql.parameters else None)


QUERIES = [
    f"{LOGINS} | where _ResourceId in~ {ids(1, 2, 3)} | summarize n = count() by _ResourceId",
    f"{LOGINS} | where _ResourceId in {ids(1, 2)} | where Identity !in ('a', 'b') | count",
    f"{LOGINS} | where _ResourceId !in~ {ids(4, quote=chr(39))} | project Identity",
    # Not templated: an escape, a column among the literals, has_any, an empty literal.
    f'{LOGINS} | where Identity in ("a\\"b", "c") | count',
    f'{LOGINS} | where Identity in ("a", CallerIpAddress) | count',
    f'{LOGINS} | where Identity has_any ("ci", "cd") | count',
    f'{LOGINS} | where Identity in ("", "x") | count',
    # A list in a comment or inside a string stays what it is.
    f'{LOGINS} // where Identity in ("x")\n| where Identity == " in (\\"y\\")" | count',
    # A verbatim string anywhere: translated as written.
    f'{LOGINS} | where Identity in ("a") and CallerIpAddress != @"C:\\" | count',
    # Literals outside lists are part of the template.
    f'{LOGINS} | where ResultDescription startswith "2" and _ResourceId in~ {ids(5)} | count',
]


@pytest.mark.parametrize("kql", QUERIES)
def test_same_sql_as_duckdb_kql(kql: str) -> None:
    translator = Translator(QUERY_COLUMNS)
    assert pair(translator.to_sql(kql, NOW)) == direct(kql)
    assert pair(translator.to_sql(kql, NOW)) == direct(kql)  # from the cache


def test_queries_differing_in_list_literals_share_a_translation() -> None:
    translator = Translator(QUERY_COLUMNS)
    shape = f"{LOGINS} | where _ResourceId in~ {{}} and Identity !in ('x', {{}}) | count"
    first = shape.format(ids(1, 2, 3), "'y'")
    assert pair(translator.to_sql(first, NOW)) == direct(first)
    assert translator.translations == 1
    for other in (shape.format(ids(4, 5, 6), "'z'"), shape.format(ids(9, 8, 7), "'w'")):
        assert pair(translator.to_sql(other, NOW)) == direct(other)
        assert translator.to_sql(other, NOW).shape == translator.to_sql(first, NOW).shape
    assert translator.translations == 1
    longer = shape.format(ids(1, 2, 3, 4), "'y'")
    assert pair(translator.to_sql(longer, NOW)) == direct(longer)
    assert translator.translations == 2
    assert translator.to_sql(longer, NOW).shape != translator.to_sql(first, NOW).shape
    later = datetime(2026, 11, 26)
    assert translator.to_sql(first, later).sql == str(
        duckdb_kql.to_sql(first, schema=QUERY_COLUMNS, query_now=later, allow_write=False)
    )
    assert translator.translations == 3


def test_a_placeholder_the_translation_changes_means_translating_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were the list literals rewritten (here: lower-cased), the template would not be the
    query's translation: every such query is translated as written."""
    real = duckdb_kql.to_sql

    def lowering(kql: str, **kwargs: Any) -> Any:
        return real(kql.lower(), **kwargs)

    monkeypatch.setattr(translation.duckdb_kql, "to_sql", lowering)
    translator = Translator(QUERY_COLUMNS)
    for numbers in ((1, 2), (3, 4)):
        kql = f"{LOGINS} | where _ResourceId in~ {ids(*numbers)} | count"
        sql = translator.to_sql(kql, NOW).sql
        assert sql == str(lowering(kql, schema=QUERY_COLUMNS, query_now=NOW, allow_write=False))
    assert translator.translations == 3  # the template once, then each query as written


def test_errors_are_the_queries_own() -> None:
    kql = f"{LOGINS} | where _ResourceId in~ {ids(1)} | evaluate bag_unpack(x)"
    with pytest.raises(duckdb_kql.KqlError) as expected:
        direct(kql)
    translator = Translator(QUERY_COLUMNS)
    for _ in range(2):
        with pytest.raises(type(expected.value)) as got:
            translator.to_sql(kql, NOW)
        assert str(got.value) == str(expected.value)
