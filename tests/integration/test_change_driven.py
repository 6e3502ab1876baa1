"""Change-driven runs (issue #15) against the emulator and Azurite: after changes in the world,
a run that reads only what the activity log names gives the verdicts a full sweep gives, and
reads the settings of only those registries."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from auditor.facts import Status, Verdict
from auditor.logs_audit import EvidenceCollector
from auditor.run_record import AuditRun, RunMode
from auditor.runtime import audit_once, build_store, scheduled_mode
from auditor.settings import Settings
from auditor.storage import writer
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
    """Random changes of the kinds the activity log records: settings deleted and written, a
    registry created and one deleted; the names of the registries."""
    world = emu.world
    with_settings = [r for r in world.registries() if r.settings]
    without = [r for r in world.registries() if not r.settings]
    donor = next(s for r in with_settings for s in r.settings if "workspaceId" in s.properties)
    changed: set[str] = set()
    deleted, *edited = rng.sample(with_settings, 3)
    for reg in edited:
        assert world.delete_setting(reg.id, reg.settings[0].name, caller="ops@contoso.com")
        changed.add(reg.name)
    for reg in rng.sample(without, 1):
        world.put_setting(reg.id, "fixed", dict(donor.properties), caller="ops@contoso.com")
        changed.add(reg.name)
    world.remove_registry(deleted.id, caller="ops@contoso.com")
    added = world.add_registry(
        {
            "name": f"acrnew{rng.randrange(10**6):06d}",
            "subscription": deleted.subscription,
            "resourceGroup": "rg-new",
        },
        caller="ops@contoso.com",
    )
    return changed | {deleted.name, added.name}


def read_failed(run: AuditRun) -> list[Verdict]:
    """The registries whose settings `run` could not read: the next run reads them again."""
    return [v for v in run.verdicts if any(r.code.startswith("unknown:") for r in v.reasons)]


def adoptions(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each `EvidenceCollector.restrict` answered: whether a run adopted the collector
    it asked ahead with."""
    answered: list[bool] = []
    restrict = EvidenceCollector.restrict

    def spy(self: EvidenceCollector, *args: Any, **kwargs: Any) -> bool:
        answered.append(restrict(self, *args, **kwargs))
        return answered[-1]

    monkeypatch.setattr(EvidenceCollector, "restrict", spy)
    return answered


def graph_queries(emu: RunningEmulator) -> int:
    return len(emu.world.requests(api="graph"))


def test_a_change_driven_run_judges_as_a_full_sweep_and_reads_only_what_changed(
    local_azure: LocalAzure,
) -> None:
    emu, env = local_azure()
    first = audit(env, RunMode.FULL)
    assert first.mode is RunMode.FULL
    before, listings = len(settings_reads(emu)), graph_queries(emu)

    changed = change_world(emu, random.Random(15))
    changes = audit(env, RunMode.CHANGES)
    read_now = settings_reads(emu)[before:]
    assert graph_queries(emu) == listings  # the inventory came from the store and the log
    full = audit(env, RunMode.FULL)

    assert changes.mode is RunMode.CHANGES
    # The same verdicts as a full sweep; the deleted registry is found removed once, by the
    # first run after its deletion.
    removed = {n for n, (status, _) in judged(changes).items() if status is Status.REMOVED}
    assert len(removed) == 1 and removed < changed
    assert {n: j for n, j in judged(changes).items() if n not in removed} == judged(full)
    names = {v.registry.key: v.registry.name for v in changes.verdicts}
    reread = {names[k] for k in changes.rereads}
    assert changed - removed <= reread  # every registry that changed was read again
    # ... and only those, and registries whose last settings read failed.
    unread = {v.registry.name for v in read_failed(first)}
    assert reread <= changed | unread
    assert {names.get(r, r) for r in read_now} == reread - removed
    assert changes.settings_reads == len(reread - removed) < len(full.verdicts)
    assert not changes.full_reads


def test_log_queries_asked_ahead_of_the_inventory_judge_as_a_full_sweep(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change-driven run names the workspaces of the stored settings as the store's pages
    arrive (pages of 4 rows here, of 1,000 in a fleet) and asks their registry queries
    before its inventory is complete; it adopts that collector and judges, evidence and
    all, as a full sweep does."""
    monkeypatch.setattr(writer, "MAX_PAGE", 4)
    asked: list[str] = []
    adopted = adoptions(monkeypatch)
    prefetch = EvidenceCollector.prefetch

    def spy_prefetch(self: EvidenceCollector, workspace_ids: Iterable[str]) -> None:
        ids = list(workspace_ids)
        asked.extend(ids)
        prefetch(self, ids)

    monkeypatch.setattr(EvidenceCollector, "prefetch", spy_prefetch)
    emu, env = local_azure()
    audit(env, RunMode.FULL)
    assert asked == [] and adopted == []  # a full sweep routes as it reads
    change_world(emu, random.Random(7))
    changes = audit(env, RunMode.CHANGES)
    assert len(asked) == len(set(asked)) >= 1 and adopted == [True]
    full = audit(env, RunMode.FULL)
    removed = {n for n, (status, _) in judged(changes).items() if status is Status.REMOVED}
    assert {n: j for n, j in judged(changes).items() if n not in removed} == judged(full)
    assert any(
        c.startswith("logs_") or c == "pending" for _, cs in judged(full).values() for c in cs
    )
    assert changes.errors == full.errors


def test_a_failure_to_ask_ahead_costs_the_run_nothing(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asking ahead happens inside the store's read: should it fail, the read and the run
    go on, and the run asks its queries as any run does."""
    monkeypatch.setattr(writer, "MAX_PAGE", 4)
    restricted = adoptions(monkeypatch)

    def broken(self: EvidenceCollector, workspace_ids: Iterable[str]) -> None:
        raise RuntimeError("asked ahead and failed")

    monkeypatch.setattr(EvidenceCollector, "prefetch", broken)
    emu, env = local_azure()
    audit(env, RunMode.FULL)
    change_world(emu, random.Random(7))
    changes = audit(env, RunMode.CHANGES)
    assert changes.storage_error is None and restricted == []  # its own collector
    assert changes.mode is RunMode.CHANGES and changes.log_queries > 0
    full = audit(env, RunMode.FULL)
    removed = {n for n, (status, _) in judged(changes).items() if status is Status.REMOVED}
    assert {n: j for n, j in judged(changes).items() if n not in removed} == judged(full)


def test_a_first_change_driven_run_reads_everything_and_says_why(
    local_azure: LocalAzure,
) -> None:
    emu, env = local_azure()
    run = audit(env, RunMode.CHANGES)
    assert run.mode is RunMode.CHANGES
    assert run.settings_reads == len(set(settings_reads(emu))) > 0
    assert set(run.full_reads.values()) == {
        "no finished run since the last full sweep listed this subscription"
    }
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
    assert after.last_full == full.last_full and after.latest == changes.started_at
    assert full.last_full is not None and changes.started_at > full.last_full
    # Every subscription is read from the change-driven run's start next time.
    assert after.covered and set(after.covered.values()) == {changes.started_at}


def test_a_change_made_before_a_scoped_run_in_another_subscription_is_still_read(
    local_azure: LocalAzure,
) -> None:
    """Each subscription's activity log is read from when a run last listed it: a run scoped
    to one subscription does not move the others' windows past their changes."""
    emu, env = local_azure()
    first = audit(env, RunMode.FULL)
    by_sub: dict[str, set[str]] = {}
    for v in first.verdicts:
        by_sub.setdefault(v.registry.subscription_id.lower(), set()).add(v.registry.key)
    scoped, other = sorted(by_sub, key=lambda s: -len(by_sub[s]))[:2]
    target = next(
        r for r in emu.world.registries() if r.subscription.lower() == other and r.settings
    )
    assert emu.world.delete_setting(target.id, target.settings[0].name, caller="ops@contoso.com")
    # The newest run lists only one subscription, after the change in the other.
    audit_once(Settings.from_env(env), trigger="test", alerts=False, subscriptions=[scoped])
    changes = audit(env, RunMode.CHANGES)
    failed_before = {v.registry.key for v in read_failed(first)}
    assert changes.rereads.get(target.id.lower()) == ("setting_deleted",)
    assert set(changes.rereads) - failed_before == {target.id.lower()}
    assert judged(changes) == judged(audit(env, RunMode.FULL))


def test_a_change_driven_run_leaves_unchanged_rows_alone(local_azure: LocalAzure) -> None:
    """Registries judged from their stored settings to the same result are not rewritten:
    their rows keep when their settings were last read; evidence that says the same as the
    newest stored is not stored again."""
    emu, env = local_azure()
    first = audit(env, RunMode.FULL)
    store = build_store(Settings.from_env(env))
    rows = {d["name"]: d for d in store.reader.list_registries(page_size=1000)[0]}
    target = next(r for r in emu.world.registries() if r.settings)
    assert emu.world.delete_setting(target.id, target.settings[0].name, caller="ops@contoso.com")
    changes = audit(env, RunMode.CHANGES)
    after = {d["name"]: d for d in store.reader.list_registries(page_size=1000)[0]}
    rewritten = {n for n in after if after[n]["checkedAt"] != rows[n]["checkedAt"]}
    assert target.name in rewritten
    assert rewritten == {
        v.registry.name for v in changes.verdicts if v.registry.key in changes.rereads
    }
    # Evidence the same as stored (its window aside) stays the first run's.
    quiet = [n for n in sorted(set(rows) - rewritten) if store.reader.registry_logins(n)[0]]
    assert quiet
    for name in quiet:
        newest = store.reader.registry_logins(name, limit=1)[0][0]
        assert newest["runId"] == first.run_id


def test_a_registry_the_log_names_but_arm_cannot_read_is_judged_not_dropped(
    local_azure: LocalAzure,
) -> None:
    emu, env = local_azure()
    audit(env, RunMode.FULL)
    sub = next(r.subscription for r in emu.world.registries())
    added = emu.world.add_registry(
        {"name": "acrunreadable01", "subscription": sub, "resourceGroup": "rg-new"},
        caller="ops@contoso.com",
    )
    # Its GET fails every time; its settings (a longer path) still read.
    emu.world.add_fault(
        {"kind": "status", "status": 500, "api": "arm", "path": "/registries/acrunreadable01$"}
    )
    changes = audit(env, RunMode.CHANGES)
    [found] = [v for v in changes.verdicts if v.registry.name == added.name]
    assert found.status is not Status.REMOVED
    assert changes.rereads[added.id.lower()] == ("not_stored",)
    assert any(
        e.startswith(f"registry {added.id.lower()}: could not be read after the activity log")
        for e in changes.errors
    )
