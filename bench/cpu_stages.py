"""Where the audit's CPU goes, by stage: py-spy samples of the thread holding the GIL, each
put in the stage of its deepest frame in `auditor/`.

    py-spy record --pid PID --gil --threads --rate 100 --format raw --output FILE

`audit_fleet.py --cpu-stages` runs it beside each audit and prints the shares. Sampling the
GIL holder measures what limits a run that ARM's throttle does not pace: the one core the
audit's Python can use, whichever thread spends it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# (stage, pattern over a frame's "function (file:line)"): a sample is in the first stage any
# of its `auditor/` frames matches, so the alerts' table writes count as alerts (not storage)
# and evidence built while settling as evidence (not the run).
STAGES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (stage, re.compile(pattern))
    for stage, pattern in (
        ("alerts", r"auditor/alerts/"),
        ("storage", r"auditor/storage/"),
        ("evidence", r"auditor/evidence/"),
        ("judgement", r"auditor/(judgement|policy|facts|reasons/)"),
        ("log queries", r"auditor/(azure/logs|logs_audit)\.py"),
        ("settings reads", r"auditor/azure/(diagnostics|pipeline|errors)\.py|_read_once"),
        ("inventory", r"auditor/azure/inventory\.py"),
        ("output (the CLI's document)", r"auditor/(cli_json|exports/)|write_json|render_table"),
        ("run (audit, pacing, summary)", r"auditor/(audit|pacing|summary|run_record)\.py"),
    )
)
OTHER = "other (start-up, thread hand-offs, SDK threads)"
# A frame in the package: `auditor/...` relative to the repository, or `.../auditor/...`
# (never `acr-auditor/.venv/...`, a checkout's own site-packages).
_AUDITOR = re.compile(r"\((auditor/|[^()]*[^-\w]auditor/)[^()]*\)$")
_COUNT = re.compile(r" (\d+)$")


def stage_of(frames: list[str]) -> str:
    """The stage of one sample's stack (outermost frame first)."""
    own = [f for f in frames if _AUDITOR.search(f)]
    for stage, pattern in STAGES:
        if any(pattern.search(frame) for frame in own):
            return stage
    return OTHER


def shares(lines: Iterable[str]) -> dict[str, float]:
    """Fraction of the GIL-holding samples per stage, largest first, from py-spy's raw
    (collapsed stacks) output: `thread;frame;frame... count` per line."""
    counts: Counter[str] = Counter()
    for line in lines:
        match = _COUNT.search(line.rstrip("\n"))
        if match is None:
            continue
        frames = line[: match.start()].split(";")[1:]  # the first is the thread's name
        counts[stage_of(frames)] += int(match.group(1))
    total = sum(counts.values())
    if not total:
        return {}
    return {stage: n / total for stage, n in counts.most_common()}
