"""The large fleet generator: size, speed, determinism, the mix of compliance cases, and the
command line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from emulator import fleet, scenario
from emulator.loganalytics.events import enabled_tables


def test_ten_thousand_registries() -> None:
    sc = fleet.generate_scenario(10_000, 100, seed=3)
    assert len(sc.registries) == 10_000
    assert len(sc.subscriptions) == 100
    assert len({r.name.lower() for r in sc.registries}) == 10_000
    assert len({r.subscription for r in sc.registries}) == 100


def test_deterministic_per_seed() -> None:
    assert fleet.generate(300, 7, seed=5) == fleet.generate(300, 7, seed=5)
    assert fleet.generate(300, 7, seed=5) != fleet.generate(300, 7, seed=6)


def test_realistic_mix_of_cases() -> None:
    sc = fleet.generate_scenario(4000, 40, seed=1)
    central = {w.id.lower() for w in sc.workspaces if w.name.startswith("law-central")}
    sandbox = {w.id.lower() for w in sc.workspaces if w.name.startswith("law-sandbox")}
    kinds: Counter[str] = Counter()
    for reg in sc.registries:
        tables: set[str] = set()
        dests: set[str] = set()
        for s in reg.settings:
            t = enabled_tables(s.properties)
            tables |= t
            if t:
                dests.add(str(s.properties["workspaceId"]).lower())
        if not reg.settings:
            kinds["none"] += 1
        elif {"ContainerRegistryLoginEvents", "ContainerRegistryRepositoryEvents"} <= tables:
            kinds["sandbox" if dests & sandbox else "covered"] += 1
        elif any("storageAccountId" in s.properties for s in reg.settings):
            kinds["storage"] += 1
        else:
            kinds["other"] += 1
        assert len(reg.settings) <= 5
    assert 0.55 < kinds["covered"] / 4000 < 0.75
    assert 0.07 < kinds["none"] / 4000 < 0.13
    assert kinds["sandbox"] and kinds["storage"] and kinds["other"]
    assert central  # the allow-listed workspaces exist
    assert any(len(r.settings) == 5 for r in sc.registries)
    assert any(r.created_at and r.created_at > sc.now.replace(hour=11) for r in sc.registries)


def test_one_subscription_share() -> None:
    data = fleet.generate(1000, 20, seed=2, one_subscription_share=0.8)
    per_sub = Counter(r["subscription"] for r in data["registries"])
    assert per_sub.most_common(1)[0][1] >= 800


def test_events_are_optional() -> None:
    assert all("events" not in r for r in fleet.generate(200, 5)["registries"])
    sc = fleet.generate_scenario(500, 5, seed=4, events=True)
    with_events = [r for r in sc.registries if r.events]
    assert len(with_events) > 450
    assert any(g.silent_since for r in with_events for g in r.events)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="subscription"):
        fleet.generate(10, 0)
    with pytest.raises(ValueError, match="share"):
        fleet.generate(10, 2, one_subscription_share=1.5)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_command_line_writes_a_loadable_file(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"fleet{suffix}"
    assert fleet.main(["--registries", "250", "--subscriptions", "5", "-o", str(out)]) == 0
    sc = scenario.load(out)
    assert len(sc.registries) == 250
    if suffix == ".json":
        assert json.loads(out.read_text())["registries"][0]["name"].startswith("acr")


def test_large_file_loads(tmp_path: Path) -> None:
    # How fast it loads is bench/'s business (timed tests fail on a busy machine).
    out = tmp_path / "fleet.json"
    fleet.write(fleet.generate(10_000, 100), out)
    assert len(scenario.load(out).registries) == 10_000
