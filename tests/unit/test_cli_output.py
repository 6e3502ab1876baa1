"""How the CLI writes its JSON documents: indented for a person, compact for a pipe."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from auditor.cli import write_json
from auditor.cli_json import run_document, run_document_streamed
from auditor.facts import Registry, Status, Verdict
from auditor.run_record import AuditRun, RunStatus

REGISTRIES = [{"name": f"acr{i}", "reasons": [], "score": i / 3} for i in range(3)]
DOCUMENT = {
    "run": {"id": "r1", "status": "partial", "errors": ['a "quoted" \u00e9rror']},
    "registries": REGISTRIES,
    "empty": [],
    "none": None,
}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_compact_json_that_reads_back_the_same() -> None:
    out = io.StringIO()
    write_json(DOCUMENT, out)
    text = out.getvalue()
    assert text.endswith("}\n") and text.count("\n") == 1
    assert json.loads(text) == DOCUMENT
    assert text == json.dumps(DOCUMENT, separators=(",", ":")) + "\n"


def test_a_terminal_gets_indented_json() -> None:
    out = Terminal()
    write_json(DOCUMENT, out)
    assert out.getvalue() == json.dumps(DOCUMENT, indent=2) + "\n"


def test_an_iterator_is_written_as_a_list_one_item_at_a_time() -> None:
    built: list[int] = []

    def registries() -> Iterator[object]:
        for i, item in enumerate(REGISTRIES):
            built.append(i)
            yield item

    for out in (io.StringIO(), Terminal()):
        built.clear()
        write_json({**DOCUMENT, "registries": registries()}, out)
        assert json.loads(out.getvalue()) == DOCUMENT
        assert built == [0, 1, 2]


def test_the_streamed_run_document_is_the_run_document() -> None:
    run = AuditRun(
        run_id="r1",
        started_at=datetime(2031, 1, 1, tzinfo=UTC),
        finished_at=datetime(2031, 1, 1, 0, 5, tzinfo=UTC),
        status=RunStatus.SUCCEEDED,
        verdicts=tuple(
            Verdict(
                Registry(
                    id=f"/subscriptions/s/resourceGroups/g/providers/x/registries/r{i}",
                    name=f"r{i}",
                    subscription_id="s",
                    resource_group="g",
                ),
                Status.COMPLIANT,
            )
            for i in range(3)
        ),
    )
    streamed = io.StringIO()
    write_json(run_document_streamed(run), streamed)
    whole = io.StringIO()
    write_json(run_document(run), whole)
    assert streamed.getvalue() == whole.getvalue()
    assert len(json.loads(streamed.getvalue())["registries"]) == 3


def test_the_fleet_table_has_a_column_per_status() -> None:
    from auditor.cli import render_fleet_at

    counts = {"total": 2, "compliant": 1, "noncompliant": 0, "unknown": 0, "removed": 0}
    older = {**counts, "subscriptionId": "sub-old", "compliancePercent": 100.0}  # no exempt...
    newer = {**older, "subscriptionId": "sub-new", "exempt": 0, "pending": 1}
    document: Any = {
        "at": "2026-03-01T12:00:00+00:00",
        "lastRun": None,
        "totals": {**counts, "total": 3, "exempt": 0, "pending": 1},
        "compliancePercent": 100.0,
        "bySubscription": [older, newer],
        "byReason": [],
    }
    out = io.StringIO()
    render_fleet_at(document, out)
    lines = out.getvalue().splitlines()
    assert lines[2].split() == [
        "SUBSCRIPTION", "TOTAL", *(s.value.upper() for s in Status), "%",
    ]  # fmt: skip
    assert lines[3].split() == ["sub-old", "2", "1", "0", "0", "0", "0", "0", "100.0%"]
    assert lines[4].split() == ["sub-new", "2", "1", "0", "0", "0", "0", "1", "100.0%"]
    assert "3 registries: 1 compliant, 1 pending (100.0% compliant)" in out.getvalue()
