"""Scenario and knobs validation: every error names the field a scenario author must fix."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator import scenario
from emulator.knobs import Knobs, parse_fault, parse_knobs
from emulator.scenario import ScenarioError
from emulator.state import World
from emulator.testing import start_emulator
from emulator.throttle import TokenBuckets, WindowLimiter, hhmmss

SMALL = Path(__file__).resolve().parents[3] / "emulator" / "scenarios" / "small.yaml"


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SMALL.read_text())
    return data


def broken(small: dict[str, Any], change: Any) -> dict[str, Any]:
    data = copy.deepcopy(small)
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.pop("now"), "now"),
        (lambda d: d["subscriptions"][0].update(id="not-a-guid"), "subscriptions[0].id"),
        (lambda d: d["subscriptions"][1].update(state="Frozen"), "subscriptions[1].state"),
        (lambda d: d["registries"][2].update(name="x"), "registries[2].name"),
        (lambda d: d["registries"][0].update(sku="Gold"), "registries[0].sku"),
        (
            lambda d: d["registries"][0]["settings"][0].update(workspace="law-nowhere"),
            "registries[0].settings[0].workspace",
        ),
        (
            lambda d: d["registries"][0]["settings"][0]["logs"][0].update(categoryGroup="audit"),
            "registries[0].settings[0].logs[0]",
        ),
        (lambda d: d.update(surprise=1), "surprise"),
        (lambda d: d.update(knobs={"arm_throttle": {"burst": 0}}), "knobs.arm_throttle.burst"),
        (lambda d: d.update(knobs={"faults": [{"kind": "boom"}]}), "knobs.faults[0].kind"),
        (
            lambda d: d.update(activity=[{"at": "-1h", "operation": "x"}]),
            "activity[0].registry",
        ),
        (
            lambda d: d.update(
                activity=[{"registry": "acrnosetting01", "resourceId": "/x", "at": "-1h"}]
            ),
            "activity[0].registry",
        ),
        (
            lambda d: d.update(activity=[{"resourceId": "/subscriptions/x", "at": "-1h"}]),
            "activity[0].resourceId",
        ),
        (lambda d: d["registries"][0].update(tags=["a"]), "registries[0].tags"),
        (lambda d: d["registries"][0].update(tags={"a": 1}), "registries[0].tags.a"),
        (lambda d: d["registries"][0].update(tags={"a": "x", "A": "y"}), "registries[0].tags.A"),
        (lambda d: d["registries"][0].update(tags={"a": "x" * 257}), "registries[0].tags.a"),
    ],
)
def test_bad_scenarios_name_the_field(small: dict[str, Any], change: Any, field: str) -> None:
    with pytest.raises(ScenarioError) as err:
        scenario.parse(broken(small, change), source="bad.yaml")
    assert f"bad.yaml: {field}:" in str(err.value)


def test_tag_dates_are_relative_to_the_scenarios_now(small: dict[str, Any]) -> None:
    data = copy.deepcopy(small)
    data["registries"][0]["tags"] = {
        "acr-auditor-exempt": "r; until={today+30d}",
        "d": "{today-2d}",
    }
    [reg, *_] = scenario.parse(data).registries
    now = datetime.fromisoformat(small["now"].replace("Z", "+00:00"))
    assert reg.tags == {
        "acr-auditor-exempt": f"r; until={(now + timedelta(days=30)).date()}",
        "d": str((now - timedelta(days=2)).date()),
    }


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        scenario.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("now: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        scenario.load(bad)


def test_small_scenario_builds_a_world() -> None:
    world = World(scenario.load(SMALL))
    assert len(world.registries()) == 6
    assert world.subscription("11111111-1111-1111-1111-111111111111").state == "Enabled"  # type: ignore[union-attr]
    reg = world.registry_by_name("ACRCOMPLIANT01")
    assert reg is not None and world.registry(reg.id.upper()) is reg
    history = world.setting_history(reg.id)
    assert history[0].start == world.now() - __import__("datetime").timedelta(days=365)
    assert world.workspace_by_customer_id("AAAAAAAA-0000-0000-0000-000000000001") is not None
    assert [a.operation for a in world.activity_records()] == []


def test_two_worlds_from_one_scenario_do_not_share_settings() -> None:
    sc = scenario.load(SMALL)
    a, b = World(sc), World(sc)
    rid = a.registries()[0].id
    a.delete_setting(rid, a.settings(rid)[0].name, caller="t")
    assert a.settings(rid) == [] and len(b.settings(rid)) == 1
    assert len(sc.registries[0].settings) == 1


def test_knobs_defaults_are_azures() -> None:
    knobs = parse_knobs({})
    assert isinstance(knobs, Knobs)
    assert (knobs.arm_throttle.burst, knobs.arm_throttle.refill_per_second) == (250, 25.0)
    assert (knobs.resourcegraph.quota, knobs.resourcegraph.window_seconds) == (15, 5.0)
    assert knobs.paging.registries_page_size == 20
    assert knobs.logs.concurrent_queries == 5 and knobs.faults == []


def test_knobs_full_example_parses() -> None:
    knobs = parse_knobs(
        {
            "latency": {
                "arm": 30,
                "logs": {"distribution": "lognormal", "median_ms": 300, "sigma": 0.6, "seed": 7},
                "default": {"distribution": "uniform", "min_ms": 1, "max_ms": 2},
            },
            "arm_throttle": {"burst": 10, "refill_per_second": 5, "clock_scale": 10},
            "resourcegraph": {"quota": 3, "window_seconds": 1},
            "paging": {"registries_page_size": 2},
            "activity_log": {"page_size": 7, "ingestion_delay_seconds": 120},
            "logs": {"max_rows": 10, "ingestion_delay_minutes": 5},
            "faults": [
                {
                    "kind": "status",
                    "status": 403,
                    "subscription": "22222222-2222-2222-2222-222222222222",
                },
                {"kind": "slow", "delay_s": 1, "probability": 0.5, "seed": 1},
                {"kind": "partial", "count": 1},
            ],
        }
    )
    # What GET /_emulator/knobs reports can be PUT back unchanged.
    assert parse_knobs(knobs.to_dict()).to_dict() == knobs.to_dict()
    assert knobs.latency_for("arm").sample_s() == 0.03  # type: ignore[union-attr]
    assert 0.001 <= knobs.latency_for("identity").sample_s() <= 0.002  # type: ignore[union-attr]
    assert knobs.logs.extra == {"ingestion_delay_minutes": 5}
    assert knobs.activity_log.page_size == 7
    assert knobs.activity_log.ingestion_delay_seconds == 120
    forbidden = knobs.faults[0]
    assert forbidden.try_fire("arm", "/subscriptions/22222222-2222-2222-2222-222222222222/x")
    assert not forbidden.try_fire("arm", "/subscriptions/11111111-1111-1111-1111-111111111111")
    assert knobs.faults[2].api == "logs"


@pytest.mark.parametrize(
    ("knobs", "field"),
    [
        ({"latency": {"arm": {"distribution": "gamma"}}}, "knobs.latency.arm.distribution"),
        ({"latency": {"dns": 3}}, "knobs.latency.dns"),
        ({"latency": {"arm": {"distribution": "uniform", "min_ms": 5, "max_ms": 1}}}, "max_ms"),
        ({"arm_throttle": {"refill_per_second": "fast"}}, "knobs.arm_throttle.refill_per_second"),
        ({"arm_throttle": {"bursts": 3}}, "knobs.arm_throttle.bursts"),
        ({"paging": {"registries_page_size": 0}}, "knobs.paging.registries_page_size"),
        ({"activity_log": {"page_size": 0}}, "knobs.activity_log.page_size"),
        ({"activity_log": {"delay": 1}}, "knobs.activity_log.delay"),
        ({"faults": {"kind": "status"}}, "knobs.faults"),
        ({"faults": [{"kind": "status", "status": 200}]}, "knobs.faults[0].status"),
        ({"faults": [{"kind": "slow"}]}, "knobs.faults[0].delay_s"),
        ({"faults": [{"kind": "status", "path": "("}]}, "knobs.faults[0].path"),
        ({"faults": [{"kind": "status", "count": 1, "probability": 0.5}]}, "probability"),
        ({"faults": [{"kind": "status", "api": "dns"}]}, "knobs.faults[0].api"),
    ],
)
def test_bad_knobs_name_the_field(knobs: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_knobs(knobs, source="s.yaml")
    assert field in str(err.value)


def test_a_fault_can_let_its_first_matching_requests_through() -> None:
    later = parse_fault({"kind": "status", "status": 500, "api": "resourcegraph", "skip": 1})
    assert not later.try_fire("arm", "/x")  # not matching: not counted
    assert [later.try_fire("resourcegraph", "/x") for _ in range(3)] == [False, True, True]
    assert later.to_dict()["fired"] == 2 and "skip" not in later.to_dict()  # all skipped
    with pytest.raises(ScenarioError):
        parse_fault({"kind": "status", "skip": -1})


def test_fault_count_and_probability() -> None:
    counted = parse_fault({"kind": "status", "status": 500, "count": 2, "api": "arm"})
    fired = [counted.try_fire("arm", "/x") for _ in range(3)]
    assert fired == [True, True, False] and counted.exhausted()
    assert not parse_fault({"kind": "status", "api": "arm"}).try_fire("logs", "/v1/x")
    sometimes = parse_fault({"kind": "malformed", "probability": 0.3, "seed": 4})
    hits = sum(sometimes.try_fire("arm", "/x") for _ in range(1000))
    assert 200 < hits < 400


def test_token_bucket_and_quota_window() -> None:
    now = [0.0]
    buckets = TokenBuckets(clock=lambda: now[0])
    assert [buckets.take(("k",), 2, 1.0).allowed for _ in range(3)] == [True, True, False]
    refused = buckets.take(("k",), 2, 1.0)
    assert refused.retry_after_s == pytest.approx(1.0)
    assert buckets.take(("other",), 2, 1.0).allowed
    now[0] = 1.0
    assert buckets.take(("k",), 2, 1.0).remaining == 0
    windows = WindowLimiter(clock=lambda: now[0])
    assert [windows.take("me", 2, 5.0)[0].allowed for _ in range(3)] == [True, True, False]
    now[0] = 6.5
    assert windows.take("me", 2, 5.0)[0].remaining == 1
    assert hhmmss(4.2) == "00:00:05" and hhmmss(3725) == "01:02:05"


def test_test_emulators_start_on_the_wall_clock_unless_told_otherwise() -> None:
    fixed = scenario.load(SMALL).now
    with start_emulator(SMALL) as real:
        assert abs(real.world.now() - datetime.now(UTC)) < timedelta(minutes=1)
    with start_emulator(SMALL, now="scenario") as kept:
        assert kept.world.now() == fixed
    with pytest.raises(ValueError, match="'tomorrow'"):
        start_emulator(SMALL, now="tomorrow")  # type: ignore[arg-type]
