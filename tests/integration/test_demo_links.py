"""Every link the demo prints answers on the demo fleet, after the demo's own audit."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from auditor.api import create_app
from auditor.runtime import alerts_provider, audit_once, build_store
from auditor.settings import Settings
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]
DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_link_the_demo_prints_answers(local_azure: LocalAzure) -> None:
    demo = _demo()
    _, env = local_azure(demo.DEMO_SCENARIO)
    settings = Settings.from_env(env)
    audit_once(settings, trigger="demo")
    store = build_store(settings)
    client = TestClient(create_app(lambda: store, alerts_provider=alerts_provider(settings)))
    answers = {path: client.get("/api" + path).status_code for path in demo.EXAMPLE_PATHS}
    assert answers == dict.fromkeys(demo.EXAMPLE_PATHS, 200)
