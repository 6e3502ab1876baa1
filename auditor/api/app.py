"""The HTTP API (FastAPI): compliance summary, registries, runs and health, all under /api.

Reads only: every route is one or a few Table Storage reads through `AuditStore`; the summary
is a single point read of the materialised document. Before the first run has finished,
`GET /api/compliance` answers 200 with `lastRun: null` and zero totals rather than 404, so a
dashboard can render the empty state without special-casing an error. Errors are RFC 7807
problems (see `problems`); invalid parameters are 400, never FastAPI's default 422.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request

from auditor.api import models, problems
from auditor.facts import Status
from auditor.policy import GUID_PATTERN
from auditor.reasons import describe
from auditor.storage import AuditStore, StorageError
from auditor.summary import empty_summary

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9]{5,50}$"  # registry names: 5-50 alphanumerics
REASON_PATTERN = r"^[A-Za-z_]+(:[A-Za-z0-9_]+)?$"
API_VERSION = "1"

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": models.Problem, "description": "An invalid parameter, named in the body"},
    503: {"model": models.Problem, "description": "The results store is unavailable"},
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _age_seconds(finished_at: str, now: datetime) -> int:
    finished = datetime.fromisoformat(finished_at)
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0, int((now - finished).total_seconds()))


def _finding(item: dict[str, Any]) -> dict[str, Any]:
    """A stored reason with the catalog's metadata: the catalog is the one home of the words."""
    try:
        info = describe(item["code"])
    except KeyError:
        # A code from an older or newer catalog: show what was stored.
        return {
            **item,
            "title": item["code"],
            "severity": None,
            "explanation": None,
            "remediation": None,
            "docsUrl": None,
        }
    return {
        **item,
        "title": info.title,
        "severity": info.severity.value,
        "explanation": info.explanation,
        "remediation": info.remediation,
        "docsUrl": info.docs_url,
    }


def _problem_media_types(schema: dict[str, Any]) -> dict[str, Any]:
    """The generated OpenAPI, corrected: 400 problem bodies instead of FastAPI's 422."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for code, response in responses.items():
                content = response.get("content", {})
                if code[0] in "45" and "application/json" in content:
                    content[problems.MEDIA_TYPE] = content.pop("application/json")
    schemas = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def _store(request: Request) -> AuditStore:
    provider: Callable[[], AuditStore] = request.app.state.store_provider
    try:
        return provider()
    except StorageError:
        raise
    except Exception as exc:
        # Misconfiguration surfaces at start-up (Settings); here the store is just unavailable.
        log.exception("the results store could not be opened")
        raise StorageError("opening the store", type(exc).__name__) from exc


Store = Annotated[AuditStore, Depends(_store)]
Continuation = Annotated[
    str | None,
    Query(max_length=4096, description="token from the previous page's `continuation`"),
]


def create_app(
    store_provider: Callable[[], AuditStore],
    *,
    now: Callable[[], datetime] = _utc_now,
) -> FastAPI:
    """The API app. `store_provider` is called per request (cache it if building a store is
    costly); `now` is the clock for `dataAgeSeconds`."""
    app = FastAPI(
        title="acr-auditor",
        version=API_VERSION,
        description="Compliance of Azure Container Registry diagnostic settings.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    problems.install(app)

    app.state.store_provider = store_provider
    router = APIRouter(prefix="/api", responses=_ERRORS)

    @router.get("/compliance", response_model=models.Compliance)
    def compliance(store: Store) -> dict[str, Any]:
        """The summary of the last finished run, and how old it is."""
        document = store.get_summary()
        moment = now()
        if document is None:
            return {**empty_summary(generated_at=moment).to_dict(), "dataAgeSeconds": None}
        last_run = document.get("lastRun")
        age = _age_seconds(last_run["finishedAt"], moment) if last_run else None
        return {**document, "dataAgeSeconds": age}

    @router.get("/registries", response_model=models.RegistryPage)
    def registries(
        store: Store,
        continuation: Continuation = None,
        status: Status | None = None,
        subscription: Annotated[
            str | None, Query(pattern=f"^{GUID_PATTERN}$", description="subscription id")
        ] = None,
        reason: Annotated[
            str | None,
            Query(
                pattern=REASON_PATTERN,
                max_length=200,
                description="a reason code, e.g. category_missing:ContainerRegistryLoginEvents",
            ),
        ] = None,
        page_size: Annotated[int, Query(alias="pageSize", ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Registries in name order, filtered; `reason` matches one code exactly."""
        items, token = store.list_registries(
            status=status,
            subscription=subscription,
            reason=reason,
            page_size=page_size,
            continuation=continuation,
        )
        return {"items": items, "continuation": token}

    @router.get(
        "/registries/{name}",
        response_model=models.RegistryDetail,
        responses={404: {"model": models.Problem, "description": "No such registry"}},
    )
    def registry(
        store: Store,
        name: Annotated[str, Path(pattern=NAME_PATTERN, description="registry name")],
        history_limit: Annotated[int, Query(alias="historyLimit", ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        """A registry's status and reasons, each reason's explanation and fix, and history."""
        document = store.get_registry(name)
        if document is None:
            raise problems.NotFound(f"No registry named '{name}' has been audited.")
        return {
            **document,
            "findings": [_finding(item) for item in document["reasons"]],
            "history": store.registry_history(name, limit=history_limit),
        }

    @router.get("/runs", response_model=models.RunPage)
    def runs(
        store: Store,
        continuation: Continuation = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        """Audit runs, newest first; a run still `running` may also be one that crashed."""
        items, token = store.list_runs(limit=limit, continuation=continuation)
        return {"items": items, "continuation": token}

    @router.get("/health", response_model=models.Health)
    def health(request: Request) -> dict[str, str]:
        """Always 200 while the app runs; `storage` says whether the store answers."""
        try:
            _store(request).ping()
        except StorageError as exc:
            log.warning("health: %s", exc)
            return {"status": "degraded", "storage": "unavailable"}
        return {"status": "ok", "storage": "ok"}

    app.include_router(router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            app.openapi_schema = _problem_media_types(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
