"""Schemas of the Log Analytics tables the emulator serves: the one source of truth for the
Kusto validator (written to schemas.json, read by kusto_check.js), the DuckDB tables and the
response column types.

Columns and types follow MicrosoftDocs/azure-reference-other
`azure-monitor-ref/tables/includes/<table>-include.md` (azure-facts §1), in the order Log
Analytics lists them (the tables' own columns first, the standard `_` columns last).
Regenerate the JSON after an edit: ``python -m emulator.loganalytics.schemas``.
"""

from __future__ import annotations

import json
from pathlib import Path

LOGIN_EVENTS = "ContainerRegistryLoginEvents"
REPOSITORY_EVENTS = "ContainerRegistryRepositoryEvents"
AZURE_ACTIVITY = "AzureActivity"
AZURE_METRICS = "AzureMetrics"
REGISTRY_TABLES = (LOGIN_EVENTS, REPOSITORY_EVENTS)

SCHEMAS_JSON = Path(__file__).with_name("schemas.json")

# Kusto scalar type -> DuckDB column type.
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "datetime": "TIMESTAMP",  # naive, always UTC (duckdb-kql's convention)
    "int": "INTEGER",
    "long": "BIGINT",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
    "dynamic": "JSON",
    "guid": "UUID",
    "timespan": "INTERVAL",
}

_STANDARD = [
    ("_ResourceId", "string"),
    ("_SubscriptionId", "string"),
    ("_IsBillable", "string"),
    ("_BilledSize", "real"),
]

TABLES: dict[str, list[tuple[str, str]]] = {
    LOGIN_EVENTS: [
        ("TenantId", "string"),
        ("SourceSystem", "string"),
        ("TimeGenerated", "datetime"),
        ("OperationName", "string"),
        ("LoginServer", "string"),
        ("Identity", "string"),
        ("JwtId", "string"),
        ("Region", "string"),
        ("CorrelationId", "string"),
        ("ResultType", "string"),
        ("ResultDescription", "string"),
        ("CallerIpAddress", "string"),
        ("DurationMs", "string"),  # a string in the real table, not a number
        ("UserAgent", "string"),
        ("Category", "string"),
        ("Type", "string"),
        *_STANDARD,
    ],
    REPOSITORY_EVENTS: [
        ("TenantId", "string"),
        ("SourceSystem", "string"),
        ("TimeGenerated", "datetime"),
        ("OperationName", "string"),
        ("LoginServer", "string"),
        ("Identity", "string"),
        ("Repository", "string"),
        ("Tag", "string"),
        ("Digest", "string"),
        ("MediaType", "string"),
        ("ArtifactType", "string"),
        ("Size", "int"),
        ("Region", "string"),
        ("CorrelationId", "string"),
        ("ResultType", "string"),
        ("ResultDescription", "string"),
        ("CallerIpAddress", "string"),
        ("DurationMs", "string"),
        ("UserAgent", "string"),
        ("UserTenantId", "string"),
        ("Category", "string"),
        ("Type", "string"),
        *_STANDARD,
    ],
    AZURE_ACTIVITY: [
        ("TenantId", "string"),
        ("SourceSystem", "string"),
        ("CallerIpAddress", "string"),
        ("CategoryValue", "string"),
        ("CorrelationId", "string"),
        ("Authorization", "string"),
        ("Authorization_d", "dynamic"),
        ("Claims", "string"),
        ("Claims_d", "dynamic"),
        ("Level", "string"),
        ("OperationNameValue", "string"),
        ("Properties", "string"),
        ("Properties_d", "dynamic"),
        ("Caller", "string"),
        ("EventDataId", "string"),
        ("EventSubmissionTimestamp", "datetime"),
        ("HTTPRequest", "string"),
        ("OperationId", "string"),
        ("ResourceGroup", "string"),
        ("ResourceProviderValue", "string"),
        ("ActivityStatusValue", "string"),
        ("ActivitySubstatusValue", "string"),
        ("Hierarchy", "string"),
        ("TimeGenerated", "datetime"),
        ("SubscriptionId", "string"),
        ("OperationName", "string"),
        ("ActivityStatus", "string"),
        ("ActivitySubstatus", "string"),
        ("Category", "string"),
        ("ResourceId", "string"),
        ("ResourceProvider", "string"),
        ("Resource", "string"),
        ("Type", "string"),
        *_STANDARD,
    ],
    AZURE_METRICS: [
        ("TenantId", "string"),
        ("SourceSystem", "string"),
        ("TimeGenerated", "datetime"),
        ("ResourceId", "string"),
        ("OperationName", "string"),
        ("OperationVersion", "string"),
        ("Category", "string"),
        ("ResultType", "string"),
        ("ResultSignature", "string"),
        ("ResultDescription", "string"),
        ("DurationMs", "long"),
        ("CallerIpAddress", "string"),
        ("CorrelationId", "string"),
        ("Resource", "string"),
        ("ResourceGroup", "string"),
        ("ResourceProvider", "string"),
        ("SubscriptionId", "string"),
        ("MetricName", "string"),
        ("Total", "real"),
        ("Count", "real"),
        ("Maximum", "real"),
        ("Minimum", "real"),
        ("Average", "real"),
        ("TimeGrain", "string"),
        ("UnitName", "string"),
        # Deprecated columns: still in the schema (queries may name them), always empty.
        ("Confidence", "string"),
        ("Description", "string"),
        ("FirstReportedDateTime", "string"),
        ("IndicatorThreatType", "string"),
        ("IsActive", "string"),
        ("LastReportedDateTime", "string"),
        ("MaliciousIP", "string"),
        ("RemoteIPCountry", "string"),
        ("RemoteIPLatitude", "real"),
        ("RemoteIPLongitude", "real"),
        ("Severity", "int"),
        ("TLPLevel", "string"),
        ("Type", "string"),
        *_STANDARD,
    ],
}


def columns(table: str) -> list[str]:
    return [name for name, _ in TABLES[table]]


def to_json() -> str:
    doc = {
        "description": "Generated from emulator/loganalytics/schemas.py; do not edit.",
        "tables": {t: [{"name": n, "type": k} for n, k in cols] for t, cols in TABLES.items()},
    }
    return json.dumps(doc, indent=2) + "\n"


def write_json(path: Path = SCHEMAS_JSON) -> Path:
    path.write_text(to_json(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_json())
