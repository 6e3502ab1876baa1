"""Builds the Azure SDK clients once per run, with the run's endpoints, audiences, pacing
and connection pool, so every adapter shares one configuration."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azure.core.credentials import TokenCredential
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.subscription import SubscriptionClient

from auditor.azure.graph import GraphQueries
from auditor.azure.pipeline import ArmPacingPolicy
from auditor.azure.transport import Urllib3Transport
from auditor.pacing import TokenBucketPacer

if TYPE_CHECKING:
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from azure.mgmt.loganalytics import LogAnalyticsManagementClient
    from azure.mgmt.monitor.v2021_05_01_preview.operations import (
        DiagnosticSettingsCategoryOperations,
        DiagnosticSettingsOperations,
    )

# Subscription id the monitor client requires but never uses: diagnostic settings calls take a
# full resource id.
_ANY_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"

# Seconds per attempt (the SDK's default is 300 for each). ARM answers reads in well under a
# second; one that has not answered in 30 s is stuck, and the SDK's retry is the better bet.
ARM_CONNECTION_TIMEOUT_SECONDS = 10.0
ARM_READ_TIMEOUT_SECONDS = 30.0


def _scope(audience: str) -> str:
    return audience.rstrip("/") + "/.default"


@dataclass(frozen=True)
class MonitorOperations:
    """The monitor client's operation groups the auditor uses (`auditor.ports.MonitorClient`
    and `MonitorWriteClient`)."""

    diagnostic_settings: DiagnosticSettingsOperations
    diagnostic_settings_category: DiagnosticSettingsCategoryOperations


@dataclass
class ArmClients:
    """ARM clients sharing one credential, one connection pool and one pacer."""

    credential: TokenCredential
    endpoint: str
    audience: str
    pacer: TokenBucketPacer
    pool_size: int = 32
    retries: int = 4
    # Per attempt. A GET that times out is retried like a 5xx, so an answer that never comes
    # costs about read_timeout x (retries + 1); a Resource Graph query (a POST, not retried)
    # that times out falls back to the per-subscription lists.
    connection_timeout: float = ARM_CONNECTION_TIMEOUT_SECONDS
    read_timeout: float = ARM_READ_TIMEOUT_SECONDS
    _transport: Urllib3Transport | None = field(default=None, init=False, repr=False)
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _monitor: MonitorOperations | None = field(default=None, init=False, repr=False)

    def _common(self) -> dict[str, Any]:
        # Called by `_get`'s factories, under its lock.
        if self._transport is None:
            self._transport = Urllib3Transport(
                self.endpoint,
                pool_size=self.pool_size,
                connection_timeout=self.connection_timeout,
                read_timeout=self.read_timeout,
            )
        return {
            "base_url": self.endpoint,
            "credential_scopes": [_scope(self.audience)],
            "per_retry_policies": [ArmPacingPolicy(self.pacer)],
            "transport": self._transport,
            "retry_total": self.retries,
            # Timed-out reads get the same retries as the rest (the SDK's default is 3).
            "retry_read": self.retries,
            # The SDK default backs off 0.8 s doubling; Retry-After still wins on 429.
            "retry_backoff_factor": 0.5,
        }

    def _get(self, kind: str, key: str, factory: Any) -> Any:
        with self._lock:
            client = self._cache.get((kind, key))
            if client is None:
                client = self._cache[(kind, key)] = factory()
            return client

    def subscriptions(self) -> SubscriptionClient:
        return self._get(  # type: ignore[no-any-return]
            "subscriptions", "", lambda: SubscriptionClient(self.credential, **self._common())
        )

    def resource_graph(self) -> GraphQueries:
        return self._get(  # type: ignore[no-any-return]
            "graph",
            "",
            lambda: GraphQueries(ResourceGraphClient(self.credential, **self._common())),
        )

    def registries(self, subscription_id: str) -> ContainerRegistryManagementClient:
        return self._get(  # type: ignore[no-any-return]
            "registries",
            subscription_id,
            lambda: _registry_client(self.credential, subscription_id, **self._common()),
        )

    def monitor(self) -> MonitorOperations:
        """The diagnostic-settings operation groups, built once: the SDK's multi-API client
        builds a new group (and its serializers' table of every model) on each access, a
        sixth of a settings read's CPU."""
        with self._lock:
            if self._monitor is None:
                client = MonitorManagementClient(
                    self.credential, _ANY_SUBSCRIPTION, **self._common()
                )
                self._cache[("monitor", "")] = client
                self._monitor = MonitorOperations(
                    diagnostic_settings=client.diagnostic_settings,
                    diagnostic_settings_category=client.diagnostic_settings_category,
                )
            return self._monitor

    def activity_monitor(self, subscription_id: str) -> MonitorManagementClient:
        """A monitor client bound to one subscription: its activity log is listed under it."""
        return self._get(  # type: ignore[no-any-return]
            "activity",
            subscription_id,
            lambda: MonitorManagementClient(self.credential, subscription_id, **self._common()),
        )

    def workspaces(self, subscription_id: str) -> LogAnalyticsManagementClient:
        # Imported on first use: 40-70 ms, which would otherwise come before the inventory's
        # first request, and the first workspace is read while the settings are.
        from azure.mgmt.loganalytics import LogAnalyticsManagementClient

        return self._get(  # type: ignore[no-any-return]
            "workspaces",
            subscription_id,
            lambda: LogAnalyticsManagementClient(
                self.credential, subscription_id, **self._common()
            ),
        )

    def close(self) -> None:
        with self._lock:
            for client in self._cache.values():
                client.close()
            self._cache.clear()
            self._monitor = None
            if self._transport is not None:
                self._transport.close()
                self._transport = None


def _registry_client(
    credential: TokenCredential, subscription_id: str, **options: Any
) -> ContainerRegistryManagementClient:
    # Imported on first use: only the inventory's fallback reads registries through ARM, and
    # the import costs a twentieth of a second of every run's start-up.
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    return ContainerRegistryManagementClient(credential, subscription_id, **options)
