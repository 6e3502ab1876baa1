"""`python -m auditor` ends without the interpreter's teardown, yet loses no output, runs its
exit handlers and still waits for a thread that is not done."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# A module-level object whose finalizer only the interpreter's teardown runs.
PROBE = """
import atexit, sys, threading, time
from auditor.process_exit import exit_process

class Torn:
    def __del__(self):
        sys.stderr.write("teardown\\n")

torn = Torn()
atexit.register(lambda: sys.stderr.write("handler\\n"))
"""


def run(body: str) -> subprocess.CompletedProcess[str]:
    code = PROBE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_output_is_whole_handlers_run_and_teardown_is_skipped() -> None:
    out = run("""
        sys.stdout.write("x" * 1_000_000)
        exit_process(3)
    """)
    assert out.returncode == 3
    assert len(out.stdout) == 1_000_000
    assert out.stderr.splitlines() == ["handler"]


def test_without_the_skip_the_probe_sees_teardown() -> None:
    out = run("sys.exit(0)")
    assert out.returncode == 0
    assert out.stderr.splitlines() == ["handler", "teardown"]


def test_a_thread_still_running_is_waited_for() -> None:
    out = run("""
        def late():
            time.sleep(0.3)
            sys.stdout.write("late\\n")

        threading.Thread(target=late).start()
        exit_process(4)
    """)
    assert out.returncode == 4
    assert out.stdout == "late\n"
    assert "teardown" in out.stderr.splitlines()


def test_a_closed_stdout_takes_the_interpreters_own_exit() -> None:
    out = run("""
        sys.stdout.close()
        exit_process(5)
    """)
    assert out.returncode == 5
    assert out.stderr.splitlines() == ["handler", "teardown"]


def test_a_profiler_gets_to_write_its_figures(tmp_path: Path) -> None:
    script = tmp_path / "command.py"
    script.write_text(PROBE + "exit_process(0)\n")
    figures = tmp_path / "run.prof"
    out = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(figures), str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0
    assert figures.stat().st_size > 0
