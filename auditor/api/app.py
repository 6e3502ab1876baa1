"""The HTTP API (FastAPI): compliance summary, registries (with their log evidence per run),
runs, alerts and health, all under /api.

Reads only: every route is one or a few Table Storage reads through `AuditReader`; the summary
is a single point read of the materialised document. Before the first run has finished,
`GET /api/compliance` answers 200 with `lastRun: null` and zero totals rather than 404, so a
dashboard can render the empty state without special-casing an error. Errors are RFC 7807
problems (see `problems`); invalid parameters are 400, never FastAPI's default 422.

`/registries/{name}/logins` and `/activity` page through what each run's log check showed
(stored as each run judged the registry), newest run first; `since`/`until` select runs by
when they observed it. `/alerts` reads the alert state through an `AlertService` when one is
configured; its document names sinks only, and any URL that would still slip into it is
redacted on the way out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from azure.core.exceptions import AzureError
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import TypeAdapter

from auditor import compliance_history as history
from auditor import history_views
from auditor.api import dashboard, docs, models, problems
from auditor.api.remediation import router as remediation_router
from auditor.compliance_history import (
    ComplianceAtDocument,
    PeriodDocument,
    RegistryIntervalsDocument,
)
from auditor.control_summary import ControlsDocument, control_summary
from auditor.exports import (
    EXTENSIONS,
    MEDIA_TYPES,
    ExportDocument,
    ExportFormat,
    of_summary,
    render,
)
from auditor.facts import Status
from auditor.policy import GUID_PATTERN, Policy
from auditor.reasons import describe
from auditor.storage import AuditReader, AuditStore, StorageError
from auditor.storage.tables import MAX_PAGE
from auditor.summary import empty_summary
from auditor.time_bounds import parse_instant, parse_time_bound

if TYPE_CHECKING:
    from auditor.alerts import AlertService
    from auditor.remediation.service import RemediationRoute

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9]{5,50}$"  # registry names: 5-50 alphanumerics
REASON_PATTERN = r"^[A-Za-z_]+(:[A-Za-z0-9_]+)?$"
API_VERSION = "1"
DEFAULT_POLICY = Policy()

_INVALID = "An invalid parameter, named in the body"
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": models.Problem, "description": _INVALID},
    503: {"model": models.Problem, "description": "The results store is unavailable"},
}
# Causes of a 400 no schema can state (a token's validity, a time that must parse), named
# where the parameters are taken, so clients and schema checkers know to expect them.
_FORGED_PAGE = "a `continuation` token this API did not issue"
_BAD_PAGE: dict[int | str, dict[str, Any]] = {
    400: {"model": models.Problem, "description": f"{_INVALID}, such as {_FORGED_PAGE}"}
}
_BAD_WINDOW: dict[int | str, dict[str, Any]] = {
    400: {
        "model": models.Problem,
        "description": (
            f"{_INVALID}, such as {_FORGED_PAGE}, a `since` or `until` that is neither an ISO 8601"
            " time nor a duration back from now, or a `since` after `until`"
        ),
    }
}


_INSTANTS = "an ISO 8601 time or a duration back from now, not in the future and not before 2000"
_BAD_INSTANT: dict[int | str, dict[str, Any]] = {
    400: {
        "model": models.Problem,
        "description": f"{_INVALID}, such as an `at` that is not {_INSTANTS}",
    }
}
_BAD_PERIOD: dict[int | str, dict[str, Any]] = {
    400: {
        "model": models.Problem,
        "description": f"{_INVALID}, such as a `from` or `to` that is not {_INSTANTS}, "
        "or a `from` not before `to`",
    }
}
DEFAULT_PERIOD = timedelta(days=30)


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
            "controls": [],
        }
    return {
        **item,
        "title": info.title,
        "severity": info.severity.value,
        "explanation": info.explanation,
        "remediation": info.remediation,
        "docsUrl": info.docs_url,
        "controls": [control.to_dict() for control in info.controls],
    }


def _problem_media_types(schema: dict[str, Any]) -> dict[str, Any]:
    """The generated OpenAPI, corrected: 400 problem bodies instead of FastAPI's 422."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for code, response in responses.items():
                content = response.get("content", {})
                # A route's own media type (HTML for the report) is not its errors'.
                for media in ("application/json", "text/html"):
                    if code[0] in "45" and media in content:
                        content[problems.MEDIA_TYPE] = content.pop(media)
    schemas = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def _with_export_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`GET /api/export` returns a `Response` (its formats are text); its JSON document's
    schema is added here, from the same class the builder returns."""
    export_schema = TypeAdapter(ExportDocument).json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in export_schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas["ExportDocument"] = export_schema
    return schema


def _store(request: Request) -> AuditReader:
    provider: Callable[[], AuditStore] = request.app.state.store_provider
    try:
        return provider().reader
    except StorageError:
        raise
    except Exception as exc:
        # Misconfiguration surfaces at start-up (Settings); here the store is just unavailable.
        log.exception("the results store could not be opened")
        raise StorageError("opening the store", type(exc).__name__) from exc


def _clock(request: Request) -> Callable[[], datetime]:
    clock: Callable[[], datetime] = request.app.state.now
    return clock


Store = Annotated[AuditReader, Depends(_store)]
# The app's clock itself, not a time: a route reads it when its answer needs it.
Clock = Annotated[Callable[[], datetime], Depends(_clock)]
Continuation = Annotated[
    str | None,
    Query(max_length=4096, description="token from the previous page's `continuation`"),
]
RegistryName = Annotated[str, Path(pattern=NAME_PATTERN, description="registry name")]
_TIME_HELP = "ISO 8601 time, or a duration back from now: 30m, 24h, 7d, 2w"
Since = Annotated[
    str | None,
    Query(max_length=64, description=f"runs finished at or after this; {_TIME_HELP}"),
]
Until = Annotated[
    str | None,
    Query(max_length=64, description=f"runs finished at or before this; {_TIME_HELP}"),
]
EvidenceLimit = Annotated[int, Query(ge=1, le=50, description="runs per page")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": models.Problem, "description": "No such registry"}
}
_WINDOW_RESPONSES = {**_NOT_FOUND, **_BAD_WINDOW}
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _time_bounds(
    since: str | None, until: str | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    bounds: dict[str, datetime | None] = {}
    for name, text in (("since", since), ("until", until)):
        try:
            bounds[name] = parse_time_bound(text, now=now) if text is not None else None
        except ValueError as exc:
            raise problems.InvalidParameter(name, "query", str(exc)) from None
    start, end = bounds["since"], bounds["until"]
    if start is not None and end is not None and start > end:
        raise problems.InvalidParameter("since", "query", "must not be after `until`")
    return start, end


def _instant(name: str, text: str, now: datetime) -> datetime:
    try:
        return parse_instant(text, now=now)
    except ValueError as exc:
        raise problems.InvalidParameter(name, "query", str(exc)) from None


def _period(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """[from, to] of a period: `to` defaults to now, `from` to 30 days before `to`."""
    until = _instant("to", end, now) if end is not None else now
    since = _instant("from", start, now) if start is not None else until - DEFAULT_PERIOD
    if since >= until:
        raise problems.InvalidParameter("from", "query", "must be before `to`")
    return since, until


def _redacted(value: Any) -> Any:
    """Defence in depth for the alerts document: no URL (a webhook's carries its secret)."""
    if isinstance(value, str):
        return _URL.sub("[url redacted]", value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


router = APIRouter(prefix="/api", responses=_ERRORS)


At = Annotated[
    str | None,
    Query(
        max_length=64,
        description=f"the fleet as the stored history shows it at this instant: {_INSTANTS}",
    ),
]
From = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=64,
        description=f"start of the period: {_INSTANTS}; default 30 days before `to`",
    ),
]
To = Annotated[
    str | None,
    Query(alias="to", max_length=64, description=f"end of the period: {_INSTANTS}; default now"),
]


@router.get(
    "/compliance",
    response_model=models.Compliance | ComplianceAtDocument,
    responses=_BAD_INSTANT,
)
def compliance(store: Store, now: Clock, at: At = None) -> dict[str, Any]:
    """The summary of the last finished run, and how old it is. With `at`: the fleet as the
    stored history shows it at that instant (`ComplianceAtDocument`), never re-reading Azure."""
    moment = now()
    if at is not None:
        instant = _instant("at", at, moment)
        return dict(history_views.fleet_at(store, instant))
    document = store.get_summary()
    if document is None:
        return {**empty_summary(generated_at=moment).to_dict(), "dataAgeSeconds": None}
    last_run = document.get("lastRun")
    age = _age_seconds(last_run["finishedAt"], moment) if last_run else None
    return {**document, "dataAgeSeconds": age}


@router.get("/compliance/period", response_model=PeriodDocument, responses=_BAD_PERIOD)
def compliance_period(
    store: Store, now: Clock, start: From = None, end: To = None
) -> dict[str, Any]:
    """The fleet over a period, from the stored history: per registry its time in compliance
    and its intervals, the mean time to fix, the registries never compliant, the runs."""
    moment = now()
    since, until = _period(start, end, moment)
    return dict(history_views.fleet_period(store, since, until, now=moment))


@router.get(
    "/report",
    response_class=HTMLResponse,
    responses={
        **_BAD_PERIOD,
        200: {
            "description": "The printable report of the period: self-contained HTML (no script,"
            " no external asset) with print CSS",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
    },
)
def report(
    request: Request, store: Store, now: Clock, start: From = None, end: To = None
) -> HTMLResponse:
    """What an auditor files for a period: the policy, the scope, the run coverage, the fleet
    at the end of the period, each registry's time in compliance and every noncompliant
    interval."""
    moment = now()
    since, until = _period(start, end, moment)
    policy: Policy = request.app.state.policy
    html = history_views.period_html(
        store, since, until, now=moment, policy=policy, scope=request.app.state.scope
    )
    return HTMLResponse(html)


@router.get("/registries", response_model=models.RegistryPage, responses=_BAD_PAGE)
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
    name_prefix: Annotated[
        str | None,
        Query(
            alias="namePrefix",
            pattern=r"^[A-Za-z0-9]{1,50}$",
            description="names that start with this, in any case",
        ),
    ] = None,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Registries in name order, filtered; `reason` matches one code exactly."""
    items, token = store.list_registries(
        status=status,
        subscription=subscription,
        reason=reason,
        name_prefix=name_prefix,
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
    name: RegistryName,
    history_limit: Annotated[int, Query(alias="historyLimit", ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """A registry's status and reasons, each reason's explanation and fix, and history."""
    document = _known(store, name)
    return {
        **document,
        "findings": [_finding(item) for item in document["reasons"]],
        "history": store.registry_history(name, limit=history_limit),
    }


def _known(store: AuditReader, name: str) -> dict[str, Any]:
    document = store.get_registry(name)
    if document is None:
        raise problems.NotFound(f"No registry named '{name}' has been audited.")
    return document


@router.get(
    "/registries/{name}/intervals",
    response_model=RegistryIntervalsDocument,
    responses={**_NOT_FOUND, **_BAD_PERIOD},
)
def registry_intervals(
    store: Store, now: Clock, name: RegistryName, start: From = None, end: To = None
) -> dict[str, Any]:
    """The registry's states that held in the period, from the stored history: status,
    reason codes, from, to (null while it still holds) and duration."""
    moment = now()
    since, until = _period(start, end, moment)
    known = _known(store, name)
    rows = store.registry_changes(name, since=since, until=until)
    document = history.registry_intervals(known["name"], rows, start=since, end=until, now=moment)
    return dict(document)


@router.get(
    "/registries/{name}/logins", response_model=models.LoginPage, responses=_WINDOW_RESPONSES
)
def registry_logins(
    store: Store,
    now: Clock,
    name: RegistryName,
    since: Since = None,
    until: Until = None,
    limit: EvidenceLimit = 10,
    continuation: Continuation = None,
) -> dict[str, Any]:
    """Logins per run: attempts and failures per identity and caller IP, failure bursts,
    first-seen identities and IPs, admin-user logins, anonymous pulls."""
    start, end = _time_bounds(since, until, now())
    _known(store, name)
    items, token = store.registry_logins(
        name, since=start, until=end, limit=limit, continuation=continuation
    )
    return {"items": items, "continuation": token}


@router.get(
    "/registries/{name}/activity", response_model=models.ActivityPage, responses=_WINDOW_RESPONSES
)
def registry_activity(
    store: Store,
    now: Clock,
    name: RegistryName,
    since: Since = None,
    until: Until = None,
    limit: EvidenceLimit = 10,
    continuation: Continuation = None,
) -> dict[str, Any]:
    """Repository activity per run: counts per operation, identity and repository, every
    delete/untag/purge (who, what, when, from where), activity-log events."""
    start, end = _time_bounds(since, until, now())
    _known(store, name)
    items, token = store.registry_activity(
        name, since=start, until=end, limit=limit, continuation=continuation
    )
    return {"items": items, "continuation": token}


@router.get(
    "/alerts",
    response_model=models.Alerts,
    responses={
        404: {
            "model": models.Problem,
            "description": "Alerting is not configured, or no such registry",
        }
    },
)
def alerts(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500, description="history entries")] = 50,
    registry: Annotated[
        str | None, Query(pattern=NAME_PATTERN, description="only this registry (name)")
    ] = None,
) -> dict[str, Any]:
    """Open alerts, the notice history (newest first) and undelivered notices. Sinks
    appear by name only: no URL or secret is ever returned."""
    alerts_provider: Callable[[], AlertService] | None = request.app.state.alerts_provider
    if alerts_provider is None:
        raise problems.NotFound("Alerting is not configured.")
    registry_id = None
    if registry is not None:
        registry_id = _known(_store(request), registry)["id"]
    try:
        with alerts_provider() as service:
            document = service.document(limit=limit, registry_id=registry_id)
    except AzureError as exc:
        raise StorageError.wrap("reading alerts", exc) from exc
    return dict(_redacted(document))


@router.get("/runs", response_model=models.RunPage, responses=_BAD_PAGE)
def runs(
    store: Store,
    continuation: Continuation = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """Audit runs, newest first; a run still `running` may also be one that crashed."""
    items, token = store.list_runs(limit=limit, continuation=continuation)
    return {"items": items, "continuation": token}


@router.get("/controls", response_model=ControlsDocument)
def controls(
    store: Store,
    limit: Annotated[
        int, Query(ge=0, le=MAX_PAGE, description="registry names listed per control and side")
    ] = 50,
) -> dict[str, Any]:
    """Each mapped control (CIS, Microsoft cloud security benchmark, NIST SP 800-53) with the
    stored registries that fail it (a reason maps to it), pass it (judged, no such reason) or
    were not assessed (unknown, removed); counts cover all, names at most `limit`."""
    return dict(control_summary(store.all_registries(), limit=limit))


@router.get(
    "/export",
    response_class=Response,
    responses={
        200: {
            "description": "The export: SARIF 2.1.0, OCSF Compliance Findings (a JSON array), "
            "CSV (one row per registry) or the project's JSON (`ExportDocument`)",
            "content": {
                **{MEDIA_TYPES[f].split(";")[0]: {} for f in ExportFormat},
                # json (the document) and ocsf (an array of OCSF findings) share it.
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/ExportDocument"},
                            {"type": "array", "items": {"type": "object"}},
                        ]
                    }
                },
            },
        }
    },
)
def export(
    request: Request,
    store: Store,
    fmt: Annotated[ExportFormat, Query(alias="format", description="sarif, ocsf, csv or json")],
) -> Response:
    """The stored results of the last run as a standard export; each says which run and
    which policy (as the run recorded it: `policyFromRun`) it reflects."""
    policy: Policy = request.app.state.policy
    document = of_summary(store.get_summary(), policy, store.all_registries())
    run = document["run"]
    name = f"acr-auditor-{run['id'] if run else 'none'}.{EXTENSIONS[fmt]}"
    return Response(
        render(document, fmt),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/health", response_model=models.Health)
def health(request: Request) -> dict[str, str]:
    """Always 200 while the app runs; `storage` says whether the store answers."""
    try:
        _store(request).ping()
    except StorageError as exc:
        log.warning("health: %s", exc)
        return {"status": "degraded", "storage": "unavailable"}
    return {"status": "ok", "storage": "ok"}


def create_app(
    store_provider: Callable[[], AuditStore],
    *,
    now: Callable[[], datetime] = _utc_now,
    alerts_provider: Callable[[], AlertService] | None = None,
    policy: Policy = DEFAULT_POLICY,
    scope: Sequence[str] = (),
    remediation: RemediationRoute | None = None,
) -> FastAPI:
    """The API app. `store_provider` is called per request (cache it if building a store is
    costly); `now` is the clock for `dataAgeSeconds` and relative `since`/`until`.
    `alerts_provider` (None: alerting is not configured, `/api/alerts` is 404) is called per
    request and the service it returns is closed after it, so it must build a new one, e.g.
    `lambda: AlertService.from_settings(settings, credential=credential)`. `policy` is the
    one the exports and the report state (the settings' policy); `scope` the configured
    subscriptions the report names (empty: all the auditor can see). `remediation` (None: this
    app refuses `POST .../remediate` with 403) is what that route runs
    (`auditor.api.remediation`)."""
    app = FastAPI(
        title="acr-auditor",
        version=API_VERSION,
        description="Compliance of Azure Container Registry diagnostic settings.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # served below from assets in a pinned package, not a CDN
        redoc_url=None,
        # Operation ids a person would write: the route's own name (`registry_logins`).
        generate_unique_id_function=lambda route: route.name,
    )
    problems.install(app)
    docs.install(app)
    dashboard.install(app)
    # What the routes depend on, per app (see `_store`, `_clock` and `alerts`).
    app.state.store_provider = store_provider
    app.state.now = now
    app.state.alerts_provider = alerts_provider
    app.state.policy = policy
    app.state.scope = tuple(scope)
    app.state.remediation = remediation
    app.include_router(router)
    app.include_router(remediation_router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            app.openapi_schema = docs.as_deployed(
                _with_export_schema(
                    _problem_media_types(
                        get_openapi(
                            title=app.title,
                            version=app.version,
                            description=app.description,
                            routes=app.routes,
                        )
                    )
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
