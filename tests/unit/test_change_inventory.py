"""Which subscriptions a change-driven run takes from the store and which it lists
(`change_run.inventory`). Instants are derived from now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auditor import change_run
from auditor.azure.inventory import Inventory
from auditor.change_feed import ChangeLog
from auditor.facts import Registry

NOW = datetime.now(UTC)
SUB1 = "11111111-1111-1111-1111-111111111111"
SUB2 = "22222222-2222-2222-2222-222222222222"
SUB3 = "33333333-3333-3333-3333-333333333333"
REGISTRIES = "Microsoft.ContainerRegistry/registries"


def registry(sub: str, name: str) -> Registry:
    rid = f"/subscriptions/{sub}/resourceGroups/rg/providers/{REGISTRIES}/{name}"
    return Registry(id=rid, name=name, subscription_id=sub, resource_group="rg")


def log(sub: str, error: str | None = None) -> ChangeLog:
    return ChangeLog(sub, NOW - timedelta(hours=1), NOW, error=error)


class NoArm:
    """ARM for a run with no registry events: never asked."""

    def subscriptions(self) -> None:
        raise AssertionError("ARM was asked")

    def resource_graph(self) -> None:
        raise AssertionError("ARM was asked")

    def registries(self, subscription_id: str, /) -> None:
        raise AssertionError("ARM was asked")


class Listing:
    """Stands in for Resource Graph: what it was asked to list, and one registry each."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def __call__(self, subscriptions: list[str]) -> Inventory:
        self.asked.append(subscriptions)
        return Inventory(
            registries=[registry(s, f"acrlisted{i}") for i, s in enumerate(subscriptions)],
            complete=set(subscriptions),
        )


def test_only_what_the_store_and_the_log_cannot_tell_is_listed() -> None:
    a, b, c = registry(SUB1, "acra"), registry(SUB2, "acrb"), registry(SUB3, "acrc")
    listing = Listing()
    found = change_run.inventory(
        NoArm(),
        [SUB1, SUB2, SUB3],
        stored=[a, b, c],
        facts=lambda r: r is not b,  # acrb's row predates the stored facts
        logs={SUB1: log(SUB1), SUB2: log(SUB2), SUB3: log(SUB3, error="HTTP 403")},
        listing=listing,
    )
    assert listing.asked == [[SUB2, SUB3]]
    assert found.complete == {SUB1, SUB2, SUB3}
    assert [r.name for r in found.registries if r.subscription_id == SUB1] == ["acra"]
    # The listed subscriptions' registries are the listing's, not the store's.
    assert {r.name for r in found.registries} == {"acra", "acrlisted0", "acrlisted1"}


def test_nothing_is_listed_when_the_store_and_the_log_tell_everything() -> None:
    listing = Listing()
    found = change_run.inventory(
        NoArm(),
        [SUB1],
        stored=[registry(SUB1, "acra")],
        facts=lambda r: True,
        logs={SUB1: log(SUB1)},
        listing=listing,
    )
    assert listing.asked == [] and found.complete == {SUB1}
    assert [r.name for r in found.registries] == ["acra"]
