"""Finds every registry in scope: Resource Graph first (one query per <300 subscriptions,
paged), the per-subscription ARM list as fallback for any batch Resource Graph could not serve."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from auditor.azure.errors import describe_error
from auditor.facts import Registry
from auditor.ports import InventoryReads
from auditor.tags import tag_pairs

log = logging.getLogger(__name__)

# Resource Graph accepts up to 1,000 subscriptions per query but recommends batches under 300.
SUBSCRIPTION_BATCH = 299
PAGE_SIZE = 1000
REGISTRY_QUERY = (
    "resources"
    " | where type =~ 'microsoft.containerregistry/registries'"
    " | project id, name, subscriptionId, resourceGroup, location, sku, properties, systemData,"
    " tags"
    " | order by id asc"
)
_REGISTRY_ID = re.compile(
    r"^/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.ContainerRegistry/registries/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


_READABLE_STATES = ("enabled", "pastdue", "warned")
NOT_VISIBLE = (
    "not visible to the auditor's identity: not among the subscriptions it can list"
    " (a mistyped id, or no role on it)"
)


class InventoryError(RuntimeError):
    pass


@dataclass
class Inventory:
    registries: list[Registry] = field(default_factory=list)
    # Subscriptions listed completely (by Resource Graph or ARM).
    complete: set[str] = field(default_factory=set)
    # Subscription -> why its registries could not be listed.
    failed: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    graph_queries: int = 0
    arm_list_calls: int = 0


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def registry_from_graph_row(row: Any) -> Registry:
    """One Resource Graph row to a Registry; raises InventoryError naming what is malformed."""
    if not isinstance(row, dict):
        raise InventoryError(f"Resource Graph row is not an object: {type(row).__name__}")
    rid = row.get("id")
    match = _REGISTRY_ID.match(rid) if isinstance(rid, str) else None
    if match is None or not isinstance(rid, str):
        raise InventoryError(f"Resource Graph row has no valid registry id: {str(rid)[:200]!r}")
    props = row.get("properties") if isinstance(row.get("properties"), dict) else {}
    sku = row.get("sku") if isinstance(row.get("sku"), dict) else {}
    system = row.get("systemData") if isinstance(row.get("systemData"), dict) else {}
    assert isinstance(props, dict) and isinstance(sku, dict) and isinstance(system, dict)
    return Registry(
        id=rid,
        name=match.group("name"),
        subscription_id=match.group("sub").lower(),
        resource_group=match.group("rg"),
        location=str(row.get("location") or ""),
        sku=str(sku.get("name") or ""),
        admin_user_enabled=_bool_or_none(props.get("adminUserEnabled")),
        anonymous_pull_enabled=_bool_or_none(props.get("anonymousPullEnabled")),
        created_at=_parse_time(system.get("createdAt")) or _parse_time(props.get("creationDate")),
        tags=tag_pairs(row.get("tags")),
    )


def registry_from_model(model: Any) -> Registry:
    rid = getattr(model, "id", None)
    match = _REGISTRY_ID.match(rid) if isinstance(rid, str) else None
    if match is None or not isinstance(rid, str):
        raise InventoryError(f"registry list returned an invalid id: {str(rid)[:200]!r}")
    system = getattr(model, "system_data", None)
    sku = getattr(model, "sku", None)
    return Registry(
        id=rid,
        name=match.group("name"),
        subscription_id=match.group("sub").lower(),
        resource_group=match.group("rg"),
        location=str(getattr(model, "location", "") or ""),
        sku=str(getattr(sku, "name", "") or ""),
        admin_user_enabled=_bool_or_none(getattr(model, "admin_user_enabled", None)),
        anonymous_pull_enabled=_bool_or_none(getattr(model, "anonymous_pull_enabled", None)),
        created_at=_parse_time(getattr(system, "created_at", None))
        or _parse_time(getattr(model, "creation_date", None)),
        tags=tag_pairs(getattr(model, "tags", None)),
    )


def registry_from_id(resource_id: str) -> Registry:
    """A Registry known only by its id (when ARM cannot be asked for more)."""
    match = _REGISTRY_ID.match(resource_id.strip())
    if match is None:
        raise InventoryError(f"not a container registry id: {resource_id[:200]!r}")
    return Registry(
        id=resource_id.strip(),
        name=match.group("name"),
        subscription_id=match.group("sub").lower(),
        resource_group=match.group("rg"),
    )


def read_registry(clients: InventoryReads, resource_id: str) -> Registry:
    known = registry_from_id(resource_id)
    model = clients.registries(known.subscription_id).registries.get(
        known.resource_group, known.name
    )
    return registry_from_model(model)


def _bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _listed_subscriptions(clients: InventoryReads) -> dict[str, str]:
    """Every subscription the identity can list, with its state (lower case)."""
    listed: dict[str, str] = {}
    for sub in clients.subscriptions().subscriptions.list():
        sub_id = getattr(sub, "subscription_id", None)
        if isinstance(sub_id, str) and sub_id:
            listed[sub_id.lower()] = str(getattr(sub, "state", "") or "").lower()
    return listed


def list_subscriptions(clients: InventoryReads) -> list[str]:
    # Disabled or deleted subscriptions have no readable resources.
    listed = _listed_subscriptions(clients)
    return sorted(s for s, state in listed.items() if state in ("", *_READABLE_STATES))


def _visible(clients: InventoryReads, subs: list[str], inv: Inventory) -> list[str]:
    """The configured `subs` the identity can list; the others are failed on `inv`. All of
    them when the list cannot be read: `discover` then confirms each one on its own."""
    try:
        listed = _listed_subscriptions(clients)
    except AzureError as exc:
        inv.errors.append(
            "subscription list unreadable, configured subscriptions confirmed one by one: "
            + describe_error(exc)
        )
        return subs
    for sub in subs:
        if sub not in listed:
            inv.failed[sub] = NOT_VISIBLE
    return [s for s in subs if s in listed]


def visible_subscriptions(
    clients: InventoryReads, subscriptions: Sequence[str], inv: Inventory
) -> list[str]:
    """The configured `subscriptions` the identity can list (the others failed on `inv`), or
    every readable one it can list when none are configured."""
    if subscriptions:
        return _visible(clients, sorted({s.lower() for s in subscriptions}), inv)
    return list_subscriptions(clients)


def _batches(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


Found = Callable[[Sequence[Registry]], None]


def _graph_batch(
    clients: InventoryReads, subs: list[str], inv: Inventory, found: Found
) -> set[str]:
    """The batch's registries, added to `inv` (and handed to `found`) a page at a time; the
    subscriptions they are in. A page kept before a later one fails stays in `inv`."""
    graph = clients.resource_graph()
    batch = set(subs)
    seen: set[str] = set()
    skip: str | None = None
    while True:
        options = QueryRequestOptions(top=PAGE_SIZE, skip_token=skip, result_format="objectArray")
        response = graph.resources(
            QueryRequest(subscriptions=subs, query=REGISTRY_QUERY, options=options)
        )
        inv.graph_queries += 1
        data = response.data
        if not isinstance(data, list):
            raise InventoryError("Resource Graph returned data that is not a list of rows")
        page: list[Registry] = []
        for row in data:
            try:
                registry = registry_from_graph_row(row)
            except InventoryError as exc:
                # A malformed row is reported, never silently dropped with its batch.
                inv.errors.append(str(exc))
                continue
            seen.add(registry.subscription_id)
            if registry.subscription_id in batch:
                page.append(registry)
        inv.registries.extend(page)
        found(page)
        skip = response.skip_token
        if not skip:
            return seen


def _arm_list(clients: InventoryReads, sub: str, inv: Inventory) -> list[Registry]:
    inv.arm_list_calls += 1
    found = []
    for model in clients.registries(sub).registries.list():
        try:
            found.append(registry_from_model(model))
        except InventoryError as exc:
            inv.errors.append(f"subscription {sub}: {exc}")
    return found


def _confirm(clients: InventoryReads, sub: str, inv: Inventory, found: Found) -> None:
    """List `sub` through ARM: complete when it answers, failed with the reason when it
    refuses (403/404, where Resource Graph would stay silent)."""
    try:
        listed = _arm_list(clients, sub, inv)
    except AzureError as exc:
        inv.failed[sub] = describe_error(exc)
        return
    inv.registries.extend(listed)
    inv.complete.add(sub)
    found(listed)


def discover(
    clients: InventoryReads,
    subscriptions: Sequence[str],
    *,
    expected: Collection[str] | Callable[[], Collection[str]] = frozenset(),
    progress: Callable[[str], None] | None = None,
    found: Found | None = None,
) -> Inventory:
    """List registries of `subscriptions` (all visible ones when empty).

    `expected` names subscriptions known to hold registries (or returns them when first needed,
    after Resource Graph's first answer, so the caller's read of them can overlap it). Resource
    Graph silently leaves out subscriptions the identity cannot read, so an expected
    subscription that comes back empty is confirmed with an ARM list before its registries can
    be called removed. Configured
    `subscriptions` are all expected: one the identity cannot list, or whose ARM list is
    refused, is failed on the inventory, never an empty success.

    `found` is handed each registry once, a page at a time as the pages arrive, so that its
    settings can be read while the next page is on its way.
    """
    handed: set[str] = set()

    def hand(registries: Sequence[Registry]) -> None:
        new = [r for r in registries if r.key not in handed]
        handed.update(r.key for r in new)
        if new and found is not None:
            found(new)

    inv = Inventory()
    subs = visible_subscriptions(clients, subscriptions, inv)
    configured = subs if subscriptions else []
    known: set[str] | None = None
    for batch in _batches(subs, SUBSCRIPTION_BATCH):
        try:
            seen = _graph_batch(clients, batch, inv, hand)
        except (AzureError, InventoryError) as exc:
            inv.errors.append(
                f"Resource Graph failed, listing per subscription: {describe_error(exc)}"
            )
            log.warning("Resource Graph failed for %d subscriptions: %s", len(batch), exc)
            for sub in batch:
                _confirm(clients, sub, inv, hand)
        else:
            if known is None:
                known = {*(expected() if callable(expected) else expected), *configured}
            for sub in batch:
                if sub in seen or sub not in known:
                    inv.complete.add(sub)
                else:
                    _confirm(clients, sub, inv, hand)
        if progress:
            progress(
                f"inventory: {len(inv.registries)} registries in {len(inv.complete)} subscriptions"
            )
    # Resource Graph and ARM can both report a registry; keep one per id.
    unique: dict[str, Registry] = {}
    for reg in inv.registries:
        unique.setdefault(reg.key, reg)
    inv.registries = sorted(unique.values(), key=lambda r: r.key)
    return inv
