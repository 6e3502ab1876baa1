"""KQL validation with Microsoft's own parser (Kusto.Language via npm
`@kusto/language-service-next`), run in one long-lived Node child process (kusto_check.js)
that speaks JSON lines. A query is checked in a few milliseconds once the child is warm.

    validator = get_validator()          # shared, started on first use
    errors = validator.validate("ContainerRegistryLoginEvents | where Nope == 1")
    errors[0].code == "KS142"

Node and node_modules are found through `ACR_AUDITOR_NODE` / `ACR_AUDITOR_NODE_MODULES`, else
`node` on PATH and the `node_modules` directory of the repository (installed by `npm ci`).
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.loganalytics.schemas import SCHEMAS_JSON

SCRIPT = Path(__file__).with_name("kusto_check.js")
PACKAGE = Path("@kusto") / "language-service-next"
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0


class KustoValidatorError(RuntimeError):
    """The validator cannot run (Node or the npm package missing, the child died)."""


@dataclass(frozen=True)
class Diagnostic:
    code: str  # e.g. KS142
    severity: str  # Error | Warning | Suggestion | Information
    message: str
    start: int  # offset in the query, in characters
    length: int
    line: int  # 1-based
    column: int  # 1-based
    syntax: bool  # reported by the parser alone (else by semantic analysis)
    category: str = "General"

    @property
    def kind(self) -> str:
        """The Log Analytics error code for this diagnostic."""
        return "SyntaxError" if self.syntax else "SemanticError"

    def describe(self) -> str:
        return f"{self.code}: {self.message} (line {self.line}, column {self.column})"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Diagnostic:
        return cls(
            code=str(d.get("code") or ""),
            severity=str(d.get("severity") or "Error"),
            message=str(d.get("message") or ""),
            start=int(d.get("start") or 0),
            length=int(d.get("length") or 0),
            line=int(d.get("line") or 1),
            column=int(d.get("column") or 1),
            syntax=bool(d.get("syntax")),
            category=str(d.get("category") or "General"),
        )


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def find_node_modules() -> Path:
    """The node_modules directory holding @kusto/language-service-next."""
    env = os.environ.get("ACR_AUDITOR_NODE_MODULES")
    # An explicit location is authoritative; otherwise the repository's (or a parent's).
    candidates = [Path(env)] if env else [p / "node_modules" for p in Path(__file__).parents]
    for c in candidates:
        if (c / PACKAGE / "Kusto.Language.Bridge.min.js").is_file():
            return c
    where = env or f"{repo_root() / 'node_modules'}"
    raise KustoValidatorError(
        f"@kusto/language-service-next is not installed (looked in {where}). "
        f"Run `npm ci` in {repo_root()} (or set ACR_AUDITOR_NODE_MODULES)."
    )


def find_node() -> str:
    node = os.environ.get("ACR_AUDITOR_NODE") or shutil.which("node")
    if not node:
        raise KustoValidatorError(
            "Node.js (`node`) is not on PATH; it runs Microsoft's Kusto parser. Install Node 18+ "
            "and run `npm ci` in the repository (or set ACR_AUDITOR_NODE)."
        )
    return node


class KustoValidator:
    """Thread-safe client of one kusto_check.js child. Requests are serialised (a check takes
    milliseconds); a child that dies or hangs is replaced on the next call."""

    def __init__(self, schemas: Path = SCHEMAS_JSON, *, timeout_s: float = REQUEST_TIMEOUT_S):
        self.schemas = schemas
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=50)
        self._ids = itertools.count(1)
        self.starts = 0  # how many children were started (tests check restarts)

    # ------------------------------------------------------------------ process

    def start(self) -> None:
        """Start the child now (otherwise the first validate() does)."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop_locked()
        node = find_node()
        kusto_dir = find_node_modules() / PACKAGE
        cmd = [node, str(SCRIPT), "--schemas", str(self.schemas), "--kusto-dir", str(kusto_dir)]
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
        except OSError as exc:
            raise KustoValidatorError(f"cannot start {node}: {exc}") from exc
        self._lines = queue.Queue()
        self._stderr.clear()
        lines = self._lines
        threading.Thread(
            target=self._pump, args=(proc.stdout, lines), daemon=True, name="kusto-check-out"
        ).start()
        threading.Thread(
            target=self._drain, args=(proc.stderr,), daemon=True, name="kusto-check-err"
        ).start()
        self._proc = proc
        self.starts += 1
        first = self._read(START_TIMEOUT_S, "start")
        if first.get("fatal"):
            self._stop_locked()
            raise KustoValidatorError(
                f"the Kusto validator could not start: {first['fatal']}. "
                f"Run `npm ci` in {repo_root()}."
            )
        if not first.get("ready"):
            self._stop_locked()
            raise KustoValidatorError(f"unexpected first line from kusto_check.js: {first}")
        return proc

    @staticmethod
    def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
        try:
            for line in stream:
                lines.put(line)
        except (OSError, ValueError):
            pass
        lines.put(None)  # EOF: the child is gone

    def _drain(self, stream: Any) -> None:
        try:
            for line in stream:
                self._stderr.append(line.rstrip())
        except (OSError, ValueError):
            pass

    def _read(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self._stop_locked()
            raise KustoValidatorError(
                f"the Kusto validator did not answer within {timeout:.0f} s ({what})"
            ) from None
        if line is None:
            err = " | ".join(self._stderr) or "no error output"
            self._stop_locked()
            raise KustoValidatorError(f"the Kusto validator exited ({what}): {err}")
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            return {"error": f"unreadable line from kusto_check.js: {line[:200]!r}"}
        return msg if isinstance(msg, dict) else {"error": f"unexpected reply {msg!r}"}

    def _stop_locked(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        with self._lock:
            self._stop_locked()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # ------------------------------------------------------------------ checks

    def diagnostics(self, query: str) -> list[Diagnostic]:
        """Every diagnostic (errors, warnings, suggestions) for `query`."""
        with self._lock:
            for attempt in (1, 2):
                proc = self._ensure()
                rid = next(self._ids)
                try:
                    assert proc.stdin is not None
                    proc.stdin.write(json.dumps({"id": rid, "query": query}) + "\n")
                    proc.stdin.flush()
                except (OSError, ValueError):
                    # The child died since the last request: start another, once.
                    self._stop_locked()
                    if attempt == 2:
                        raise KustoValidatorError("the Kusto validator is not running") from None
                    continue
                try:
                    reply = self._read(self.timeout_s, "validate")
                except KustoValidatorError:
                    if attempt == 2:
                        raise
                    continue
                while reply.get("id") not in (rid, None):
                    reply = self._read(self.timeout_s, "validate")  # stale reply of a timeout
                if "error" in reply:
                    raise KustoValidatorError(f"kusto_check.js: {reply['error']}")
                return [Diagnostic.from_json(d) for d in reply.get("diagnostics", [])]
        raise KustoValidatorError("the Kusto validator is not running")  # pragma: no cover

    def validate(self, query: str) -> list[Diagnostic]:
        """The errors in `query` (empty when Kusto accepts it)."""
        return [d for d in self.diagnostics(query) if d.severity == "Error"]


_shared: KustoValidator | None = None
_shared_lock = threading.Lock()


def get_validator() -> KustoValidator:
    """The process-wide validator (one Node child for every emulator and test)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = KustoValidator()
            atexit.register(_shared.close)
        return _shared
