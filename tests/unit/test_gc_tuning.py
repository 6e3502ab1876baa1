"""The collector tuning: the CLI and the Functions app raise the collector's thresholds before
a run, so a large fleet's audit does not walk its whole heap a dozen times."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from auditor.gc_tuning import THRESHOLDS, tune_gc


@pytest.fixture
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_thresholds_are_raised_above_cpythons(restored: None) -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == THRESHOLDS
    assert all(new >= default for new, default in zip(THRESHOLDS, (700, 10, 10), strict=True))
    assert THRESHOLDS[0] >= 10_000  # the youngest generation is where the collections were


def test_a_run_allocating_a_fleets_worth_collects_rarely(restored: None) -> None:
    # 200,000 container objects kept, as a run keeps its fleet's state.
    tune_gc()
    before = [s["collections"] for s in gc.get_stats()]
    kept = [{"row": i, "parts": [i]} for i in range(200_000)]
    after = [s["collections"] for s in gc.get_stats()]
    assert len(kept) == 200_000
    assert after[2] - before[2] == 0  # no walk of the whole heap
    assert after[0] - before[0] <= 400_000 // THRESHOLDS[0] + 1


def test_the_cli_applies_it_before_the_run(restored: None) -> None:
    code = (
        "import gc; from auditor import cli; "
        "cli.main(['audit'], environ={'AUDITOR_SCHEDULE': 'not a schedule'}); "
        "print(gc.get_threshold())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip().splitlines()[-1] == str(THRESHOLDS)
