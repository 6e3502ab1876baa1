"""The one OData literal builder: quotes doubled, control characters refused, instants in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from auditor import odata

# What the Activity Log's filter grammar reads as one string literal: quotes, with '' inside.
LITERAL = re.compile(r"^'(?:[^']|'')*'$")


@pytest.mark.parametrize(
    "value",
    [
        "Microsoft.ContainerRegistry",
        "",
        "'",
        "rg' or resourceProvider eq 'x",
        "a'' and eventTimestamp ge '2000-01-01",
        "/subscriptions/x/resourceGroups/rg(1).-_/providers/p",
        "ünïcödé ⁄ 𝔵",
        "'" * 50,
    ],
)
def test_string_literals_stay_one_literal_and_round_trip(value: str) -> None:
    text = odata.string_literal(value)
    assert LITERAL.match(text)
    assert text[1:-1].replace("''", "'") == value


@pytest.mark.parametrize("value", ["a\nb", "tab\there", "nul\x00", "bell\x07", "del\x7f", "\r"])
def test_control_characters_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        odata.string_literal(value)


def test_instants_are_quoted_utc_with_microseconds() -> None:
    now = datetime.now(UTC)
    plus_two = now.astimezone(timezone(timedelta(hours=2)))
    text = odata.datetime_literal(plus_two)
    assert text == "'" + now.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"
    parsed = datetime.fromisoformat(text.strip("'").replace("Z", "+00:00"))
    assert parsed == now


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        odata.datetime_literal(datetime.now(UTC).replace(tzinfo=None))
