"""Builds what a run needs (credential, ARM clients, store) from validated Settings.

Shared by the CLI, the Functions triggers and the demo, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential

from auditor.audit import AuditStats, Progress, run_audit
from auditor.azure.clients import ArmClients
from auditor.facts import AuditRun
from auditor.pacing import TokenBucketPacer
from auditor.settings import Settings

if TYPE_CHECKING:
    from auditor.storage import AuditStore


def build_credential() -> TokenCredential:
    # Managed identity in Azure (and against the emulator), developer logins locally.
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def build_arm_clients(settings: Settings, credential: TokenCredential) -> ArmClients:
    pacer = TokenBucketPacer(rate=settings.arm_reads_per_second, burst=settings.arm_burst)
    return ArmClients(
        credential=credential,
        endpoint=settings.arm_endpoint,
        audience=settings.arm_audience,
        pacer=pacer,
        pool_size=max(8, settings.max_concurrency * 2),
        retries=settings.http_retries,
    )


def build_store(settings: Settings, credential: TokenCredential | None = None) -> AuditStore:
    from auditor.storage import AuditStore

    if settings.storage_connection_string:
        return AuditStore.from_connection_string(
            settings.storage_connection_string, prefix=settings.table_prefix
        )
    if settings.storage_table_endpoint:
        return AuditStore.from_endpoint(
            settings.storage_table_endpoint,
            credential or build_credential(),
            prefix=settings.table_prefix,
        )
    raise RuntimeError("no storage configured")  # Settings validation makes this unreachable


def audit_once(
    settings: Settings,
    *,
    trigger: str,
    subscriptions: Sequence[str] | None = None,
    use_store: bool = True,
    progress: Progress | None = None,
    credential: TokenCredential | None = None,
    stats: AuditStats | None = None,
) -> AuditRun:
    credential = credential or build_credential()
    clients = build_arm_clients(settings, credential)
    store = build_store(settings, credential) if use_store else None
    try:
        return run_audit(
            clients,
            settings.policy,
            subscriptions=subscriptions if subscriptions is not None else settings.subscriptions,
            store=store,
            max_concurrency=settings.max_concurrency,
            trigger=trigger,
            progress=progress,
            stats=stats,
        )
    finally:
        clients.close()
