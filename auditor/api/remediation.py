"""Remediation routes: one registry's remediation (a dry run unless `?apply=true`) and the
actions recorded.

`POST /api/registries/{name}/remediate` writes to Azure, so it is not served by the app
holding the read key: in Azure Functions it is its own function at `auth_level=ADMIN` (the
master key), forwarding to an app built with a `RemediationRoute`; the API every function
key reaches is built without one and answers 403. Disabled by the setting it answers 409.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from auditor.api import models
from auditor.azure.inventory import registry_from_id
from auditor.remediation.documents import ActionDocument, PlanDocument
from auditor.remediation.service import RemediationRoute
from auditor.storage import AuditStore
from auditor.storage.actions import MAX_ACTIONS, ActionLog

NAME_PATTERN = r"^[A-Za-z0-9]{5,50}$"  # as the registry routes

# As the reading routes: an invalid parameter is a 400 problem, the store down a 503.
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": models.Problem, "description": "An invalid parameter, named in the body"},
    503: {"model": models.Problem, "description": "The results store is unavailable"},
}
router = APIRouter(prefix="/api", tags=["remediation"], responses=_ERRORS)
Name = Annotated[str, Path(pattern=NAME_PATTERN, description="registry name")]
Limit = Annotated[int, Query(ge=1, le=MAX_ACTIONS, description="actions, newest first")]


class Remediation(BaseModel):
    plan: PlanDocument
    action: ActionDocument | None = Field(description="with `apply=true`, the write")
    errors: list[str] = Field(description="problems met on the way (reads, storing the action)")


class ActionPage(BaseModel):
    items: list[ActionDocument] = Field(description="newest first")


def _problem(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": models.Problem, "description": description}}


def _store(request: Request) -> AuditStore:
    provider: Callable[[], AuditStore] = request.app.state.store_provider
    return provider()


def _registry_id(store: AuditStore, name: str) -> str:
    document = store.reader.get_registry(name)
    if document is None:
        raise HTTPException(404, f"No registry named '{name}' has been audited.")
    return str(document["id"])


@router.post(
    "/registries/{name}/remediate",
    response_model=Remediation,
    responses={
        **_problem(403, "Not with this key: the route needs the admin (master) key"),
        **_problem(404, "No such registry"),
        **_problem(409, "Remediation is switched off (AUDITOR_ENABLE_REMEDIATION)"),
    },
)
def remediate(
    request: Request,
    name: Name,
    apply: Annotated[bool, Query(description="write the setting; default a dry run")] = False,
) -> dict[str, Any]:
    """The diagnostic setting the registry needs, read afresh from Azure (before and after);
    with `apply=true` it is written, the registry re-read and re-judged, and the action
    recorded (its logs are pending until the next audit sees them)."""
    route: RemediationRoute | None = request.app.state.remediation
    if route is None:
        raise HTTPException(403, "Remediation needs the admin key; this key only reads.")
    if not route.enabled:
        raise HTTPException(409, "Remediation is switched off (AUDITOR_ENABLE_REMEDIATION).")
    registry = registry_from_id(_registry_id(_store(request), name))
    outcome, errors = route.run(registry, apply)
    return {**outcome.document(), "errors": errors}


@router.get(
    "/registries/{name}/actions",
    response_model=ActionPage,
    responses=_problem(404, "No such registry"),
)
def registry_actions(request: Request, name: Name, limit: Limit = 20) -> dict[str, Any]:
    """The remediations of one registry (cli, timer, api), newest first."""
    store = _store(request)
    _registry_id(store, name)
    return {"items": ActionLog(store.tables).list(registry=name, limit=limit)}


@router.get("/actions", response_model=ActionPage)
def actions(request: Request, limit: Limit = 20) -> dict[str, Any]:
    """Every remediation, newest first."""
    return {"items": ActionLog(_store(request).tables).list(limit=limit)}
