"""`decode_answer`, the row-at-a-time decoding of a Log Analytics answer, side by side with
decoding it whole (`RawResult.of(json.loads(...))`): the same tables, rows, errors."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from azure.core.exceptions import DecodeError

from auditor.azure.logs import RawResult, decode_answer

COLUMNS = [{"name": "_ResourceId", "type": "string"}, {"name": "n", "type": "long"}]


def whole(text: str) -> RawResult:
    return RawResult.of(json.loads(text))


def same(text: str) -> RawResult:
    ours, theirs = decode_answer(text), whole(text)
    assert (ours.status, ours.partial_error) == (theirs.status, theirs.partial_error)
    assert [(t.columns, [dict(r) for r in t.rows]) for t in ours.tables] == [
        (t.columns, [dict(r) for r in t.rows]) for t in theirs.tables
    ]
    return ours


def answer(*tables: dict[str, Any], **extra: Any) -> str:
    return json.dumps({"tables": list(tables), **extra})


def table(rows: list[list[Any]], columns: Any = COLUMNS, **extra: Any) -> dict[str, Any]:
    return {"name": "PrimaryResult", "columns": columns, "rows": rows, **extra}


HOSTILE = ['a"b', "back\\slash", "line\nfeed", "ü\u202e", "", " ", "{[,]}:", "\u0000"]


@pytest.mark.parametrize(
    "text",
    [
        answer(table([["/subscriptions/s/r1", 1], ["/subscriptions/s/r2", 2]])),
        answer(table([[h, i] for i, h in enumerate(HOSTILE)])),
        answer(table([])),
        answer(),
        json.dumps({"tables": []}),
        json.dumps({}),
        answer(table([[None, 1.5], [True, -3], [[1, "x"], {"k": [None]}]])),
        # Rows before columns, and other keys anywhere.
        json.dumps({"x": 1, "tables": [{"rows": [["r", 1]], "name": "P", "columns": COLUMNS}]}),
        # Whitespace everywhere the grammar allows it.
        ' \n{ "tables" : [ { "columns" : [ "_ResourceId" , "n" ] ,\t"rows" : [ [ "r" , 1 ] ] } ] }'
        "\r\n",
        # White space around and between the rows, and rows holding arrays.
        '{"tables": [{"columns": ["a", "b"], "rows": [\n [["x", 1], "y"] ,\n\t[[], [[2]]]\n ]}]}',
        '{"tables": [{"columns": ["a"], "rows": [ ]}]}',
        answer(table([["r", 1]]), table([["s", 2]], columns=[{"name": "Other"}, "n"])),
        answer(table([["r", 1]]), error={"code": "PartialError", "message": "cut", "details": []}),
        answer(table([["r", 1]]), error="plain text"),
        answer(table([["r", 1]]), error=None),
        json.dumps({"tables": None}),
        json.dumps({"tables": [{"columns": COLUMNS, "rows": None}]}),
        json.dumps({"tables": [{"columns": None}]}),
        # A key repeated: the last one wins, as with json.loads.
        '{"tables": [{"columns": ["a"], "rows": [["x"]]}], "tables": []}',
        '{"tables": [{"columns": ["a"], "rows": [["x"]], "rows": [["y"], ["z"]]}]}',
    ],
)
def test_the_same_result_as_decoding_it_whole(text: str) -> None:
    same(text)


def test_random_answers_decode_the_same() -> None:
    rng = random.Random(7)
    cells = [None, True, False, 0, -1, 2**53, 1.25, "", "x", *HOSTILE, [1, "a"], {"k": "v"}]
    types = [None, "string", "datetime", "long", "dynamic"]
    for _ in range(200):
        width = rng.randint(0, 5)
        columns: list[Any] = [
            f"c{i}" if (t := rng.choice(types)) is None else {"name": f"c{i}", "type": t}
            for i in range(width)
        ]
        # Some rows shorter or longer than the columns, as a malformed answer may send.
        rows = [
            [rng.choice(cells) for _ in range(max(0, width + rng.choice((0, 0, 0, -1, 1))))]
            for _ in range(rng.randint(0, 20))
        ]
        extra = {"error": {"code": "E", "message": "m"}} if rng.random() < 0.2 else {}
        text = answer(table(rows, columns=columns), **extra)
        if rng.random() < 0.5:
            text = text.replace(", ", ",").replace(": ", ":")
        same(text)


def test_rows_are_read_by_column_name_and_their_strings_shared() -> None:
    text = answer(table([[f"/subscriptions/s/{'r'}", i] for i in range(3)]))
    result = same(text)
    rows = result.tables[0].rows
    assert [row["n"] for row in rows] == [0, 1, 2]
    assert rows[0]["_ResourceId"] is rows[2]["_ResourceId"]  # one copy of a repeated id


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '"text"',
        json.dumps({"tables": [1]}),
        json.dumps({"tables": {"a": 1}}),
        json.dumps({"tables": [{"columns": COLUMNS, "rows": [1, 2]}]}),
        json.dumps({"tables": [{"columns": COLUMNS, "rows": {"a": [1]}}]}),
        json.dumps({"tables": [{"columns": COLUMNS, "rows": [["r", 1], "no"]}]}),
    ],
)
def test_an_answer_of_the_wrong_shape_is_a_decode_error_either_way(text: str) -> None:
    with pytest.raises(DecodeError):
        whole(text)
    with pytest.raises(DecodeError):
        decode_answer(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        '{"tables": [',
        '{"tables": [{"rows": [["a", 1]]}]',
        '{"tables": [] ,}',
        '{"tables": []} extra',
        '{"tables": [{"rows": [["a" 1]]}]}',
        '{"tables": [{"rows": [["a", 1], ',
        '{"tables": [{"rows": ',
        '{"tables": [{"rows": [["a", 1],]}]}',
        '{"tables": [{"rows": [["a", 1] ["b", 2]]}]}',
        '{"tables": [{"rows": [["a", 1]',
        '{"tables": [{"rows": [["a", 1] , ',
        '{"tables": [{"rows": [["a", [1, ]]]}]}',
        "{'tables': []}",
        '{"tables": [], 1: 2}',
    ],
)
def test_text_that_is_not_json_is_a_value_error_either_way(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        decode_answer(text)


def test_strings_of_string_columns_are_shared_and_typed_values_read_as_sent() -> None:
    columns = [
        {"name": "_ResourceId", "type": "string"},
        {"name": "TimeGenerated", "type": "datetime"},
        {"name": "n", "type": "long"},
    ]
    sent = [["/subscriptions/s/r", f"2026-12-0{i + 1}T10:00:00Z", i] for i in range(3)]
    result = same(answer(table(sent, columns=columns)))
    rows = result.tables[0].rows
    assert [list(row.values()) for row in rows] == sent
    assert rows[0]["_ResourceId"] is rows[2]["_ResourceId"]


@pytest.mark.parametrize("columns", [COLUMNS, ["_ResourceId", "n"]], ids=["typed", "untyped"])
def test_long_strings_are_not_shared(columns: Any) -> None:
    # A message or user agent this long hardly ever repeats: kept out of the interned strings.
    short, long = "/subscriptions/s/r", "m" * 1024
    sent = [[short, 1], [long, 2], [short, 3], [long, 4]]
    for result in (
        decode_answer(answer(table(sent, columns=columns))),
        whole(answer(table(sent, columns=columns))),
    ):
        rows = result.tables[0].rows
        assert rows[0]["_ResourceId"] is rows[2]["_ResourceId"]
        assert rows[1]["_ResourceId"] == rows[3]["_ResourceId"]
        assert rows[1]["_ResourceId"] is not rows[3]["_ResourceId"]
