"""The malloc tuning: the arena cap and the fixed mmap threshold, applied on glibc unless
the operator set MALLOC_ARENA_MAX or MALLOC_MMAP_THRESHOLD_."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from auditor.allocator import cap_malloc_arenas, fix_mmap_threshold

GLIBC = platform.libc_ver()[0] == "glibc"


def test_the_operators_setting_wins() -> None:
    assert cap_malloc_arenas({"MALLOC_ARENA_MAX": "8"}) is False
    assert fix_mmap_threshold({"MALLOC_MMAP_THRESHOLD_": "65536"}) is False


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
@pytest.mark.parametrize("function", ["cap_malloc_arenas", "fix_mmap_threshold"])
def test_glibc_takes_the_setting(function: str) -> None:
    # In a fresh process, as the CLI and the Functions worker apply it.
    code = f"from auditor.allocator import {function}; print({function}({{}}))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "True"


def test_the_cli_applies_it_before_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from auditor import cli

    seen: list[dict[str, str]] = []
    monkeypatch.setattr("auditor.allocator.tune_malloc", lambda env: seen.append(env))
    assert cli.main(["audit"], environ={"AUDITOR_SCHEDULE": "not a schedule"}) == 2
    assert seen and seen[0]["AUDITOR_SCHEDULE"] == "not a schedule"
