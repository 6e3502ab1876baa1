"""The malloc tuning: the arena cap and the fixed mmap threshold, applied on glibc unless
the operator set MALLOC_ARENA_MAX or MALLOC_MMAP_THRESHOLD_; free pages given back during a
run."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from auditor.allocator import cap_malloc_arenas, fix_mmap_threshold, free_pages_returned

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


def test_free_pages_are_returned_while_the_block_runs_and_no_longer() -> None:
    calls: list[int] = []
    with free_pages_returned(period=0.01, trim=lambda pad: calls.append(pad) or 1):
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    after = len(calls)
    time.sleep(0.05)
    assert after >= 3 and set(calls) == {0}
    assert len(calls) == after  # stopped with the block
    assert "malloc-trim" not in {t.name for t in threading.enumerate()}


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
@pytest.mark.parametrize(("trimmed", "at_least", "at_most"), [(True, 40, 200), (False, -5, 5)])
def test_glibc_gives_the_pages_of_freed_chunks_back(
    trimmed: bool, at_least: int, at_most: int
) -> None:
    # 80 MB of 2 KB chunks (malloc's, not pymalloc's), one in 16 kept live across the heap so
    # its top cannot shrink: only malloc_trim gives the rest back. In a fresh process, with the
    # run's malloc settings.
    code = textwrap.dedent(f"""
        import contextlib, time
        from auditor.allocator import cap_malloc_arenas, fix_mmap_threshold, free_pages_returned
        cap_malloc_arenas({{}}); fix_mmap_threshold({{}})
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096
        blocks = [bytes(2048) for _ in range(40_000)]
        kept = blocks[::16]
        del blocks
        before = rss()
        with free_pages_returned(period=0.01) if {trimmed} else contextlib.nullcontext():
            time.sleep(0.2)
        print((before - rss()) // 2**20, len(kept))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    returned_mb = int(out.stdout.split()[0])
    assert at_least <= returned_mb <= at_most
