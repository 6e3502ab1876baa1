"""Builds what a run needs (credential, ARM clients, store) from validated Settings.

Shared by the CLI, the Functions triggers and the demo, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential

from auditor import telemetry
from auditor.allocator import free_pages_returned
from auditor.audit import AuditStats, Progress, audit_registry, run_audit
from auditor.azure.clients import ArmClients
from auditor.pacing import TokenBucketPacer
from auditor.run_record import AuditRun, RunMode
from auditor.settings import Settings

if TYPE_CHECKING:
    from auditor.alerts import AlertService, SettingChange
    from auditor.alerts.stream import AlertStream
    from auditor.facts import Registry
    from auditor.remediation.apply import Outcome
    from auditor.remediation.service import RemediationRoute
    from auditor.storage import AuditStore

log = logging.getLogger(__name__)


# The token endpoint answers in milliseconds; the SDK's own read timeout is 300 s per attempt.
CREDENTIAL_CONNECT_TIMEOUT_SECONDS = 10.0
CREDENTIAL_READ_TIMEOUT_SECONDS = 30.0


def build_credential(
    *,
    connection_timeout: float = CREDENTIAL_CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = CREDENTIAL_READ_TIMEOUT_SECONDS,
) -> TokenCredential:
    # Managed identity in Azure (and against the emulator), developer logins locally.
    return DefaultAzureCredential(
        exclude_interactive_browser_credential=True,
        connection_timeout=connection_timeout,
        read_timeout=read_timeout,
    )


# Tokens of ARM's burst kept back until ARM's first answer shows its refill has started (see
# `pacing`): a third of a second for our first request to reach it, at 25 reads per second.
ARM_BURST_MARGIN = 8


def build_arm_clients(settings: Settings, credential: TokenCredential) -> ArmClients:
    # The server's rate and burst: a rate margin would cost its share of every run (3% cost
    # 3% of the throttle bound in the benchmark), and the burst is held back only until the
    # server's count is seen.
    burst = settings.arm.burst
    pacer = TokenBucketPacer(
        rate=settings.arm.reads_per_second,
        burst=burst,
        held=min(ARM_BURST_MARGIN, burst - 1),
    )
    return ArmClients(
        credential=credential,
        endpoint=settings.arm.endpoint,
        audience=settings.arm.audience,
        pacer=pacer,
        pool_size=max(8, settings.arm.max_concurrency * 2),
        retries=settings.arm.http_retries,
    )


def build_store(settings: Settings, credential: TokenCredential | None = None) -> AuditStore:
    from auditor.storage import AuditStore

    if settings.storage.connection_string:
        return AuditStore.from_connection_string(
            settings.storage.connection_string, prefix=settings.storage.table_prefix
        )
    if settings.storage.table_endpoint:
        return AuditStore.from_endpoint(
            settings.storage.table_endpoint,
            credential or build_credential(),
            prefix=settings.storage.table_prefix,
        )
    raise RuntimeError("no storage configured")  # Settings validation makes this unreachable


def audit_once(
    settings: Settings,
    *,
    trigger: str,
    subscriptions: Sequence[str] | None = None,
    use_store: bool = True,
    alerts: bool = True,
    check_logs: bool = True,
    progress: Progress | None = None,
    credential: TokenCredential | None = None,
    stats: AuditStats | None = None,
    mode: RunMode = RunMode.FULL,
) -> AuditRun:
    """One audit (`mode`: a full sweep, or change-driven); alerts go out from every run that
    stores its results (they need the alert state in Table Storage), unless `alerts=False`
    (`--no-alerts`)."""
    from auditor.logs_audit import LogOptions, build_logs_reader

    credential = credential or build_credential()
    stats = stats if stats is not None else AuditStats()
    with telemetry.observe_run(trigger) as observed, free_pages_returned():
        clients = build_arm_clients(settings, credential)
        store = build_store(settings, credential) if use_store else None
        reader = build_logs_reader(settings, credential) if check_logs else None
        if reader is not None:
            reader.warm_up()
        stream = _alert_stream(settings, credential) if alerts and use_store else None
        try:
            run = run_audit(
                clients,
                settings.policy,
                subscriptions=(
                    subscriptions if subscriptions is not None else settings.audit.subscriptions
                ),
                store=store,
                max_concurrency=settings.arm.max_concurrency,
                trigger=trigger,
                progress=progress,
                stats=stats,
                logs_reader=reader,
                log_options=LogOptions.from_settings(settings.logs) if check_logs else None,
                on_judged=stream.submit if stream is not None else None,
                mode=mode,
                overlap=settings.audit.changes_overlap,
            )
            if stream is not None:
                run = stream.finish(run)
            elif alerts and use_store:
                run = send_alerts(settings, run, credential=credential)
        finally:
            clients.close()
            if reader is not None:
                reader.close()
            if stream is not None:
                stream.close()
        observed.record(run, clients=clients, logs_reader=reader, stats=stats)
    return run


def scheduled_mode(
    settings: Settings, store: AuditStore, *, now: datetime | None = None
) -> RunMode:
    """A full sweep when the last one is `AUDITOR_FULL_SWEEP_HOURS` old (or unknown), else a
    change-driven run. Never raises: a store it cannot read means a full sweep."""
    every = settings.audit.full_sweep
    if every <= timedelta(0):
        return RunMode.FULL
    try:
        last_full = store.last_sweeps().last_full
    except Exception:
        log.warning("last runs unreadable: a full sweep", exc_info=True)
        return RunMode.FULL
    moment = now or datetime.now(UTC)
    return RunMode.CHANGES if last_full is not None and moment - last_full < every else RunMode.FULL


def timer_audit(
    settings: Settings, store: AuditStore, *, progress: Progress | None = None
) -> AuditRun:
    """What a scheduled run does, in Functions and in `serve`: the audit, then, after its
    writes, the prune of expired rows (within its own budget; it never raises) and, when
    switched on, the remediation of the allowed noncompliant registries."""
    from auditor.remediation.service import remediate_after_run
    from auditor.retention import prune_after_run

    run = audit_once(
        settings, trigger="timer", progress=progress, mode=scheduled_mode(settings, store)
    )
    prune_after_run(store, settings)
    # Opt-in (AUDITOR_ENABLE_REMEDIATION); never raises.
    remediate_after_run(
        settings,
        run,
        store,
        connect=lambda: build_arm_clients(settings, build_credential()),
        alerts=remediation_alerts(settings),
    )
    return run


def remediation_alerts(
    settings: Settings, credential: TokenCredential | None = None
) -> Callable[[AuditRun, SettingChange], AuditRun]:
    """The alerts of a registry re-judged after a remediation, the write named in them."""
    return lambda run, change: send_alerts(
        settings, run, credential=credential, setting_changes=[change]
    )


def audit_registry_once(
    settings: Settings,
    registry_id: str,
    *,
    trigger: str = "event",
    setting_changes: Sequence[SettingChange] = (),
    credential: TokenCredential | None = None,
) -> AuditRun:
    """Re-audit one registry now (Event Grid) and alert on what changed."""
    credential = credential or build_credential()
    with telemetry.observe_run(trigger) as observed:
        clients = build_arm_clients(settings, credential)
        store = build_store(settings, credential)
        try:
            run = audit_registry(
                clients,
                settings.policy,
                registry_id,
                store=store,
                trigger=trigger,
                pending_window=settings.logs.pending_window,
            )
        finally:
            clients.close()
        run = send_alerts(settings, run, credential=credential, setting_changes=setting_changes)
        observed.record(run, clients=clients)
    return run


def _alert_stream(settings: Settings, credential: TokenCredential) -> AlertStream | None:
    """Alerts sent as the run stores its registries; None (alerts then go out after the run,
    where a failure is reported on it) if the alert service cannot be set up."""
    from auditor.alerts import AlertService
    from auditor.alerts.stream import AlertStream

    try:
        return AlertStream(AlertService.from_settings(settings, credential=credential))
    except Exception:  # reported by send_alerts, which meets the same problem
        log.exception("alerts cannot be sent while the run goes on")
        return None


def alerts_provider(
    settings: Settings, credential: TokenCredential | None = None
) -> Callable[[], AlertService]:
    """For `GET /api/alerts`: a fresh service per request (the API closes it after use)."""
    from auditor.alerts import AlertService

    return lambda: AlertService.from_settings(settings, credential=credential)


def send_alerts(
    settings: Settings,
    run: AuditRun,
    *,
    credential: TokenCredential | None = None,
    setting_changes: Sequence[SettingChange] = (),
) -> AuditRun:
    """Alerting never fails the audit: its problems are added to the run's errors."""
    from auditor.alerts import AlertService

    try:
        with AlertService.from_settings(settings, credential=credential) as service:
            report = service.process(
                run.verdicts,
                run_id=run.run_id,
                now=run.finished_at,
                login_evidence={k: e.observations for k, e in run.evidence.items()} or None,
                setting_changes=setting_changes,
            )
    except Exception as exc:  # a sink or storage surprise must not lose the audit's results
        log.exception("alerting failed for run %s", run.run_id)
        return dataclasses.replace(run, errors=(*run.errors, f"alerting failed: {exc}"))
    problems = report.problems()
    return dataclasses.replace(run, errors=(*run.errors, *problems)) if problems else run


def remediation_route(
    settings: Settings,
    store_provider: Callable[[], AuditStore],
    credential: TokenCredential | None = None,
) -> RemediationRoute:
    """For `POST /api/registries/{name}/remediate`: one registry, read afresh, its plan and,
    when asked, its write (ARM clients per request, closed after it)."""
    from auditor.remediation.documents import Actor
    from auditor.remediation.service import RemediationRoute, remediate_one

    def run(registry: Registry, apply: bool) -> tuple[Outcome, list[str]]:
        clients = build_arm_clients(settings, credential or build_credential())
        try:
            return remediate_one(
                settings,
                clients,
                registry,
                Actor.API,
                apply=apply,
                store=store_provider(),
                alerts=remediation_alerts(settings, credential),
            )
        finally:
            clients.close()

    return RemediationRoute(enabled=settings.remediation.enabled, run=run)
