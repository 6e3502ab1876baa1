"""Which registries a change-driven run re-reads, and the next watermark. Instants are derived
from now: nothing here depends on the date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from auditor.change_feed import (
    ChangeKind,
    ChangeLog,
    ReadReason,
    RegistryChange,
    StoredRegistry,
    query_window,
    registry_events,
    select,
)

NOW = datetime.now(UTC)
HOUR = timedelta(hours=1)
OVERLAP = timedelta(minutes=15)
SUB1 = "11111111-1111-1111-1111-111111111111"
SUB2 = "22222222-2222-2222-2222-222222222222"
REGISTRIES = "Microsoft.ContainerRegistry/registries"


def rid(sub: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/RG/providers/{REGISTRIES}/{name}"


A, B, C = rid(SUB1, "acra"), rid(SUB1, "acrb"), rid(SUB2, "acrc")
STORED = [
    StoredRegistry(A, SUB1, last_read_ok=True),
    StoredRegistry(B, SUB1, last_read_ok=False),
    StoredRegistry(C, SUB2, last_read_ok=True),
]


def marks(at: datetime, *subs: str) -> dict[str, datetime]:
    """Every (or the given) subscription last listed at `at`."""
    return dict.fromkeys(subs or (SUB1, SUB2), at)


def change(
    registry: str, kind: ChangeKind, status: str = "Succeeded", correlation: str = ""
) -> RegistryChange:
    return RegistryChange(registry.lower(), kind, NOW - HOUR, status, correlation_id=correlation)


def log(sub: str, *changes: RegistryChange, error: str | None = None) -> ChangeLog:
    return ChangeLog(sub, NOW - 2 * HOUR, NOW, changes, error=error)


def test_changed_and_failed_registries_are_read_with_their_reasons() -> None:
    new = rid(SUB2, "acrnew")
    logs = {
        SUB1: log(
            SUB1, change(A, ChangeKind.SETTING_DELETED), change(A, ChangeKind.SETTING_WRITTEN)
        ),
        SUB2.upper(): log(SUB2, change(new, ChangeKind.REGISTRY_WRITTEN)),
    }
    plan = select(STORED, logs, watermarks=marks(NOW - 2 * HOUR), now=NOW, overlap=OVERLAP)
    assert plan.reads == {
        A.lower(): (ReadReason.SETTING_DELETED, ReadReason.SETTING_WRITTEN),
        B.lower(): (ReadReason.LAST_READ_FAILED,),
        new.lower(): (ReadReason.REGISTRY_WRITTEN,),
    }
    assert plan.full == {}


def test_a_deleted_registry_is_confirmed_only_when_it_was_stored() -> None:
    gone = rid(SUB2, "acrneverseen")
    logs = {
        SUB1: log(SUB1),
        SUB2: log(
            SUB2, change(C, ChangeKind.REGISTRY_DELETED), change(gone, ChangeKind.REGISTRY_DELETED)
        ),
    }
    plan = select(STORED, logs, watermarks=marks(NOW - HOUR), now=NOW, overlap=OVERLAP)
    assert plan.reads[C.lower()] == (ReadReason.REGISTRY_DELETED,)
    assert gone.lower() not in plan.reads


def test_a_failed_operation_changes_nothing_even_its_started_event() -> None:
    logs = {
        SUB1: log(
            SUB1,
            change(A, ChangeKind.SETTING_DELETED, "Started", "op-1"),
            change(A, ChangeKind.SETTING_DELETED, "Failed", "op-1"),
        ),
        SUB2: log(SUB2, change(C, ChangeKind.SETTING_WRITTEN, "Started", "op-2")),
    }
    plan = select(STORED, logs, watermarks=marks(NOW - HOUR), now=NOW, overlap=OVERLAP)
    assert A.lower() not in plan.reads
    # Started and not (yet) finished: read it, it may have changed.
    assert plan.reads[C.lower()] == (ReadReason.SETTING_WRITTEN,)


def test_an_unreadable_or_missing_log_means_a_full_read_of_that_subscription() -> None:
    logs = {SUB1: log(SUB1, error="HTTP 403 AuthorizationFailed: no")}
    plan = select(STORED, logs, watermarks=marks(NOW - HOUR), now=NOW, overlap=OVERLAP)
    assert plan.full == {
        SUB1: "its activity log could not be read: HTTP 403 AuthorizationFailed: no",
        SUB2: "its activity log was not read",
    }
    assert plan.reads == {}  # B's failed read is covered by its subscription's full read


@pytest.mark.parametrize(
    ("watermark", "why"),
    [
        (None, "no finished run since the last full sweep listed this subscription"),
        (NOW - timedelta(days=90), "its last listing is older than the activity log's 90 days"),
    ],
)
def test_without_a_usable_watermark_a_subscription_is_read_in_full(
    watermark: datetime | None, why: str
) -> None:
    watermarks = marks(NOW - HOUR, SUB2) | ({SUB1: watermark} if watermark else {})
    logs = {SUB1: log(SUB1, change(A, ChangeKind.SETTING_DELETED)), SUB2: log(SUB2)}
    plan = select(STORED, logs, watermarks=watermarks, now=NOW, overlap=OVERLAP)
    # SUB2's window is covered: only SUB1 is read in full, and its log is not used.
    assert plan.full == {SUB1: why} and plan.reads == {}


def test_each_subscription_is_judged_by_its_own_watermark() -> None:
    """A subscription a scoped run did not list keeps its older watermark, so a change made
    before the newest run, in a subscription that run did not list, is still read."""
    before = change(C, ChangeKind.SETTING_DELETED)  # an hour ago
    logs = {SUB1: log(SUB1), SUB2: log(SUB2, before)}
    watermarks = {SUB1: NOW - timedelta(minutes=5), SUB2: NOW - 3 * HOUR}
    plan = select(STORED, logs, watermarks=watermarks, now=NOW, overlap=OVERLAP)
    assert plan.full == {}
    assert plan.reads[C.lower()] == (ReadReason.SETTING_DELETED,)


def test_registry_events_are_the_successful_registry_writes_and_deletes() -> None:
    new, gone = rid(SUB1, "acrnew"), rid(SUB1, "acrgone")
    found = registry_events(
        log(
            SUB1,
            change(new, ChangeKind.REGISTRY_WRITTEN),
            change(gone, ChangeKind.REGISTRY_DELETED),
            change(A, ChangeKind.SETTING_DELETED),
            change(B, ChangeKind.REGISTRY_WRITTEN, "Started", "op-9"),
            change(B, ChangeKind.REGISTRY_WRITTEN, "Failed", "op-9"),
        )
    )
    assert found == {new.lower(), gone.lower()}


def test_the_window_starts_the_overlap_before_the_watermark() -> None:
    assert query_window(NOW - HOUR, NOW, OVERLAP) == (NOW - HOUR - OVERLAP, NOW)
    # A watermark from the future (a clock that jumped back) never makes the window empty.
    assert query_window(NOW + HOUR, NOW, OVERLAP) == (NOW - OVERLAP, NOW)
    assert query_window(NOW - timedelta(days=89, hours=23), NOW, OVERLAP) is None
    assert query_window(None, NOW, OVERLAP) is None
    with pytest.raises(ValueError, match="negative"):
        query_window(NOW, NOW, -OVERLAP)
