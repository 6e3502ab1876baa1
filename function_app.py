"""Azure Functions entry point: triggers and routes only; all behaviour lives in `auditor/`.

Settings are validated at start-up, so a bad app setting stops the host with a message naming
it instead of failing later inside a run.
"""

from __future__ import annotations

import functools
import logging
import os

import azure.functions as func
from auditor.api import create_app
from auditor.storage import AuditStore

from auditor.facts import RunStatus
from auditor.runtime import audit_once, build_store
from auditor.settings import Settings

settings = Settings.from_env(os.environ)


@functools.cache
def _store() -> AuditStore:
    # One Table client per worker process, created on first use (not at import).
    return build_store(settings)


api = create_app(_store)
app = func.AsgiFunctionApp(app=api, http_auth_level=func.AuthLevel.FUNCTION)


@app.timer_trigger(schedule=settings.schedule, arg_name="timer", run_on_startup=False)
def audit_timer(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logging.warning("audit timer is past due; running now")
    run = audit_once(settings, trigger="timer")
    logging.info(
        "audit %s finished: %s, %d registries, %d errors",
        run.run_id,
        run.status.value,
        len(run.verdicts),
        len(run.errors),
    )
    if run.status is RunStatus.FAILED:
        # Raising marks the invocation failed in the host and Application Insights.
        raise RuntimeError(f"audit {run.run_id} failed: {'; '.join(run.errors)[:500]}")


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    # Same handler as the API's /api/health; this route only exists to lift the key requirement.
    return await func.AsgiMiddleware(api).handle_async(req, context)
