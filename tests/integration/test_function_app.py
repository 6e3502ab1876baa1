"""The Functions entry point as the host would index and call it: bindings, the timer trigger
and the HTTP API (through the ASGI bridge), against the emulator and Azurite."""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from auditor.evidence.model import LogEvidence
from auditor.facts import Registry, Status, Verdict
from auditor.run_record import AuditRun, RunStatus
from auditor.storage import StorageError
from emulator.testing import RunningEmulator

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]
# The emulator behind each imported app, by its ARM endpoint.
WORLDS: dict[str, Any] = {}


@pytest.fixture
def function_app(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ModuleType, dict[str, Any]]]:
    emu, env = local_azure()
    WORLDS[emu.base_url] = emu.world
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AUDITOR_SCHEDULE", "0 */30 * * * *")
    sys.modules.pop("function_app", None)
    # The previous test's app shuts down here, with no event loop running (its __del__ runs
    # one): left to chance, it would go in a run's thread that has one, and warn.
    gc.collect()
    module = importlib.import_module("function_app")
    # get_functions() may be called once per app object, as the host does.
    functions = {f.get_function_name(): f for f in module.app.get_functions()}
    yield module, functions
    sys.modules.pop("function_app", None)


def test_importing_the_app_tunes_the_collector(
    function_app: tuple[ModuleType, dict[str, Any]],
) -> None:
    from auditor.gc_tuning import THRESHOLDS

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    sys.modules.pop("function_app", None)
    try:
        importlib.import_module("function_app")
        assert gc.get_threshold() == THRESHOLDS
    finally:
        sys.modules.pop("function_app", None)
        gc.set_threshold(*before)


class Context:
    """The invocation context the host passes; the ASGI bridge reads only these."""

    invocation_id = "test-invocation"
    function_name = "http_app_func"
    function_directory = "."
    trace_context = None
    retry_context = None


async def call_http(function: Any, path: str, method: str = "GET") -> func.HttpResponse:
    # The query string travels in the URL, as the host delivers it to the ASGI bridge.
    request = func.HttpRequest(method, f"http://localhost:7071{path}", body=b"", headers={})
    handler = function.get_user_function()
    return await handler(request, Context())  # type: ignore[no-any-return]


def test_bindings_are_what_the_host_indexes(
    function_app: tuple[ModuleType, dict[str, Any]],
) -> None:
    _, functions = function_app
    assert set(functions) == {
        "audit_timer",
        "health",
        "http_app_func",
        "diagnostic_setting_changed",
        "remediate",
    }

    (timer,) = functions["audit_timer"].get_bindings_dict()["bindings"]
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "0 */30 * * * *"  # from AUDITOR_SCHEDULE
    assert timer["runOnStartup"] is False

    api_trigger = functions["http_app_func"].get_bindings_dict()["bindings"][0]
    assert api_trigger["type"] == "httpTrigger"
    assert api_trigger["authLevel"] == func.AuthLevel.FUNCTION

    (event_trigger,) = functions["diagnostic_setting_changed"].get_bindings_dict()["bindings"]
    assert event_trigger["type"] == "eventGridTrigger"

    health_trigger = functions["health"].get_bindings_dict()["bindings"][0]
    assert health_trigger["route"] == "health"
    assert health_trigger["authLevel"] == func.AuthLevel.ANONYMOUS

    # The one route that writes to Azure takes the master key, not the API's function keys.
    remediate_trigger = functions["remediate"].get_bindings_dict()["bindings"][0]
    assert remediate_trigger["route"] == "registries/{name}/remediate"
    assert [str(m) for m in remediate_trigger["methods"]] == ["POST"]
    assert remediate_trigger["authLevel"] == func.AuthLevel.ADMIN


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
            await call_http(api, "/api/ui"),
        ]

    response, one, missing, bad, health, dashboard = asyncio.run(calls())
    # The dashboard, one self-contained page behind the same key as the API.
    assert dashboard.status_code == 200
    assert dashboard.mimetype.startswith("text/html")
    assert b'<script type="module">' in dashboard.get_body()
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


EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "reference" / "examples"


def official_event(kind: str, subject: str) -> func.EventGridEvent:
    """Microsoft's documented event, pointed at one of the emulator's registries."""
    (raw,) = json.loads((EXAMPLES / f"eventgrid-{kind}.json").read_text())
    data = dict(raw["data"])
    data["resourceUri"] = subject
    data["operationName"] = "Microsoft.Insights/diagnosticSettings/delete"
    return func.EventGridEvent(
        id=raw["id"],
        data=data,
        topic="/subscriptions/11111111-1111-1111-1111-111111111111",
        subject=subject,
        event_type=raw["eventType"],
        event_time=datetime.fromisoformat(raw["eventTime"].replace("Z", "+00:00")[:26] + "+00:00"),
        data_version=raw["dataVersion"],
    )


def test_event_grid_setting_deleted_reaudits_and_alerts_in_seconds(
    function_app: tuple[ModuleType, dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    module, functions = function_app
    functions["audit_timer"].get_user_function()(TimerRequest(past_due=False))
    store = module._store()
    summary_before = store.get_summary()

    registry_id = (
        "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-prod"
        "/providers/Microsoft.ContainerRegistry/registries/acrcompliant01"
    )
    emulator_world = _world_of(module)
    assert emulator_world.delete_setting(registry_id, "to-law", caller="mallory@contoso.com")

    subject = f"{registry_id}/providers/Microsoft.Insights/diagnosticSettings/to-law"
    event = official_event("ResourceDeleteSuccess", subject)
    caplog.set_level("INFO")
    before = len(emulator_world.requests())
    functions["diagnostic_setting_changed"].get_user_function()(event)
    # Seconds, not a sweep: the re-audit reads this registry alone (timings are bench/'s).
    arm = [e for e in emulator_world.requests()[before:] if e.api in ("arm", "resourcegraph")]
    assert arm and all("/registries/acrcompliant01" in e.path.lower() for e in arm)
    assert sum(e.path.lower().endswith("/diagnosticsettings") for e in arm) == 1

    stored = store.get_registry("acrcompliant01")
    assert stored is not None
    assert stored["status"] == "noncompliant"
    assert [r["code"] for r in stored["reasons"]] == ["no_diagnostic_setting"]
    alerts = [
        json.loads(r.getMessage().split(" ", 1)[1])
        for r in caplog.records
        if r.getMessage().startswith("ACR_AUDITOR_ALERT")
    ]
    mine = [a for a in alerts if a["registry"]["name"] == "acrcompliant01"]
    assert [a["kind"] for a in mine] == ["opened"]
    # One registry cannot speak for the fleet: the summary stays the timer run's.
    assert store.get_summary() == summary_before


def test_event_grid_ignores_other_resources(
    function_app: tuple[ModuleType, dict[str, Any]],
) -> None:
    module, functions = function_app
    before = len(_world_of(module).requests())
    subject = (
        "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg"
        "/providers/Microsoft.Storage/storageAccounts/stlogs01"
    )
    functions["diagnostic_setting_changed"].get_user_function()(
        official_event("ResourceWriteSuccess", subject)
    )
    assert len(_world_of(module).requests()) == before  # nothing was re-audited


def _world_of(module: ModuleType) -> Any:
    return WORLDS[module.settings.arm.endpoint]


def _store_an_expired_run(store: Any, age: timedelta) -> Registry:
    """A run, its registry's history and evidence, and an alert notice, `age` old (anchored
    to the wall clock) for a registry of a subscription the timer does not audit."""
    from auditor.alerts.model import Alert, AlertKind, Change, Topic
    from auditor.alerts.state import AlertStateStore

    finished = datetime.now(UTC) - age
    registry = Registry(
        id="/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg"
        "/providers/Microsoft.ContainerRegistry/registries/acrexpired01",
        name="acrexpired01",
        subscription_id="00000000-0000-0000-0000-00000000000a",
        resource_group="rg",
    )
    run = AuditRun(
        run_id="expired",
        started_at=finished - timedelta(minutes=2),
        finished_at=finished,
        status=RunStatus.SUCCEEDED,
        verdicts=(Verdict(registry, Status.COMPLIANT),),
        trigger="timer",
        evidence={registry.key: LogEvidence(registry.key, finished - timedelta(hours=1), finished)},
    )
    store.start_run(run.run_id, run.started_at, run.trigger)
    store.finish_run(run, update_summary=False)
    AlertStateStore(store.tables.service, prefix=store.tables.prefix).append_history(
        Alert(
            id="expired-notice",
            incident_id="expired-incident",
            key="compliance:acrexpired01",
            kind=AlertKind.OPENED,
            topic=Topic.COMPLIANCE,
            change=Change.NEW_REGISTRY,
            registry=registry,
            status="noncompliant",
            reasons=(),
            detected_at=finished,
            opened_at=finished,
        ),
        ["log"],
    )
    return registry


def test_the_timer_prunes_expired_rows_after_its_run(
    function_app: tuple[ModuleType, dict[str, Any]],
) -> None:
    module, functions = function_app
    store = module._store()
    expired = _store_an_expired_run(store, timedelta(days=401))
    assert store.registry_history(expired.name) != []

    functions["audit_timer"].get_user_function()(TimerRequest(past_due=False))

    runs, _ = store.list_runs()
    assert [r["trigger"] for r in runs] == ["timer"]  # the timer's own run, not the expired one
    assert store.registry_history(expired.name) == []
    assert store.registry_logins(expired.name) == ([], None)
    alert_history = module.alerts_provider(module.settings)().states.history()
    assert "expired-notice" not in {a["id"] for a in alert_history}
    # What the timer's run stored stays, and so does the registry's current row.
    assert store.registry_history("acrnosetting01") != []
    assert store.get_registry(expired.name) is not None


def test_a_pruning_failure_does_not_fail_the_timer(
    function_app: tuple[ModuleType, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    module, functions = function_app
    store = module._store()
    expired = _store_an_expired_run(store, timedelta(days=401))

    def storage_down(**_: Any) -> None:
        raise StorageError("pruning evidence", "the service could not be reached")

    monkeypatch.setattr(store, "prune", storage_down)
    caplog.set_level("INFO")
    functions["audit_timer"].get_user_function()(TimerRequest(past_due=False))

    # The audit was stored, and nothing was pruned.
    assert [r["id"] for r in store.list_runs()[0]][1:] == ["expired"]
    assert store.registry_history(expired.name) != []
    assert any(r.levelname == "WARNING" and "retention" in r.getMessage() for r in caplog.records)


def test_remediation_is_refused_by_the_api_and_off_behind_the_admin_key(
    function_app: tuple[ModuleType, dict[str, Any]],
) -> None:
    _, functions = function_app
    path = "/api/registries/acrnosetting01/remediate?apply=true"

    async def calls() -> list[func.HttpResponse]:
        return [
            await call_http(functions["http_app_func"], path, "POST"),
            await call_http(functions["remediate"], path, "POST"),
        ]

    through_api, through_admin = asyncio.run(calls())
    assert through_api.status_code == 403  # a function key never reaches a write
    assert through_admin.status_code == 409  # AUDITOR_ENABLE_REMEDIATION is off
