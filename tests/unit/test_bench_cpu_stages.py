"""bench/cpu_stages.py: py-spy's collapsed stacks to the audit's CPU by stage."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "cpu_stages.py"
_SPEC = importlib.util.spec_from_file_location("cpu_stages", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
cpu_stages = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cpu_stages)

THREAD = "thread (7): store_0"
SDK = "Pipeline.run (/x/acr-auditor/.venv/lib/python3.11/site-packages/azure/core/_base.py:242)"


def stack(*frames: str, count: int = 1) -> str:
    return ";".join((THREAD, *frames)) + f" {count}"


@pytest.mark.parametrize(
    ("frames", "stage"),
    [
        # The alerts' table writes go through the storage retry: they are the alerts' cost.
        (("write_all (auditor/alerts/tables.py:109)", "StorageRetry.call "
          "(auditor/storage/retry.py:81)", SDK), "alerts"),
        (("RunWriter._write (auditor/storage/writer.py:288)", SDK), "storage"),
        (("_Settling.settle (auditor/audit.py:570)", "EvidenceCollector._build "
          "(auditor/logs_audit.py:399)", "build_evidence (auditor/evidence/build.py:78)"),
         "evidence"),
        (("EvidenceCollector._ask (auditor/logs_audit.py:489)", SDK), "log queries"),
        (("_read_once (auditor/audit.py:120)", "read_settings "
          "(auditor/azure/diagnostics.py:90)", SDK), "settings reads"),
        (("_read_once (auditor/audit.py:120)", "judge (auditor/judgement.py:40)"), "judgement"),
        (("main (auditor/cli.py:495)", "write_json (auditor/cli.py:380)"),
         "output (the CLI's document)"),
        (("main (auditor/cli.py:495)", "run_audit (auditor/audit.py:204)"),
         "run (audit, pacing, summary)"),
        # No frame of the package: a checkout named acr-auditor does not make the SDK ours.
        ((SDK,), cpu_stages.OTHER),
    ],
)  # fmt: skip
def test_a_sample_is_in_the_first_stage_any_of_its_frames_matches(
    frames: tuple[str, ...], stage: str
) -> None:
    assert cpu_stages.stage_of(list(frames)) == stage


def test_shares_count_the_samples_and_skip_what_is_not_a_stack() -> None:
    lines = [
        stack("RunWriter._write (auditor/storage/writer.py:288)", count=3),
        stack("EvidenceCollector._ask (auditor/logs_audit.py:489)", count=1),
        "py-spy> Sampling process 100 times a second\n",
        "",
    ]
    assert cpu_stages.shares(lines) == {"storage": 0.75, "log queries": 0.25}
    assert cpu_stages.shares([]) == {}
