"""Start and stop Azurite (npm `azurite`) for Table, Queue and Blob Storage on free loopback ports.

Used by the demo script, the benchmark and the pytest fixture, so every path runs the same
storage emulator with the same flags.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
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

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._owned_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(*, timeout: float = 30.0, log_path: Path | None = None) -> Azurite:
    """Start Azurite in memory; returns once all three services accept connections."""
    binary = _azurite_bin()
    ports = [_free_port() for _ in range(3)]
    workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
    log = open(log_path or workdir / "azurite.log", "wb")  # closed when the process ends
    cmd = [
        str(binary),
        "--tableHost", "127.0.0.1", "--tablePort", str(ports[0]),
        "--queueHost", "127.0.0.1", "--queuePort", str(ports[1]),
        "--blobHost", "127.0.0.1", "--blobPort", str(ports[2]),
        "--inMemoryPersistence", "--disableTelemetry", "--silent",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    azurite = Azurite(ports[0], ports[1], ports[2], proc, workdir)
    deadline = time.monotonic() + timeout
    pending = set(ports)
    while pending:
        if proc.poll() is not None:
            log.close()
            text = (workdir / "azurite.log").read_text(errors="replace")[-2000:]
            shutil.rmtree(workdir, ignore_errors=True)
            raise AzuriteError(f"Azurite exited with code {proc.returncode}: {text}")
        if time.monotonic() > deadline:
            azurite.stop()
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
    return azurite
