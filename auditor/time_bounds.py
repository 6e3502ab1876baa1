"""A time a user gives on the command line or in a query string: an ISO 8601 time or a
duration back from now."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"(\d{1,6})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MAX_BACK = timedelta(days=3650)


def parse_time_bound(text: str, *, now: datetime) -> datetime:
    """An ISO 8601 time (naive means UTC) or a duration back from `now` (`30m`, `24h`, `7d`,
    `2w`), as an aware datetime. ValueError says what is accepted."""
    value = text.strip()
    match = _RELATIVE.fullmatch(value.lower())
    if match:
        back = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        if back > _MAX_BACK:
            raise ValueError("at most 10 years back")
        return now - back
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "expected an ISO 8601 time (2026-11-25T12:00:00Z) or a duration back from now "
            "(30m, 24h, 7d, 2w)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# Earlier than any stored history: Azure Container Registry's diagnostic settings came later.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def parse_instant(text: str, *, now: datetime) -> datetime:
    """`parse_time_bound` for an instant of the stored history: never after `now` (nothing
    is known of the future) nor before 2000. ValueError says which."""
    moment = parse_time_bound(text, now=now)
    try:
        if moment > now:
            raise ValueError(f"must not be in the future (now is {now.isoformat()})")
        if moment < EARLIEST:
            raise ValueError("must not be before 2000-01-01")
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
