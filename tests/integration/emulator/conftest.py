"""The emulator on the small scenario, shared by a test module, with the Azure SDK environment
(managed identity endpoint, CA) pointing at it. These tests look at the emulator itself, on its
own clock: the scenario's fixed `now` keeps its generated rows the same on every date (nothing
here compares them with the wall clock; tokens are issued and checked on the wall clock).
Knobs, faults and throttle state are reset after every test; tests that change the estate use
`fresh_emulator` instead."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.identity import DefaultAzureCredential

from emulator.testing import RunningEmulator, sdk_environment, start_emulator

SMALL = Path(__file__).resolve().parents[3] / "emulator" / "scenarios" / "small.yaml"


@pytest.fixture(scope="module")
def emu() -> Iterator[RunningEmulator]:
    with start_emulator(SMALL, now="scenario") as running, sdk_environment(running.environ()):
        yield running


@pytest.fixture(autouse=True)
def _reset_realism(emu: RunningEmulator) -> Iterator[None]:
    yield
    emu.world.knobs = emu.world.scenario.knobs
    emu.world.arm_buckets.reset()
    emu.world.graph_windows.reset()


@pytest.fixture(scope="module")
def credential(emu: RunningEmulator) -> DefaultAzureCredential:
    return DefaultAzureCredential()


@pytest.fixture
def fresh_emulator() -> Iterator[Callable[..., RunningEmulator]]:
    """Factory for a private emulator (its SDK environment active until the test ends)."""
    started: list[tuple[RunningEmulator, Any]] = []

    def start(**knobs: Any) -> RunningEmulator:
        running = start_emulator(SMALL, knobs=knobs or None, now="scenario")
        env = sdk_environment(running.environ())
        env.__enter__()
        started.append((running, env))
        return running

    yield start
    for running, env in reversed(started):
        env.__exit__(None, None, None)
        running.stop()
