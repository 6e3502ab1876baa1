"""What "compliant" means: the validated configuration of the judgement.

A `Policy` is plain data checked once, when it is built, so a bad configuration stops the
auditor at start-up with a message naming the field instead of producing wrong verdicts.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field
from typing_extensions import TypedDict

from auditor.errors import ConfigError
from auditor.exemptions import Exemption
from auditor.facts import normalize_id

LOGIN_EVENTS = "ContainerRegistryLoginEvents"
REPOSITORY_EVENTS = "ContainerRegistryRepositoryEvents"
ACR_LOG_CATEGORIES: tuple[str, ...] = (LOGIN_EVENTS, REPOSITORY_EVENTS)
ALL_METRICS = "AllMetrics"
# Category groups of the registry resource type; a group is not a category, so listing one
# as a required category is a configuration mistake worth catching.
ACR_CATEGORY_GROUPS: tuple[str, ...] = ("allLogs", "audit")

GUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Resource group names allow letters, digits, `_`, `-`, `.`, `(` and `)`; workspace names
# 4-63 alphanumerics and hyphens. Matched case-insensitively: ARM ids are.
_WORKSPACE_ID = re.compile(
    rf"/subscriptions/{GUID_PATTERN}/resourceGroups/[-\w.()]{{1,90}}"
    r"/providers/Microsoft\.OperationalInsights/workspaces/[A-Za-z0-9][-A-Za-z0-9]{2,62}",
    re.IGNORECASE,
)
_CATEGORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class Destination(enum.StrEnum):
    """Destination kinds a policy can accept (marketplace partners are never accepted)."""

    WORKSPACE = "workspace"
    STORAGE = "storage"
    EVENTHUB = "eventhub"


def is_workspace_id(value: str) -> bool:
    """True for a full ARM id of a Log Analytics workspace, in any letter case."""
    return _WORKSPACE_ID.fullmatch(value.strip().rstrip("/")) is not None


@dataclass(frozen=True)
class Policy:
    """The judgement's configuration.

    Fields may be given as any iterable (or, for destinations, as plain strings); they are
    normalised on construction: categories to a tuple, destinations to `Destination`s,
    workspace ids to `normalize_id` form for case-insensitive comparison.
    """

    required_categories: tuple[str, ...] = ACR_LOG_CATEGORIES
    require_metrics: bool = True
    accepted_destinations: frozenset[Destination] = frozenset({Destination.WORKSPACE})
    # Empty means any workspace is accepted.
    accepted_workspaces: frozenset[str] = frozenset()
    require_dedicated: bool = True
    metrics_category: str = ALL_METRICS
    # Exemptions the auditor's owners grant (AUDITOR_EXEMPTIONS), by normalized registry id
    # (`exemptions.parse_setting`); registries' own tags add theirs. Not hashed: a dict.
    exemptions: Mapping[str, Exemption] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "required_categories", _categories(self.required_categories))
        object.__setattr__(
            self, "accepted_destinations", parse_destinations(self.accepted_destinations)
        )
        object.__setattr__(self, "accepted_workspaces", _workspaces(self.accepted_workspaces))
        for name in ("require_metrics", "require_dedicated"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, "must be true or false")
        if not isinstance(self.metrics_category, str) or not _CATEGORY_NAME.fullmatch(
            self.metrics_category
        ):
            raise ConfigError("metrics_category", "must be a metrics category name")
        if not self.required_categories and not self.require_metrics:
            raise ConfigError(
                "required_categories",
                "is empty and metrics are not required, so the policy would require nothing",
            )
        if self.accepted_workspaces and Destination.WORKSPACE not in self.accepted_destinations:
            raise ConfigError(
                "accepted_workspaces",
                "lists workspaces, but 'workspace' is not an accepted destination",
            )

    def accepts_workspace(self, workspace_id: str) -> bool:
        """Whether this workspace is allowed, ignoring the destination type (Dedicated)."""
        if Destination.WORKSPACE not in self.accepted_destinations:
            return False
        return (
            not self.accepted_workspaces or normalize_id(workspace_id) in self.accepted_workspaces
        )


class PolicyDocument(TypedDict):
    """The policy a judgement applies, as the exports state it."""

    requiredCategories: list[str]
    requireMetrics: bool
    metricsCategory: str
    acceptedDestinations: Annotated[list[str], Field(description="sorted")]
    acceptedWorkspaces: Annotated[list[str], Field(description="empty: any workspace")]
    requireDedicated: bool
    fingerprint: Annotated[
        str,
        Field(description="SHA-256 of the other keys as canonical JSON: equal for equal policies"),
    ]


def policy_document(policy: Policy) -> PolicyDocument:
    document: PolicyDocument = {
        "requiredCategories": list(policy.required_categories),
        "requireMetrics": policy.require_metrics,
        "metricsCategory": policy.metrics_category,
        "acceptedDestinations": sorted(d.value for d in policy.accepted_destinations),
        "acceptedWorkspaces": sorted(policy.accepted_workspaces),
        "requireDedicated": policy.require_dedicated,
        "fingerprint": "",
    }
    terms = {key: value for key, value in document.items() if key != "fingerprint"}
    canonical = json.dumps(terms, sort_keys=True, separators=(",", ":"))
    document["fingerprint"] = hashlib.sha256(canonical.encode()).hexdigest()
    return document


def unknown_categories(policy: Policy, log_categories: Iterable[str]) -> tuple[str, ...]:
    """The required categories that are not among `log_categories` (the registry resource
    type's, from the categories API or the documented ones), compared case-insensitively:
    a misspelt name would otherwise make every registry noncompliant."""
    known = {name.casefold() for name in log_categories}
    return tuple(name for name in policy.required_categories if name.casefold() not in known)


def _categories(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError("required_categories", "must be a list of category names, not a string")
    names = tuple(value)
    seen: set[str] = set()
    groups = {group.casefold() for group in ACR_CATEGORY_GROUPS}
    for name in names:
        if not isinstance(name, str) or not _CATEGORY_NAME.fullmatch(name):
            raise ConfigError(
                "required_categories",
                f"{name!r} is not a category name (letters, digits, '_', '.', '-')",
            )
        if name.casefold() in groups:
            raise ConfigError(
                "required_categories",
                f"{name!r} is a category group, not a category; list the categories it should "
                f"cover (e.g. {', '.join(ACR_LOG_CATEGORIES)})",
            )
        if name.casefold() in seen:
            raise ConfigError("required_categories", f"{name!r} is listed twice")
        seen.add(name.casefold())
    return names


def parse_destinations(value: Iterable[Destination | str]) -> frozenset[Destination]:
    """Destination kinds from their names (any case); ConfigError names `accepted_destinations`."""
    if isinstance(value, str):
        raise ConfigError("accepted_destinations", "must be a list, not a string")
    allowed = ", ".join(d.value for d in Destination)
    kinds: set[Destination] = set()
    for item in value:
        try:
            kinds.add(Destination(item.strip().lower() if isinstance(item, str) else item))
        except ValueError:
            raise ConfigError(
                "accepted_destinations", f"{item!r} is not one of: {allowed}"
            ) from None
    if not kinds:
        raise ConfigError("accepted_destinations", f"must name at least one of: {allowed}")
    return frozenset(kinds)


def _workspaces(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise ConfigError("accepted_workspaces", "must be a list of workspace ids, not a string")
    ids: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not is_workspace_id(item):
            raise ConfigError(
                "accepted_workspaces",
                f"{item!r} is not a Log Analytics workspace id (expected /subscriptions/<guid>"
                "/resourceGroups/<rg>/providers/Microsoft.OperationalInsights/workspaces/<name>)",
            )
        ids.add(normalize_id(item))
    return frozenset(ids)
