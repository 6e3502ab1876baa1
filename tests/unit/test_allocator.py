"""The malloc arena cap: applied on glibc unless the operator set MALLOC_ARENA_MAX."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from auditor.allocator import cap_malloc_arenas

GLIBC = platform.libc_ver()[0] == "glibc"


def test_the_operators_setting_wins() -> None:
    assert cap_malloc_arenas({"MALLOC_ARENA_MAX": "8"}) is False


@pytest.mark.skipif(not GLIBC, reason="mallopt(M_ARENA_MAX) is glibc's")
def test_glibc_takes_the_cap() -> None:
    # In a fresh process, as the CLI and the Functions worker apply it.
    code = "from auditor.allocator import cap_malloc_arenas; print(cap_malloc_arenas({}))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "True"


def test_the_cli_applies_it_before_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from auditor import cli

    seen: list[dict[str, str]] = []
    monkeypatch.setattr("auditor.allocator.cap_malloc_arenas", lambda env: seen.append(env))
    assert cli.main(["audit"], environ={"AUDITOR_SCHEDULE": "not a schedule"}) == 2
    assert seen and seen[0]["AUDITOR_SCHEDULE"] == "not a schedule"
