"""The reads of a change-driven run (issue #15): which registries it lists, which it reads
the settings of, and which it judges again from the settings the last run read.

Each subscription's activity log since it was last listed (`azure/activity_log.py`) names
the registries whose diagnostic settings or registry changed; `change_feed.select` turns it
into reads. The inventory comes from the store too (`inventory`): the registries it holds,
less those the log says were deleted, plus those it says were created or updated, each read
from ARM; a subscription whose log cannot cover the time since, or whose stored rows lack a
registry's facts, is listed as a full sweep lists it. A registry is read anyway when nothing
usable is stored for it (new, or its last read failed), and so is every registry of a
subscription whose log could not be read. The rest are judged from their stored settings
under the current policy, so a changed policy applies to them too.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError, ResourceNotFoundError

from auditor import change_feed
from auditor.azure.activity_log import ActivityLogReader
from auditor.azure.errors import describe_error
from auditor.azure.inventory import Inventory, InventoryError, read_registry, registry_from_id
from auditor.change_feed import ChangeLog, StoredRegistry
from auditor.facts import CategoryInfo, DiagnosticSetting, Registry, Verdict
from auditor.judgement import judge
from auditor.policy import Policy
from auditor.ports import ActivityLogReads, InventoryReads

# A registry the store has no row for: new since the last run.
NOT_STORED = "not_stored"
# Activity-log listings in flight at once (two per subscription; ARM paces them).
_LOG_READERS = 8
# Registries read one by one at once when the log says they were created, updated or deleted.
_REGISTRY_READERS = 8


@dataclass
class ChangePlan:
    read: list[Registry] = field(default_factory=list)
    kept: list[Verdict] = field(default_factory=list)  # judged from stored settings
    rereads: dict[str, tuple[str, ...]] = field(default_factory=dict)  # registry key -> why
    full: dict[str, str] = field(default_factory=dict)  # subscription -> why all is read

    def extend(self, more: ChangePlan) -> None:
        """Adds the plan of more registries (`plan` decides each one from its own
        subscription's log alone)."""
        self.read += more.read
        self.kept += more.kept
        self.rereads.update(more.rereads)
        self.full.update(more.full)


def plan(
    registries: Sequence[Registry],
    *,
    stored: Callable[[Registry], tuple[DiagnosticSetting, ...] | None],
    known: Collection[str],
    logs: Mapping[str, ChangeLog],
    watermarks: Mapping[str, datetime],
    now: datetime,
    overlap: timedelta,
    categories: Sequence[CategoryInfo],
    policy: Policy,
) -> ChangePlan:
    """Pure: the reads and the verdicts kept, given each registry's stored settings (None:
    none usable), the keys of the registries stored as present, the activity logs and when
    each subscription was last listed."""
    previous = {r.key: stored(r) for r in registries}
    selection = change_feed.select(
        [StoredRegistry(r.id, r.subscription_id, previous[r.key] is not None) for r in registries],
        logs,
        watermarks=watermarks,
        now=now,
        overlap=overlap,
    )
    result = ChangePlan(full=dict(selection.full))
    for registry in registries:
        settings = previous[registry.key]
        in_full = registry.subscription_id.lower() in selection.full
        why: tuple[str, ...] = tuple(selection.reads.get(registry.key, ()))
        if registry.key not in known:
            why = (NOT_STORED,)
        if settings is None or why or in_full:
            result.read.append(registry)
            if not in_full:
                result.rereads[registry.key] = why
        else:
            result.kept.append(judge(registry, settings, categories, policy))
    return result


def read_logs(
    clients: ActivityLogReads,
    watermarks: Mapping[str, datetime | None],
    now: datetime,
    overlap: timedelta,
) -> dict[str, ChangeLog]:
    """Each subscription's changes since its watermark (less the overlap); none for one whose
    window cannot be covered (`change_feed.select` then reads it in full, with the reason)."""
    windows = {
        sub: window
        for sub, mark in sorted(watermarks.items())
        if (window := change_feed.query_window(mark, now, overlap)) is not None
    }
    if not windows:
        return {}
    reader = ActivityLogReader(clients)
    with ThreadPoolExecutor(max_workers=min(_LOG_READERS, len(windows))) as pool:
        found = pool.map(lambda item: reader.changes(item[0], *item[1]), windows.items())
        return dict(zip(windows, found, strict=True))


def inventory(
    clients: InventoryReads,
    subscriptions: Sequence[str],
    *,
    stored: Sequence[Registry],
    facts: Callable[[Registry], bool],
    logs: Mapping[str, ChangeLog],
    listing: Callable[[list[str]], Inventory],
) -> Inventory:
    """The registries of the visible `subscriptions` without listing the fleet: for each one
    whose activity log was read and whose stored registries all carry their facts, the
    stored ones, updated from ARM where the log says a registry was created, updated or
    deleted (a 404 confirms a deletion); the others through `listing` (Resource Graph, as a
    full sweep lists them)."""
    by_sub: dict[str, list[Registry]] = {s: [] for s in subscriptions}
    for registry in stored:
        if registry.subscription_id in by_sub:
            by_sub[registry.subscription_id].append(registry)
    from_store = [
        s
        for s in subscriptions
        if (log := logs.get(s)) is not None
        and log.error is None
        and all(facts(r) for r in by_sub[s])
    ]
    to_list = [s for s in subscriptions if s not in from_store]
    found = listing(to_list) if to_list else Inventory()
    registries = {r.key: r for s in from_store for r in by_sub[s]}
    events = sorted(rid for s in from_store for rid in change_feed.registry_events(logs[s]))
    _reread(clients, events, registries, found.errors)
    found.registries = sorted([*found.registries, *registries.values()], key=lambda r: r.key)
    found.complete.update(from_store)
    return found


def _reread(
    clients: InventoryReads,
    events: Sequence[str],
    registries: dict[str, Registry],
    errors: list[str],
) -> None:
    """Brings `registries` up to date with ARM for the registry ids in `events`."""
    if not events:
        return
    with ThreadPoolExecutor(max_workers=min(_REGISTRY_READERS, len(events))) as pool:
        found = pool.map(lambda r: _registry(clients, r), events)
        for rid, now in zip(events, found, strict=True):
            if isinstance(now, Registry):
                registries[rid] = now
            elif now is None:
                registries.pop(rid, None)  # deleted
            else:
                errors.append(f"registry {rid}: {now}")
                registries.setdefault(rid, registry_from_id(rid))


def _registry(clients: InventoryReads, registry_id: str) -> Registry | str | None:
    """The registry as ARM has it now; None when it is gone; the error when unreadable (it
    is then judged from what its settings read says)."""
    try:
        return read_registry(clients, registry_id)
    except ResourceNotFoundError:
        return None
    except (AzureError, InventoryError) as exc:
        return f"could not be read after the activity log named it: {describe_error(exc)}"
