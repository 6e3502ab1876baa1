"""The reason catalog: every code has one home with complete metadata."""

from __future__ import annotations

import ast
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from auditor.reasons import Severity, catalog, codes, describe, is_parameterised, reason

JUDGEMENT = Path(__file__).resolve().parents[2] / "auditor" / "judgement.py"

# Everything the judgement can emit, plus the codes later stages use.
EXPECTED_CODES = {
    "no_diagnostic_setting",
    "category_missing",
    "category_disabled",
    "metrics_missing",
    "destination_not_allowed",
    "not_resource_specific",
    "settings_limit_reached",
    "unknown",
    "logs_silent",
    "pending",
    "removed",
    # What the registry's logs show (auditor.evidence).
    "logs_unreadable",
    "logging_interrupted",
    "login_failure_burst",
    "anonymous_pull",
    "new_login_source",
    "admin_user_login",
    "artifact_deleted",
    # Exemptions (auditor.exemptions).
    "exempted",
    "exemption_malformed",
    "exemption_expired",
}
PARAMETERISED = {
    "category_missing",
    "category_disabled",
    "unknown",
    "logs_unreadable",
    "exempted",
}


def _example(code: str) -> str:
    return f"{code}:ContainerRegistryLoginEvents" if is_parameterised(code) else code


def test_catalog_holds_exactly_the_expected_codes() -> None:
    assert set(codes()) == EXPECTED_CODES


def test_every_code_constant_has_an_entry() -> None:
    constants = {
        value
        for name, value in vars(catalog).items()
        if name.isupper() and isinstance(value, str) and name != "SEPARATOR"
    }
    assert constants == EXPECTED_CODES


def test_every_code_the_judgement_names_is_in_the_catalog() -> None:
    # The judgement refers to codes only through `catalog.<CONSTANT>`; find each use.
    tree = ast.parse(JUDGEMENT.read_text(encoding="utf-8"))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "catalog"
    }
    assert used  # the scan found something
    for name in used:
        assert getattr(catalog, name) in codes()


@pytest.mark.parametrize("code", sorted(EXPECTED_CODES))
def test_metadata_is_complete(code: str) -> None:
    info = describe(_example(code))
    assert info.base_code == code
    assert isinstance(info.severity, Severity)
    assert info.title.strip() and "{" not in info.title
    assert len(info.explanation) > 40 and "{" not in info.explanation
    assert info.docs_url.startswith("https://learn.microsoft.com/azure/")
    assert info.remediation is None or info.remediation.startswith("az ")


@pytest.mark.parametrize(
    "code",
    [
        "no_diagnostic_setting",
        "category_missing",
        "category_disabled",
        "metrics_missing",
        "destination_not_allowed",
        "not_resource_specific",
        "settings_limit_reached",
    ],
)
def test_configuration_reasons_carry_a_diagnostic_settings_command(code: str) -> None:
    remediation = describe(_example(code)).remediation
    assert remediation is not None
    assert "az monitor diagnostic-settings" in remediation
    assert "<registry-id>" in remediation


def test_severities() -> None:
    assert describe("no_diagnostic_setting").severity is Severity.HIGH
    assert describe("category_missing:X").severity is Severity.HIGH
    assert describe("settings_limit_reached").severity is Severity.INFO


@pytest.mark.parametrize(
    ("code", "parameter"),
    [
        ("category_missing:ContainerRegistryLoginEvents", "ContainerRegistryLoginEvents"),
        (
            "category_disabled:ContainerRegistryRepositoryEvents",
            "ContainerRegistryRepositoryEvents",
        ),
        ("unknown:http_403", "http_403"),
    ],
)
def test_parameterised_codes(code: str, parameter: str) -> None:
    info = describe(code)
    assert info.code == code
    assert info.parameter == parameter
    assert parameter in info.explanation or parameter in info.title
    rendered = info.detail(settings="'diag'", error="HTTP 403 {braces} stay {literal}")
    assert parameter in rendered or "{braces} stay {literal}" in rendered


def test_unknown_detail_carries_the_full_error_text() -> None:
    text = "HTTP 403 AuthorizationFailed: no access"
    assert describe("unknown:http_403").detail(error=text) == (
        f"The diagnostic settings could not be read: {text}."
    )


def test_plain_code_has_no_parameter() -> None:
    info = describe("metrics_missing")
    assert info.parameter is None
    assert (
        info.detail(metric="AllMetrics") == "AllMetrics is not enabled in any diagnostic setting."
    )


@pytest.mark.parametrize(
    "code",
    ["nope", "category_missing", "category_missing:", "no_diagnostic_setting:x", ""],
)
def test_unknown_or_malformed_codes_raise(code: str) -> None:
    with pytest.raises(KeyError):
        describe(code)


def test_detail_needs_its_fields() -> None:
    with pytest.raises(KeyError):
        describe("destination_not_allowed").detail()


def test_reason_builds_detail_from_catalog() -> None:
    built = reason("category_missing:ContainerRegistryLoginEvents")
    assert built.code == "category_missing:ContainerRegistryLoginEvents"
    assert built.detail == describe(built.code).detail()


def test_one_file_per_code_shipped_as_package_data() -> None:
    names = {
        item.name
        for item in resources.files("auditor.reasons").iterdir()
        if item.name.endswith(".json")
    }
    # Beside them, the one mapping to controls (tests/unit/test_controls.py).
    assert names == {f"{code}.json" for code in EXPECTED_CODES} | {"controls.json"}
    for code in EXPECTED_CODES:
        raw = json.loads(
            resources.files("auditor.reasons").joinpath(f"{code}.json").read_text("utf-8")
        )
        assert raw["code"] == code
        assert (raw["parameter"] is not None) == (code in PARAMETERISED)


def _entry(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "code": "x",
        "parameter": None,
        "title": "T",
        "severity": "low",
        "explanation": "E",
        "detail": "D",
        "remediation": None,
        "docs": "https://learn.microsoft.com/azure/x",
    }
    raw.update(overrides)
    return raw


@pytest.mark.parametrize(
    ("filename", "raw"),
    [
        ("y.json", _entry()),
        ("x.json", {k: v for k, v in _entry().items() if k != "docs"}),
        ("x.json", _entry(extra=1)),
        ("x.json", _entry(severity="critical")),
        ("x.json", _entry(title="Needs {param}")),
        ("x.json", _entry(parameter="p", explanation="{other}")),
        ("x.json", _entry(detail="{param}")),
        ("x.json", _entry(title="")),
        ("x.json", _entry(remediation=3)),
        ("x.json", _entry(parameter="")),
    ],
    ids=[
        "file-named-differently",
        "missing-key",
        "extra-key",
        "bad-severity",
        "param-in-plain-title",
        "unknown-field-in-explanation",
        "param-in-plain-detail",
        "empty-title",
        "remediation-not-string",
        "empty-parameter-name",
    ],
)
def test_loader_rejects_malformed_entries(filename: str, raw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        catalog._load_entry(filename, raw)
