"""`listing.to_entity` against the SDK's own `_convert_to_entity`: the same entity (values,
their types, metadata, the service's time text) for whatever the service may send."""

from __future__ import annotations

from typing import Any

import pytest
from azure.data.tables import EdmType
from azure.data.tables._deserialize import _convert_to_entity
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.storage.listing import entity_time, to_entity

_DIGITS = st.text("0123456789", min_size=0, max_size=9)
# Times as the service writes them, and near misses the SDK's parser judges on its own.
_TIMES = st.one_of(
    st.builds(
        lambda y, mo, d, h, mi, s, dec: (
            f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" + (f".{dec}" if dec else "") + "Z"
        ),
        st.integers(1, 9999),
        st.integers(1, 12),
        st.integers(1, 28),
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 59),
        _DIGITS,
    ),
    st.sampled_from(
        [
            "2031-02-03T04:05:06.9999999Z",
            "2031-02-03T04:05:06.Z",
            "2031-02-03T04:05:06",
            "2031-02-03 04:05:06Z",
            "2031-2-3T04:05:06Z",
            "2031-02-03T04:05:06+00:00",
            "20310203T040506Z",
            "2031-02-30T04:05:06Z",
            "2031-02-03T24:00:00Z",
            "",
        ]
    ),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1]),  # where Int32 ends
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
_TYPED = st.one_of(
    st.tuples(st.just(EdmType.DATETIME.value), _TIMES),
    st.tuples(st.just(EdmType.INT64.value), st.integers(-(2**62), 2**62).map(str)),
    st.tuples(st.just(EdmType.GUID.value), st.uuids().map(str)),
    st.tuples(st.just(EdmType.BINARY.value), st.sampled_from(["", "AAEC", "aGVsbG8="])),
    st.tuples(st.just(EdmType.DOUBLE.value), st.sampled_from(["NaN", "Infinity", "-Infinity"])),
    st.tuples(st.just(EdmType.STRING.value), st.text(max_size=8)),
    st.tuples(st.just(EdmType.INT32.value), st.integers(-5, 5)),
    st.tuples(st.just(EdmType.BOOLEAN.value), st.booleans()),
)


def _outcome(convert: Any, entry: dict[str, Any]) -> Any:
    try:
        entity = convert(entry)
    except (ValueError, AttributeError, TypeError):
        return "refused"  # which error names a time that is not text matters to neither
    values = {
        name: (type(value), repr(value), getattr(value, "tables_service_value", None))
        for name, value in entity.items()
    }
    stamp = entity.metadata["timestamp"]
    metadata = {**entity.metadata, "timestamp": (type(stamp), stamp, repr(stamp))}
    return list(values), values, metadata


@settings(max_examples=300, deadline=None)
@given(
    plain=st.dictionaries(st.sampled_from(["A", "B", "C", "Timestamp"]), _SCALARS, max_size=3),
    typed=st.dictionaries(st.sampled_from(["D", "E", "F"]), _TYPED, max_size=3),
    timestamp=st.one_of(st.none(), _TIMES),
    etag=st.one_of(st.none(), st.just("W/\"datetime'2031-02-03T04%3A05%3A06Z'\"")),
)
def test_every_entity_is_the_sdks(
    plain: dict[str, Any],
    typed: dict[str, tuple[str, Any]],
    timestamp: str | None,
    etag: str | None,
) -> None:
    entry: dict[str, Any] = {"odata.metadata": "m", "PartitionKey": "p", "RowKey": "r"}
    if etag is not None:
        entry["odata.etag"] = etag
    entry.update(plain)
    if timestamp is not None:
        entry["Timestamp"] = timestamp
    for name, (kind, value) in typed.items():
        entry[f"{name}@odata.type"] = kind
        entry[name] = value
    assert _outcome(to_entity, entry) == _outcome(_convert_to_entity, entry)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2031-02-03T04:05:06.9999999Z", "2031-02-03 04:05:06.999999+00:00"),
        ("2031-02-03T04:05:06Z", "2031-02-03 04:05:06+00:00"),
        ("2031-02-03T04:05:06.5Z", "2031-02-03 04:05:06.500000+00:00"),
    ],
)
def test_a_service_time_keeps_microseconds_and_its_text(text: str, expected: str) -> None:
    moment = entity_time(text)
    assert str(moment) == expected
    assert moment.tables_service_value == text


def test_a_time_in_another_format_is_the_sdks_to_judge() -> None:
    with pytest.raises(ValueError):
        entity_time("2031-02-03T04:05:06+01:00")
