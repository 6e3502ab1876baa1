"""Admin API under /_emulator (no auth, loopback clients only), for tests, benchmarks and the
demo when the emulator runs in another process:

- GET  /_emulator/health                    -> {"ok", "now", "version", "registries"}
- GET  /_emulator/knobs, PUT /_emulator/knobs (a full ``knobs:`` mapping; 400 names the field)
- GET  /_emulator/faults, POST /_emulator/faults (one fault or a list), DELETE /_emulator/faults
- GET  /_emulator/requests?api=arm&since=<epoch s>&limit=N -> {"entries", "counters"}
- DELETE /_emulator/requests                 (clears the log and counters)
- POST /_emulator/clock/advance {"seconds"|"minutes"|"hours"|"days": n} -> {"now", "version"}
- POST /_emulator/registries (scenario-file registry mapping), DELETE /_emulator/registries/{name}
- POST /_emulator/logs/warm -> {"generated"}: every workspace's log rows generated now, which
  queries otherwise do on first use (a benchmark measures the auditor, not the emulator's world)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.knobs import parse_knobs
from emulator.loganalytics.routes import service_for
from emulator.scenario import ScenarioError
from emulator.state import World
from emulator.web import ApiError, json_response, read_json

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _world(request: Request) -> World:
    host = request.client.host if request.client else ""
    if host not in LOOPBACK:
        raise ApiError(403, "Forbidden", "The admin API only answers loopback clients.")
    world: World = request.app.state.world
    return world


def _bad(exc: Exception) -> ApiError:
    return ApiError(400, "InvalidKnobs", str(exc))


async def health(request: Request) -> Response:
    world = _world(request)
    return json_response(
        {
            "ok": True,
            "now": world.now().isoformat(),
            "version": world.version,
            "registries": len(world.registries()),
        }
    )


async def knobs(request: Request) -> Response:
    world = _world(request)
    if request.method == "PUT":
        body = await read_json(request)
        try:
            world.knobs = parse_knobs(body)
        except ScenarioError as exc:
            raise _bad(exc) from None
    return json_response(world.knobs.to_dict())


async def faults(request: Request) -> Response:
    world = _world(request)
    if request.method == "POST":
        body = await read_json(request)
        items = body if isinstance(body, list) else [body]
        try:
            added = [world.add_fault(item) for item in items]
        except ScenarioError as exc:
            raise _bad(exc) from None
        return json_response({"added": [f.to_dict() for f in added]}, 201)
    if request.method == "DELETE":
        world.clear_faults()
    return json_response({"faults": [f.to_dict() for f in world.knobs.faults]})


async def requests(request: Request) -> Response:
    world = _world(request)
    if request.method == "DELETE":
        world.reset_request_log()
        return Response(status_code=204)
    params = request.query_params
    try:
        since = float(params["since"]) if "since" in params else None
        limit = int(params.get("limit", "10000"))
    except ValueError:
        raise ApiError(400, "BadRequest", "since and limit must be numbers.") from None
    entries = world.requests(api=params.get("api"), since=since)
    return json_response(
        {
            "entries": [e.to_dict() for e in entries[-limit:]] if limit > 0 else [],
            "total": len(entries),
            "counters": dict(world.counters),
        }
    )


async def advance_clock(request: Request) -> Response:
    world = _world(request)
    body: Any = await read_json(request)
    units = ("seconds", "minutes", "hours", "days")
    if not isinstance(body, dict) or not body or set(body) - set(units):
        raise ApiError(400, "BadRequest", f"Give one or more of {', '.join(units)}.")
    values = {k: body[k] for k in units if k in body}
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values.values()
    ):
        raise ApiError(400, "BadRequest", "Durations must be non-negative numbers.")
    try:
        now = world.advance(timedelta(**values))
    except OverflowError:
        raise ApiError(400, "BadRequest", "That moves the clock out of range.") from None
    return json_response({"now": now.isoformat(), "version": world.version})


async def add_registry(request: Request) -> Response:
    world = _world(request)
    body = await read_json(request)
    try:
        reg = world.add_registry(body)
    except ScenarioError as exc:
        raise _bad(exc) from None
    return json_response({"id": reg.id, "version": world.version}, 201)


async def remove_registry(request: Request) -> Response:
    world = _world(request)
    try:
        reg = world.remove_registry(request.path_params["name"])
    except KeyError:
        raise ApiError(404, "NotFound", "No such registry.") from None
    return json_response({"id": reg.id, "version": world.version})


async def warm_logs(request: Request) -> Response:
    store = service_for(_world(request)).store
    await run_in_threadpool(store.warm)
    return json_response({"generated": store.generations})


def routes() -> list[Route]:
    return [
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/knobs", knobs, methods=["GET", "PUT"]),
        Route("/_emulator/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/requests", requests, methods=["GET", "DELETE"]),
        Route("/_emulator/clock/advance", advance_clock, methods=["POST"]),
        Route("/_emulator/registries", add_registry, methods=["POST"]),
        Route("/_emulator/registries/{name}", remove_registry, methods=["DELETE"]),
        Route("/_emulator/logs/warm", warm_logs, methods=["POST"]),
    ]
