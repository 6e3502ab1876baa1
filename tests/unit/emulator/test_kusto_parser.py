"""Microsoft's Kusto parser (Node child process) as the emulator's KQL gate: diagnostics,
positions, the schema source of truth, restarts and a clear error when Node parts are missing."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from emulator.loganalytics import schemas
from emulator.loganalytics.kusto_parser import (
    KustoValidator,
    KustoValidatorError,
    find_node_modules,
    get_validator,
)

LOGINS = "ContainerRegistryLoginEvents"


@pytest.fixture(scope="module")
def validator() -> KustoValidator:
    # The process-wide instance: one Node child for the whole test session.
    v = get_validator()
    v.start()
    return v


@pytest.mark.parametrize(
    "query",
    [
        f"{LOGINS} | where TimeGenerated > ago(1d)"
        " | summarize count() by Identity, CallerIpAddress",
        f"union withsource=SourceTable {LOGINS}, ContainerRegistryRepositoryEvents"
        " | summarize LastEvent = max(TimeGenerated) by _ResourceId, SourceTable",
        "ContainerRegistryRepositoryEvents | where OperationName contains 'Delete'"
        " | project TimeGenerated, Repository, Tag, Digest, Size | top 10 by TimeGenerated desc",
        "AzureActivity | where OperationNameValue =~ 'MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE'"
        " | extend p = Properties_d.entity | project TimeGenerated, Caller, ResourceId, p",
        "AzureMetrics | where MetricName == 'StorageUsed'"
        " | summarize avg(Average) by bin(TimeGenerated, 1h)",
        f"let failures = {LOGINS} | where ResultDescription != '200'; failures | count",
    ],
)
def test_valid_queries_have_no_errors(validator: KustoValidator, query: str) -> None:
    assert validator.validate(query) == []


def test_unknown_column(validator: KustoValidator) -> None:
    query = f"{LOGINS}\n| where Nope == 1"
    [d] = validator.validate(query)
    assert d.code == "KS142"
    assert "Nope" in d.message
    assert (d.line, d.column) == (2, 9)
    assert query[d.start : d.start + d.length] == "Nope"
    assert d.kind == "SemanticError"
    assert d.describe().startswith("KS142: ") and "line 2, column 9" in d.describe()


def test_unknown_table(validator: KustoValidator) -> None:
    [d] = validator.validate("ContainerRegistryEvents | take 1")
    assert d.code == "KS204"
    assert d.kind == "SemanticError"


def test_syntax_error(validator: KustoValidator) -> None:
    [d] = validator.validate(f"{LOGINS} | where")
    assert d.syntax and d.kind == "SyntaxError"
    assert d.severity == "Error"


def test_type_errors_follow_the_schema(validator: KustoValidator) -> None:
    # DurationMs is a string in the real table, Size an int: both comparisons are errors.
    assert [d.code for d in validator.validate(f"{LOGINS} | where DurationMs > 100")] == ["KS106"]
    errors = validator.validate("ContainerRegistryRepositoryEvents | where Size > 'big'")
    assert [d.code for d in errors] == ["KS106"]
    assert "int" in errors[0].message


def test_positions_count_characters_not_utf16_units(validator: KustoValidator) -> None:
    query = f"let x = '😀é';\n{LOGINS} | where Nope == x"
    [d] = validator.validate(query)
    assert query[d.start : d.start + d.length] == "Nope"
    assert d.line == 2


def test_warnings_are_not_errors(validator: KustoValidator) -> None:
    query = f"{LOGINS} | where Identity has 'a' | summarize count() by Identity"
    assert validator.validate(query) == []
    assert all(d.severity != "Error" for d in validator.diagnostics(query))


def test_one_parser_process_serves_every_query(validator: KustoValidator) -> None:
    # Node starts once, not per query: that is what keeps validation cheap (timings are
    # bench/'s business).
    query = f"{LOGINS} | where TimeGenerated > ago(1h) | summarize count() by Identity"
    validator.validate(query)
    pid = validator.pid
    assert pid is not None
    for _ in range(10):
        assert validator.validate(query) == []
    assert validator.pid == pid


def test_schema_json_is_generated_from_schemas_py() -> None:
    assert schemas.SCHEMAS_JSON.read_text(encoding="utf-8") == schemas.to_json(), (
        "schemas.json is stale: run python -m emulator.loganalytics.schemas"
    )
    doc = json.loads(schemas.SCHEMAS_JSON.read_text(encoding="utf-8"))
    assert set(doc["tables"]) == set(schemas.TABLES)
    login = {c["name"]: c["type"] for c in doc["tables"][LOGINS]}
    assert login["DurationMs"] == "string" and login["TimeGenerated"] == "datetime"
    metrics = {c["name"]: c["type"] for c in doc["tables"]["AzureMetrics"]}
    assert metrics["Total"] == "real" and metrics["DurationMs"] == "long"


def test_restarts_a_dead_child() -> None:
    v = KustoValidator()
    try:
        v.start()
        pid = v.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
        assert [d.code for d in v.validate("Nope | take 1")] == ["KS204"]
        assert v.starts == 2 and v.pid != pid
    finally:
        v.close()
    assert v.pid is None


def test_missing_node_modules_says_npm_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACR_AUDITOR_NODE_MODULES", str(tmp_path))
    with pytest.raises(KustoValidatorError, match="npm ci"):
        find_node_modules()
    with pytest.raises(KustoValidatorError, match="npm ci"):
        KustoValidator().validate("print 1")


def test_missing_node_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACR_AUDITOR_NODE", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(KustoValidatorError, match=r"Node\.js"):
        KustoValidator().validate("print 1")
