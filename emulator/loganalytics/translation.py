"""KQL to DuckDB SQL (duckdb-kql), cached, with queries that differ only in the string
literals of `in` lists sharing one translation.

duckdb-kql parses with a pure-Python ANTLR parser: the auditor's queries, each with a list of
200 registry ids (~30 KB of text), take ~60 ms apiece to translate, and every chunk of ids is
a new text. The ids do not shape the translation: an `in`/`in~` list of string literals renders
each item as its own quoted SQL literal. So the literals of such lists are replaced by numbered
placeholders, the resulting template is translated once, and a query's SQL is the template's
with its own values put back in place of the placeholders.

A template is used only when every placeholder came out of the translation as a whole SQL
string literal, untouched (mixed case, so a lower- or upper-casing would show), and nowhere
else; any other outcome (a placeholder rewritten, dropped or spliced into a pattern, a
translation error) means the query is translated as written. Only lists of plain literals
are templated: no escapes, quotes or verbatim/obfuscated/multi-line strings, and a query using
those forms anywhere is translated as written too.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb_kql

CACHE_SIZE = 256

# Comments and string literals (so nothing inside them is mistaken for code), words, and
# single characters.
_TOKEN = re.compile(
    r"""(?P<comment>//[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<space>\s+)
      | (?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)
# Multi-line string literals, and (before a string token) verbatim @"..." or obfuscated
# h"...": queries with these are not templated.
_MULTILINE = re.compile(r"```|~~~")
_PREFIX = re.compile(r"[@\w]")
# Values taken out of a query: printable, no quote or backslash (so the literal's text is its
# value and SQL quoting is trivial).
_PLAIN = re.compile(r"[\x20-\x7e]+")
_NOT_PLAIN = re.compile(r"[\\'\"]")


@dataclass(frozen=True)
class Translation:
    sql: str
    parameters: dict[str, Any] | None
    # Equal for queries whose SQL differs at most in the values of `in` list literals (so
    # in nothing that decides the result's columns and their types).
    shape: tuple[str, datetime]


class Translator:
    """Thread-safe: translations run outside the lock (two threads may translate one template
    at the same time; both get the same answer)."""

    def __init__(self, schema: dict[str, list[str]], *, size: int = CACHE_SIZE) -> None:
        self.schema = schema
        self.size = size
        self._tag = f"KqlLit{secrets.token_hex(4)}x"
        self._slot = re.compile(f"'{self._tag}_([0-9]+)_'")
        self._lock = threading.Lock()
        # (template, now) -> SQL with placeholders, or None: translate such queries as written
        self._cache: OrderedDict[tuple[str, datetime], str | None] = OrderedDict()
        self.translations = 0  # duckdb-kql calls (tests check the cache)

    def to_sql(self, kql: str, now: datetime) -> Translation:
        """The SQL and parameters `duckdb_kql.to_sql` gives for `kql`; raises its errors."""
        template, values = self._template(kql)
        if not values:
            return Translation(*self._translate(kql, now), (kql, now))
        key = (template, now)
        with self._lock:
            hit = key in self._cache
            sql = self._cache.get(key)
            if hit:
                self._cache.move_to_end(key)
        if not hit:
            sql = self._translate_template(template, len(values), now)
            with self._lock:
                self._cache[key] = sql
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
        if sql is None:
            return Translation(*self._translate(kql, now), (kql, now))
        filled = self._slot.sub(lambda m: _quote(values[int(m.group(1))]), sql)
        return Translation(filled, None, key)

    def _translate(self, kql: str, now: datetime) -> tuple[str, dict[str, Any] | None]:
        self.translations += 1
        sql = duckdb_kql.to_sql(kql, schema=self.schema, query_now=now, allow_write=False)
        return str(sql), (dict(sql.parameters) if sql.parameters else None)

    def _translate_template(self, template: str, count: int, now: datetime) -> str | None:
        try:
            sql, params = self._translate(template, now)
        except Exception:  # noqa: BLE001 - the query as written will say what is wrong
            return None
        if params:
            return None
        for n in range(count):
            slot = f"{self._tag}_{n}_"
            found = sql.count(slot)
            if found == 0 or found != sql.count(f"'{slot}'"):
                return None
        return sql

    def _template(self, kql: str) -> tuple[str, list[str]]:
        """`kql` with the literals of its `in` lists replaced by placeholders, and their
        values in placeholder order; no values when nothing is replaced."""
        if _MULTILINE.search(kql) or self._tag in kql:
            return kql, []
        tokens: list[tuple[str | None, str, int]] = []
        for m in _TOKEN.finditer(kql):
            kind = m.lastgroup
            if kind == "space" or kind == "comment":
                continue
            at = m.start()
            if kind == "string" and at and _PREFIX.match(kql, at - 1):
                return kql, []
            tokens.append((kind, m.group(), at))
        parts: list[str] = []
        values: list[str] = []
        done = 0  # kql[:done] is in parts
        for i, (kind, text, _) in enumerate(tokens):
            if kind != "word" or text != "in":
                continue
            j = i + 1
            if j < len(tokens) and tokens[j][:2] == ("other", "~"):
                j += 1
            for _, literal, at in _literal_list(tokens, j) or ():
                quote = literal[0]
                parts += [kql[done:at], f"{quote}{self._tag}_{len(values)}_{quote}"]
                values.append(literal[1:-1])
                done = at + len(literal)
        parts.append(kql[done:])
        return "".join(parts), values


def _literal_list(
    tokens: list[tuple[str | None, str, int]], i: int
) -> list[tuple[str | None, str, int]] | None:
    """The string literal tokens of `( "a", "b", ... )` starting at tokens[i], if that is
    all the parentheses hold and every literal is plain."""
    if i >= len(tokens) or tokens[i][:2] != ("other", "("):
        return None
    items = []
    j = i + 1
    while j < len(tokens):
        token = tokens[j]
        value = token[1][1:-1]
        if token[0] != "string" or not _PLAIN.fullmatch(value) or _NOT_PLAIN.search(value):
            return None
        items.append(token)
        following = tokens[j + 1][:2] if j + 1 < len(tokens) else None
        if following == ("other", ")"):
            return items
        if following != ("other", ","):
            return None
        j += 2
    return None


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
