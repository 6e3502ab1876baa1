"""The emulator's HTTPS server: one Starlette app for every API (routed by path, see
docs/emulator-contract.md), wrapped in the core middleware that applies latency and injected
faults and writes the request log; plus an in-process runner (uvicorn in a thread)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator import admin, arm, identity
from emulator.identity import LOGS_AUDIENCE
from emulator.knobs import CORE_FAULT_KINDS, Fault
from emulator.state import RequestLogEntry, World
from emulator.throttle import retry_after_header
from emulator.tls import make_tls
from emulator.web import ApiError

log = logging.getLogger("emulator")

ALL_METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"]
_LA_MODULES = ("emulator.loganalytics", "emulator.loganalytics.routes")


def classify(path: str) -> str:
    """Which emulated API a path belongs to: arm, resourcegraph, logs, identity or admin."""
    p = path.lower().lstrip("/")
    if p.startswith("_emulator/") or p == "_emulator":
        return "admin"
    if p.startswith("msi/"):
        return "identity"
    if p.startswith("v1/") or p == "v1":
        return "logs"
    if p.startswith("providers/microsoft.resourcegraph"):
        return "resourcegraph"
    return "arm"


def _log_analytics_routes(world: World) -> list[BaseRoute]:
    """Routes of emulator.loganalytics, when that package exists (it is built separately)."""
    try:
        module = importlib.import_module("emulator.loganalytics.routes")
    except ModuleNotFoundError as exc:
        if exc.name in _LA_MODULES:
            log.info("emulator.loganalytics is not available: Log Analytics paths answer 404")
            return []
        raise
    build: Callable[[World], list[BaseRoute]] = module.build_routes
    return list(build(world))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _crash(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after sending this; CoreMiddleware logs the traceback.
    shape = "logs" if classify(request.url.path) == "logs" else "arm"
    return ApiError(
        500, "InternalServerError", "The emulator failed to process the request.", shape=shape
    ).response()


async def _not_served(request: Request) -> Response:
    path = request.url.path
    if classify(path) == "logs":
        identity.require_token(request, LOGS_AUDIENCE)
        raise ApiError(
            404,
            "PathNotFoundError",
            f"The requested path '{path[:300]}' does not exist.",
            shape="logs",
        )
    raise ApiError(404, "NotFound", f"The path '{path[:300]}' is not emulated.", shape="identity")


def build_app(world: World) -> ASGIApp:
    routes: list[BaseRoute] = [
        Route("/msi/token", identity.token_endpoint, methods=["GET"]),
        *admin.routes(),
        *_log_analytics_routes(world),
        # Anything else under /v1 or /msi is not served; all other paths are ARM's.
        Route("/v1/{rest:path}", _not_served, methods=ALL_METHODS),
        Route("/msi/{rest:path}", _not_served, methods=ALL_METHODS),
        Route("/{path:path}", arm.dispatch, methods=ALL_METHODS),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: _api_error, Exception: _crash},
    )
    app.state.world = world
    return CoreMiddleware(app, world)


# --------------------------------------------------------------------------- middleware

_DEFAULT_CODES = {
    "arm": {
        400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "AuthorizationFailed",
        404: "ResourceNotFound", 409: "Conflict", 429: "TooManyRequests",
        500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable",
        504: "GatewayTimeout",
    },
    "logs": {
        400: "BadArgumentError", 401: "InvalidTokenError", 403: "InsufficientAccessError",
        404: "PathNotFoundError", 429: "ThrottledError", 500: "InternalServerError",
        502: "BadGateway", 503: "ServiceUnavailableError", 504: "GatewayTimeout",
    },
}  # fmt: skip


def _arm_action(method: str, path: str) -> tuple[str, str]:
    """(action, scope) for an AuthorizationFailed message."""
    low = path.lower()
    verb = {"PUT": "write", "DELETE": "delete"}.get(method, "read")
    marker = low.find("/providers/microsoft.insights/")
    if marker >= 0:
        return f"microsoft.insights/diagnosticSettings/{verb}", path[:marker]
    if "/providers/microsoft.resourcegraph/" in low:
        return "Microsoft.ResourceGraph/resources/read", "/"
    if "/microsoft.containerregistry/" in low:
        return "Microsoft.ContainerRegistry/registries/read", path
    if "/microsoft.operationalinsights/" in low:
        return "Microsoft.OperationalInsights/workspaces/read", path
    return "Microsoft.Resources/subscriptions/read", path


def fault_response(api: str, fault: Fault, method: str, path: str, caller: str | None) -> Response:
    shape = api if api in ("logs", "identity") else "arm"
    status = fault.status
    code = fault.code or _DEFAULT_CODES.get(shape, {}).get(status, f"Error{status}")
    message = fault.message
    if message is None:
        if shape == "arm" and status == 403:
            action, scope = _arm_action(method, path)
            who = caller or "unknown"
            message = (
                f"The client '{who}' with object id '{who}' does not have authorization to "
                f"perform action '{action}' over scope '{scope}' or the scope is invalid. If "
                f"access was recently granted, please refresh your credentials."
            )
        elif status >= 500:
            message = "The service is temporarily unavailable. Please try again later."
        else:
            message = f"Injected fault ({code})."
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(fault.retry_after))
    elif status in (429, 503):
        headers["Retry-After"] = retry_after_header(1)
    return ApiError(status, code, message, shape=shape, headers=headers).response()


@dataclass
class _Capture:
    """Collects a response so it can be rewritten (the malformed fault)."""

    start: Message | None = None
    body: list[bytes] = field(default_factory=list)

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self.body.append(message.get("body", b""))


class CoreMiddleware:
    """Latency, injected faults (status, slow, malformed), request log, crash net."""

    def __init__(self, app: ASGIApp, world: World) -> None:
        self.app = app
        self.world = world

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path") or "/"
        api = classify(path)
        if api == "admin":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        logged = False

        def record() -> None:
            nonlocal logged
            if logged:
                return
            logged = True
            state = scope.get("state") or {}
            self.world.log_request(
                RequestLogEntry(
                    time=time.time(),
                    api=api,
                    method=str(scope.get("method", "")),
                    path=path,
                    status=status or 499,  # 499: the client went away before an answer
                    latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
                    throttled=status == 429,
                    caller=state.get("caller"),
                )
            )

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Log before the last byte leaves: a client that reads the log right after
                # its call must find the entry.
                record()
            await send(message)

        try:
            await self._serve(api, path, scope, receive, send_status)
        except Exception:  # the net under every handler: log, answer 500, keep serving
            log.exception("emulator: unhandled error on %s %s", scope.get("method"), path)
            if status == 0:
                await ApiError(500, "InternalServerError", "The emulator failed.").response()(
                    scope, receive, send_status
                )
        finally:
            record()

    async def _serve(self, api: str, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        """The request after its latency, with any injected fault in place of the handler."""
        latency = self.world.knobs.latency_for(api)
        delay = latency.sample_s() if latency else 0.0
        fault = self.world.take_fault(api, path, CORE_FAULT_KINDS, method=scope["method"])
        if fault is not None and fault.kind == "slow":
            delay += fault.delay_s
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None and fault.kind == "status":
            response = fault_response(api, fault, scope["method"], path, self._peek_caller(scope))
            await response(scope, receive, send)
        elif fault is not None and fault.kind == "malformed":
            await self._malformed(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _peek_caller(self, scope: Scope) -> str | None:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                _, _, token = value.decode("latin-1").partition(" ")
                try:
                    return str(self.world.identity.verify(token.strip()).get("oid"))
                except identity.TokenError:
                    return None
        return None

    async def _malformed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the real response with its JSON cut in half (or a bare fragment)."""
        capture = _Capture()
        await self.app(scope, receive, capture)
        full = b"".join(capture.body)
        broken = full[: max(len(full) // 2, 1)] if len(full) > 2 else b'{"value": ['
        start = capture.start or {"type": "http.response.start", "status": 200, "headers": []}
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(broken)).encode()))
        if not any(k.lower() == b"content-type" for k, _ in headers):
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": broken, "more_body": False})


# --------------------------------------------------------------------------- runner


@dataclass
class RunningEmulator:
    """A started emulator. `stop()` (or leaving the `with` block) shuts it down."""

    world: World
    base_url: str
    port: int
    ca_path: Path
    state_dir: Path
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _owned_dir: bool = field(default=False, repr=False)

    @property
    def identity_header(self) -> str:
        return self.world.identity.identity_header

    @property
    def identity_endpoint(self) -> str:
        return f"{self.base_url}/msi/token"

    def environ(self) -> dict[str, str]:
        """What an SDK-using process needs to talk to this emulator instead of Azure."""
        ca = str(self.ca_path)
        return {
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
            "REQUESTS_CA_BUNDLE": ca,
            "SSL_CERT_FILE": ca,
            "AUDITOR_ARM_ENDPOINT": self.base_url,
            "AUDITOR_LOGS_ENDPOINT": self.base_url,
            "AUDITOR_LOGS_AUDIENCE": LOGS_AUDIENCE,
        }

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this emulator's CA (e.g. for httpx)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def info(self) -> dict[str, Any]:
        """The emulator.json contents."""
        return {
            "base_url": self.base_url,
            "port": self.port,
            "ca_path": str(self.ca_path),
            "identity_endpoint": self.identity_endpoint,
            "identity_header": self.identity_header,
            "logs_audience": LOGS_AUDIENCE,
            "pid": os.getpid(),
            "environ": self.environ(),
        }

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, grace: float = 0.25, timeout: float = 10.0) -> None:
        """Stop serving: requests in flight get `grace` seconds to finish. Idle keep-alive TLS
        connections are not waited for (their close handshake would take seconds)."""
        self._server.should_exit = True
        if self._server.server_state.tasks:  # requests in flight: let them finish
            self._thread.join(grace)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        if self._owned_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(
    world: World,
    port: int = 0,
    *,
    state_dir: str | Path | None = None,
    host: str = "127.0.0.1",
    ready_timeout: float = 15.0,
) -> RunningEmulator:
    """Start the HTTPS server in a daemon thread and wait until it accepts connections.
    Without `state_dir` the CA and key go to a temporary directory removed by stop()."""
    owned = state_dir is None
    directory = (
        Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="acr-emulator-"))
    )
    tls = make_tls(directory)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this; without it every response (headers and body are separate
    # writes) stalls ~40 ms on Nagle + delayed ACK: 45 ms per request instead of 0.5 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        if owned:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    actual_port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        build_app(world),
        host=host,
        port=actual_port,
        ssl_certfile=str(tls.cert_path),
        ssl_keyfile=str(tls.key_path),
        log_level="warning",
        access_log=False,
        lifespan="off",
        # The C parser and event loop: with h11 and asyncio's own loop the emulator spent
        # about half its CPU parsing HTTP and scheduling, CPU a benchmark's audit shares.
        http="httptools",
        loop="uvloop",
        # Azure front ends keep idle connections for minutes; the SDKs pool them.
        timeout_keep_alive=120,
        timeout_graceful_shutdown=5,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    # Signal handlers are only installed from the main thread (uvicorn checks), so none here.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"emulator:{actual_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + ready_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the emulator did not start on {host}:{actual_port}")
        time.sleep(0.01)
    url_host = f"[{host}]" if ":" in host else host
    return RunningEmulator(
        world=world,
        base_url=f"https://{url_host}:{actual_port}",
        port=actual_port,
        ca_path=tls.ca_path,
        state_dir=directory,
        _server=server,
        _thread=thread,
        _owned_dir=owned,
    )
