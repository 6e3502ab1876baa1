"""The reads of a change-driven run (issue #15): which registries' settings are read from ARM
and which are judged again from the settings the last run read.

The activity log of each subscription since the last run (`azure/activity_log.py`) names the
registries whose diagnostic settings or registry changed; `change_feed.select` turns it into
reads. A registry is read anyway when nothing usable is stored for it (new since the last run,
or its last read failed), and so is every registry of a subscription whose activity log could
not be read. The rest are judged from their stored settings under the current policy, so a
changed policy applies to them too.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from auditor import change_feed
from auditor.azure.activity_log import ActivityLogReader
from auditor.change_feed import ChangeLog, StoredRegistry
from auditor.facts import CategoryInfo, DiagnosticSetting, Registry, Verdict
from auditor.judgement import judge
from auditor.policy import Policy
from auditor.ports import ActivityLogReads

# A registry the store has no row for: new since the last run.
NOT_STORED = "not_stored"
# A registry the last run did not judge (it was scoped to other subscriptions): its settings
# are older than the window the activity log is read over.
NOT_IN_LAST_RUN = "not_in_last_run"
# Activity-log listings in flight at once (two per subscription; ARM paces them).
_LOG_READERS = 8


@dataclass
class ChangePlan:
    read: list[Registry] = field(default_factory=list)
    kept: list[Verdict] = field(default_factory=list)  # judged from stored settings
    rereads: dict[str, tuple[str, ...]] = field(default_factory=dict)  # registry key -> why
    full: dict[str, str] = field(default_factory=dict)  # subscription -> why all is read


def plan(
    registries: Sequence[Registry],
    *,
    stored: Callable[[Registry], tuple[DiagnosticSetting, ...] | None],
    known: Collection[str],
    current: Callable[[Registry], bool],
    logs: Mapping[str, ChangeLog],
    watermark: datetime | None,
    now: datetime,
    overlap: timedelta,
    categories: Sequence[CategoryInfo],
    policy: Policy,
) -> ChangePlan:
    """Pure: the reads and the verdicts kept, given each registry's stored settings (None:
    none usable), the keys of the registries stored as present, whether the last run judged
    each (`current`), and the activity logs."""
    previous = {r.key: stored(r) for r in registries}
    selection = change_feed.select(
        [StoredRegistry(r.id, r.subscription_id, previous[r.key] is not None) for r in registries],
        logs,
        watermark=watermark,
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
        elif not why and settings is not None and not current(registry):
            why = (NOT_IN_LAST_RUN,)
        if settings is None or why or in_full:
            result.read.append(registry)
            if not in_full:
                result.rereads[registry.key] = why
        else:
            result.kept.append(judge(registry, settings, categories, policy))
    return result


def read_logs(
    clients: ActivityLogReads,
    subscriptions: Collection[str],
    watermark: datetime | None,
    now: datetime,
    overlap: timedelta,
) -> dict[str, ChangeLog]:
    """Each subscription's changes since `watermark` (less the overlap); none when the window
    cannot be covered (`change_feed.select` then reads everything, with the reason)."""
    window = change_feed.query_window(watermark, now, overlap)
    if window is None or not subscriptions:
        return {}
    reader = ActivityLogReader(clients)
    start, end = window
    subs = sorted(subscriptions)
    with ThreadPoolExecutor(max_workers=min(_LOG_READERS, len(subs))) as pool:
        found = pool.map(lambda sub: reader.changes(sub, start, end), subs)
        return dict(zip(subs, found, strict=True))
