"""The reason catalog: what each reason code means, how bad it is and how to fix it.

Each code has one home, `auditor/reasons/<code>.json` (like Prowler's check metadata), and
everything that shows a reason (the judgement's `detail`, the API, alerts) reads it from here
instead of repeating strings. The controls each code violates are in `controls.json`
(`auditor.reasons.controls`), checked against these codes when the catalog loads. Some codes
carry a parameter after a colon (`category_missing:ContainerRegistryLoginEvents`,
`unknown:<why>`).

The files are package data read through importlib.resources (so they load from a wheel or a
zip as well as from a checkout), once, at import: a malformed file fails at start-up, and
describing a reason later does no I/O.
"""

from __future__ import annotations

import enum
import json
import string
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from auditor.facts import Reason
from auditor.reasons import controls as control_map
from auditor.reasons.controls import Control

# Codes as constants so a typo in the judgement fails at import, not as an unknown code.
NO_DIAGNOSTIC_SETTING = "no_diagnostic_setting"
CATEGORY_MISSING = "category_missing"
CATEGORY_DISABLED = "category_disabled"
METRICS_MISSING = "metrics_missing"
DESTINATION_NOT_ALLOWED = "destination_not_allowed"
NOT_RESOURCE_SPECIFIC = "not_resource_specific"
SETTINGS_LIMIT_REACHED = "settings_limit_reached"
UNKNOWN = "unknown"
LOGS_SILENT = "logs_silent"
PENDING = "pending"
REMOVED = "removed"
# What the registry's logs in Log Analytics show (auditor.evidence).
LOGS_UNREADABLE = "logs_unreadable"
LOGGING_INTERRUPTED = "logging_interrupted"
LOGIN_FAILURE_BURST = "login_failure_burst"
ANONYMOUS_PULL = "anonymous_pull"
NEW_LOGIN_SOURCE = "new_login_source"
ADMIN_USER_LOGIN = "admin_user_login"
ARTIFACT_DELETED = "artifact_deleted"
# Exemptions (auditor.exemptions): `exempted:<the status it would otherwise have>`.
EXEMPTED = "exempted"
EXEMPTION_MALFORMED = "exemption_malformed"
EXEMPTION_EXPIRED = "exemption_expired"

SEPARATOR = ":"


class Severity(enum.StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


@dataclass(frozen=True)
class ReasonInfo:
    """Metadata of one reason code; for a parameterised code, with the parameter filled in."""

    code: str  # the full code, e.g. `category_missing:ContainerRegistryLoginEvents`
    base_code: str  # e.g. `category_missing`
    parameter: str | None  # e.g. `ContainerRegistryLoginEvents`
    title: str
    severity: Severity
    explanation: str  # plain words, the same for every registry
    remediation: str | None  # an `az` command template with <placeholders>, when one helps
    docs_url: str
    detail_template: str
    controls: tuple[Control, ...] = ()  # the controls the code violates (`controls.json`)

    def detail(self, **fields: object) -> str:
        """The registry-specific sentence for `Reason.detail`.

        Raises KeyError when the template needs a field that was not given: a mismatch between
        the judgement and the catalog is a bug, and the unit tests render every code.
        """
        return self.detail_template.format(param=self.parameter or "", **fields)


@dataclass(frozen=True)
class _Entry:
    code: str
    parameter_name: str | None
    title: str
    severity: Severity
    explanation: str
    detail: str
    remediation: str | None
    docs: str


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _load_entry(filename: str, raw: Any) -> _Entry:
    expected = {
        "code",
        "parameter",
        "title",
        "severity",
        "explanation",
        "detail",
        "remediation",
        "docs",
    }
    if not isinstance(raw, dict) or set(raw) != expected:
        raise ValueError(f"reason file {filename}: keys must be exactly {sorted(expected)}")
    code = raw["code"]
    if filename != f"{code}.json":
        raise ValueError(f"reason file {filename}: holds code {code!r}; name the file after it")
    for key in ("title", "explanation", "detail", "docs"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ValueError(f"reason file {filename}: {key} must be a non-empty string")
    parameter = raw["parameter"]
    if parameter is not None and (not isinstance(parameter, str) or not parameter):
        raise ValueError(f"reason file {filename}: parameter must be a name or null")
    # Only parameterised codes may mention {param}; title and explanation take nothing else.
    allowed = {"param"} if parameter else set()
    for key in ("title", "explanation"):
        if not _template_fields(raw[key]) <= allowed:
            raise ValueError(f"reason file {filename}: {key} may only use {sorted(allowed)}")
    if not parameter and "param" in _template_fields(raw["detail"]):
        raise ValueError(f"reason file {filename}: detail uses {{param}} but code takes none")
    if raw["remediation"] is not None and not isinstance(raw["remediation"], str):
        raise ValueError(f"reason file {filename}: remediation must be a string or null")
    return _Entry(
        code=code,
        parameter_name=parameter,
        title=raw["title"],
        severity=Severity(raw["severity"]),
        explanation=raw["explanation"],
        detail=raw["detail"],
        remediation=raw["remediation"],
        docs=raw["docs"],
    )


def _load() -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for item in resources.files("auditor.reasons").iterdir():
        if item.name.endswith(".json") and item.name != control_map.FILENAME:
            entry = _load_entry(item.name, json.loads(item.read_text(encoding="utf-8")))
            entries[entry.code] = entry
    return entries


_CATALOG = _load()
CONTROLS = control_map.load(_CATALOG)


def codes() -> tuple[str, ...]:
    """Every base code in the catalog, sorted."""
    return tuple(sorted(_CATALOG))


def is_parameterised(base_code: str) -> bool:
    return _CATALOG[base_code].parameter_name is not None


def describe(code: str) -> ReasonInfo:
    """Metadata for a code, parameterised (`category_missing:X`) or not.

    Raises KeyError for a code the catalog does not know, a parameterised code without its
    parameter, or a plain code given one.
    """
    base, sep, parameter = code.partition(SEPARATOR)
    entry = _CATALOG.get(base)
    if entry is None:
        raise KeyError(f"unknown reason code {code!r}")
    if entry.parameter_name is not None and not parameter:
        raise KeyError(f"reason code {base!r} needs a parameter: {base}:<{entry.parameter_name}>")
    if entry.parameter_name is None and sep:
        raise KeyError(f"reason code {base!r} takes no parameter")
    param = parameter if entry.parameter_name is not None else None
    return ReasonInfo(
        code=code,
        base_code=base,
        parameter=param,
        title=entry.title.format(param=param or ""),
        severity=entry.severity,
        explanation=entry.explanation.format(param=param or ""),
        remediation=entry.remediation,
        docs_url=entry.docs,
        detail_template=entry.detail,
        controls=CONTROLS.of(base),
    )


def violated_controls(codes: Iterable[str]) -> tuple[Control, ...]:
    """The controls any of these codes (with or without a parameter) violates, each once, in
    the mapping's order; a code the catalog does not know violates none."""
    found = {c.id for code in codes for c in CONTROLS.of(code.partition(SEPARATOR)[0])}
    return tuple(c for c in CONTROLS.controls if c.id in found)


def reason(code: str, **fields: object) -> Reason:
    """A `Reason` whose detail is rendered from the catalog."""
    return Reason(code=code, detail=describe(code).detail(**fields))
