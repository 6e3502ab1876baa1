"""CSV for spreadsheets: one row per registry.

Columns: registry, status, reasons (codes, `; ` between them), controls (the ids of the
controls they violate, `auditor/reasons/controls.json`), subscription, resource group,
location, last event, checked at, run and policy (the run that last checked the registry and
the policy's fingerprint, on every row, so a sheet cut from the file still says what it
reflects). A cell that a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, CR)
is prefixed with `'`: registry names cannot start so, but reason details of parameterised
codes carry text read from Azure.
"""

from __future__ import annotations

import csv
import io

from auditor.exports.document import ExportDocument
from auditor.reasons.catalog import violated_controls

HEADER = (
    "registry",
    "status",
    "reasons",
    "controls",
    "subscription",
    "resource group",
    "location",
    "last event",
    "checked at",
    "run",
    "policy",
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str | None) -> str:
    text = value or ""
    return f"'{text}" if text.startswith(_FORMULA) else text


def csv_text(document: ExportDocument) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(HEADER)
    policy = document["policy"]["fingerprint"]
    for record in document["registries"]:
        writer.writerow(
            [
                _cell(value)
                for value in (
                    record["name"],
                    record["status"],
                    "; ".join(item["code"] for item in record["reasons"]),
                    "; ".join(
                        c.id for c in violated_controls(i["code"] for i in record["reasons"])
                    ),
                    record["subscriptionId"],
                    record["resourceGroup"],
                    record["location"],
                    record["lastEvent"],
                    record["checkedAt"],
                    record["lastRunId"],
                    policy,
                )
            ]
        )
    return out.getvalue()
