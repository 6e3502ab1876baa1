"""Exemptions, pure: a registry excused from the logging requirement for a reason, until a
date (see docs/exemptions.md, modelled on Azure Policy exemptions). A run applies them to its
final verdicts (`apply`): an exempt registry gets the status `exempt`, its reasons kept and
led by `exempted:<the status it would otherwise have>`.

Two sources: the registry's tag `acr-auditor-exempt: <reason>; until=<YYYY-MM-DD>` (optional
`; category=Waiver|Mitigated`), and a setting listing registry ids (`parse_setting`, JSON).
The setting wins over a tag for the same registry: the auditor's owners wrote it, while
anyone who may write the registry's tags can write the tag.

A malformed exemption never crashes the audit and never exempts: it is a finding
(`exemption_malformed`), and so is an expired one (`exemption_expired`), so a forgotten
waiver shows up instead of silently lapsing. Every exemption expires: one without `until`, or
further ahead than `max_days`, is malformed.
"""

from __future__ import annotations

import enum
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from auditor.facts import Reason, Status, Verdict, normalize_id
from auditor.reasons import catalog
from auditor.reasons.catalog import reason

TAG = "acr-auditor-exempt"
MAX_DAYS = 366
MALFORMED = catalog.EXEMPTION_MALFORMED
EXPIRED = catalog.EXEMPTION_EXPIRED
# Azure caps a tag value at 256 characters; a longer one did not come from Azure.
_MAX_VALUE = 256
_MAX_REASON = 200
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_OPTION = re.compile(r"\s*(?P<key>[A-Za-z]+)\s*[=:]\s*(?P<value>.*?)\s*", re.DOTALL)
_REGISTRY_ID = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.containerregistry"
    r"/registries/[a-z0-9]{5,50}$"
)


class Category(enum.StrEnum):
    """Azure Policy's exemption categories."""

    WAIVER = "Waiver"  # accepted as not compliant, for now
    MITIGATED = "Mitigated"  # the intent is met another way (e.g. logs shipped by other means)


@dataclass(frozen=True)
class Exemption:
    reason: str
    category: Category
    expires_on: datetime  # exclusive: `until` is the last exempt day (UTC)
    source: str  # "tag" or "setting"

    @property
    def last_day(self) -> str:
        """The last exempt day, as `until` / `expiresOn` state it."""
        return (self.expires_on - timedelta(days=1)).date().isoformat()


@dataclass(frozen=True)
class Resolution:
    """A registry's exemption if one applies now, and the findings its exemptions raise."""

    exemption: Exemption | None = None
    findings: tuple[Reason, ...] = ()


class MalformedExemption(ValueError):
    pass


class ExemptionSettingError(ValueError):
    """The setting is not valid; the message names the entry and field."""


def shown(value: str, limit: int = 60) -> str:
    """A value quoted in a finding: escaped (no control or direction characters reach a
    terminal or page) and cut short."""
    text = value if len(value) <= limit else value[: limit - 1] + "…"
    return ascii(text) if _unsafe(text) else repr(text)


def _unsafe(text: str) -> bool:
    # Cc: controls; Cf: format characters, among them the bidi overrides that disguise text.
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text)


def _reason(text: str) -> str:
    reason = " ".join(text.split())
    if not reason:
        raise MalformedExemption("no reason given before the first ';'")
    if _unsafe(reason):
        raise MalformedExemption("the reason holds control or invisible characters")
    if len(reason) > _MAX_REASON:
        raise MalformedExemption(f"the reason is longer than {_MAX_REASON} characters")
    return reason


def _expiry(text: str) -> datetime:
    """The instant an exemption ends: the day after its last day, 00:00 UTC."""
    value = text.strip()
    if not _DATE.match(value):
        raise MalformedExemption(f"{shown(value, 30)} is not a date like 2030-01-31")
    try:
        last = date.fromisoformat(value)
    except ValueError:
        raise MalformedExemption(f"{value} is not a calendar date") from None
    if last == date.max:
        raise MalformedExemption(f"{value} is the last day of the calendar: no expiry")
    return datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)


def _until(text: str, now: datetime, max_days: int) -> datetime:
    expires = _expiry(text)
    if expires - now > timedelta(days=max_days):
        raise MalformedExemption(f"until={text.strip()} is more than {max_days} days ahead")
    return expires


def _category(text: str) -> Category:
    for c in Category:
        if c.value.lower() == text.strip().lower():
            return c
    raise MalformedExemption(f"category={shown(text.strip(), 30)} is not Waiver or Mitigated")


def _options(parts: list[str]) -> dict[str, str]:
    """`key=value` (or `key: value`) parts, keys lower-cased; unknown or repeated keys are
    malformed: a typo (`untill`) must not make an exemption that never expires."""
    options: dict[str, str] = {}
    for part in parts:
        if not part.strip():
            continue  # a trailing ';'
        m = _OPTION.fullmatch(part)
        if m is None or m["key"].lower() not in ("until", "category"):
            raise MalformedExemption(f"{shown(part.strip(), 30)} is not until=… or category=…")
        key = m["key"].lower()
        if key in options:
            raise MalformedExemption(f"{key} is given twice")
        options[key] = m["value"]
    return options


def parse_tag_value(value: str, *, now: datetime, max_days: int = MAX_DAYS) -> Exemption:
    """The exemption a tag value states; MalformedExemption saying what is wrong."""
    if len(value) > _MAX_VALUE:
        raise MalformedExemption(f"the value is longer than {_MAX_VALUE} characters")
    reason_text, *rest = value.split(";")
    reason = _reason(reason_text)
    options = _options(rest)
    if "until" not in options:
        raise MalformedExemption("no until=<YYYY-MM-DD>: every exemption must expire")
    category = _category(options["category"]) if "category" in options else Category.WAIVER
    return Exemption(reason, category, _until(options["until"], now, max_days), "tag")


def from_tags(
    tags: Mapping[str, object] | None, *, now: datetime, max_days: int = MAX_DAYS
) -> Resolution:
    """The exemption a registry's tags state. Tag names compare without case, as in Azure."""
    values = [v for k, v in (tags or {}).items() if isinstance(k, str) and k.lower() == TAG]
    if not values:
        return Resolution()
    if len(values) > 1 or not isinstance(values[0], str):
        return _malformed("tag", "the tag is given more than once or is not text")
    try:
        exemption = parse_tag_value(values[0], now=now, max_days=max_days)
    except MalformedExemption as exc:
        return _malformed("tag", str(exc))
    return _in_force(exemption, now)


def _malformed(source: str, problem: str) -> Resolution:
    where = f"The {TAG} tag" if source == "tag" else "The exemptions setting"
    return Resolution(findings=(reason(MALFORMED, where=where, problem=problem),))


def _in_force(exemption: Exemption, now: datetime) -> Resolution:
    if now < exemption.expires_on:
        return Resolution(exemption=exemption)
    expired = reason(
        EXPIRED,
        category=exemption.category.value.lower(),
        reason=shown(exemption.reason),
        last_day=exemption.last_day,
    )
    return Resolution(findings=(expired,))


def resolve(
    registry_id: str,
    tags: Mapping[str, object] | None,
    setting: Mapping[str, Exemption],
    *,
    now: datetime,
    max_days: int = MAX_DAYS,
) -> Resolution:
    """The registry's exemption: the setting's entry if it has one, else its tag."""
    entry = setting.get(normalize_id(registry_id))
    if entry is not None:
        return _in_force(entry, now)
    return from_tags(tags, now=now, max_days=max_days)


# --------------------------------------------------------------------------- in a run

_OWN_CODES = frozenset({catalog.EXEMPTED, MALFORMED, EXPIRED})


def apply(
    verdicts: Iterable[Verdict],
    setting: Mapping[str, Exemption],
    *,
    now: datetime,
    max_days: int = MAX_DAYS,
) -> tuple[Verdict, ...]:
    """The verdicts with their exemptions: one in force makes the registry `exempt`, its
    reasons kept behind `exempted:<status it would otherwise have>`; a malformed or expired
    one adds its finding and keeps the status (the registry is judged as usual). Removed
    registries are left alone; applying twice changes nothing."""
    return tuple(_apply_one(v, setting, now, max_days) for v in verdicts)


def _apply_one(
    verdict: Verdict, setting: Mapping[str, Exemption], now: datetime, max_days: int
) -> Verdict:
    if verdict.status in (Status.REMOVED, Status.EXEMPT):
        return verdict
    registry = verdict.registry
    found = resolve(registry.id, dict(registry.tags), setting, now=now, max_days=max_days)
    kept = tuple(r for r in verdict.reasons if _base(r.code) not in _OWN_CODES)
    exemption = found.exemption
    if exemption is None:
        if not found.findings and kept == verdict.reasons:
            return verdict
        return replace(verdict, reasons=tuple(sorted((*kept, *found.findings), key=_code)))
    marker = reason(
        f"{catalog.EXEMPTED}{catalog.SEPARATOR}{verdict.status.value}",
        category=exemption.category.value,
        until=exemption.last_day,
        source=f"{TAG} tag" if exemption.source == "tag" else "exemptions setting",
        reason=shown(exemption.reason, _MAX_REASON),
    )
    return replace(verdict, status=Status.EXEMPT, reasons=(marker, *kept))


def otherwise(code: str) -> Status | None:
    """For the reason `exempted:<status>`, the status its registry would have without the
    exemption; None for any other code."""
    base, _, param = code.partition(catalog.SEPARATOR)
    return Status(param) if base == catalog.EXEMPTED and param in _STATUSES else None


_STATUSES = frozenset(s.value for s in Status)


def _base(code: str) -> str:
    return code.partition(catalog.SEPARATOR)[0]


def _code(item: Reason) -> str:
    return item.code


# --------------------------------------------------------------------------- the setting


def parse_setting(text: str) -> dict[str, Exemption]:
    """The exemptions setting (JSON, see docs/exemptions.md) by normalized registry id.
    ExemptionSettingError naming the entry for anything invalid: a setting is checked when
    the auditor starts, so a mistake stops it with a message instead of exempting nothing
    (or too much). Expiry is judged later (`resolve`): an entry valid when written lapses."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ExemptionSettingError(f"not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ExemptionSettingError("expected a JSON list of exemptions")
    out: dict[str, Exemption] = {}
    for i, entry in enumerate(data):
        rid, exemption = _entry(entry, f"[{i}]")
        if rid in out:
            raise ExemptionSettingError(f"[{i}].registryId: the registry is listed twice")
        out[rid] = exemption
    return out


def _entry(entry: Any, where: str) -> tuple[str, Exemption]:
    if not isinstance(entry, dict):
        raise ExemptionSettingError(f"{where}: expected an object")
    unknown = sorted(str(k) for k in entry if k not in _FIELDS)
    if unknown:
        raise ExemptionSettingError(f"{where}.{shown(unknown[0], 30)}: unknown field")
    for key in ("registryId", "reason", "expiresOn"):
        if not isinstance(entry.get(key), str):
            raise ExemptionSettingError(f"{where}.{key}: required, a string")
    rid = normalize_id(entry["registryId"])
    if not _REGISTRY_ID.match(rid):
        raise ExemptionSettingError(f"{where}.registryId: not a container registry id")
    try:
        reason = _reason(entry["reason"])
        category = _category(str(entry.get("exemptionCategory", "Waiver")))
        # No horizon here: the owners of the setting decide how long a waiver runs.
        expires = _expiry(entry["expiresOn"])
    except MalformedExemption as exc:
        raise ExemptionSettingError(f"{where}: {exc}") from None
    return rid, Exemption(reason, category, expires, "setting")


_FIELDS = ("registryId", "reason", "exemptionCategory", "expiresOn", "ticket", "approvedBy")
