"""A throw-away CA (trustme) and a server certificate for 127.0.0.1, ::1 and localhost.
The SDKs refuse bearer tokens over plain HTTP, so the emulator must speak HTTPS; clients
trust it through REQUESTS_CA_BUNDLE / SSL_CERT_FILE / connection_verify pointing at ca.pem."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsFiles:
    ca_path: Path
    cert_path: Path
    key_path: Path


def make_tls(directory: Path) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="acr-auditor local Azure emulator")
    server = ca.issue_cert("127.0.0.1", "::1", "localhost")
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    ca.cert_pem.write_to_path(str(files.ca_path))
    server.cert_chain_pems[0].write_to_path(str(files.cert_path))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert_path), append=True)
    # The key is only good for this run, but there is no reason to leave it world-readable.
    fd = os.open(files.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(server.private_key_pem.bytes())
    return files
