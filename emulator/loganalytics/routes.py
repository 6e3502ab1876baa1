"""The Log Analytics query API (azure-facts §4), as `azure.monitor.query.LogsQueryClient`
calls it:

- `POST|GET /v1/workspaces/{customerId}/query`
- `POST|GET /v1/{resourceId}/query` (resource-centric; the SDK sends `/v1//subscriptions/...`)
- `POST /v1/$batch`

Body `{"query", "timespan"?, "workspaces"?}` (GET: query parameters). Each query is checked
by Microsoft's Kusto parser first (errors answer 400 `BadArgumentError` with the Kusto
diagnostic), then run by duckdb-kql with `now()` = the emulated clock. Per-caller limits,
the `partial` fault and result truncation follow the service. The core middleware applies
latency, the other faults and the request log.

Knobs (`knobs.logs`): concurrent_queries, queries_per_window, window_seconds, max_rows, and
the extra keys queue_size (200), validate (true), horizon_hours (24),
ingestion_delay_seconds (0), first_data_delay_minutes (0).
"""

from __future__ import annotations

import re
import threading
import uuid
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from emulator.identity import LOGS_AUDIENCE, require_token
from emulator.loganalytics.kusto_parser import (
    Diagnostic,
    KustoValidator,
    KustoValidatorError,
    get_validator,
)
from emulator.loganalytics.limits import CallerLimits
from emulator.loganalytics.store import LogStore, QueryError, QueryResult, Scope
from emulator.throttle import retry_after_header
from emulator.web import ApiError, json_response, read_json

if TYPE_CHECKING:
    from emulator.state import World

DEFAULT_QUEUE_SIZE = 200
MAX_QUERY_CHARS = 100_000
BAD_ARGUMENT = "The request had some invalid properties"


@dataclass
class QueryRequest:
    query: str
    timespan: str | None
    workspaces: list[str]
    prefer: str


class LogAnalyticsService:
    """Per-World state of the query API: the data store, caller limits, the validator."""

    def __init__(self, world: World, validator: KustoValidator | None = None) -> None:
        self.world = world
        self.store = LogStore(world)
        self.limits = CallerLimits()
        self._validator = validator

    @property
    def validator(self) -> KustoValidator:
        if self._validator is None:
            self._validator = get_validator()
        return self._validator

    def _extra(self, key: str, default: Any) -> Any:
        return self.world.knobs.logs.extra.get(key, default)

    # ------------------------------------------------------------------ scopes

    def workspace_scope(self, customer_id: str, additional: list[str]) -> Scope:
        ws = self.world.workspace_by_customer_id(customer_id)
        if ws is None:
            raise QueryError(
                404,
                "WorkspaceNotFoundError",
                f"The workspace {customer_id} could not be found.",
                inner={
                    "code": "WorkspaceNotFoundError",
                    "message": "The workspace could not be found",
                },
            )
        ids = [ws.customer_id] + [self._resolve_workspace(w) for w in additional]
        if len(ids) > 100:
            raise _bad_argument("TooManyWorkspaces", "A query may span at most 100 workspaces.")
        return self.store.workspace_scope(ids)

    def resource_scope(self, resource_id: str, additional: list[str]) -> Scope:
        scope = self.store.resource_scope(resource_id)
        if scope is None:
            raise QueryError(
                404,
                "ResourceNotFoundError",
                f"The resource '{resource_id[:300]}' could not be found.",
            )
        extra = tuple(self._resolve_workspace(w).lower() for w in additional)
        return Scope(tuple(dict.fromkeys(scope.workspaces + extra)), scope.prefix)

    def _resolve_workspace(self, ref: str) -> str:
        """A `workspaces` entry: customer id, workspace ARM id or workspace name."""
        ws = self.world.workspace_by_customer_id(ref) or self.world.workspace_by_id(ref)
        if ws is None:
            ws = next((w for w in self.world.workspaces() if w.name.lower() == ref.lower()), None)
        if ws is None:
            raise _bad_argument("WorkspaceNotFoundError", f"Failed to resolve workspace '{ref}'.")
        return ws.customer_id

    # ------------------------------------------------------------------ execution

    async def execute(self, caller: str, scope: Scope, req: QueryRequest, path: str) -> Response:
        status, body, headers = await self.run(caller, scope, req, path)
        return json_response(body, status, headers)

    async def run(
        self, caller: str, scope: Scope, req: QueryRequest, path: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        limits = self.world.knobs.logs
        decision = self.limits.admit(caller, limits.queries_per_window, limits.window_seconds)
        if not decision.allowed:
            wait = retry_after_header(decision.retry_after_s)
            return _throttled(
                f"Rate limit exceeded: more than {limits.queries_per_window} queries in "
                f"{limits.window_seconds:g} seconds. Please retry after {wait} seconds.",
                wait,
            )
        queue_size = int(self._extra("queue_size", DEFAULT_QUEUE_SIZE))
        if not await self.limits.acquire(caller, limits.concurrent_queries, queue_size):
            return _throttled(
                f"Too many concurrent queries: {limits.concurrent_queries} are running and "
                f"{queue_size} are queued. Please retry after 1 seconds.",
                "1",
            )
        try:
            result = await run_in_threadpool(self._query, scope, req)
        except QueryError as exc:
            return exc.status, _error_body(exc), _ids()
        finally:
            self.limits.release(caller)
        body: dict[str, Any] = {"tables": [result.table()]}
        headers = _ids()
        if "include-statistics=true" in _parse_prefer(req.prefer):
            headers["Preference-Applied"] = "include-statistics=true"
            body["statistics"] = {
                "query": {
                    "executionTime": result.stats.get("executionTime", 0.0),
                    "resourceUsage": {"cpu": {"totalCpu": "00:00:00"}},
                    "datasetStatistics": [{"tableRowCount": len(result.rows), "tableSize": 0}],
                }
            }
        if result.truncated:
            body["error"] = _partial(
                "E_QUERY_RESULT_SET_TOO_LARGE",
                f"Query result set has exceeded the internal record count limit "
                f"({limits.max_rows} records). The result was truncated.",
            )
        elif (fault := self.world.take_fault("logs", path, ("partial",))) is not None:
            body["error"] = _partial(
                fault.code or "E_QUERY_PARTIAL",
                fault.message or "Part of the query's data could not be reached (injected).",
            )
        return 200, body, headers

    def _query(self, scope: Scope, req: QueryRequest) -> QueryResult:
        if len(req.query) > MAX_QUERY_CHARS:
            raise _bad_argument("QueryTooLong", f"The query exceeds {MAX_QUERY_CHARS} characters.")
        if self._extra("validate", True) is not False:
            try:
                errors = self.validator.validate(req.query)
            except KustoValidatorError as exc:
                raise QueryError(500, "InternalServerError", str(exc)) from None
            if errors:
                raise kusto_error(errors, req.query)
        start, end = parse_timespan(req.timespan, self.world.now())
        return self.store.query(
            scope, req.query, start=start, end=end, max_rows=self.world.knobs.logs.max_rows
        )


# --------------------------------------------------------------------------- requests


async def _read_request(request: Request, world: World) -> QueryRequest:
    prefer = request.headers.get("prefer", "")
    if request.method == "GET":
        q = request.query_params
        workspaces = [w for w in (q.get("workspaces") or "").split(",") if w.strip()]
        return _validated(q.get("query"), q.get("timespan"), workspaces, prefer)
    body = await read_json(request, world.knobs.max_body_bytes, shape="logs")
    if not isinstance(body, dict):
        raise _bad_argument("InvalidBody", "The request body must be a JSON object.")
    return _validated(body.get("query"), body.get("timespan"), body.get("workspaces"), prefer)


def _validated(query: Any, timespan: Any, workspaces: Any, prefer: str) -> QueryRequest:
    if not isinstance(query, str) or not query.strip():
        raise _bad_argument("QueryMissing", "The 'query' property is required.")
    if timespan is not None and not isinstance(timespan, str):
        raise _bad_argument("InvalidTimespan", "'timespan' must be an ISO 8601 string.")
    if workspaces is None:
        workspaces = []
    if not isinstance(workspaces, list) or not all(isinstance(w, str) for w in workspaces):
        raise _bad_argument("InvalidWorkspaces", "'workspaces' must be a list of strings.")
    return QueryRequest(query, timespan or None, [w.strip() for w in workspaces], prefer)


def _parse_prefer(value: str) -> set[str]:
    return {p.strip().lower().replace(" ", "") for p in value.split(",") if p.strip()}


_DURATION = re.compile(
    r"^(-)?P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


def _duration(text: str) -> timedelta | None:
    m = _DURATION.match(text.strip())
    if not m or text.strip().upper() in ("P", "PT") or m.group(1):
        return None
    g = {k: float(v) for k, v in m.groupdict().items() if v}
    return timedelta(
        weeks=g.get("w", 0),
        days=g.get("d", 0),
        hours=g.get("h", 0),
        minutes=g.get("m", 0),
        seconds=g.get("s", 0),
    )


def _instant(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_timespan(text: str | None, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(start, end) of an ISO 8601 interval: `PT1H` (ending now), `start/end`,
    `start/duration` or `duration/end`. None for no timespan; 400 when unreadable."""
    if text is None or not text.strip():
        return None, None
    parts = text.split("/")
    if len(parts) == 1:
        d = _duration(parts[0])
        if d is not None:
            return now - d, now
    elif len(parts) == 2:
        a, b = parts
        start, end = _instant(a), _instant(b)
        if start is not None and end is not None:
            return start, end
        if start is not None and (d := _duration(b)) is not None:
            return start, start + d
        if end is not None and (d := _duration(a)) is not None:
            return end - d, end
    raise _bad_argument(
        "InvalidTimespan",
        f"The timespan '{text[:100]}' is not a valid ISO 8601 duration or interval.",
    )


# --------------------------------------------------------------------------- errors


def _ids() -> dict[str, str]:
    rid = str(uuid.uuid4())
    return {"x-ms-request-id": rid, "x-ms-correlation-request-id": rid}


def _bad_argument(code: str, message: str) -> QueryError:
    return QueryError(
        400,
        "BadArgumentError",
        BAD_ARGUMENT,
        details=[{"code": code, "message": message}],
        inner={"code": code, "message": message},
    )


def kusto_error(errors: list[Diagnostic], query: str) -> QueryError:
    """The service's 400 for a query Kusto rejects: SyntaxError when the parser alone finds
    a problem, else SemanticError; the deepest innererror carries the first diagnostic."""
    first = errors[0]
    kind = "SyntaxError" if any(d.syntax for d in errors) else "SemanticError"
    details = [
        {
            "code": d.kind,
            "message": d.describe(),
            "target": d.code,
            "line": d.line,
            "pos": d.column,
            "token": query[d.start : d.start + d.length],
        }
        for d in errors
    ]
    summary = (
        "A recognition error occurred in the query."
        if kind == "SyntaxError"
        else "A semantic error occurred."
    )
    inner = {
        "code": kind,
        "message": summary,
        "innererror": {
            "code": first.code,
            "message": first.describe(),
            "line": first.line,
            "pos": first.column,
            "token": query[first.start : first.start + first.length],
        },
    }
    return QueryError(400, "BadArgumentError", BAD_ARGUMENT, details=details, inner=inner)


def _error_body(exc: QueryError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details:
        error["details"] = exc.details
    error["correlationId"] = str(uuid.uuid4())
    if exc.inner:
        error["innererror"] = exc.inner
    return {"error": error}


def _partial(code: str, message: str) -> dict[str, Any]:
    return {
        "code": "PartialError",
        "message": "There were some errors when processing your query.",
        "details": [
            {
                "code": "EngineError",
                "message": message,
                "innererror": {"code": code, "message": message},
            }
        ],
    }


def _throttled(message: str, retry_after: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    exc = QueryError(
        429, "ThrottledError", message, inner={"code": "ThrottledError", "message": message}
    )
    return 429, _error_body(exc), {**_ids(), "Retry-After": retry_after}


# --------------------------------------------------------------------------- routes

_services: weakref.WeakKeyDictionary[Any, LogAnalyticsService] = weakref.WeakKeyDictionary()


def service_for(world: World) -> LogAnalyticsService:
    """The query service of a World (one per World, created with its routes)."""
    svc = _services.get(world)
    if svc is None:
        svc = _services[world] = LogAnalyticsService(world)
    return svc


def _warm_validator() -> None:
    try:
        get_validator().start()
    except KustoValidatorError:
        pass  # reported by the first query that needs it


def _error_response(exc: ApiError | QueryError) -> Response:
    if isinstance(exc, ApiError):
        return exc.response()
    return json_response(_error_body(exc), exc.status, _ids())


async def _batch_response(svc: LogAnalyticsService, caller: str, item: Any) -> dict[str, Any]:
    """One request of a batch, answered on its own: a bad request fails alone."""
    rid = str(item.get("id", "")) if isinstance(item, dict) else ""
    try:
        if not isinstance(item, dict) or not isinstance(item.get("body"), dict):
            raise _bad_argument("InvalidBatch", "Each request needs an id and a body.")
        b = item["body"]
        headers = item.get("headers") or {}
        prefer = str(headers.get("Prefer") or headers.get("prefer") or "")
        req = _validated(b.get("query"), b.get("timespan"), b.get("workspaces"), prefer)
        ws = str(item.get("workspace") or "")
        scope = svc.workspace_scope(ws, req.workspaces)
        status, out, _ = await svc.run(caller, scope, req, f"/v1/workspaces/{ws}/query")
    except QueryError as exc:
        status, out = exc.status, _error_body(exc)
    return {"id": rid, "status": status, "body": out}


def build_routes(world: World) -> list[BaseRoute]:
    svc = service_for(world)
    if svc._extra("validate", True) is not False:
        # Node and the Kusto library take about a second to load: do it before the first query.
        threading.Thread(target=_warm_validator, daemon=True, name="kusto-warm-up").start()

    async def workspace_query(request: Request) -> Response:
        try:
            caller = require_token(request, LOGS_AUDIENCE)
            req = await _read_request(request, world)
            scope = svc.workspace_scope(request.path_params["workspace_id"], req.workspaces)
            return await svc.execute(caller, scope, req, request.url.path)
        except (ApiError, QueryError) as exc:
            return _error_response(exc)

    async def resource_query(request: Request) -> Response:
        try:
            caller = require_token(request, LOGS_AUDIENCE)
            resource = "/" + request.path_params["resource_id"].strip("/")
            if not resource.lower().startswith("/subscriptions/"):
                raise QueryError(
                    404,
                    "PathNotFoundError",
                    f"The requested path '{request.url.path[:300]}' does not exist.",
                )
            req = await _read_request(request, world)
            scope = svc.resource_scope(resource, req.workspaces)
            return await svc.execute(caller, scope, req, request.url.path)
        except (ApiError, QueryError) as exc:
            return _error_response(exc)

    async def batch(request: Request) -> Response:
        try:
            caller = require_token(request, LOGS_AUDIENCE)
            body = await read_json(request, world.knobs.max_body_bytes, shape="logs")
            items = body.get("requests") if isinstance(body, dict) else None
            if not isinstance(items, list) or not items:
                raise _bad_argument("InvalidBatch", "'requests' must be a non-empty list.")
        except (ApiError, QueryError) as exc:
            return _error_response(exc)
        responses = [await _batch_response(svc, caller, item) for item in items]
        return json_response({"responses": responses})

    return [
        Route("/v1/$batch", batch, methods=["POST"]),
        Route("/v1/workspaces/{workspace_id}/query", workspace_query, methods=["GET", "POST"]),
        Route("/v1/{resource_id:path}/query", resource_query, methods=["GET", "POST"]),
    ]
