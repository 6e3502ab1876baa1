"""Tolerant reading of Log Analytics values (`auditor.evidence.rows`): times in the service's
own format and in the variants a workspace or a proxy may send, and what is no time at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from auditor.evidence.rows import as_datetime

AT = datetime(2031, 2, 3, 4, 5, 6, 983352, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2031-02-03T04:05:06.9833520Z", AT),  # Kusto: 7 decimals, Z
        ("2031-02-03T04:05:06.983352Z", AT),
        ("2031-02-03T04:05:06.98335299Z", AT),  # more decimals are cut, never rounded
        ("2031-02-03T04:05:06.9999999Z", AT.replace(microsecond=999999)),
        ("2031-02-03T04:05:06Z", AT.replace(microsecond=0)),
        ("2031-02-03T04:05:06.5Z", AT.replace(microsecond=500000)),
        ("2031-02-03T04:05:06.9833520+00:00", AT),
        ("2031-02-03T04:05:06", AT.replace(microsecond=0)),  # naive: taken to be UTC
        (  # decimals, then an offset
            "2031-02-03T06:05:06.9833520+02:00",
            AT.astimezone(timezone(timedelta(hours=2))),
        ),
        ("  2031-02-03T04:05:06.9833520Z ", AT),  # padded
        ("2031-02-03T04:05:06.9833520 Z", AT),
        ("not a time", None),
        ("", None),
        ("2031-02-30T04:05:06Z", None),
    ],
)
def test_times_as_workspaces_send_them(text: str, expected: datetime | None) -> None:
    found = as_datetime(text)
    assert found == expected
    if found is not None:
        assert found.tzinfo is not None


def test_a_time_already_parsed_is_made_aware() -> None:
    assert as_datetime(AT.replace(tzinfo=None)) == AT
    assert as_datetime(17) is None
