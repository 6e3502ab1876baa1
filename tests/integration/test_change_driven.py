"""Change-driven runs (issue #15) against the emulator and Azurite: after changes in the world,
a run that reads only what the activity log names gives the verdicts a full sweep gives, and
reads the settings of only those registries."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from auditor.facts import Status, Verdict
from auditor.run_record import AuditRun, RunMode
from auditor.runtime import audit_once, build_store, scheduled_mode
from auditor.settings import Settings
from emulator.testing import RunningEmulator

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]


def audit(env: dict[str, str], mode: RunMode) -> AuditRun:
    return audit_once(Settings.from_env(env), trigger="test", alerts=False, mode=mode)


def judged(run: AuditRun) -> dict[str, tuple[Status, tuple[str, ...]]]:
    def codes(v: Verdict) -> tuple[str, ...]:
        return tuple(sorted(r.code for r in v.reasons))

    return {v.registry.name: (v.status, codes(v)) for v in run.verdicts}


_SETTINGS = "/providers/microsoft.insights/diagnosticsettings"


def settings_reads(emu: RunningEmulator) -> list[str]:
    """Registry ids whose settings were listed, in request order."""
    return [
        e.path.lower().removesuffix(_SETTINGS)
        for e in emu.world.requests(api="arm")
        if e.method == "GET" and e.path.lower().endswith(_SETTINGS)
    ]


def change_world(emu: RunningEmulator, rng: random.Random) -> set[str]:
    """Random changes of the kinds the activity log records; the names of the registries."""
    world = emu.world
    with_settings = [r for r in world.registries() if r.settings]
    without = [r for r in world.registries() if not r.settings]
    donor = next(s for r in with_settings for s in r.settings if "workspaceId" in s.properties)
    changed: set[str] = set()
    for reg in rng.sample(with_settings, 2):
        assert world.delete_setting(reg.id, reg.settings[0].name, caller="ops@contoso.com")
        changed.add(reg.name)
    for reg in rng.sample(without, 1):
        world.put_setting(reg.id, "fixed", dict(donor.properties), caller="ops@contoso.com")
        changed.add(reg.name)
    return changed


def test_a_change_driven_run_judges_as_a_full_sweep_and_reads_only_what_changed(
    local_azure: LocalAzure,
) -> None:
    emu, env = local_azure()
    first = audit(env, RunMode.FULL)
    assert first.mode is RunMode.FULL
    before = len(settings_reads(emu))

    changed = change_world(emu, random.Random(15))
    changes = audit(env, RunMode.CHANGES)
    read_now = settings_reads(emu)[before:]
    full = audit(env, RunMode.FULL)

    assert changes.mode is RunMode.CHANGES
    assert judged(changes) == judged(full)  # the same verdicts as a full sweep
    names = {v.registry.key: v.registry.name for v in full.verdicts}
    reread = {names[k] for k in changes.rereads}
    assert changed <= reread  # every registry that changed was read again
    # ... and only those, and registries whose last settings read failed.
    unread = {
        v.registry.name
        for v in first.verdicts
        if any(r.code.startswith("unknown:") for r in v.reasons)
    }
    assert reread <= changed | unread
    assert {names.get(r, r) for r in read_now} == reread
    assert changes.settings_reads == len(reread) < len(full.verdicts)
    assert not changes.full_reads


def test_a_first_change_driven_run_reads_everything_and_says_why(
    local_azure: LocalAzure,
) -> None:
    emu, env = local_azure()
    run = audit(env, RunMode.CHANGES)
    assert run.mode is RunMode.CHANGES
    assert run.settings_reads == len(set(settings_reads(emu))) > 0
    assert set(run.full_reads.values()) == {"first change-driven run: no watermark"}
    assert not run.rereads


def test_the_timer_sweeps_in_full_when_the_last_sweep_is_old(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    settings = Settings.from_env(env)
    store = build_store(settings)
    assert scheduled_mode(settings, store) is RunMode.FULL  # nothing stored yet
    audit(env, RunMode.FULL)
    assert scheduled_mode(settings, store) is RunMode.CHANGES
    hourly: dict[str, Any] = {**env, "AUDITOR_FULL_SWEEP_HOURS": "0"}
    assert scheduled_mode(Settings.from_env(hourly), store) is RunMode.FULL
    full = store.last_sweeps()
    changes = audit(env, RunMode.CHANGES)
    after = store.last_sweeps()
    assert after.last_full == full.last_full and after.latest_run == changes.run_id
    assert after.latest is not None and full.last_full is not None
    assert after.latest > full.last_full


def test_registries_a_scoped_run_left_out_are_read_by_the_next_change_driven_run(
    local_azure: LocalAzure,
) -> None:
    _, env = local_azure()
    first = audit(env, RunMode.FULL)
    by_sub: dict[str, set[str]] = {}
    for v in first.verdicts:
        by_sub.setdefault(v.registry.subscription_id.lower(), set()).add(v.registry.key)
    scoped, other = sorted(by_sub, key=lambda s: -len(by_sub[s]))[:2]
    # The newest run judged only one subscription: the others' rows are older than its start.
    audit_once(Settings.from_env(env), trigger="test", alerts=False, subscriptions=[scoped])
    changes = audit(env, RunMode.CHANGES)
    assert by_sub[other] <= set(changes.rereads)
    assert {changes.rereads[k] for k in by_sub[other]} <= {
        ("not_in_last_run",),
        ("last_read_failed",),
    }
    assert not set(changes.rereads) & by_sub[scoped] - {
        v.registry.key
        for v in first.verdicts
        if any(r.code.startswith("unknown:") for r in v.reasons)
    }
