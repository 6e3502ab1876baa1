"""What a person at a terminal sees while a long run reads the settings."""

from __future__ import annotations

from auditor.audit import reads_progress


def test_reads_progress_says_how_long_is_left_once_the_pace_is_known() -> None:
    assert reads_progress(0, 10_000, 30.0) == "settings: 0/10,000 registries read"
    assert reads_progress(500, 10_000, 2.0) == "settings: 500/10,000 registries read"
    assert reads_progress(2_500, 10_000, 50.0) == (
        "settings: 2,500/10,000 registries read, about 2 min 30 s left"
    )
    assert reads_progress(9_900, 10_000, 99.0).endswith("about 1 s left")
    assert reads_progress(10_000, 10_000, 100.0) == "settings: 10,000/10,000 registries read"
