"""The Functions entry point as the host would index and call it: bindings, the timer trigger
and the HTTP API (through the ASGI bridge), against the emulator and Azurite."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from emulator.testing import RunningEmulator

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]


@pytest.fixture
def function_app(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ModuleType, dict[str, Any]]]:
    _, env = local_azure()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AUDITOR_SCHEDULE", "0 */30 * * * *")
    sys.modules.pop("function_app", None)
    module = importlib.import_module("function_app")
    # get_functions() may be called once per app object, as the host does.
    functions = {f.get_function_name(): f for f in module.app.get_functions()}
    yield module, functions
    sys.modules.pop("function_app", None)


class Context:
    """The invocation context the host passes; the ASGI bridge reads only these."""

    invocation_id = "test-invocation"
    function_name = "http_app_func"
    function_directory = "."
    trace_context = None
    retry_context = None


async def call_http(function: Any, path: str) -> func.HttpResponse:
    # The query string travels in the URL, as the host delivers it to the ASGI bridge.
    request = func.HttpRequest("GET", f"http://localhost:7071{path}", body=b"", headers={})
    handler = function.get_user_function()
    return await handler(request, Context())  # type: ignore[no-any-return]


def test_bindings_are_what_the_host_indexes(
    function_app: tuple[ModuleType, dict[str, Any]],
) -> None:
    _, functions = function_app
    assert set(functions) == {"audit_timer", "health", "http_app_func"}

    (timer,) = functions["audit_timer"].get_bindings_dict()["bindings"]
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "0 */30 * * * *"  # from AUDITOR_SCHEDULE
    assert timer["runOnStartup"] is False

    api_trigger = functions["http_app_func"].get_bindings_dict()["bindings"][0]
    assert api_trigger["type"] == "httpTrigger"
    assert api_trigger["authLevel"] == func.AuthLevel.FUNCTION

    health_trigger = functions["health"].get_bindings_dict()["bindings"][0]
    assert health_trigger["route"] == "health"
    assert health_trigger["authLevel"] == func.AuthLevel.ANONYMOUS


def test_timer_runs_an_audit_and_the_api_serves_it(
    function_app: tuple[ModuleType, dict[str, Any]],
) -> None:
    _, functions = function_app
    functions["audit_timer"].get_user_function()(TimerRequest(past_due=False))

    api = functions["http_app_func"]

    async def calls() -> list[func.HttpResponse]:
        # One event loop for every call, as in a worker process.
        return [
            await call_http(api, "/api/compliance"),
            await call_http(api, "/api/registries/acrnosetting01"),
            await call_http(api, "/api/registries/acrdoesnotexist"),
            await call_http(api, "/api/registries?status=sideways"),
            await call_http(functions["health"], "/api/health"),
        ]

    response, one, missing, bad, health = asyncio.run(calls())
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert body["totals"]["compliant"] == 2
    assert body["totals"]["noncompliant"] == 4
    assert body["lastRun"]["trigger"] == "timer"

    assert one.status_code == 200
    assert json.loads(one.get_body())["status"] == "noncompliant"
    assert missing.status_code == 404
    assert bad.status_code == 400
    assert "status" in json.loads(bad.get_body())["detail"]
    assert health.status_code == 200
