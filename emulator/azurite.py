"""Start and stop Azurite (npm `azurite`) for Table, Queue and Blob Storage on free loopback ports.

Used by the demo script, the benchmark and the pytest fixture, so every path runs the same
storage emulator with the same flags. `Azurite.outage()` stops its process and starts it
again on the same ports, as a storage outage looks to a client: connections refused, then
the same data back (`start(persistent=True)` keeps it on disk for that).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Azurite's published development account; not a secret (documented by Microsoft).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _azurite_bin() -> Path:
    modules = Path(os.environ.get("ACR_AUDITOR_NODE_MODULES", REPO_ROOT / "node_modules"))
    binary = modules / ".bin" / "azurite"
    if not binary.exists():
        raise AzuriteError(
            f"Azurite is not installed ({binary} is missing): run `npm ci` in {REPO_ROOT}"
        )
    return binary


@dataclass
class Azurite:
    table_port: int
    queue_port: int
    blob_port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    _owned_dir: bool = field(default=True, repr=False)
    command: list[str] = field(default_factory=list, repr=False)
    log_path: Path | None = field(default=None, repr=False)

    @property
    def table_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.table_port}/{DEV_ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.queue_port}/{DEV_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint={self.queue_endpoint};TableEndpoint={self.table_endpoint};"
        )

    def halt(self) -> None:
        """Stop the process and keep its ports and directory: `resume` starts it again. Data
        kept in memory is lost with it; a `persistent` one saves it on the way down."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def resume(self, *, timeout: float = 30.0) -> None:
        """Start the halted process again on the same ports; returns once they listen."""
        if self.process.poll() is None:
            return
        log = open(self.log_path or self.workdir / "azurite.log", "ab")
        self.process = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        log.close()  # the child holds its own copy
        self._wait_listening(timeout)

    @contextmanager
    def outage(self) -> Iterator[None]:
        """Storage down for the duration of the block, then back on the same ports."""
        self.halt()
        try:
            yield
        finally:
            self.resume()

    def stop(self) -> None:
        self.halt()
        if self._owned_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {self.table_port, self.queue_port, self.blob_port}
        while pending:
            if self.process.poll() is not None:
                log = self.log_path or self.workdir / "azurite.log"
                text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                code = self.process.returncode
                self.stop()
                raise AzuriteError(f"Azurite exited with code {code}: {text}")
            if time.monotonic() > deadline:
                self.stop()
                raise AzuriteError(
                    f"Azurite did not listen on ports {sorted(pending)} within {timeout}s"
                )
            for port in list(pending):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        pending.discard(port)
                except OSError:
                    pass
            if pending:
                time.sleep(0.1)


def start(
    *, timeout: float = 30.0, log_path: Path | None = None, persistent: bool = False
) -> Azurite:
    """Start Azurite; returns once all three services accept connections. Its data lives in
    memory, or with `persistent` in its directory, where it survives `halt` and `resume`."""
    binary = _azurite_bin()
    ports = [_free_port() for _ in range(3)]
    workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
    storage = ["--location", str(workdir)] if persistent else ["--inMemoryPersistence"]
    cmd = [
        str(binary),
        "--tableHost", "127.0.0.1", "--tablePort", str(ports[0]),
        "--queueHost", "127.0.0.1", "--queuePort", str(ports[1]),
        "--blobHost", "127.0.0.1", "--blobPort", str(ports[2]),
        *storage, "--disableTelemetry", "--silent",
    ]  # fmt: skip
    log = open(log_path or workdir / "azurite.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    log.close()  # the child holds its own copy
    azurite = Azurite(ports[0], ports[1], ports[2], proc, workdir, command=cmd, log_path=log_path)
    azurite._wait_listening(timeout)
    return azurite
