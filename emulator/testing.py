"""Test helpers (pytest-agnostic): start an in-process emulator and point the Azure SDKs at it.

with start_emulator("emulator/scenarios/small.yaml") as emu, sdk_environment(emu.environ()):
    cred = DefaultAzureCredential()
    SubscriptionClient(cred, base_url=emu.base_url).subscriptions.list()
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from emulator import scenario as scenario_mod
from emulator.app import RunningEmulator, serve_in_thread
from emulator.knobs import Knobs
from emulator.scenario import Scenario
from emulator.state import World

__all__ = ["RunningEmulator", "merge_knobs", "sdk_environment", "start_emulator"]

# Variables that would make DefaultAzureCredential pick another credential than the emulator's
# managed identity; sdk_environment hides them while it is active.
CONFLICTING_ENV = (
    "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME", "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
    "IDENTITY_SERVER_THUMBPRINT",
)  # fmt: skip


def merge_knobs(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, mappings merged key by key (lists replace)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_knobs(out[key], value)
        else:
            out[key] = value
    return out


def start_emulator(
    scenario: str | Path | Scenario,
    *,
    knobs: Mapping[str, Any] | Knobs | None = None,
    port: int = 0,
    state_dir: str | Path | None = None,
    now: datetime | Literal["real", "scenario"] = "real",
) -> RunningEmulator:
    """An emulator serving `scenario` (a file or a loaded Scenario) in a background thread.

    `knobs` as a mapping is merged over the scenario's own ``knobs:``; a Knobs replaces them.
    `now` (files only) is where the scenario's clock starts: "real" (the default, as for
    ``python -m emulator``) anchors every relative time of the scenario to the wall clock, so a
    client that reads the real time (the auditor does) sees the events where the scenario put
    them on any date; "scenario" keeps the file's fixed `now`, only for a client that runs on
    the emulator's clock; or a given instant.
    Raises ScenarioError for an invalid scenario or knobs."""
    if isinstance(scenario, Scenario):
        sc = scenario
    else:
        sc = scenario_mod.load(scenario, now=_anchor(now))
    if knobs is None or isinstance(knobs, Knobs):
        world = World(sc, knobs)
    else:
        world = World(sc, merge_knobs(sc.knobs, knobs))
    return serve_in_thread(world, port, state_dir=state_dir)


def _anchor(now: datetime | str) -> datetime | None:
    if isinstance(now, datetime):
        return now
    if now == "real":
        return datetime.now(UTC)
    if now == "scenario":
        return None
    raise ValueError(f"now must be 'real', 'scenario' or a datetime, not {now!r}")


@contextmanager
def sdk_environment(
    env: Mapping[str, str], *, hide: tuple[str, ...] = CONFLICTING_ENV
) -> Iterator[None]:
    """Set `env` in os.environ (and hide conflicting credential variables) for the block;
    the previous environment is restored afterwards."""
    keys = set(env) | set(hide)
    saved = {k: os.environ.get(k) for k in keys}
    try:
        for k in hide:
            os.environ.pop(k, None)
        os.environ.update(env)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
