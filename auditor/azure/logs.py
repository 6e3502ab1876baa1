"""Log Analytics adapter: finds each workspace's query GUID, runs the auditor's KQL in it,
and hands back plain rows. Nothing outside this module sees an azure-monitor-query type.

Limits (azure-facts §4): per user, 5 concurrent queries and 200 queries per 30 s. A semaphore
caps concurrency; a token bucket of 40 burst refilled at 5 per second allows at most
40 + 5 x 30 = 190 queries in any 30 s window, under the limit whatever the timing. Every
attempt, retries included, takes a token. 429 (honouring Retry-After, which also pauses the
other threads) and 502/503/504 are retried with exponential backoff; the SDK's own retries
are switched off so that pacing and retry counts stay in one place.

Failures never escape a batch: each query comes back as a `QueryOutcome` holding rows, an
error, or a partial error with the rows that did come back.
"""

from __future__ import annotations

import json
import logging
import marshal
import pickle
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    map_error,
)
from azure.core.rest import HttpRequest
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult, LogsQueryResult

from auditor.azure.errors import describe_error, retry_after
from auditor.facts import normalize_id
from auditor.kql import Query
from auditor.pacing import TokenBucketPacer
from auditor.ports import WorkspaceReads

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://api.loganalytics.io"
DEFAULT_AUDIENCE = "https://api.loganalytics.io"
MAX_CONCURRENCY = 5
ANSWER_BLOCK_BYTES = 1 << 20  # how much of an answer is read at a time
# 40 + 5 x 30 = 190 < 200 queries in any 30 s (see the module docstring). A deep burst lets the
# queries of a run's workspaces, sent as each is first seen early in the reads, go out at once.
PACER_RATE = 5.0
PACER_BURST = 40
PACER_KEY = "loganalytics"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Seconds per attempt (the SDK's default is 300 for each). A query may rightly run for the
# service's own limit, 180 s unless `server_timeout` asks for more: the read timeout allows
# that and 20 s for the answer to arrive, so the service's 504 normally comes first. A
# connection silent beyond it is stuck; like a 504, its query is then split and sent again
# (`QueryOutcome.too_big`).
LOGS_CONNECTION_TIMEOUT_SECONDS = 10.0
LOGS_READ_TIMEOUT_SECONDS = 200.0
_MAX_RETRY_AFTER = 120.0

_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_WORKSPACE_ID = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)"
    r"/providers/microsoft\.operationalinsights/workspaces/(?P<name>[^/]+)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class WorkspaceRef:
    """A workspace named in a diagnostic setting: its query GUID, or why it has none."""

    id: str  # ARM id, normalized
    customer_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class QueryOutcome:
    """One query's result as plain data."""

    rows: tuple[Mapping[str, Any], ...] = ()
    error: str | None = None  # failed: no rows
    partial_error: str | None = None  # PartialError: `rows` holds what came back
    status: int | None = None  # HTTP status of the final failure
    attempts: int = 0

    @property
    def too_big(self) -> bool:
        """The server gave up on the query's size (a timeout or too many rows): worth
        running again over a shorter time window. Never true for throttling."""
        if self.status == 429:
            return False
        if self.status == 504:
            return True
        text = f"{self.error or ''} {self.partial_error or ''}".lower()
        return any(marker in text for marker in _TOO_BIG_MARKERS)


# How the service words "this query is too big" (504 aside), matched in lower case.
_TOO_BIG_MARKERS = (
    "timeout",
    "timed out",
    "result_set_too_large",
    "result set too large",
    "result set has exceeded",
)


@dataclass
class LogsStats:
    queries: int = 0  # logical queries run
    attempts: int = 0  # HTTP attempts, retries included
    retried: int = 0
    throttled: int = 0  # 429 responses
    failed: int = 0
    partial: int = 0
    per_workspace: dict[str, int] = field(default_factory=dict)


class LogsReader:
    """Runs KQL in workspaces, paced and bounded as Log Analytics requires. Thread-safe."""

    def __init__(
        self,
        credential: TokenCredential | None = None,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        audience: str = DEFAULT_AUDIENCE,
        max_concurrency: int = MAX_CONCURRENCY,
        retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        server_timeout: int | None = None,
        connection_timeout: float = LOGS_CONNECTION_TIMEOUT_SECONDS,
        read_timeout: float = LOGS_READ_TIMEOUT_SECONDS,
        pacer: TokenBucketPacer | None = None,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not 1 <= max_concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"max_concurrency must be between 1 and {MAX_CONCURRENCY}")
        if retries < 0:
            raise ValueError("retries must be at least 0")
        if server_timeout is not None and read_timeout <= server_timeout:
            raise ValueError("read_timeout must be longer than the server_timeout it waits for")
        if client is None:
            if credential is None:
                raise ValueError("a credential is needed to create the LogsQueryClient")
            # `audience` sets the token scope (`<audience>/.default`); without it the SDK asks
            # for a token for the endpoint's host. retry_total=0: we retry ourselves.
            client = RowsQueryClient(
                credential,
                endpoint=endpoint,
                audience=audience,
                retry_total=0,
                connection_timeout=connection_timeout,
                read_timeout=read_timeout,
                **dict(client_kwargs or {}),
            )
        self._client = client
        self._credential = credential
        self._scope = audience.rstrip("/") + "/.default"  # as the SDK's client asks for it
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.server_timeout = server_timeout
        self.pacer = pacer or TokenBucketPacer(rate=PACER_RATE, burst=PACER_BURST)
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self.stats = LogsStats()

    def close(self) -> None:
        self._client.close()

    def warm_up(self) -> threading.Thread | None:
        """Ask for the query token now, in the background (returned, for whoever must wait):
        a run's first queries go out together, each of them otherwise asking for it and the
        first waiting for it, while the run is still reading its inventory. The credential
        keeps the token for the client's own requests. A failure is the first query's to
        report, with the query."""
        credential = self._credential
        if credential is None:
            return None
        scope = self._scope

        def fetch() -> None:
            try:
                credential.get_token(scope)
            except Exception:  # the first query asks again and reports it
                log.debug("logs: the query token could not be fetched ahead", exc_info=True)

        thread = threading.Thread(target=fetch, name="logs-token", daemon=True)
        thread.start()
        return thread

    def __enter__(self) -> LogsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, requests: Sequence[tuple[str, Query]]) -> list[QueryOutcome]:
        """Run (workspace GUID, query) pairs concurrently; outcomes in request order."""
        if not requests:
            return []
        if len(requests) == 1:
            return [self.query(*requests[0])]
        workers = min(self.max_concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="logs") as pool:
            return list(pool.map(lambda r: self.query(r[0], r[1]), requests))

    def query(self, customer_id: str, query: Query) -> QueryOutcome:
        """Run one query; never raises for a service or network failure."""
        with self._lock:
            self.stats.queries += 1
            self.stats.per_workspace[customer_id] = self.stats.per_workspace.get(customer_id, 0) + 1
        if not _GUID.fullmatch(customer_id):
            return self._failed(QueryOutcome(error="workspace id is not a GUID", attempts=0))
        attempt = 0
        while True:
            attempt += 1
            self.pacer.acquire(PACER_KEY)
            with self._lock:
                self.stats.attempts += 1
            try:
                with self._slots:
                    result = self._client.query_workspace(
                        customer_id,
                        query.text,
                        timespan=query.timespan,
                        server_timeout=self.server_timeout,
                    )
            except HttpResponseError as exc:
                status = exc.status_code
                if status == 429:
                    with self._lock:
                        self.stats.throttled += 1
                asked = retry_after(exc)
                wait = None if asked is None else min(asked, _MAX_RETRY_AFTER)
                if status == 429:
                    self.pacer.observe_throttled(
                        PACER_KEY, wait if wait is not None else self.backoff
                    )
                if status in RETRY_STATUSES and attempt <= self.retries:
                    self._pause(attempt, wait)
                    continue
                return self._failed(
                    QueryOutcome(error=describe_error(exc), status=status, attempts=attempt)
                )
            except ServiceRequestError as exc:  # connection refused, DNS, TLS...
                if attempt <= self.retries:
                    self._pause(attempt, None)
                    continue
                return self._failed(QueryOutcome(error=describe_error(exc), attempts=attempt))
            except AzureError as exc:
                return self._failed(QueryOutcome(error=describe_error(exc), attempts=attempt))
            except Exception as exc:  # a bug or an SDK surprise must not sink the batch
                log.exception("unexpected error querying workspace %s", customer_id)
                return self._failed(QueryOutcome(error=describe_error(exc), attempts=attempt))
            return self._converted(result, attempt)

    def _pause(self, attempt: int, retry_after: float | None) -> None:
        with self._lock:
            self.stats.retried += 1
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        delay *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not security
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._sleep(delay)

    def _failed(self, outcome: QueryOutcome) -> QueryOutcome:
        with self._lock:
            self.stats.failed += 1
        return outcome

    def _converted(self, result: Any, attempts: int) -> QueryOutcome:
        if isinstance(result, LogsQueryPartialResult) or _status(result) == "PartialError":
            error = getattr(result, "partial_error", None)
            text = _describe_query_error(error) or "partial result"
            with self._lock:
                self.stats.partial += 1
            tables = getattr(result, "partial_data", None) or []
            return QueryOutcome(rows=_rows(tables), partial_error=text, attempts=attempts)
        if isinstance(result, LogsQueryResult) or hasattr(result, "tables"):
            return QueryOutcome(
                rows=_rows(getattr(result, "tables", None) or []), attempts=attempts
            )
        return self._failed(QueryOutcome(error="unexpected query result", attempts=attempts))


class RowsQueryClient(LogsQueryClient):
    """`LogsQueryClient` whose `query_workspace` answers with the tables as the service sent
    them (`RawResult`): the same request through the same pipeline (token, timeouts, the
    service's errors as `HttpResponseError`), without the SDK's result models. Those walk
    every cell twice (a typed model, then `LogsTableRow` with each datetime parsed by
    isodate): about 4 s of client CPU for a 10,000-registry fleet's queries, whose rows are
    read by name and parsed where used (`evidence.rows`)."""

    def __init__(self, credential: TokenCredential, **kwargs: Any) -> None:
        # Answers run to tens of MB: read in the SDK's default 4 KB blocks, the streamed read
        # below costs a few times what it does in 1 MB ones.
        kwargs.setdefault("connection_data_block_size", ANSWER_BLOCK_BYTES)
        super().__init__(credential, **kwargs)

    def query_workspace(  # type: ignore[override]
        self,
        workspace_id: str,
        query: str,
        *,
        timespan: tuple[datetime, datetime] | None,
        server_timeout: int | None = None,
        **kwargs: Any,
    ) -> RawResult:
        body: dict[str, Any] = {"query": query}
        if timespan is not None:
            body["timespan"] = "/".join(_iso_utc(t) for t in timespan)
        headers = {"Prefer": f"wait={server_timeout}"} if server_timeout else {}
        request = HttpRequest(
            "POST", f"/workspaces/{quote(workspace_id, safe='')}/query", json=body, headers=headers
        )
        # Streamed: otherwise the pipeline's ContentDecodePolicy decodes the whole answer
        # with json.loads as well, a second copy of every row at once, then thrown away.
        response = self.send_request(request, stream=True, **kwargs)
        try:
            response.read()
        finally:
            response.close()
        if response.status_code != 200:
            map_error(response.status_code, response, _ERROR_MAP)
            raise HttpResponseError(response=response)
        # One answer decoded at a time: decoding holds the GIL anyway, and the answers of half
        # a fleet's registries decoded side by side held some 45 MB of JSON at once.
        with _DECODING:
            try:
                return decode_answer(response.text())
            except ValueError as exc:
                raise DecodeError("the query answer is not JSON", response=response) from exc


_DECODING = threading.Lock()


_ERROR_MAP: Mapping[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
}


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RawTable:
    """A table as sent, its rows read by column name (`LogRow`)."""

    columns: list[str]
    rows: tuple[LogRow, ...]


@dataclass(frozen=True)
class RawError:
    """The `error` of a partial answer, read like the SDK's `LogsQueryError`."""

    code: str | None
    message: str | None
    details: list[Any]


@dataclass(frozen=True)
class RawResult:
    """A query answer as sent: `status` "PartialError" with `partial_error` and `partial_data`
    when the service says it is incomplete, else "Success" with `tables`."""

    status: str
    tables: list[RawTable]
    partial_error: RawError | None = None

    @property
    def partial_data(self) -> list[RawTable]:
        return self.tables

    @classmethod
    def of(cls, document: Any) -> RawResult:
        """From the whole decoded answer (`decode_answer` decodes it a row at a time)."""
        if not isinstance(document, Mapping):
            raise DecodeError("the query answer is not a JSON object")
        tables = [_raw_table(t) for t in document.get("tables") or []]
        return cls.answered(tables, document.get("error"))

    @classmethod
    def answered(cls, tables: list[RawTable], error: Any) -> RawResult:
        """The answer's tables, and its `error` member as sent (a partial answer's)."""
        if not error:
            return cls("Success", tables)
        if not isinstance(error, Mapping):
            error = {"message": str(error)}
        details = error.get("details")
        return cls(
            "PartialError",
            tables,
            RawError(
                _text(error.get("code")),
                _text(error.get("message")),
                list(details) if isinstance(details, list) else [],
            ),
        )


def decode_answer(text: str) -> RawResult:
    """`RawResult.of(json.loads(text))`, decoded a row at a time: each row becomes a `LogRow`
    as it is read, so an answer is never also held as lists of lists (the largest answers of
    a 10,000-registry fleet decoded to some 20 MB of them, at the run's memory peak).
    DecodeError for an answer of the wrong shape, ValueError for one that is not JSON."""
    reader = _JsonReader(text)
    if reader.peek() != "{":
        reader.value()  # not JSON at all: ValueError
        raise DecodeError("the query answer is not a JSON object")
    tables: list[RawTable] = []
    error: Any = None
    for key in reader.members():
        if key == "tables" and reader.peek() == "[":
            tables = [_streamed_table(reader) for _ in reader.elements()]
        elif key == "tables":
            found = reader.value()
            tables = [_raw_table(t) for t in found or []]  # as json.loads would: null, or wrong
        elif key == "error":
            error = reader.value()
        else:
            reader.value()
    reader.end()
    return RawResult.answered(tables, error)


def _streamed_table(reader: _JsonReader) -> RawTable:
    if reader.peek() != "{":
        reader.value()  # cut short: ValueError
        raise DecodeError("a table of the query answer is not a JSON object")
    # Filled in place when the columns are read: rows share it, whichever comes first.
    index: dict[str, int] = {}
    columns: list[str] = []
    shared: tuple[int, ...] | None = None  # known once the columns are read
    rows: list[LogRow] = []
    for key in reader.members():
        if key == "columns":
            found = reader.value()
            columns = [
                str(c.get("name")) if isinstance(c, Mapping) else str(c) for c in found or []
            ]
            index.clear()
            index.update((c, i) for i, c in enumerate(columns))
            shared = _shared_positions(found or [])
        elif key == "rows" and reader.peek() == "[":
            width = len(columns)
            rows = [
                _typed_row(index, row, shared)
                if shared is not None and len(row) >= width
                else _log_row(index, row)
                for row in reader.arrays()
            ]
        elif key == "rows":
            if reader.value():
                raise DecodeError("the rows of the query answer are not lists")
            rows = []
        else:
            reader.value()
    return RawTable(columns, tuple(rows))


class _JsonReader:
    """Walks a JSON text's outer objects and arrays; each value inside is decoded whole by
    the standard library's C scanner (`raw_decode`)."""

    _SPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, text: str) -> None:
        self._text = text
        self._at = 0
        self._decoder = json.JSONDecoder()

    def peek(self) -> str:
        self._at = self._SPACE.match(self._text, self._at).end()  # type: ignore[union-attr]
        return self._text[self._at : self._at + 1]

    def value(self) -> Any:
        self.peek()
        value, self._at = self._decoder.raw_decode(self._text, self._at)
        return value

    def members(self) -> Iterator[str]:
        """An object's keys; the caller reads each one's value before asking for the next."""
        self._expect("{")
        if self.peek() == "}":
            self._at += 1
            return
        while True:
            key = self.value()
            if not isinstance(key, str):
                raise ValueError(f"an object key that is not a string at {self._at}")
            self._expect(":")
            yield key
            if self._next("}"):
                return

    def elements(self) -> Iterator[None]:
        """An array's elements; the caller reads each one before asking for the next."""
        self._expect("[")
        if self.peek() == "]":
            self._at += 1
            return
        while True:
            yield None
            if self._next("]"):
                return

    def arrays(self) -> Iterator[list[Any]]:
        """An array's elements, each an array itself (anything else: DecodeError): the rows
        of an answer, most of its text. Read by the C scanner directly, without `peek` and
        `value` around each one: about half the CPU of reading them as `elements`."""
        text, skip = self._text, self._skip
        # The scanner `raw_decode` calls, without its wrapper.
        scan: Callable[[str, int], tuple[Any, int]] = self._decoder.scan_once  # type: ignore[attr-defined]
        self._expect("[")
        at = skip(self._at)
        if text[at : at + 1] == "]":
            self._at = at + 1
            return
        while True:
            if text[at : at + 1] != "[":
                self._at = at
                self.value()  # cut short, or not JSON: ValueError
                raise DecodeError("the rows of the query answer are not lists")
            try:
                row, at = scan(text, at)
            except StopIteration as missing:  # a value missing inside it, as raw_decode says
                raise json.JSONDecodeError("Expecting value", text, missing.value) from None
            self._at = at
            yield row
            found = text[at : at + 1]
            if found != "," and found != "]":
                at = skip(at)
                found = text[at : at + 1]
            at += 1
            if found == "]":
                self._at = at
                return
            if found != ",":
                self._at = at - 1
                raise ValueError(f"expected ',' or ']' at {at - 1}")
            if text[at : at + 1] != "[":
                at = skip(at)

    def _skip(self, at: int) -> int:
        """Where the white space from `at` ends."""
        return self._SPACE.match(self._text, at).end()  # type: ignore[union-attr]

    def end(self) -> None:
        if self.peek():
            raise ValueError(f"extra data after the JSON value at {self._at}")

    def _expect(self, char: str) -> None:
        if self.peek() != char:
            raise ValueError(f"expected {char!r} at {self._at}")
        self._at += 1

    def _next(self, closing: str) -> bool:
        """After a member or element: True at the closing bracket, False at a comma."""
        found = self.peek()
        self._at += 1
        if found == closing:
            return True
        if found != ",":
            raise ValueError(f"expected ',' or {closing!r} at {self._at - 1}")
        return False


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _raw_table(table: Any) -> RawTable:
    if not isinstance(table, Mapping):
        raise DecodeError("a table of the query answer is not a JSON object")
    columns = [
        str(c.get("name")) if isinstance(c, Mapping) else str(c) for c in table.get("columns") or []
    ]
    rows = table.get("rows") or []
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise DecodeError("the rows of the query answer are not lists")
    return RawTable(columns, _log_rows(columns, rows))


def _status(result: Any) -> str:
    status = getattr(result, "status", None)
    return str(getattr(status, "value", status) or "")


class LogRow(Mapping[str, Any]):
    """One result row, read by column name. A fleet's queries return a few hundred thousand
    rows held until the analysis: a shared column index and a values tuple take about a
    third of a dict's memory."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: Mapping[str, int], values: tuple[Any, ...]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, column: str) -> Any:
        position = self._index[column]
        return self._values[position] if position < len(self._values) else None

    def get(self, column: str, default: Any = None) -> Any:
        position = self._index.get(column)
        if position is None or position >= len(self._values):
            return default
        return self._values[position]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"LogRow({dict(self)!r})"

    def __reduce__(self) -> tuple[type[LogRow], tuple[Mapping[str, int], tuple[Any, ...]]]:
        # Rows pickled together share their index (pickle's memo), as they did before.
        return (LogRow, (self._index, self._values))


def pack_rows(
    groups: Mapping[str, Sequence[Mapping[str, Any]]],
) -> tuple[dict[str, bytes], Callable[[bytes], list[Mapping[str, Any]]]]:
    """Each group of rows as bytes, and the function that reads a group back. Rows decoded
    here (`LogRow`s of one table, sharing its index) are packed as their values with
    `marshal`: half pickle's CPU, no call per row, and their strings come back interned,
    shared with the rest of the run. Any other rows are pickled."""
    first = next((row for group in groups.values() for row in group), None)
    if isinstance(first, LogRow):
        index = first._index
        rows = (row for group in groups.values() for row in group)
        if all(type(row) is LogRow and row._index is index for row in rows):
            try:
                packed = {
                    k: marshal.dumps([row._values for row in group])  # type: ignore[attr-defined]
                    for k, group in groups.items()
                }
            except ValueError:  # a value marshal cannot hold (the SDK's own datetimes)
                pass
            else:
                return packed, lambda data: _unmarshal(index, data)
    level = pickle.HIGHEST_PROTOCOL
    return {k: pickle.dumps(list(g), protocol=level) for k, g in groups.items()}, pickle.loads


def _unmarshal(index: Mapping[str, int], data: bytes) -> list[Mapping[str, Any]]:
    # Bytes `pack_rows` made, in this process: nothing from outside is read here.
    return [LogRow(index, values) for values in marshal.loads(data)]  # noqa: S302


def _rows(tables: Iterable[Any]) -> tuple[LogRow, ...]:
    """The primary (first) table's rows."""
    for table in tables:
        if isinstance(table, RawTable):
            return table.rows  # read as they were decoded
        columns = [str(c) for c in getattr(table, "columns", None) or []]
        return _log_rows(columns, table.rows)
    return ()


def _log_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> tuple[LogRow, ...]:
    """Rows read by column name. Strings are interned: resource ids, identities and operation
    names repeat on every row, and the JSON decoder makes a new copy of each."""
    index = {c: i for i, c in enumerate(columns)}
    return tuple(_log_row(index, row) for row in rows)


# Strings this long (a message, a user agent) hardly ever repeat: interning them would hash
# each whole and keep it for the process's life.
_INTERN_BELOW = 1024


def _log_row(index: Mapping[str, int], row: Iterable[Any]) -> LogRow:
    intern, below = sys.intern, _INTERN_BELOW
    # A list, not a generator: no frame resumed per value.
    values = [intern(v) if type(v) is str and len(v) < below else v for v in row]
    return LogRow(index, tuple(values))


# Declared column types whose values are no strings, or strings that hardly ever repeat (a
# datetime's): interning them costs a lookup and saves nothing.
_UNSHARED_TYPES = frozenset({"bool", "datetime", "decimal", "int", "long", "real", "timespan"})


def _shared_positions(columns: Iterable[Any]) -> tuple[int, ...]:
    """The positions of the columns whose strings `_typed_row` interns: all but those of a
    declared type in `_UNSHARED_TYPES` (a column without a type may hold anything)."""
    return tuple(
        i
        for i, c in enumerate(columns)
        if not (isinstance(c, Mapping) and c.get("type") in _UNSHARED_TYPES)
    )


def _typed_row(index: Mapping[str, int], row: list[Any], shared: tuple[int, ...]) -> LogRow:
    """`_log_row` interning only the strings of the `shared` columns: about half the CPU on
    rows with times and counts (`row` holds every column)."""
    intern, below = sys.intern, _INTERN_BELOW
    for i in shared:
        value = row[i]
        if type(value) is str and len(value) < below:
            row[i] = intern(value)
    return LogRow(index, tuple(row))


def _describe_query_error(error: Any) -> str | None:
    """`code: message`, plus the codes and messages of its details and inner errors: the
    service says *what* went wrong there (e.g. E_QUERY_RESULT_SET_TOO_LARGE)."""
    if error is None:
        return None
    parts = [f"{getattr(error, 'code', None) or ''}: {getattr(error, 'message', None) or ''}"]
    inner: list[str] = []
    for detail in getattr(error, "details", None) or []:
        _inner_texts(detail, inner, depth=0)
    if inner:
        parts.append("[" + "; ".join(dict.fromkeys(inner)) + "]")
    text = " ".join(" ".join(parts).split()).strip(": ")
    return text[:300] or None


def _inner_texts(node: Any, out: list[str], *, depth: int) -> None:
    if not isinstance(node, Mapping) or depth > 5:
        return
    code, message = node.get("code"), node.get("message")
    text = ": ".join(str(p) for p in (code, message) if p)
    if text:
        out.append(text)
    _inner_texts(node.get("innererror"), out, depth=depth + 1)


# --------------------------------------------------------------------------- workspaces


def parse_workspace_id(workspace_id: str) -> tuple[str, str, str] | None:
    """(subscription, resource group, name) of a workspace ARM id, or None."""
    match = _WORKSPACE_ID.fullmatch(workspace_id.strip().rstrip("/"))
    if match is None:
        return None
    return match["sub"], match["rg"], match["name"]


def resolve_workspace(arm: WorkspaceReads, workspace_id: str) -> WorkspaceRef:
    """The workspace's customerId (query GUID) from ARM; missing (404) or unreadable (403)
    workspaces come back with the error instead."""
    key = normalize_id(workspace_id)
    parts = parse_workspace_id(workspace_id)
    if parts is None:
        return WorkspaceRef(key, error="not a Log Analytics workspace id")
    subscription, group, name = parts
    try:
        model = arm.workspaces(subscription).workspaces.get(group, name)
    except AzureError as exc:
        return WorkspaceRef(key, error=f"workspace unreadable: {describe_error(exc)}")
    except Exception as exc:  # an SDK surprise for one workspace must not sink the run
        log.exception("unexpected error reading workspace %s", workspace_id)
        return WorkspaceRef(key, error=f"workspace unreadable: {describe_error(exc)}")
    customer_id = getattr(model, "customer_id", None)
    if not isinstance(customer_id, str) or not _GUID.fullmatch(customer_id):
        return WorkspaceRef(key, error="workspace has no customerId")
    return WorkspaceRef(key, customer_id=customer_id.lower())


def resolve_workspaces(
    arm: WorkspaceReads, workspace_ids: Iterable[str], *, max_concurrency: int = 8
) -> dict[str, WorkspaceRef]:
    """`resolve_workspace` for each distinct workspace, once, keyed by normalized id."""
    ids = sorted({normalize_id(w) for w in workspace_ids})
    if not ids:
        return {}
    with ThreadPoolExecutor(max_workers=min(max_concurrency, len(ids))) as pool:
        refs = list(pool.map(lambda w: resolve_workspace(arm, w), ids))
    return {ref.id: ref for ref in refs}
