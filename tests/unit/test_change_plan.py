"""`change_run.plan`, which a change-driven run applies a slice of the inventory at a time
(`ChangePlan.extend`): any slicing gives the plan of the whole. Instants derive from now."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from auditor import change_run
from auditor.change_feed import ChangeKind, ChangeLog, RegistryChange
from auditor.facts import DiagnosticSetting, LogEntry, Registry
from auditor.policy import Policy

NOW = datetime.now(UTC)
OVERLAP = timedelta(minutes=15)
SUBS = [f"{n}{n}{n}{n}{n}{n}{n}{n}-0000-0000-0000-000000000000" for n in range(1, 5)]
REGISTRIES = "Microsoft.ContainerRegistry/registries"


def registry(sub: str, name: str) -> Registry:
    rid = f"/subscriptions/{sub}/resourceGroups/rg/providers/{REGISTRIES}/{name}"
    return Registry(id=rid, name=name, subscription_id=sub, resource_group="rg")


def setting(reg: Registry, enabled: bool) -> DiagnosticSetting:
    return DiagnosticSetting(
        id=f"{reg.id}/providers/microsoft.insights/diagnosticSettings/audit",
        name="audit",
        workspace_id="/subscriptions/x/resourceGroups/rg/providers/"
        "Microsoft.OperationalInsights/workspaces/law",
        logs=(LogEntry(enabled, category_group="audit"),),
    )


def fleet(seed: int) -> tuple[list[Registry], dict[str, tuple[DiagnosticSetting, ...] | None]]:
    rng = random.Random(seed)
    registries = [registry(rng.choice(SUBS), f"acr{seed}n{i}") for i in range(60)]
    stored: dict[str, tuple[DiagnosticSetting, ...] | None] = {
        r.key: rng.choice([None, (), (setting(r, True),), (setting(r, False),)]) for r in registries
    }
    return registries, stored


def logs(registries: list[Registry], seed: int) -> dict[str, ChangeLog]:
    rng = random.Random(seed)
    changed = rng.sample(registries, 10)
    events: dict[str, list[RegistryChange]] = {s: [] for s in SUBS}
    for reg in changed:
        kind = rng.choice(list(ChangeKind))
        status = rng.choice(["Succeeded", "Failed"])
        events[reg.subscription_id].append(
            RegistryChange(reg.key, kind, NOW - timedelta(minutes=20), status)
        )
    # One subscription's log unreadable, one not read at all: both read in full.
    found = {s: ChangeLog(s, NOW - timedelta(hours=1), NOW, tuple(events[s])) for s in SUBS[:2]}
    found[SUBS[2]] = ChangeLog(SUBS[2], NOW - timedelta(hours=1), NOW, error="HTTP 403")
    return found


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", [1, 7, 25, 1_000])
def test_a_plan_made_a_slice_at_a_time_is_the_plan_of_the_whole(seed: int, size: int) -> None:
    registries, stored = fleet(seed)
    known = {r.key for r in registries[5:]}  # the first five are new since the last run

    def plan(part: list[Registry]) -> change_run.ChangePlan:
        return change_run.plan(
            part,
            stored=lambda r: stored[r.key],
            known=known,
            logs=logs(registries, seed),
            watermarks=dict.fromkeys(SUBS[:3], NOW - timedelta(hours=1)),  # SUBS[3]: none
            now=NOW,
            overlap=OVERLAP,
            categories=(),
            policy=Policy(),
        )

    whole = plan(registries)
    sliced = change_run.ChangePlan()
    for start in range(0, len(registries), size):
        sliced.extend(plan(registries[start : start + size]))
    assert sliced == whole
    assert whole.read and whole.kept and whole.rereads and whole.full  # each part exercised
