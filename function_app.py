"""Azure Functions entry point: triggers and routes only; all behaviour lives in `auditor/`.

Settings are validated at start-up, so a bad app setting stops the host with a message naming
it instead of failing later inside a run.
"""

from __future__ import annotations

import functools
import logging
import os

import azure.functions as func

from auditor import telemetry
from auditor.alerts import registry_from_event, setting_change_from_event
from auditor.allocator import tune_malloc
from auditor.api import create_app
from auditor.gc_tuning import tune_gc
from auditor.run_record import RunStatus
from auditor.runtime import (
    alerts_provider,
    audit_registry_once,
    build_store,
    remediation_route,
    timer_audit,
)
from auditor.settings import Settings
from auditor.storage import AuditStore

tune_malloc(os.environ)  # before the runs start their threads
tune_gc()
telemetry.configure()
settings = Settings.from_env(os.environ)


@functools.cache
def _store() -> AuditStore:
    # One Table client per worker process, created on first use (not at import).
    return build_store(settings)


api = create_app(
    _store,
    alerts_provider=alerts_provider(settings),
    policy=settings.policy,
    scope=settings.audit.subscriptions,
)
app = func.AsgiFunctionApp(app=api, http_auth_level=func.AuthLevel.FUNCTION)
# The same API with the one route that writes to Azure, reached only through `remediate`
# below (the master key): `api` refuses it with 403 whatever key it is given.
admin_api = create_app(
    _store,
    alerts_provider=alerts_provider(settings),
    policy=settings.policy,
    remediation=remediation_route(settings, _store),
)


@app.timer_trigger(schedule=settings.audit.schedule, arg_name="timer", run_on_startup=False)
def audit_timer(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logging.warning("audit timer is past due; running now")
    run = timer_audit(settings, _store())
    logging.info(
        "audit %s finished: %s, %d registries, %d errors",
        run.run_id,
        run.status.value,
        len(run.verdicts),
        len(run.errors),
    )
    if run.status is RunStatus.FAILED or run.storage_error is not None:
        # Raising marks the invocation failed in the host and Application Insights.
        raise RuntimeError(f"audit {run.run_id} failed: {'; '.join(run.errors)[:500]}")


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    # Same handler as the API's /api/health; this route only exists to lift the key requirement.
    return await func.AsgiMiddleware(api).handle_async(req, context)


@app.route(route="registries/{name}/remediate", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def remediate(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    # Writes a diagnostic setting (with ?apply=true): a stronger key than the reading API's.
    return await func.AsgiMiddleware(admin_api).handle_async(req, context)


@app.event_grid_trigger(arg_name="event")
def diagnostic_setting_changed(event: func.EventGridEvent) -> None:
    """Subscription system topic: a diagnostic setting on a registry was written or deleted.
    Re-audit that one registry at once and alert, instead of waiting for the timer."""
    raw = {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "data": event.get_json(),
    }
    registry_id = registry_from_event(raw)
    if registry_id is None:
        logging.info("event %s is not a registry diagnostic setting change; ignored", event.id)
        return
    change = setting_change_from_event(raw)
    run = audit_registry_once(
        settings,
        registry_id,
        trigger="event",
        setting_changes=[change] if change is not None else [],
    )
    verdict = run.verdicts[0]
    logging.info(
        "event %s: %s is %s (%s)",
        event.id,
        verdict.registry.name,
        verdict.status.value,
        ", ".join(r.code for r in verdict.reasons) or "no findings",
    )
