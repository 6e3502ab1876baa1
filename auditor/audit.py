"""One audit run: inventory, diagnostic settings read concurrently and paced, judgement, storage.

This module wires adapters to the pure judgement; it decides nothing about compliance itself.
"""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError

from auditor.azure.clients import ArmClients
from auditor.azure.diagnostics import MalformedSettingError, read_categories, read_settings
from auditor.azure.errors import describe_error
from auditor.azure.inventory import (
    Inventory,
    InventoryError,
    discover,
    read_registry,
    registry_from_id,
)
from auditor.evidence.judgement import apply_evidence
from auditor.evidence.model import LogEvidence
from auditor.facts import CategoryInfo, Registry, Status, Verdict
from auditor.judgement import judge
from auditor.logs_audit import EvidenceCollector, LogOptions
from auditor.pacing import SubscriptionQueue
from auditor.policy import Policy
from auditor.ports import RunStore
from auditor.run_record import AuditRun, RunStatus

if TYPE_CHECKING:
    from auditor.azure.logs import LogsReader

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# Called with registries stored during the run (their final verdicts and log evidence), e.g.
# to alert on them before the run ends: (run id, verdicts, evidence by registry key).
Judged = Callable[[str, Sequence[Verdict], Mapping[str, LogEvidence]], None]

# How often judged registries are handed to the store while the settings are still read:
# often enough that little is left for the end of the run. A store still writing the last
# batch is not handed another: the registries gather into a bigger one instead of queuing
# (each batch's rows and alerts wait in memory until written).
WRITE_EVERY_SECONDS = 1.0


@dataclass
class AuditStats:
    registries: int = 0
    settings_reads: int = 0
    read_failures: int = 0
    categories_reads: int = 0
    inventory: Inventory = field(default_factory=Inventory)


def new_run_id(started_at: datetime) -> str:
    # Sortable by time, unique across overlapping runs.
    return started_at.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def _judge_one(
    clients: ArmClients, registry: Registry, categories: Sequence[CategoryInfo], policy: Policy
) -> Verdict:
    try:
        settings = read_settings(clients, registry.id)
    except MalformedSettingError as exc:
        return judge(registry, None, categories, policy, read_error=str(exc))
    except AzureError as exc:
        return judge(registry, None, categories, policy, read_error=describe_error(exc))
    except Exception as exc:  # one registry's surprise must not sink the run
        log.exception("unexpected error reading settings of %s", registry.id)
        return judge(registry, None, categories, policy, read_error=describe_error(exc))
    return judge(registry, settings, categories, policy)


def run_audit(  # noqa: C901
    clients: ArmClients,
    policy: Policy,
    *,
    subscriptions: Sequence[str] = (),
    store: RunStore | None = None,
    max_concurrency: int = 16,
    trigger: str = "cli",
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    stats: AuditStats | None = None,
    logs_reader: LogsReader | None = None,
    log_options: LogOptions | None = None,
    on_judged: Judged | None = None,
) -> AuditRun:
    """`logs_reader` given: the logs are checked too (do events arrive?), which can make a
    registry `logs_silent` (noncompliant), `pending`, or unknown when its workspace fails."""
    stats = stats if stats is not None else AuditStats()
    started = clock()
    run_id = new_run_id(started)
    errors: list[str] = []
    if store is not None:
        store.start_run(run_id, started, trigger)

    known = store.known_registries() if store is not None else []
    in_scope = {s.lower() for s in subscriptions}
    if in_scope:
        known = [r for r in known if r.subscription_id in in_scope]
    try:
        inventory = discover(
            clients,
            subscriptions,
            expected={r.subscription_id for r in known},
            progress=progress,
        )
    except (AzureError, InventoryError) as exc:
        # Without an inventory nothing can be judged; the run is recorded as failed.
        message = f"inventory failed: {describe_error(exc)}"
        failed = AuditRun(
            run_id=run_id,
            started_at=started,
            finished_at=clock(),
            status=RunStatus.FAILED,
            verdicts=tuple(judge(r, None, (), policy, read_error=message) for r in known),
            errors=(message,),
            trigger=trigger,
        )
        return store.finish_run(failed) if store is not None else failed
    stats.inventory = inventory
    errors.extend(inventory.errors)
    errors.extend(f"subscription {s}: {why}" for s, why in sorted(inventory.failed.items()))

    registries = inventory.registries
    stats.registries = len(registries)
    categories: list[CategoryInfo] = []
    if registries:
        try:
            categories = read_categories(clients, registries[0].id)
            stats.categories_reads += 1
        except (AzureError, MalformedSettingError) as exc:
            # The judgement falls back to the documented groups; note it on the run.
            errors.append(f"category metadata unavailable: {describe_error(exc)}")

    # Registries of subscriptions that could not be listed are not dropped: the last known
    # ones are reported unknown with the reason.
    unreadable = [
        judge(reg, None, categories, policy, read_error=f"subscription unreadable: {why}")
        for reg in known
        if (why := inventory.failed.get(reg.subscription_id)) is not None
    ]
    options = log_options or LogOptions()
    collector = None
    if logs_reader is not None:
        collector = EvidenceCollector(
            clients,
            logs_reader,
            now=clock(),
            subscriptions={r.subscription_id for r in registries}
            | {v.registry.subscription_id for v in unreadable},
            registries=[r.key for r in registries] + [v.registry.key for v in unreadable],
            options=options,
            categories=categories,
            policy=policy,
            progress=progress,
        )
    writer = store.run_writer(run_id) if store is not None else None
    # Final verdicts (evidence applied) already handed to the writer, by registry key, and
    # the read ones still waiting for their log evidence.
    final: dict[str, Verdict] = {}
    waiting: dict[str, Verdict] = {}

    def write_settled() -> None:
        if writer is None:
            return
        evidence: Mapping[str, LogEvidence] = {}
        if collector is None:
            ready = list(waiting)
        else:
            ready, evidence = collector.settle()
        settled = [waiting.pop(k) for k in ready if k in waiting]
        if not settled:
            return
        judged = apply_evidence(
            settled,
            evidence,
            now=clock(),
            silent_after=options.silent_after,
            pending_window=options.pending_window,
        )
        final.update((v.registry.key, v) for v in judged)
        writer.write(judged, evidence, observed_at=clock())
        if on_judged is not None:
            on_judged(run_id, judged, evidence)

    verdicts: list[Verdict] = []
    # Which registry to read next is decided as the run goes (whose ARM budget has a token
    # now), so readers take them from a shared queue rather than in a fixed order.
    reads = SubscriptionQueue(((r.subscription_id, r) for r in registries), clients.pacer.due_in)
    judged: queue.SimpleQueue[Verdict | BaseException] = queue.SimpleQueue()

    def reader() -> None:
        while (registry := reads.next()) is not None:
            try:
                judged.put(_judge_one(clients, registry, categories, policy))
            except BaseException as exc:  # noqa: BLE001 - handed to the run, which re-raises it
                judged.put(exc)
                return

    last_report = last_write = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="audit") as pool:
            try:
                for _ in range(min(max_concurrency, len(registries))):
                    pool.submit(reader)
                while len(verdicts) < len(registries):
                    # Wake up without a new verdict too: a read that hangs must not hold back
                    # registries already settled from the store and the alerts.
                    try:
                        item = judged.get(timeout=max(WRITE_EVERY_SECONDS, 0.05))
                    except queue.Empty:
                        item = None
                    if isinstance(item, BaseException):
                        raise item
                    if item is not None:
                        verdicts.append(item)
                        waiting[item.registry.key] = item
                        if collector is not None:
                            collector.add(item)
                        stats.settings_reads += 1
                        if item.status is Status.UNKNOWN:
                            stats.read_failures += 1
                    due = time.monotonic() - last_write > WRITE_EVERY_SECONDS
                    if due and not (writer is not None and writer.busy):
                        last_write = time.monotonic()
                        write_settled()
                    if progress and time.monotonic() - last_report > 2.0:
                        last_report = time.monotonic()
                        progress(f"settings: {len(verdicts)}/{len(registries)} registries read")
            finally:
                reads.close()  # readers stop after their current registry
        verdicts.extend(unreadable)
        verdicts.sort(key=lambda v: v.registry.key)
        evidence_result = None
        if collector is not None:
            evidence_result = collector.finish(verdicts)
            errors.extend(evidence_result.errors)
            revised = evidence_result.revised
            rest = [v for v in verdicts if v.registry.key not in final or v.registry.key in revised]
            final.update(
                (v.registry.key, v)
                for v in apply_evidence(
                    rest,
                    evidence_result.evidence,
                    now=clock(),
                    silent_after=options.silent_after,
                    pending_window=options.pending_window,
                )
            )
            verdicts = [final[v.registry.key] for v in verdicts]
        any_unknown = any(v.status is Status.UNKNOWN for v in verdicts)
        run = AuditRun(
            run_id=run_id,
            started_at=started,
            finished_at=clock(),
            status=RunStatus.PARTIAL if (any_unknown or inventory.failed) else RunStatus.SUCCEEDED,
            verdicts=tuple(verdicts),
            inventoried_subscriptions=frozenset(inventory.complete),
            errors=tuple(errors),
            trigger=trigger,
            evidence=evidence_result.evidence if evidence_result else {},
            orphan_activity=tuple(evidence_result.orphan_activity) if evidence_result else (),
            log_queries=evidence_result.queries if evidence_result else 0,
        )
        if progress:
            progress(f"audit: {len(verdicts)} registries judged")
        return writer.finish(run) if writer is not None else run
    finally:
        if collector is not None:
            collector.close()
        if writer is not None:
            writer.close()


def audit_registry(
    clients: ArmClients,
    policy: Policy,
    registry_id: str,
    *,
    store: RunStore | None = None,
    trigger: str = "event",
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AuditRun:
    """Re-judge one registry at once (an Event Grid notice that its settings changed).

    Its row and history are stored; the fleet summary is left to the next full run, since one
    registry cannot say what the fleet looks like.
    """
    started = clock()
    run_id = new_run_id(started)
    if store is not None:
        store.start_run(run_id, started, trigger)
    errors: list[str] = []
    try:
        registry = read_registry(clients, registry_id)
    except (AzureError, InventoryError) as exc:
        registry = registry_from_id(registry_id)
        errors.append(f"registry {registry_id}: {describe_error(exc)}")
        verdict = judge(registry, None, (), policy, read_error=describe_error(exc))
    else:
        categories: list[CategoryInfo] = []
        try:
            categories = read_categories(clients, registry.id)
        except (AzureError, MalformedSettingError) as exc:
            errors.append(f"category metadata unavailable: {describe_error(exc)}")
        verdict = _judge_one(clients, registry, categories, policy)
    run = AuditRun(
        run_id=run_id,
        started_at=started,
        finished_at=clock(),
        status=RunStatus.PARTIAL if verdict.status is Status.UNKNOWN else RunStatus.SUCCEEDED,
        verdicts=(verdict,),
        errors=tuple(errors),
        trigger=trigger,
    )
    return store.finish_run(run, update_summary=False) if store is not None else run
