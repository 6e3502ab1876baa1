"""Row values read tolerantly.

None or "" for a missing string, datetimes as objects or ISO text, dynamic columns as lists
or JSON text: the service, the SDK and the emulator do not agree on those details, so every
value of a query row goes through one of these.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from auditor.facts import normalize_id


def as_key(value: Any) -> str:
    return normalize_id(value) if isinstance(value, str) else ""


def keyed(
    rows: Iterable[Mapping[str, Any]], column: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each row with `as_key` of its `column`: a registry's id repeats on each of its rows,
    so each distinct id is normalized once."""
    seen: dict[str, str] = {}
    for row in rows:
        value = row.get(column)
        if type(value) is str:
            key = seen.get(value)
            if key is None:
                key = seen[value] = normalize_id(value)
            yield key, row
        else:
            yield as_key(value), row


def as_str(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def as_int(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return aware(value)
    if isinstance(value, str) and value:
        try:  # Log Analytics' own format (7 decimals, Z) reads as it is, most of the cost
            return aware(datetime.fromisoformat(value))
        except ValueError:
            pass
        text = value.strip().replace("Z", "+00:00")
        # Kusto writes 7 fractional digits; Python reads at most 6.
        if "." in text:
            head, _, tail = text.partition(".")
            digits = "".join(c for c in tail if c.isdigit())
            zone = tail[len(digits) :]
            text = f"{head}.{digits[:6]}{zone}"
        try:
            return aware(datetime.fromisoformat(text))
        except ValueError:
            return None
    return None


def as_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def as_list(value: Any) -> list[Any]:
    """A dynamic array column: a list, or its JSON text (Log Analytics sends dynamic values
    as text)."""
    if isinstance(value, str):
        value = as_json(value)
    return list(value) if isinstance(value, (list, tuple)) else []
