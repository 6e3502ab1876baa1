"""Per control, which registries pass and fail it: a pure function over stored registries.

A registry fails a control when one of its reasons maps to it (`auditor.reasons.controls`),
passes when it was judged (compliant, pending or noncompliant) and none does, and is not assessed
otherwise (unknown: the auditor could not tell; removed: gone). An exempt registry is counted
apart, whatever its reasons. Names are listed in the order
given (the store's name order), at most `limit` per list; the counts cover every registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import Field
from typing_extensions import TypedDict

from auditor.facts import JUDGED, Status
from auditor.reasons import catalog
from auditor.reasons.controls import ControlDocument


class ControlStatus(ControlDocument):
    """A control, the reason codes that violate it, and the registries for and against it."""

    reasonCodes: Annotated[list[str], Field(description="base reason codes that violate it")]
    failing: Annotated[int, Field(description="registries with a reason that violates it")]
    passing: Annotated[int, Field(description="judged registries with no such reason")]
    notAssessed: Annotated[int, Field(description="unknown or removed registries")]
    exempt: Annotated[
        int, Field(description="registries under an exemption: neither passing nor failing")
    ]
    failingRegistries: Annotated[list[str], Field(description="names, at most `limit`")]
    passingRegistries: Annotated[list[str], Field(description="names, at most `limit`")]


class ControlsDocument(TypedDict):
    """Every mapped control with the registries that pass and fail it."""

    registries: Annotated[int, Field(description="stored registries read")]
    controls: list[ControlStatus]


def control_summary(registries: Iterable[Mapping[str, Any]], *, limit: int) -> ControlsDocument:
    """`registries` as the store serves them (`RegistryRecord`: name, status, reasons)."""
    rows: dict[str, ControlStatus] = {
        c.id: {
            **c.to_dict(),
            "reasonCodes": list(catalog.CONTROLS.reasons_of(c.id)),
            "failing": 0,
            "passing": 0,
            "notAssessed": 0,
            "exempt": 0,
            "failingRegistries": [],
            "passingRegistries": [],
        }
        for c in catalog.CONTROLS.controls
    }
    count = 0
    for record in registries:
        count += 1
        if str(record["status"]) == Status.EXEMPT.value:
            for row in rows.values():
                row["exempt"] += 1
            continue
        violated = {c.id for c in catalog.violated_controls(i["code"] for i in record["reasons"])}
        judged = str(record["status"]) in JUDGED
        for control_id, row in rows.items():
            if control_id in violated:
                row["failing"] += 1
                names = row["failingRegistries"]
            elif judged:
                row["passing"] += 1
                names = row["passingRegistries"]
            else:
                row["notAssessed"] += 1
                continue
            if len(names) < limit:
                names.append(record["name"])
    return {"registries": count, "controls": list(rows.values())}
