"""Local Azure for the product's integration tests: the emulator (ARM, Resource Graph,
managed identity, Log Analytics) on the small scenario plus Azurite, with the environment the
auditor reads pointing at both."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.azurite import Azurite
from emulator.testing import RunningEmulator, sdk_environment, start_emulator

SCENARIOS = Path(__file__).resolve().parents[2] / "emulator" / "scenarios"
SMALL = SCENARIOS / "small.yaml"


@pytest.fixture
def local_azure(
    azurite_server: Azurite, table_prefix: str
) -> Iterator[Callable[..., tuple[RunningEmulator, dict[str, str]]]]:
    """Factory: a private emulator (scenario and knobs of the test's choosing) and the auditor's
    environment for it and Azurite. The SDK environment stays active until the test ends."""
    started: list[tuple[RunningEmulator, Any]] = []

    def start(scenario: Path | str = SMALL, **knobs: Any) -> tuple[RunningEmulator, dict[str, str]]:
        running = start_emulator(scenario, knobs=knobs or None)
        env = running.environ()
        context = sdk_environment(env)
        context.__enter__()
        started.append((running, context))
        auditor_env = {
            **env,
            "AUDITOR_STORAGE": azurite_server.connection_string,
            "AUDITOR_TABLE_PREFIX": table_prefix,
            "AUDITOR_MAX_CONCURRENCY": "8",
        }
        return running, auditor_env

    yield start
    for running, context in reversed(started):
        context.__exit__(None, None, None)
        running.stop()
