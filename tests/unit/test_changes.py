"""What a run changed against the stored state: removals and history entries, without storage."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from auditor.changes import Change, StoredState, changed, reason_codes, removed, status_since
from auditor.facts import Reason, Registry, Status

SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LOGIN_MISSING = "category_missing:ContainerRegistryLoginEvents"


def registry(name: str, sub: str = SUB_A) -> Registry:
    return Registry(
        id=f"/subscriptions/{sub}/resourceGroups/rg/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=sub,
        resource_group="rg",
    )


def stored(
    name: str,
    status: Status | str = Status.COMPLIANT,
    *codes: str,
    sub: str = SUB_A,
    since: datetime | None = T0,
    run_id: str = "run001",
) -> StoredState:
    return StoredState(
        registry=registry(name, sub),
        status=status.value if isinstance(status, Status) else status,
        reason_codes=tuple(codes),
        status_since=since,
        last_run_id=run_id,
    )


def test_reason_codes_ignore_order_details_and_repeats() -> None:
    reasons = [Reason("b", "one"), Reason("a", "two"), Reason("b", "three")]
    assert reason_codes(reasons) == ("a", "b")
    assert reason_codes([]) == ()


def test_first_sight_is_a_change() -> None:
    assert changed(None, Status.COMPLIANT, ())


def test_same_status_and_codes_is_no_change() -> None:
    before = stored("acrsame1", Status.NONCOMPLIANT, LOGIN_MISSING)
    assert not changed(before, Status.NONCOMPLIANT, (LOGIN_MISSING,))


def test_another_status_or_other_codes_is_a_change() -> None:
    before = stored("acrflip1", Status.NONCOMPLIANT, LOGIN_MISSING)
    assert changed(before, Status.COMPLIANT, (LOGIN_MISSING,))
    assert changed(before, Status.NONCOMPLIANT, ("no_diagnostic_setting",))
    assert changed(before, Status.NONCOMPLIANT, ())


def test_a_status_this_version_does_not_know_is_a_change() -> None:
    assert changed(stored("acrodd01", "quarantined"), Status.COMPLIANT, ())


def test_status_since_stays_while_nothing_changes() -> None:
    later = T0 + timedelta(hours=3)
    before = stored("acrkeep1")
    assert status_since(before, changed=False, observed_at=later) == T0
    assert status_since(before, changed=True, observed_at=later) == later
    assert status_since(None, changed=True, observed_at=later) == later
    # A row written before `StatusSince` was recorded starts counting now.
    assert status_since(stored("acrold01", since=None), changed=False, observed_at=later) == later


def test_removed_only_in_listed_subscriptions() -> None:
    previous = {
        "acrsuba1": stored("acrsuba1"),
        "acrsuba2": stored("acrsuba2"),
        "acrsubb1": stored("acrsubb1", sub=SUB_B),
    }
    gone = removed(previous, {"acrsuba1"}, listed_subscriptions={SUB_A}, run_id="run002")
    assert list(gone) == ["acrsuba2"]
    verdict = gone["acrsuba2"]
    assert verdict.registry == registry("acrsuba2")
    assert verdict.status is Status.REMOVED
    assert [r.code for r in verdict.reasons] == ["removed"]


def test_removed_in_key_order_and_subscriptions_compared_as_ids() -> None:
    previous = {name: stored(name) for name in ("acrzulu1", "acralfa1", "acrmike1")}
    gone = removed(previous, (), listed_subscriptions={f" {SUB_A.upper()} "}, run_id="run002")
    assert list(gone) == ["acralfa1", "acrmike1", "acrzulu1"]


def test_a_registry_judged_by_the_run_is_not_removed() -> None:
    previous = {"acrhere1": stored("acrhere1")}
    assert removed(previous, ["acrhere1"], listed_subscriptions={SUB_A}, run_id="run002") == {}


def test_removed_once_then_again_only_by_the_same_run() -> None:
    by_run2 = {"acrgone1": stored("acrgone1", Status.REMOVED, "removed", run_id="run002")}
    # Finishing run002 again reports the same removal; a later run does not repeat it.
    assert list(removed(by_run2, (), listed_subscriptions={SUB_A}, run_id="run002")) == ["acrgone1"]
    assert removed(by_run2, (), listed_subscriptions={SUB_A}, run_id="run003") == {}
    assert removed(by_run2, (), listed_subscriptions=(), run_id="run002") != {}


def test_nothing_is_removed_when_no_subscription_was_listed() -> None:
    previous = {"acrsuba1": stored("acrsuba1"), "acrsubb1": stored("acrsubb1", sub=SUB_B)}
    assert removed(previous, (), listed_subscriptions=(), run_id="run002") == {}


def test_a_change_is_named_by_what_it_changed_not_by_who_found_it() -> None:
    # Two runs read the same stored row (their own objects, another run id in neither).
    seen_by_one = stored("acrrace1", Status.NONCOMPLIANT, LOGIN_MISSING, run_id="run007")
    seen_by_two = stored("acrrace1", Status.NONCOMPLIANT, LOGIN_MISSING, run_id="run007")
    one = Change(seen_by_one, Status.COMPLIANT, ())
    two = Change(seen_by_two, Status.COMPLIANT, ())
    assert one.id == two.id
    assert one.ended == two.ended == T0
    # The same instant with another offset is the same stored state.
    elsewhere = stored(
        "acrrace1",
        Status.NONCOMPLIANT,
        LOGIN_MISSING,
        since=T0.astimezone(timezone(timedelta(hours=2))),
    )
    assert Change(elsewhere, Status.COMPLIANT, ()).id == one.id


def test_other_changes_have_other_names() -> None:
    before = stored("acrrace1", Status.NONCOMPLIANT, LOGIN_MISSING)
    ids = {
        Change(before, Status.COMPLIANT, ()).id,
        Change(before, Status.UNKNOWN, ("unknown:HTTP 429",)).id,
        Change(before, Status.NONCOMPLIANT, ("metrics_missing",)).id,
        # The same step again later (back and forth): it ends a later state.
        Change(replace(before, status_since=T0 + timedelta(hours=5)), Status.COMPLIANT, ()).id,
        Change(None, Status.COMPLIANT, ()).id,  # first sight
        Change(replace(before, status_since=None), Status.COMPLIANT, ()).id,
    }
    assert len(ids) == 6
    assert Change(None, Status.COMPLIANT, ()).ended is None
