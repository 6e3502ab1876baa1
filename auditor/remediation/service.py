"""Remediation wired to the auditor's adapters, for the CLI (`remediate`), the API
(`POST /api/registries/{name}/remediate`) and the timer (`remediate_after_run`).

The current state is always read afresh with the audit's own pieces (inventory, settings
reads and judgement: `run_audit` without a store or logs, or `audit_registry` for named
registries), never taken from the stored results, which may be an hour old.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError

from auditor.alerts.model import SettingChange
from auditor.audit import audit_registry, run_audit
from auditor.azure.diagnostics import MalformedSettingError, read_categories
from auditor.azure.errors import describe_error
from auditor.azure.inventory import InventoryError, discover
from auditor.facts import CategoryInfo, Registry, Status, Verdict
from auditor.remediation.apply import Outcome, Remediator
from auditor.remediation.documents import ActionDocument, Actor
from auditor.remediation.plan import plan_remediation
from auditor.run_record import AuditRun, RunStatus

if TYPE_CHECKING:
    from auditor.azure.clients import ArmClients
    from auditor.settings import RemediationSettings, Settings
    from auditor.storage import AuditStore

log = logging.getLogger(__name__)

REMEDIATION_TRIGGER = "remediation"  # the run that stores a registry re-judged after a write

# Sends the alerts of a registry re-judged after its write (`runtime.send_alerts`), the write
# named in them; returns the run with any alerting problem on its errors.
Alerts = Callable[[AuditRun, SettingChange], AuditRun]


@dataclass
class Fleet:
    """Registries judged afresh, and what could not be read."""

    verdicts: list[Verdict] = field(default_factory=list)
    categories: list[CategoryInfo] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def read_fleet(
    clients: ArmClients,
    settings: Settings,
    *,
    subscriptions: Sequence[str] = (),
    names: Sequence[str] = (),
) -> Fleet:
    """Every registry of the subscriptions judged now (a settings-only audit), or only the
    registries `names` (found in the inventory, then read one by one)."""
    fleet = Fleet()
    scope = tuple(subscriptions) or settings.audit.subscriptions
    if names:
        registries = _named(clients, scope, names, fleet)
        fleet.verdicts = [fresh(clients, settings, r) for r in registries]
    else:
        run = run_audit(
            clients,
            settings.policy,
            subscriptions=scope,
            max_concurrency=settings.arm.max_concurrency,
            trigger=REMEDIATION_TRIGGER,
        )
        fleet.verdicts = list(run.verdicts)
        fleet.errors.extend(run.errors)
    fleet.categories = _categories(clients, fleet)
    return fleet


def _named(
    clients: ArmClients, scope: Sequence[str], names: Sequence[str], fleet: Fleet
) -> list[Registry]:
    try:
        inventory = discover(clients, scope)
    except (AzureError, InventoryError) as exc:
        fleet.errors.append(f"inventory failed: {describe_error(exc)}")
        return []
    fleet.errors.extend(f"subscription {s}: {why}" for s, why in sorted(inventory.failed.items()))
    by_name = {r.name.casefold(): r for r in inventory.registries}
    found = []
    for name in dict.fromkeys(n.strip().casefold() for n in names):
        if name in by_name:
            found.append(by_name[name])
        else:
            fleet.errors.append(f"no registry named {name!r} in the audited subscriptions")
    return found


def _categories(clients: ArmClients, fleet: Fleet) -> list[CategoryInfo]:
    """The categories API's answer for the first readable registry; without it the plan
    falls back on the documented groups, as the judgement does."""
    first = next((v for v in fleet.verdicts if v.status is not Status.UNKNOWN), None)
    if first is None:
        return []
    try:
        return read_categories(clients, first.registry.id)
    except (AzureError, MalformedSettingError) as exc:
        fleet.errors.append(f"category metadata unavailable: {describe_error(exc)}")
        return []


def remediator(
    settings: Settings,
    clients: ArmClients,
    actor: Actor,
    *,
    store: AuditStore | None,
    alerts: Alerts | None = None,
) -> Remediator:
    """A Remediator whose re-read stores the registry's new verdict (its history shows the
    change; fixed, it is `pending` until its events arrive) and sends its alerts (a registry
    fixed is `resolved`, naming the remediation), and whose actions go to the actions table,
    when there is a store."""
    from auditor.storage.actions import ActionLog

    policy = settings.policy

    def reread(registry: Registry, change: SettingChange) -> Verdict:
        run = audit_registry(
            clients, policy, registry.id, store=store, trigger=REMEDIATION_TRIGGER, remediated=True
        )
        if store is not None and alerts is not None:
            run = alerts(run, change)
        return run.verdicts[0]

    return Remediator(
        clients=clients,
        policy=policy,
        workspace=settings.remediation.workspace,
        actor=actor,
        reread=reread,
        record=ActionLog(store.tables).record if store is not None else None,
        retries=settings.arm.http_retries,
    )


def in_scope(registry: Registry, options: RemediationSettings) -> bool:
    """Whether the timer may remediate `registry`: its subscription is on the allow-list
    (AUDITOR_REMEDIATION_SUBSCRIPTIONS) or it carries the tag (AUDITOR_REMEDIATION_TAG)."""
    if registry.subscription_id.lower() in options.subscriptions:
        return True
    return options.tag is not None and options.tag.matches(registry.tags)


def due(settings: Settings, verdicts: Iterable[Verdict]) -> list[Verdict]:
    """The verdicts the timer may remediate: noncompliant (never an exempt registry), in scope
    and with settings a write can fix."""
    options = settings.remediation
    return [
        v
        for v in verdicts
        if v.status is Status.NONCOMPLIANT
        and in_scope(v.registry, options)
        and plan_remediation(v, (), settings.policy, options.workspace).writes
    ]


def remediate_after_run(
    settings: Settings,
    run: AuditRun,
    store: AuditStore,
    *,
    connect: Callable[[], ArmClients],
    alerts: Alerts | None = None,
) -> list[ActionDocument]:
    """The timer's step after an audit: with remediation on, the `due` registries, at most
    `max_per_run`, each read again just before. Either allow-list (subscriptions or tag)
    alone turns the step on. Never raises: problems are logged."""
    options = settings.remediation
    listed = options.subscriptions or options.tag is not None
    if not options.enabled or not listed or run.status is RunStatus.FAILED:
        return []
    selected = due(settings, run.verdicts)
    if len(selected) > options.max_per_run:
        log.warning(
            "remediation: %d registries due, %d this run (AUDITOR_REMEDIATION_MAX_PER_RUN)",
            len(selected),
            options.max_per_run,
        )
    if not selected:
        return []
    try:
        clients = connect()
        try:
            return _remediate(settings, selected[: options.max_per_run], clients, store, alerts)
        finally:
            clients.close()
    except Exception:  # the audit is done and stored; its remediation must not fail it
        log.exception("remediation after run %s failed", run.run_id)
        return []


def _remediate(
    settings: Settings,
    selected: Sequence[Verdict],
    clients: ArmClients,
    store: AuditStore,
    alerts: Alerts | None,
) -> list[ActionDocument]:
    read = [fresh(clients, settings, v.registry) for v in selected]
    # Chosen again on the fresh read: one exempted, untagged or fixed since the run is left.
    fleet = Fleet(verdicts=due(settings, read))
    for verdict in read:
        if verdict not in fleet.verdicts:
            log.info(
                "remediation: %s left alone, %s when read again",
                verdict.registry.name,
                verdict.status.value,
            )
    fleet.categories = _categories(clients, fleet)
    writer = remediator(settings, clients, Actor.TIMER, store=store, alerts=alerts)
    outcomes = [writer.remediate(v, fleet.categories, apply=True) for v in fleet.verdicts]
    for problem in (*fleet.errors, *writer.errors):
        log.warning("remediation: %s", problem)
    actions = [o.action for o in outcomes if o.action is not None]
    for action in actions:
        log.info(
            "remediation of %s: %s (%s)", action["registry"], action["result"], action["message"]
        )
    return actions


def fresh(clients: ArmClients, settings: Settings, registry: Registry) -> Verdict:
    """The registry's settings read and judged now."""
    return audit_registry(
        clients, settings.policy, registry.id, trigger=REMEDIATION_TRIGGER
    ).verdicts[0]


def remediate_one(
    settings: Settings,
    clients: ArmClients,
    registry: Registry,
    actor: Actor,
    *,
    apply: bool,
    store: AuditStore | None,
    alerts: Alerts | None = None,
) -> tuple[Outcome, list[str]]:
    """One registry (the API's route): its plan, and with `apply` the write; the problems met."""
    fleet = Fleet(verdicts=[fresh(clients, settings, registry)])
    fleet.categories = _categories(clients, fleet)
    writer = remediator(settings, clients, actor, store=store, alerts=alerts)
    outcome = writer.remediate(fleet.verdicts[0], fleet.categories, apply=apply)
    return outcome, [*fleet.errors, *writer.errors]


@dataclass(frozen=True)
class RemediationRoute:
    """What `POST /api/registries/{name}/remediate` runs: `enabled` is the setting
    (AUDITOR_ENABLE_REMEDIATION), `run` remediates one registry (dry run unless `apply`) and
    returns the outcome and the problems met."""

    enabled: bool
    run: Callable[[Registry, bool], tuple[Outcome, list[str]]]
