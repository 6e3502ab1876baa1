"""`pip install .` gives a person an `acr-auditor` command: the wheel built from this checkout
holds the package with its data files, the console script and the runtime dependencies."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from auditor import __version__

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_installs_an_acr_auditor_command(tmp_path: Path) -> None:
    # Built from a copy: an in-tree build leaves build/ and *.egg-info in the checkout.
    source = tmp_path / "source"
    shutil.copytree(
        REPO / "auditor", source / "auditor", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("acr_auditor-*.whl")
    assert wheel.name.startswith(f"acr_auditor-{__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"auditor", f"acr_auditor-{__version__}.dist-info"}
    reasons = sorted(p.name for p in (REPO / "auditor" / "reasons").glob("*.json"))
    packed = [n for n in names if n.startswith("auditor/reasons/") and n.endswith(".json")]
    assert sorted(n.rsplit("/", 1)[1] for n in packed) == reasons
    assert "auditor/alerts/alert.schema.json" in names
    dashboard = sorted(p.name for p in (REPO / "auditor" / "api" / "ui").iterdir())
    assert dashboard == ["app.js", "index.html", "style.css"]
    assert {f"auditor/api/ui/{name}" for name in dashboard} <= set(names)
    info = f"acr_auditor-{__version__}.dist-info"
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "acr-auditor = auditor.cli:main" in entry_points
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    required = {line.split(":", 1)[1].split("<")[0].split(">")[0].split("=")[0].strip()
                for line in metadata.splitlines() if line.startswith("Requires-Dist:")}  # fmt: skip
    assert {"azure-identity", "azure-mgmt-monitor", "azure-data-tables", "fastapi"} <= required


def test_version_and_help() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "auditor", "--version"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert version.returncode == 0 and version.stdout.strip() == f"acr-auditor {__version__}"


def test_every_flag_is_described_in_help() -> None:
    from auditor.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    undescribed = [
        f"{name} {'/'.join(action.option_strings)}"
        for name, command in commands.items()
        for action in command._actions
        if action.option_strings and not action.help
    ]
    assert undescribed == []
