"""Every KQL text the auditor sends to Log Analytics is built here, and only here.

Values reach a query through exactly three doors: `kql_string` (any text: resource ids,
identities, operation names), `kql_datetime` and `kql_timespan`/`kql_int` (validated numbers).
The builders are pure functions of their arguments, so tests can run each one through
Microsoft's parser (tests/integration/test_log_evidence.py) and the emulator.

Shape of every builder: one table (or a union of the two registry tables), a time filter in
the text (the SDK `timespan` is passed as well, see `Query.timespan`), then
a `Selection` (`_ResourceId in~ (...)` over lower-case registry ids, or `_SubscriptionId in~`
over subscriptions), then a server-side aggregation, so a result has one row per registry and
key, never one row per event. The two
listings (deletes/untags, activity log) end in `top N`, and the caller learns from the row
count whether the cap was hit.

The column names of each result are constants below; `auditor.evidence.build` reads rows by them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

LOGIN_TABLE = "ContainerRegistryLoginEvents"
REPOSITORY_TABLE = "ContainerRegistryRepositoryEvents"
ACTIVITY_TABLE = "AzureActivity"
REGISTRY_TABLES: tuple[str, ...] = (LOGIN_TABLE, REPOSITORY_TABLE)

# `in~ (...)` lists stay well under Kusto's query-size limits at this size (200 registry ids
# of ~130 characters is ~26 KB of text).
DEFAULT_CHUNK_SIZE = 200
# A registry id is under 300 characters; anything far longer is a bug upstream, not a value.
MAX_LITERAL_CHARS = 32_768
# The listings are capped; a result with exactly this many rows may be incomplete.
DEFAULT_LIST_CAP = 1_000
# Granularity of the failure-burst bins; `auditor.evidence.build` slides the window over them.
DEFAULT_BURST_STEP = timedelta(minutes=1)

# Operations that mean "logging changed" or "registry created/deleted" (azure-facts §1).
SETTING_WRITE = "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE"
SETTING_DELETE = "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE"
REGISTRY_WRITE = "MICROSOFT.CONTAINERREGISTRY/REGISTRIES/WRITE"
REGISTRY_DELETE = "MICROSOFT.CONTAINERREGISTRY/REGISTRIES/DELETE"
ACTIVITY_OPERATIONS: tuple[str, ...] = (
    SETTING_WRITE,
    SETTING_DELETE,
    REGISTRY_WRITE,
    REGISTRY_DELETE,
)
# Both spellings of success appear in ActivityStatusValue (azure-facts §1).
ACTIVITY_SUCCESS: tuple[str, ...] = ("Success", "Succeeded")
# Picks the registry id out of a registry's own id or any child's (a diagnostic setting's).
_REGISTRY_ID_PATTERN = (
    r"^(/subscriptions/[^/]+/resourcegroups/[^/]+"
    r"/providers/microsoft\.containerregistry/registries/[^/]+)"
)
# OperationName fragments of the listed repository operations (azure-facts §1 uses
# `contains`; the exact strings are UNVERIFIED).
LISTED_OPERATIONS: tuple[str, ...] = ("Delete", "Untag", "Purge")


class Purpose(enum.StrEnum):
    """What a query is for; the auditor sends one query per workspace per purpose (and per
    chunk of 200 subscriptions when the run covers more)."""

    FRESHNESS = "freshness"  # last event and counts per registry and table
    LOGINS = "logins"  # attempts/failures per identity and IP, over two windows
    BURSTS = "bursts"  # failed logins per key in fine bins, keys with enough failures
    REPOSITORY = "repository"  # operation counts per identity and repository
    DELETIONS = "deletions"  # every delete/untag/purge, listed
    ACTIVITY = "activity"  # AzureActivity: settings and registries written or deleted


# Result columns, by purpose.
COL_RESOURCE = "_ResourceId"
COL_SUBSCRIPTION = "_SubscriptionId"
COL_TABLE = "SourceTable"
COL_LAST_EVENT = "LastEvent"
COL_EVENTS = "Events"
COL_PREVIOUS_EVENTS = "PreviousEvents"
COL_IDENTITY = "Identity"
COL_IP = "CallerIpAddress"
COL_ATTEMPTS = "Attempts"
COL_FAILURES = "Failures"
COL_PREVIOUS_ATTEMPTS = "PreviousAttempts"
COL_FIRST_SEEN = "FirstSeen"
COL_LAST_SEEN = "LastSeen"
COL_KIND = "Kind"
COL_KEY = "Key"
COL_TOTAL = "Total"
COL_BINS = "Bins"
COL_OPERATION = "OperationName"
COL_REPOSITORY = "Repository"
COL_COUNT = "Count"
COL_CALLER_IPS = "CallerIps"
COL_TIME = "TimeGenerated"
COL_TAG = "Tag"
COL_DIGEST = "Digest"
COL_RESULT = "ResultDescription"
COL_REGISTRY_ID = "RegistryId"
COL_ACTIVITY_RESOURCE = "ResourceId"
COL_ACTIVITY_OPERATION = "OperationNameValue"
COL_ACTIVITY_STATUS = "ActivityStatusValue"
COL_CALLER = "Caller"

BURST_KIND_IP = "ip"
BURST_KIND_IDENTITY = "identity"


# --------------------------------------------------------------------------- literals


def kql_string(value: str) -> str:
    """`value` as a Kusto string literal that evaluates to exactly `value`.

    The one escaping function: every text value in every query passes through it.
    A double-quoted literal with backslash escapes for the only characters that can end or
    break it: `\\` and `"` (which would end it), and CR/LF (a line break ends a literal;
    Kusto rejects it raw). Tab is escaped for readability. Every other character, including
    `'`, `|`, `//`, `;`, NUL and other control characters, U+2028 and any non-ASCII text,
    is inert inside a literal and is kept as it is: Kusto's `\\u` escape exists but is not
    understood by every engine that runs KQL (the emulator's), whereas raw characters are,
    and Microsoft's parser accepts them (tests/unit/test_kql.py proves both).

    Raises ValueError for a non-str, for lone surrogates (they cannot be sent as UTF-8, so
    the service would see something else), and for absurdly long values.
    """
    if not isinstance(value, str):
        raise ValueError(f"KQL string literal needs a str, got {type(value).__name__}")
    if len(value) > MAX_LITERAL_CHARS:
        raise ValueError(f"value too long for a KQL literal ({len(value)} characters)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("value holds a lone surrogate; it cannot be sent as UTF-8") from None
    return '"' + value.translate(_ESCAPES) + '"'


_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def kql_datetime(value: datetime) -> str:
    """A `datetime(...)` literal in UTC; the value must carry a time zone (naive datetimes
    are ambiguous and a common source of hour-shifted windows)."""
    if not isinstance(value, datetime):
        raise ValueError(f"KQL datetime needs a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("KQL datetime needs a time-zone-aware datetime")
    utc = value.astimezone(UTC)
    return "datetime(" + utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + ")"


def kql_timespan(value: timedelta) -> str:
    """A positive timespan literal in whole seconds (e.g. `300s`)."""
    if not isinstance(value, timedelta):
        raise ValueError(f"KQL timespan needs a timedelta, got {type(value).__name__}")
    seconds = value.total_seconds()
    if seconds <= 0 or not seconds.is_integer():
        raise ValueError("KQL timespan must be a positive whole number of seconds")
    return f"{int(seconds)}s"


def kql_int(value: int) -> str:
    """A non-negative integer literal; bools and huge values are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"KQL integer needs an int, got {type(value).__name__}")
    if not 0 <= value < 2**53:
        raise ValueError(f"KQL integer out of range: {value}")
    return str(value)


def kql_string_list(values: Iterable[str]) -> str:
    """`("a", "b")` for `in~`; at least one value."""
    items = [kql_string(v) for v in values]
    if not items:
        raise ValueError("a KQL list needs at least one value")
    return "(" + ", ".join(items) + ")"


# --------------------------------------------------------------------------- queries

# The time range a query's filter covers, when it is narrower than the purpose's natural range
# (a query split because it was too big for one request).
Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class Query:
    """One query text with the window it covers (also sent as the SDK `timespan`, which
    the service intersects with the text's own filter)."""

    purpose: Purpose
    text: str
    start: datetime
    end: datetime

    @property
    def timespan(self) -> tuple[datetime, datetime]:
        return (self.start, self.end)


@dataclass(frozen=True)
class Window:
    """The current window `[start, end]` and, before it, the previous window of the same
    length (`previous_start` to `start`), used for "first seen" comparisons."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        kql_datetime(self.start)  # validates both: aware datetimes
        kql_datetime(self.end)
        if self.end <= self.start:
            raise ValueError("window end must be after its start")

    @classmethod
    def ending(cls, end: datetime, length: timedelta) -> Window:
        return cls(start=end - length, end=end)

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    @property
    def previous_start(self) -> datetime:
        return self.start - self.length


def normalize_ids(resource_ids: Iterable[str]) -> list[str]:
    """Lower-case, trimmed, de-duplicated, sorted: Log Analytics stores `_ResourceId` in
    lower case, and a stable order keeps query texts comparable between runs."""
    ids = {rid.strip().rstrip("/").lower() for rid in resource_ids}
    ids.discard("")
    return sorted(ids)


def chunks(values: Sequence[str], size: int = DEFAULT_CHUNK_SIZE) -> Iterator[list[str]]:
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    for i in range(0, len(values), size):
        yield list(values[i : i + size])


@dataclass(frozen=True)
class Selection:
    """Which registries' rows a query reads: named ids (`_ResourceId in~`), or every
    registry of some subscriptions (`_SubscriptionId in~`), so one query per workspace
    covers registries whose settings have not been read yet."""

    column: str
    values: tuple[str, ...]

    @classmethod
    def of_registries(cls, resource_ids: Iterable[str]) -> Selection:
        return cls(COL_RESOURCE, tuple(normalize_ids(resource_ids)))

    @classmethod
    def of_subscriptions(cls, subscription_ids: Iterable[str]) -> Selection:
        return cls(COL_SUBSCRIPTION, tuple(normalize_ids(subscription_ids)))

    def where(self) -> str:
        return f"| where {self.column} in~ {kql_string_list(self.values)}"


def _registry_filter(selection: Sequence[str] | Selection) -> str:
    if not isinstance(selection, Selection):
        selection = Selection.of_registries(selection)
    return selection.where()


def _between(start: datetime, end: datetime) -> str:
    return f"| where {COL_TIME} between ({kql_datetime(start)} .. {kql_datetime(end)})"


def _failed() -> str:
    # Not 2xx (ResultDescription holds the HTTP status as text); an empty status is not
    # counted either way.
    return f"isnotempty({COL_RESULT}) and not({COL_RESULT} startswith {kql_string('2')})"


def _lines(*lines: str) -> str:
    return "\n".join(lines)


def freshness_query(
    resource_ids: Sequence[str] | Selection,
    window: Window,
    *,
    reach_back: timedelta | None = None,
    span: Span | None = None,
) -> Query:
    """Last event (looking back `reach_back`, at least two windows) and event counts in the
    current and previous windows, per registry and table."""
    back = max(reach_back or timedelta(0), 2 * window.length)
    start, end = span or (window.end - back, window.end)
    current = kql_datetime(window.start)
    previous = kql_datetime(window.previous_start)
    text = _lines(
        f"union withsource={COL_TABLE} {LOGIN_TABLE}, {REPOSITORY_TABLE}",
        _between(start, end),
        _registry_filter(resource_ids),
        f"| summarize {COL_LAST_EVENT} = max({COL_TIME}),"
        f" {COL_EVENTS} = countif({COL_TIME} >= {current}),"
        f" {COL_PREVIOUS_EVENTS} = countif({COL_TIME} >= {previous} and {COL_TIME} < {current})"
        f" by {COL_RESOURCE}, {COL_TABLE}",
    )
    return Query(Purpose.FRESHNESS, text, start, end)


def logins_query(
    resource_ids: Sequence[str] | Selection, window: Window, *, span: Span | None = None
) -> Query:
    """Login attempts and failures per registry, identity and caller IP in the current
    window, with the previous window's attempts so new identities and IPs stand out."""
    current = kql_datetime(window.start)
    start, end = span or (window.previous_start, window.end)
    text = _lines(
        LOGIN_TABLE,
        _between(start, end),
        _registry_filter(resource_ids),
        f"| summarize {COL_ATTEMPTS} = countif({COL_TIME} >= {current}),"
        f" {COL_FAILURES} = countif({COL_TIME} >= {current} and {_failed()}),"
        f" {COL_PREVIOUS_ATTEMPTS} = countif({COL_TIME} < {current}),"
        f" {COL_FIRST_SEEN} = min({COL_TIME}), {COL_LAST_SEEN} = max({COL_TIME})"
        f" by {COL_RESOURCE}, {COL_IDENTITY}, {COL_IP}",
    )
    return Query(Purpose.LOGINS, text, start, end)


def bursts_query(
    resource_ids: Sequence[str] | Selection,
    window: Window,
    *,
    min_failures: int,
    step: timedelta = DEFAULT_BURST_STEP,
    span: Span | None = None,
) -> Query:
    """Failed logins per registry and caller IP, and per registry and identity, counted in
    bins of `step`, for keys with at least `min_failures` failures in the window.

    A burst (N failures within M minutes) is found by sliding M over the bins
    (`auditor.evidence.build.find_burst`); KQL's `prev()` would do it server-side but is not
    available in every engine, and the bins keep the result to one row per noisy key.
    """
    start, end = span or (window.start, window.end)
    text = _lines(
        f"let failures = {LOGIN_TABLE}",
        _between(start, end),
        _registry_filter(resource_ids),
        f"| where {_failed()};",
        "union",
        _burst_branch(BURST_KIND_IP, COL_IP, step) + ",",
        _burst_branch(BURST_KIND_IDENTITY, COL_IDENTITY, step),
        f"| summarize {COL_TOTAL} = sum({COL_FAILURES}),"
        f" {COL_BINS} = make_list(pack_array(Bin, {COL_FAILURES}))"
        f" by {COL_RESOURCE}, {COL_KIND}, {COL_KEY}",
        f"| where {COL_TOTAL} >= {kql_int(min_failures)}",
    )
    return Query(Purpose.BURSTS, text, start, end)


def _burst_branch(kind: str, column: str, step: timedelta) -> str:
    return (
        f"    (failures | summarize {COL_FAILURES} = count()"
        f" by {COL_RESOURCE}, {COL_KIND} = {kql_string(kind)}, {COL_KEY} = {column},"
        f" Bin = bin({COL_TIME}, {kql_timespan(step)}))"
    )


def repository_query(
    resource_ids: Sequence[str] | Selection,
    window: Window,
    *,
    max_ips: int = 20,
    span: Span | None = None,
) -> Query:
    """Repository operations (push, pull, delete, untag, purge...) counted per registry,
    operation, identity and repository, with up to `max_ips` caller IPs each."""
    start, end = span or (window.start, window.end)
    text = _lines(
        REPOSITORY_TABLE,
        _between(start, end),
        _registry_filter(resource_ids),
        f"| summarize {COL_COUNT} = count(), {COL_FAILURES} = countif({_failed()}),"
        f" {COL_FIRST_SEEN} = min({COL_TIME}), {COL_LAST_SEEN} = max({COL_TIME}),"
        f" {COL_CALLER_IPS} = make_set({COL_IP}, {kql_int(max_ips)})"
        f" by {COL_RESOURCE}, {COL_OPERATION}, {COL_IDENTITY}, {COL_REPOSITORY}",
    )
    return Query(Purpose.REPOSITORY, text, start, end)


def deletions_query(
    resource_ids: Sequence[str] | Selection,
    window: Window,
    *,
    cap: int = DEFAULT_LIST_CAP,
    span: Span | None = None,
) -> Query:
    """Every delete, untag and purge, newest first, at most `cap` rows."""
    matches = " or ".join(f"{COL_OPERATION} contains {kql_string(op)}" for op in LISTED_OPERATIONS)
    start, end = span or (window.start, window.end)
    text = _lines(
        REPOSITORY_TABLE,
        _between(start, end),
        _registry_filter(resource_ids),
        f"| where {matches}",
        f"| project {COL_TIME}, {COL_RESOURCE}, {COL_OPERATION}, {COL_IDENTITY}, {COL_IP},"
        f" {COL_REPOSITORY}, {COL_TAG}, {COL_DIGEST}, {COL_RESULT}",
        f"| top {kql_int(cap)} by {COL_TIME} desc",
    )
    return Query(Purpose.DELETIONS, text, start, end)


def activity_query(
    subscription_ids: Sequence[str],
    window: Window,
    *,
    cap: int = DEFAULT_LIST_CAP,
    span: Span | None = None,
) -> Query:
    """Successful diagnostic-setting and registry writes and deletes in these subscriptions
    (AzureActivity), newest first, with the registry id each one belongs to.

    Selected by subscription, not registry, so a registry deleted since the last inventory
    still shows up."""
    subs = normalize_ids(subscription_ids)
    start, end = span or (window.start, window.end)
    text = _lines(
        ACTIVITY_TABLE,
        _between(start, end),
        f"| where SubscriptionId in~ {kql_string_list(subs)}",
        f"| where {COL_ACTIVITY_OPERATION} in~ {kql_string_list(ACTIVITY_OPERATIONS)}",
        f"| where {COL_ACTIVITY_STATUS} in~ {kql_string_list(ACTIVITY_SUCCESS)}",
        f"| extend {COL_REGISTRY_ID} ="
        f" extract({kql_string(_REGISTRY_ID_PATTERN)}, 1, tolower({COL_RESOURCE}))",
        f"| where isnotempty({COL_REGISTRY_ID})",
        f"| project {COL_TIME}, {COL_REGISTRY_ID}, {COL_ACTIVITY_RESOURCE} = {COL_RESOURCE},"
        f" {COL_ACTIVITY_OPERATION}, {COL_ACTIVITY_STATUS}, {COL_CALLER}, {COL_IP}",
        f"| top {kql_int(cap)} by {COL_TIME} desc",
    )
    return Query(Purpose.ACTIVITY, text, start, end)
