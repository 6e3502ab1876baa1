"""How the CLI writes its JSON documents: indented for a person, compact for a pipe."""

from __future__ import annotations

import io
import json

from auditor.cli import write_json

DOCUMENT = {
    "run": {"id": "r1", "status": "partial", "errors": ['a "quoted" \u00e9rror']},
    "registries": [{"name": f"acr{i}", "reasons": [], "score": i / 3} for i in range(3)],
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
