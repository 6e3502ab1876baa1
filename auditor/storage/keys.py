"""PartitionKey/RowKey encoding and the opaque continuation tokens.

Table Storage forbids `/`, `\\`, `#`, `?` and control characters in keys (Azurite answers a bare
500 for `/`), and real Azure mishandles `%` in entity URLs. Every key here is therefore built
from a safe alphabet only:

- A value already made of safe characters (registry names are 5-50 alphanumerics; run ids are
  `20240101T000000Z-1a2b3c4d`) is used as it is, lower-cased where Azure compares it
  case-insensitively, so keys stay readable.
- Anything else is `~` + base64url(UTF-8) of the value, or `~~` + SHA-256 hex when that would
  be long. `~` is outside both alphabets, so an encoded key never equals a plain one.

Log evidence (`evidence` table) shares the registries' partitioning (first character of the
registry key) with RowKeys `<registry key>|<kind>|<inverted observed time>_<run id>`: one
registry's entries of a kind are one RowKey range, read newest first, and a run's rows batch up
to 100 per transaction (a partition per registry would cost one transaction per registry, which
dominated the run time of large fleets).

Registries (the current status and the history) are partitioned by the first character of the
registry key: the API knows a registry only by its name, so name -> key -> partition makes the
detail view one point read and its history one partition range query, while a run's upserts
still batch up to 100 per partition and a listing comes back in name order. Registry names are
globally unique (they are DNS names), so the name alone identifies a row even when a registry
moves between resource groups or subscriptions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta

_PLAIN_NAME = re.compile(r"[a-z0-9]{1,100}")
_PLAIN_RUN_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
_MAX_ENCODED = 200  # keys may be up to 1 KiB; stay far below for composite history keys

ENCODED_PARTITION = "~"
RUNS_PARTITION = "run"
SUMMARY_PARTITION = "summary"
SUMMARY_ROW = "current"
# `|` is outside every key alphabet above and sorts above all of them, so the history rows of
# `abcde` ("abcde|...") form one range that `abcdef|...` never enters.
HISTORY_SEPARATOR = "|"
_HISTORY_END = chr(ord(HISTORY_SEPARATOR) + 1)

# Microseconds since the epoch fit 16 digits until the year 2286.
_INVERT_FROM = 10**16 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH = _EPOCH  # the oldest time a key can hold
_MICROSECOND = timedelta(microseconds=1)


def _encoded(value: str) -> str:
    # surrogatepass: a lone surrogate must still give a key rather than an exception.
    raw = value.encode("utf-8", "surrogatepass")
    token = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    if len(token) <= _MAX_ENCODED:
        return "~" + token
    return "~~" + hashlib.sha256(raw).hexdigest()


def registry_key(name: str) -> str:
    """RowKey of a registry: its lower-cased name (names are case-insensitive in Azure)."""
    lowered = name.strip().lower()
    return lowered if _PLAIN_NAME.fullmatch(lowered) else _encoded(lowered)


def registry_partition(key: str) -> str:
    """PartitionKey of a registry, from its `registry_key`."""
    return key[0] if key and key[0] != "~" else ENCODED_PARTITION


def run_key(run_id: str) -> str:
    return run_id if _PLAIN_RUN_ID.fullmatch(run_id) else _encoded(run_id)


def inverted_timestamp(moment: datetime) -> str:
    """Fixed-width digits that sort newest first (Table Storage returns rows in key order)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    micros = (moment - _EPOCH) // _MICROSECOND
    return f"{_INVERT_FROM - micros:016d}"


def run_row_key(run_id: str, started_at: datetime) -> str:
    return f"{inverted_timestamp(started_at)}_{run_key(run_id)}"


def runs_started_before(moment: datetime) -> str:
    """The runs started before `moment` are the RowKeys above this one (newest sort first)."""
    return inverted_timestamp(_clamped(moment)) + _AFTER_RUN_SEPARATOR


def history_row_key(registry: str, ended: datetime | None, change_id: str) -> str:
    """RowKey of the change `change_id` (`changes.Change.id`) of `registry` (its
    `registry_key`) that ended a state begun at `ended` (None: first sight).

    Derived from the change alone, so whoever writes it writes one row. It sorts just after
    the state it ended began, which is at or after the previous change of the registry: newest
    first within the registry, after rows keyed by when their change was observed too (those
    written by earlier versions). First sight sorts as the oldest.
    """
    moment = ended + _MICROSECOND if ended is not None else _EPOCH
    sep = HISTORY_SEPARATOR
    return f"{registry}{sep}{inverted_timestamp(_clamped(moment))}{sep}{change_id}"


def history_range(registry: str, *, until: datetime | None = None) -> tuple[str, str]:
    """[low, high) RowKey bounds of one registry's history rows; with `until`, only the
    changes that ended a state begun at or before it: those found by then, and the one that
    ended the state holding at `until` (rows sort by when the state they ended began)."""
    low = registry + HISTORY_SEPARATOR
    if until is not None:
        low += inverted_timestamp(_clamped(until + _MICROSECOND))
    return low, registry + _HISTORY_END


def runs_range(since: datetime, until: datetime) -> tuple[str, str]:
    """[low, high) RowKey bounds of the runs started within [since, until]."""
    return inverted_timestamp(_clamped(until)), runs_started_before(since)


EVIDENCE_LOGINS = "logins"
EVIDENCE_ACTIVITY = "activity"
EVIDENCE_KINDS = (EVIDENCE_LOGINS, EVIDENCE_ACTIVITY)
# Follows the run key's `_` in `<inverted>_<run key>`: bounds a range just past one time.
_AFTER_RUN_SEPARATOR = chr(ord("_") + 1)
_LATEST = _EPOCH + _INVERT_FROM * _MICROSECOND


def evidence_row_key(registry: str, kind: str, finished_at: datetime, run_id: str) -> str:
    """RowKey of one run's login or activity evidence of `registry` (its `registry_key`),
    newest run first within the registry and kind."""
    sep = HISTORY_SEPARATOR
    return f"{registry}{sep}{kind}{sep}{run_row_key(run_id, finished_at)}"


def _clamped(moment: datetime) -> datetime:
    # Outside these the inverted digits would change width and sort wrongly.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return min(max(moment, _EPOCH), _LATEST)


def evidence_range(
    registry: str, kind: str, *, since: datetime | None = None, until: datetime | None = None
) -> tuple[str, str]:
    """[low, high) RowKey bounds of `registry`'s `kind` rows observed within
    [since, until] (either end open when None)."""
    head = registry + HISTORY_SEPARATOR + kind
    prefix = head + HISTORY_SEPARATOR
    low = prefix + (inverted_timestamp(_clamped(until)) if until is not None else "")
    if since is None:
        high = head + _HISTORY_END
    else:
        high = prefix + inverted_timestamp(_clamped(since)) + _AFTER_RUN_SEPARATOR
    return low, high


class InvalidContinuationToken(ValueError):
    """A continuation token that this service did not issue (or that was altered)."""

    def __init__(self) -> None:
        super().__init__("the continuation token is not valid; start again without one")


_MAX_TOKEN = 4096
_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


def encode_cursor(kind: str, partition_key: str, row_key: str) -> str:
    """Opaque token naming the last row returned: the next page starts strictly after it.

    A key cursor rather than the SDK's continuation, because a page may end inside a
    service page (the `reason` filter runs client-side) and the SDK token can only resume at
    the start of one. `kind` stops a runs token from being replayed against registries.
    """
    payload = json.dumps({"k": kind, "p": partition_key, "r": row_key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(kind: str, token: str) -> tuple[str, str]:
    """(PartitionKey, RowKey) of a token from `encode_cursor`; InvalidContinuationToken else."""
    if not token or len(token) > _MAX_TOKEN or not _TOKEN_ALPHABET.fullmatch(token):
        raise InvalidContinuationToken()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidContinuationToken() from None
    if (
        not isinstance(payload, dict)
        or set(payload) != {"k", "p", "r"}
        or payload["k"] != kind
        or not isinstance(payload["p"], str)
        or not isinstance(payload["r"], str)
        or not _encodable(payload["p"], payload["r"])
    ):
        raise InvalidContinuationToken()
    return payload["p"], payload["r"]


def _encodable(*values: str) -> bool:
    # JSON can spell a lone surrogate (\ud800) that no request to Table Storage can carry.
    try:
        for value in values:
            value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
