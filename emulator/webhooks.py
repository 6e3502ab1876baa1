"""Local alert destinations for tests and the demo: a webhook receiver that records every
POST and can answer with chosen statuses or go away and come back on the same port, and a
black hole that accepts connections and never answers (the receiver that stalls a sink)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    status: int = 200  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that records every POST; it can answer with chosen
    statuses, or be stopped (connection refused) and started again on the same port."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: list[int] = []  # answered in order, then 200
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.requests.append(
                        Received(self.path, dict(self.headers), body, time.monotonic(), status)
                    )
                self.send_response(status)
                self.end_headers()
                # A careless receiver quotes the token it refused, on its own.
                token = self.path.rsplit("/", 1)[-1].rsplit("sig=", 1)[-1]
                self.wfile.write(b"ok" if status < 400 else f"bad token {token}".encode())

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def accepted(self) -> list[Received]:
        """The requests answered 2xx: the alerts that were delivered."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def on(self, prefix: str) -> list[Received]:
        return [r for r in self.requests if r.path.startswith(prefix)]


class BlackHole:
    """Accepts connections and never answers: the receiver that stalls a sink."""

    def __init__(self) -> None:
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}{path}"

    def close(self) -> None:
        self._server.close()
        for conn in self._held:
            conn.close()
