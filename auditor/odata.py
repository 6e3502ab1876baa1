"""The one place OData filter text gets a value: quoted literals for the filters Azure's REST
APIs take as text (the Activity Log's `$filter`). Callers build filters only from these, never
by pasting a value between quotes.

(Table Storage filters do not come here: the Tables SDK substitutes `parameters` itself, see
`auditor/storage/reader.py`.)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# No Azure value the auditor filters on (resource ids, group names, providers, GUIDs) holds a
# control character; one that does is a bug or an attack, not a value to send.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def string_literal(value: str) -> str:
    """`value` as an OData string literal: single-quoted, each embedded quote doubled (the
    only escape the grammar has). ValueError for a control character."""
    if _CONTROL.search(value):
        raise ValueError("an OData literal may not contain control characters")
    return "'" + value.replace("'", "''") + "'"


def datetime_literal(at: datetime) -> str:
    """An aware instant as the quoted UTC timestamp Azure's activity log filter expects
    (`'2026-01-02T03:04:05.000000Z'`). ValueError for a naive datetime: its zone is a guess."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("an OData timestamp needs an aware datetime")
    return "'" + at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"
