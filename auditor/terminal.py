"""Text for a terminal: values written by others (log fields, setting and registry names) one
line long and without control characters, so no escape sequence reaches the terminal."""

from __future__ import annotations


def shown(value: str | None) -> str:
    text = "".join(c if c.isprintable() else "?" for c in " ".join((value or "").split()))
    return text or "-"
