"""The registry tags the auditor reads, the only ones `Registry.tags` keeps (a fleet of 10,000
registries need not hold every tag), and a setting's tag rule (`name` or `name=value`).

The exemption tag (`exemptions.TAG`) is always kept; a setting that names a tag (the remediation
tag, AUDITOR_REMEDIATION_TAG) adds it when it is read (`keep`). The set is the process's: the
inventory builds registries apart from the settings (`discover` takes none). A name is never
dropped again, since a kept tag nobody reads costs a few bytes, while a dropped one a setting
reads would take a registry out of its scope.

Tag names compare without case, as in Azure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from auditor.exemptions import TAG, shown

# Lower-case names. Only added to, and only tested for membership, so threads may share it.
_KEPT: set[str] = {TAG}
# Azure's limits: a tag name of at most 512 characters without these, a value of at most 256.
_NAME_MAX = 512
_VALUE_MAX = 256
_NOT_IN_NAME = frozenset("<>%&\\?/")


def keep(name: str) -> None:
    """Keep the tag `name` on every registry read from now on."""
    _KEPT.add(name.lower())


def kept() -> frozenset[str]:
    """The tag names kept now (lower case)."""
    return frozenset(_KEPT)


def tag_pairs(tags: object) -> tuple[tuple[str, str], ...]:
    """The tags `Registry.tags` keeps, from Azure's tag object: the kept names only (any case;
    a value that is not text is kept as text, and found malformed where it is read)."""
    if not isinstance(tags, Mapping):
        return ()
    return tuple(
        (name, value if isinstance(value, str) else json.dumps(value))
        for name, value in tags.items()
        if isinstance(name, str) and name.lower() in _KEPT
    )


@dataclass(frozen=True)
class TagRule:
    """A tag a registry carries: `name` in any case and, when `value` is given, that value
    exactly (spaces around it aside)."""

    name: str
    value: str | None = None

    def matches(self, tags: Iterable[tuple[str, str]]) -> bool:
        wanted = self.name.lower()
        return any(
            name.lower() == wanted and (self.value is None or value.strip() == self.value)
            for name, value in tags
        )

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}={self.value}"


def parse_rule(text: str) -> TagRule:
    """`name` or `name=value` (split at the first `=`, each part trimmed); ValueError saying
    what is wrong. Never the exemption tag: an exempt registry is left alone."""
    name, sep, value = (part.strip() for part in text.partition("="))
    if not name:
        raise ValueError("has no tag name (expected name or name=value)")
    if len(name) > _NAME_MAX or _NOT_IN_NAME & set(name):
        raise ValueError(
            f"{shown(name)} is not an Azure tag name (at most {_NAME_MAX} characters, "
            "none of < > % & \\ ? /)"
        )
    if name.lower() == TAG:
        raise ValueError(f"{TAG} is the exemption tag: an exempt registry is never remediated")
    if sep and not value:
        raise ValueError(f"has no value after {shown(name)}= (leave out '=' to accept any value)")
    if len(value) > _VALUE_MAX:
        raise ValueError(f"the value is longer than Azure's {_VALUE_MAX} characters")
    return TagRule(name, value if sep else None)
