"""checkov over infra/ (offline: it parses the Bicep with pycep-parser): no failed check, no file
it could not parse, and every skip justified inline and still needed.

checkov comes from requirements-dev.txt (scripts/bootstrap.sh installs it): a missing checkov
is a failure, not a skip.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
SKIP = re.compile(r"//\s*checkov:skip=(?P<id>[A-Z0-9_]+):?(?P<reason>.*)$")
MIN_REASON = 20  # characters: a reason, not a shrug


def checkov_binary() -> str:
    found = shutil.which("checkov", path=str(Path(sys.executable).parent)) or shutil.which(
        "checkov"
    )
    assert found, "checkov is not installed: run scripts/bootstrap.sh (requirements-dev.txt)"
    return found


@functools.cache
def report() -> dict[str, Any]:
    """`checkov -d infra --framework bicep` as JSON, without reaching any service."""
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [checkov_binary(), "-d", "infra", "--framework", "bicep", "-o", "json", "--skip-download"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    document = json.loads(done.stdout)
    if isinstance(document, list):  # one report per framework
        (document,) = (d for d in document if d.get("check_type") == "bicep")
    assert document["check_type"] == "bicep"
    result: dict[str, Any] = document
    return result


def test_checkov_passes_every_check_on_every_bicep_file() -> None:
    summary = report()["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report()["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert summary["failed"] == 0
    assert summary["parsing_errors"] == 0, "checkov could not parse a Bicep file"
    assert summary["passed"] > 20
    # Every file was read: resources from each of them appear in the results.
    results = report()["results"]
    files = {c["file_path"] for kind in ("passed_checks", "skipped_checks") for c in results[kind]}
    for expected in ("/main.bicep", "/modules/app.bicep", "/management-group.bicep"):
        assert expected in files, sorted(files)


def inline_skips() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(INFRA.rglob("*.bicep")):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = SKIP.search(line)
            if match:
                found.append((str(path.relative_to(INFRA)), match["id"], match["reason"].strip()))
    return found


def test_every_skip_is_justified_and_still_needed() -> None:
    skips = inline_skips()
    assert skips, "no inline skips found: the pattern is broken"
    for path, check_id, reason in skips:
        assert len(reason) >= MIN_REASON, f"{path}: skip of {check_id} needs a reason"
    reported = {
        (c["file_path"].lstrip("/"), c["check_id"]) for c in report()["results"]["skipped_checks"]
    }
    for path, check_id, _ in skips:
        assert (path, check_id) in reported, (
            f"{path}: {check_id} is skipped but checkov no longer runs it there; remove the skip"
        )
    for check in report()["results"]["skipped_checks"]:
        comment = check["check_result"].get("suppress_comment", "")
        assert len(comment.strip()) >= MIN_REASON, check["check_id"]
