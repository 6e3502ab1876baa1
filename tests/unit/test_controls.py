"""The control mapping: every reason code mapped, the data checked, the per-control summary."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest

from auditor.control_summary import control_summary
from auditor.reasons import catalog, codes, describe
from auditor.reasons.controls import FILENAME, ControlMappingError, parse

RAW: dict[str, Any] = json.loads(
    resources.files("auditor.reasons").joinpath(FILENAME).read_text(encoding="utf-8")
)


def test_every_catalog_code_is_mapped_or_explicitly_maps_to_none() -> None:
    assert set(RAW["reasons"]) == set(codes())
    assert set(catalog.CONTROLS.by_reason) == set(codes())


def test_the_logging_codes_map_to_the_benchmarks() -> None:
    ids = {c.id for c in describe("no_diagnostic_setting").controls}
    assert ids == {
        "cis-azure:5.4",
        "mcsb:LT-3",
        "mcsb:LT-5",
        "nist-800-53:AU-2",
        "nist-800-53:AU-12",
    }
    assert "nist-800-53:AU-6" in {c.id for c in describe("destination_not_allowed").controls}
    assert describe("pending").controls == ()
    cis = describe("category_missing:ContainerRegistryLoginEvents").controls[0]
    assert (cis.document, cis.version, cis.control) == (
        "CIS Microsoft Azure Foundations Benchmark",
        "2.1.0",
        "5.4",
    )
    assert cis.url.startswith("https://")


def test_every_control_is_used_and_every_source_complete() -> None:
    used = {c.id for found in catalog.CONTROLS.by_reason.values() for c in found}
    assert used == {c.id for c in catalog.CONTROLS.controls}
    for source in RAW["sources"].values():
        assert source["document"] and source["version"] and source["url"].startswith("https://")


def _broken(edit: Any) -> dict[str, Any]:
    raw = copy.deepcopy(RAW)
    edit(raw)
    return raw


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["reasons"].update(no_such_code=[]), "unknown reason codes ['no_such_code']"),
        (lambda r: r["reasons"].pop("pending"), "codes ['pending'] are not mapped"),
        (lambda r: r["reasons"].update(pending=["mcsb:LT-9"]), "unknown controls ['mcsb:LT-9']"),
        (lambda r: r["sources"]["mcsb"].pop("version"), "source 'mcsb': version must be"),
        (lambda r: r["sources"]["mcsb"].update(url=""), "source 'mcsb': url must be"),
        (lambda r: r["sources"].pop("mcsb"), "control 'mcsb:LT-3': source 'mcsb' is not one of"),
        (lambda r: r["controls"]["mcsb:LT-3"].pop("title"), "control 'mcsb:LT-3': title must"),
        (
            lambda r: r["reasons"].update(pending=["mcsb:LT-3", "mcsb:LT-3"]),
            "must be a list of distinct control ids",
        ),
    ],
)
def test_a_broken_mapping_is_a_clear_error(edit: Any, message: str) -> None:
    with pytest.raises(ControlMappingError) as caught:
        parse(_broken(edit), codes())
    assert message in str(caught.value)
    assert FILENAME in str(caught.value)


def _record(name: str, status: str, *reason_codes: str) -> dict[str, Any]:
    return {"name": name, "status": status, "reasons": [{"code": c} for c in reason_codes]}


def test_control_summary_counts_every_registry_and_bounds_the_names() -> None:
    registries = [
        _record("acra", "noncompliant", "category_missing:ContainerRegistryLoginEvents"),
        _record("acrb", "noncompliant", "no_diagnostic_setting", "metrics_missing"),
        _record("acrc", "compliant"),
        _record("acrd", "unknown", "unknown:HTTP 403"),
        _record("acre", "removed", "removed"),
    ]
    document = control_summary(registries, limit=1)
    assert document["registries"] == 5
    rows = {row["id"]: row for row in document["controls"]}
    cis = rows["cis-azure:5.4"]
    assert (cis["failing"], cis["passing"], cis["notAssessed"]) == (2, 1, 2)
    assert cis["failingRegistries"] == ["acra"]  # limit 1
    assert cis["passingRegistries"] == ["acrc"]
    lt5 = rows["mcsb:LT-5"]  # only no_diagnostic_setting among these violates it
    assert (lt5["failing"], lt5["passing"]) == (1, 2)
    assert rows["mcsb:IM-1"]["reasonCodes"] == ["admin_user_login"]
    assert control_summary([], limit=5)["registries"] == 0


def test_a_pending_registry_passes_the_controls_its_reasons_do_not_violate() -> None:
    # Remediated by the auditor, its first events awaited: judged, as a compliant one is.
    document = control_summary([_record("acrfixed", "pending", "pending")], limit=5)
    cis = next(row for row in document["controls"] if row["id"] == "cis-azure:5.4")
    assert (cis["passing"], cis["notAssessed"], cis["passingRegistries"]) == (1, 0, ["acrfixed"])
