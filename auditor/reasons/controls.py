"""Which controls each reason code violates, and where each mapping comes from.

One data file, `controls.json`, beside the reason files: the benchmarks (`sources`: document,
version, URL), their controls (`controls`: source, control id, title, URL) and, per reason
code, the controls it violates (`reasons`; `[]` says the code violates none, e.g. `pending`
or an observation that never changes a status). One file rather than a key in each reason
file because a source's version and a control's words are shared by many codes: moving to
a new benchmark version is one edit, and the whole mapping reads on one screen.

Validated when loaded (`load`), against the catalog's codes: a code the catalog does not
know, a catalog code left unmapped, a control without a known source, or a source without
its document, version or URL stops the auditor at import with the file and the entry named.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from typing_extensions import TypedDict

FILENAME = "controls.json"


class ControlDocument(TypedDict):
    """A control a reason violates, with the source of the mapping."""

    id: str  # e.g. `mcsb:LT-3`: the source key and the control id
    document: str  # e.g. `Microsoft cloud security benchmark`
    version: str
    control: str  # the control id in its document, e.g. `LT-3`
    title: str
    url: str


@dataclass(frozen=True)
class Control:
    id: str
    document: str
    version: str
    control: str
    title: str
    url: str

    def to_dict(self) -> ControlDocument:
        return {
            "id": self.id,
            "document": self.document,
            "version": self.version,
            "control": self.control,
            "title": self.title,
            "url": self.url,
        }


@dataclass(frozen=True)
class ControlMap:
    controls: tuple[Control, ...]  # in the file's order
    by_reason: Mapping[str, tuple[Control, ...]]  # base code -> controls it violates

    def of(self, base_code: str) -> tuple[Control, ...]:
        return self.by_reason.get(base_code, ())

    def reasons_of(self, control_id: str) -> tuple[str, ...]:
        """The base codes that violate a control, sorted."""
        return tuple(
            sorted(code for code, found in self.by_reason.items() if control_id in _ids(found))
        )


def _ids(controls: tuple[Control, ...]) -> set[str]:
    return {c.id for c in controls}


class ControlMappingError(ValueError):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{FILENAME}: {where}: {message}")


def _text(where: str, raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ControlMappingError(where, f"{key} must be a non-empty string")
    return value


def _entries(raw: Any, key: str) -> dict[str, Any]:
    section = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
        raise ControlMappingError(key, "must be an object of objects")
    return section


def _sources(raw: Any) -> dict[str, tuple[str, str]]:
    """Source key -> (document, version); each source also needs its URL."""
    sources = {}
    for key, entry in _entries(raw, "sources").items():
        where = f"source {key!r}"
        _text(where, entry, "url")
        sources[key] = (_text(where, entry, "document"), _text(where, entry, "version"))
    return sources


def _controls(raw: Any) -> dict[str, Control]:
    sources = _sources(raw)
    controls = {}
    for key, entry in _entries(raw, "controls").items():
        where = f"control {key!r}"
        source = entry.get("source")
        if source not in sources:
            raise ControlMappingError(where, f"source {source!r} is not one of {sorted(sources)}")
        control = _text(where, entry, "control")
        if key != f"{source}:{control}":
            raise ControlMappingError(where, f"must be named {source}:{control}")
        document, version = sources[source]
        controls[key] = Control(
            id=key,
            document=document,
            version=version,
            control=control,
            title=_text(where, entry, "title"),
            url=_text(where, entry, "url"),
        )
    return controls


def parse(raw: Any, codes: Collection[str]) -> ControlMap:
    """The mapping from the file's JSON, checked against the catalog's base codes."""
    controls = _controls(raw)
    reasons = raw.get("reasons")
    if not isinstance(reasons, dict):
        raise ControlMappingError("reasons", "must map each reason code to a list of controls")
    unknown = sorted(set(reasons) - set(codes))
    if unknown:
        raise ControlMappingError("reasons", f"unknown reason codes {unknown}")
    unmapped = sorted(set(codes) - set(reasons))
    if unmapped:
        raise ControlMappingError(
            "reasons", f"codes {unmapped} are not mapped (map a code to [] when it violates none)"
        )
    by_reason: dict[str, tuple[Control, ...]] = {}
    for code, ids in reasons.items():
        if not isinstance(ids, list) or len(set(map(str, ids))) != len(ids):
            raise ControlMappingError(f"reason {code!r}", "must be a list of distinct control ids")
        missing = [i for i in ids if i not in controls]
        if missing:
            raise ControlMappingError(f"reason {code!r}", f"unknown controls {missing}")
        by_reason[code] = tuple(controls[i] for i in ids)
    return ControlMap(controls=tuple(controls.values()), by_reason=by_reason)


def load(codes: Collection[str]) -> ControlMap:
    """The package's mapping (read through importlib.resources, like the reason files)."""
    text = resources.files("auditor.reasons").joinpath(FILENAME).read_text(encoding="utf-8")
    return parse(json.loads(text), codes)
