"""Standard exports of a run's verdicts: SARIF 2.1.0, OCSF Compliance Finding, CSV and the
project's JSON, each built from one `ExportDocument` (`document.py`) by a pure builder of its
own module. The CLI (`audit --format`, `export`) and the API (`GET /api/export`) both call
`render`.
"""

from __future__ import annotations

import enum
import json

from auditor.exports.csv_table import csv_text
from auditor.exports.document import ExportDocument, of_history, of_run, of_summary
from auditor.exports.ocsf import ocsf_findings
from auditor.exports.sarif import sarif_log


class ExportFormat(enum.StrEnum):
    SARIF = "sarif"
    OCSF = "ocsf"
    CSV = "csv"
    JSON = "json"


MEDIA_TYPES = {
    ExportFormat.SARIF: "application/sarif+json",
    ExportFormat.OCSF: "application/json",
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSON: "application/json",
}
EXTENSIONS = {
    ExportFormat.SARIF: "sarif",
    ExportFormat.OCSF: "ocsf.json",
    ExportFormat.CSV: "csv",
    ExportFormat.JSON: "json",
}


def render(document: ExportDocument, fmt: ExportFormat) -> str:
    """The export as text, ending with a newline."""
    if fmt is ExportFormat.CSV:
        return csv_text(document)
    if fmt is ExportFormat.SARIF:
        built: object = sarif_log(document)
    elif fmt is ExportFormat.OCSF:
        built = ocsf_findings(document)
    else:
        built = document
    return json.dumps(built, indent=2) + "\n"


__all__ = [
    "MEDIA_TYPES",
    "ExportDocument",
    "ExportFormat",
    "of_history",
    "of_run",
    "of_summary",
    "render",
]
