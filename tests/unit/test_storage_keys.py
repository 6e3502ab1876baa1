"""Table key encoding, cursors and property fitting: the pure parts of the storage adapter."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from auditor.storage import InvalidContinuationToken, keys
from auditor.storage.entities import MAX_STRING, clip, fit_list, utf16_len

# Forbidden in PartitionKey/RowKey, plus `%` which Azure mishandles in entity URLs.
FORBIDDEN = re.compile(r"[/\\#?%\x00-\x1f\x7f-\x9f]")

HOSTILE_NAMES = [
    "a/b",
    "back\\slash",
    "hash#tag",
    "what?",
    "per%2Fcent",
    "ctrl\x00\x01\x1f\x7f",
    "new\nline",
    "'; drop table --",
    "' or 1 eq 1",
    "",
    "   ",
    "名前ですよ",
    "emoji🙂name",
    "lone\ud800surrogate",
    "~abc",
    "~~abc",
    "abc|def",
    "x" * 5000,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_give_valid_keys(name: str) -> None:
    key = keys.registry_key(name)
    partition = keys.registry_partition(key)
    for value in (key, partition, keys.history_row_key(key, datetime.now(UTC), "0" * 32)):
        assert not FORBIDDEN.search(value)
        assert len(value) <= 300
    assert key.startswith("~")
    assert partition == "~"


def test_hostile_names_never_share_a_key() -> None:
    # Names compare like Azure's: case-insensitive, surrounding blanks ignored.
    distinct = {name.strip().lower() for name in HOSTILE_NAMES}
    assert len(distinct) == len(HOSTILE_NAMES) - 1  # "" and "   "
    assert len({keys.registry_key(name) for name in distinct}) == len(distinct)


def test_plain_names_are_lower_cased_and_readable() -> None:
    assert keys.registry_key("ContosoACR01") == "contosoacr01"
    assert keys.registry_key(" contosoacr01 ") == "contosoacr01"
    assert keys.registry_partition("contosoacr01") == "c"
    assert keys.registry_partition("9registry") == "9"


def test_encoded_keys_cannot_equal_plain_ones() -> None:
    # "~" is outside the plain alphabet, so even a name that looks like an encoding differs.
    assert keys.registry_key("~YWJj") != keys.registry_key("abc")
    assert keys.registry_key("abc") == "abc"


def test_run_keys_sort_newest_first() -> None:
    base = datetime(2024, 5, 1, tzinfo=UTC)
    times = [base + timedelta(microseconds=n) for n in (0, 1, 999_999, 10**9)]
    row_keys = [keys.run_row_key("20240501T000000Z-1a2b3c4d", t) for t in times]
    assert sorted(row_keys) == list(reversed(row_keys))
    assert all(len(k) == len(row_keys[0]) for k in row_keys)
    assert keys.run_row_key("a/b", base).endswith("_~YS9i")


def test_history_range_holds_only_that_registry() -> None:
    low, high = keys.history_range("abcde")
    now = datetime.now(UTC)
    own = keys.history_row_key("abcde", now, "c1")
    longer = keys.history_row_key("abcdef", now, "c1")
    shorter = keys.history_row_key("abcd", now, "c1")
    assert low <= own < high
    assert not low <= longer < high
    assert not low <= shorter < high


def test_history_keys_sort_newest_change_first() -> None:
    began = datetime(2024, 5, 1, 12, tzinfo=UTC)
    later = began + timedelta(hours=3)
    first_sight = keys.history_row_key("abcde", None, "f" * 32)
    # Each change ended the state the previous one began; ids vary, order does not.
    second = keys.history_row_key("abcde", began, "0" * 32)
    third = keys.history_row_key("abcde", later, "f" * 32)
    # A row of an earlier version, keyed by when its change was seen, with its run id.
    seen = f"abcde|{keys.inverted_timestamp(later)}|run0042"
    assert sorted([first_sight, seen, second, third]) == [third, seen, second, first_sight]


def test_cursor_round_trip_and_kind() -> None:
    token = keys.encode_cursor("registries", "~", "~YS9i'\"")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert keys.decode_cursor("registries", token) == ("~", "~YS9i'\"")
    with pytest.raises(InvalidContinuationToken):
        keys.decode_cursor("runs", token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not a token",
        "!!!!",
        "e30",  # {}
        "W10",  # []
        "x" * 5000,
        "eyJrIjoicmVnaXN0cmllcyIsInAiOjEsInIiOiJhIn0",  # p is a number
        "eyJrIjoicmVnaXN0cmllcyIsInAiOiJhIiwiciI6ImIiLCJ4IjoxfQ",  # an extra key
        "_w",  # not UTF-8
        "eyJrIjoicmVnaXN0cmllcyIsInAiOiJcdWQ4MDAiLCJyIjoieCJ9",  # p is a lone surrogate
    ],
)
def test_invalid_cursors_are_rejected(token: str) -> None:
    with pytest.raises(InvalidContinuationToken) as caught:
        keys.decode_cursor("registries", token)
    assert isinstance(caught.value, ValueError)


def test_clip_counts_utf16_and_drops_lone_surrogates() -> None:
    assert clip("🙂" * 10, 5) == "🙂🙂"  # 2 code units each, never half a character
    assert clip("ok\ud800", 10) == "ok?"
    assert clip("short", 10) == "short"


def test_fit_list_keeps_the_longest_prefix_that_fits() -> None:
    items = ["e" * 1000] * 100
    text, omitted = fit_list(items, limit=MAX_STRING)
    kept = json.loads(text)
    assert utf16_len(text) <= MAX_STRING
    assert len(kept) == 31  # 31 x 1003 + 1 fits 32,000; 32 would not
    assert omitted == 69
    assert fit_list(["a", "b"]) == ('["a","b"]', 0)
    assert fit_list(["x" * 40_000]) == ("[]", 1)


def test_evidence_ranges_keep_registries_and_kinds_apart() -> None:
    at = datetime(2026, 11, 25, 12, tzinfo=UTC)
    a = keys.registry_key("acrapp01")
    b = keys.registry_key("acrapp011")  # same partition, one name a prefix of the other
    assert keys.registry_partition(a) == keys.registry_partition(b)
    low, high = keys.evidence_range(a, keys.EVIDENCE_LOGINS)
    mine = keys.evidence_row_key(a, keys.EVIDENCE_LOGINS, at, "r1")
    assert low <= mine < high
    for other in (
        keys.evidence_row_key(b, keys.EVIDENCE_LOGINS, at, "r1"),
        keys.evidence_row_key(a, keys.EVIDENCE_ACTIVITY, at, "r1"),
    ):
        assert not low <= other < high


def test_evidence_range_selects_runs_by_finish_time() -> None:
    key = keys.registry_key("acrapp01")
    at = datetime(2026, 11, 25, 12, tzinfo=UTC)
    row = keys.evidence_row_key(key, keys.EVIDENCE_ACTIVITY, at, "r1")
    inside = keys.evidence_range(
        key, keys.EVIDENCE_ACTIVITY, since=at - timedelta(hours=1), until=at
    )
    before = keys.evidence_range(key, keys.EVIDENCE_ACTIVITY, until=at - timedelta(seconds=1))
    assert inside[0] <= row < inside[1]
    assert not before[0] <= row < before[1]
