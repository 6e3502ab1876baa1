"""docs/settings.md's tables and local.settings.sample.json, rendered from auditor.settings.

After changing a declaration, regenerate both from the repository root with
`python -m auditor.settings_docs`; a unit test fails while either file differs from this
rendering. In docs/settings.md only the tables between `<!-- table GROUP -->` and
`<!-- end table -->` are rendered; the prose around them is written by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from auditor.settings import GROUPS, SettingsGroup, Variable

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "settings.md"
SAMPLE = ROOT / "local.settings.sample.json"
_TABLE = re.compile(r"(<!-- table (\w+) -->\n).*?(<!-- end table -->)", re.DOTALL)


def _row(variable: Variable) -> str:
    default = f"`{variable.default}`" if variable.default else "unset"
    cells = (f"`{variable.name}`", default, variable.accepts, variable.description)
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |\n"


def table(group: type[SettingsGroup]) -> str:
    rows = "".join(_row(variable) for variable in group.declared())
    return "| Variable | Default | Accepted | Meaning |\n|---|---|---|---|\n" + rows


def render_docs(text: str) -> str:
    """`text` with each group's table rendered anew; ValueError unless each group has one."""
    by_name = {group.__name__: group for group in GROUPS}
    found = [match[2] for match in _TABLE.finditer(text)]
    if sorted(found) != sorted(by_name):
        raise ValueError(f"expected one table for each of {sorted(by_name)}, found {found}")
    return _TABLE.sub(lambda match: match[1] + table(by_name[match[2]]) + match[3], text)


def render_sample() -> str:
    values = {"FUNCTIONS_WORKER_RUNTIME": "python"}
    values |= {v.name: v.sample for group in GROUPS for v in group.declared()}
    return json.dumps({"IsEncrypted": False, "Values": values}, indent=2) + "\n"


def main() -> None:
    for path, text in (
        (DOCS, render_docs(DOCS.read_text(encoding="utf-8"))),
        (SAMPLE, render_sample()),
    ):
        changed = path.read_text(encoding="utf-8") != text
        path.write_text(text, encoding="utf-8")
        print(f"{path.relative_to(ROOT)}: {'rewritten' if changed else 'unchanged'}")


if __name__ == "__main__":
    main()
