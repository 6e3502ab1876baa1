"""`python -m emulator` as a separate process: ready line, emulator.json, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SMALL = ROOT / "emulator" / "scenarios" / "small.yaml"


def run(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "emulator", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_serves_until_sigterm(tmp_path: Path) -> None:
    proc = run("--scenario", str(SMALL), "--state-dir", str(tmp_path))
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("emulator ready: https://127.0.0.1:"), proc.stderr.read()  # type: ignore[union-attr]
        info = json.loads((tmp_path / "emulator.json").read_text())
        assert info["pid"] == proc.pid
        assert info["environ"]["IDENTITY_HEADER"] == info["identity_header"]
        assert Path(info["ca_path"]).exists()
        ctx = ssl.create_default_context(cafile=info["ca_path"])
        with httpx.Client(base_url=info["base_url"], verify=ctx) as http:
            assert http.get("/_emulator/health").json()["registries"] == 6
            token = http.get(
                "/msi/token",
                params={"api-version": "2019-08-01", "resource": "https://management.azure.com"},
                headers={"X-IDENTITY-HEADER": info["identity_header"]},
            )
            assert token.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "emulator stopped" in out
    assert not (tmp_path / "emulator.json").exists()


def test_bad_scenario_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.read_text().replace("sku: Premium", "sku: Gold"))
    proc = run("--scenario", str(bad), "--state-dir", str(tmp_path))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "registries[0].sku" in err and "Basic, Standard or Premium" in err
