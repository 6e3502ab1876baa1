"""Builds the Azure SDK clients once per run, with the run's endpoints, audiences, pacing
and connection pool, so every adapter shares one configuration."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests
from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.loganalytics import LogAnalyticsManagementClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.subscription import SubscriptionClient

from auditor.azure.pipeline import ArmPacingPolicy
from auditor.pacing import TokenBucketPacer

if TYPE_CHECKING:
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

# Subscription id the monitor client requires but never uses: diagnostic settings calls take a
# full resource id.
_ANY_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"

# Seconds per attempt (the SDK's default is 300 for each). ARM answers reads in well under a
# second; one that has not answered in 30 s is stuck, and the SDK's retry is the better bet.
ARM_CONNECTION_TIMEOUT_SECONDS = 10.0
ARM_READ_TIMEOUT_SECONDS = 30.0


def _scope(audience: str) -> str:
    return audience.rstrip("/") + "/.default"


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
    _transport: RequestsTransport | None = field(default=None, init=False, repr=False)
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _common(self) -> dict[str, Any]:
        if self._transport is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=4, pool_maxsize=self.pool_size, max_retries=0
            )
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            # The environment's proxies and CA bundle, read once for the ARM endpoint (every
            # client here talks to it only): requests otherwise reads them, and ~/.netrc, on
            # each request, a fifth of its CPU per read of a 10,000-registry run.
            found = session.merge_environment_settings(self.endpoint, {}, None, True, None)
            session.proxies.update(found["proxies"] or {})
            session.trust_env = False
            self._transport = RequestsTransport(
                session=session,
                session_owner=False,
                connection_timeout=self.connection_timeout,
                read_timeout=self.read_timeout,
                connection_verify=found["verify"],
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

    def resource_graph(self) -> ResourceGraphClient:
        return self._get(  # type: ignore[no-any-return]
            "graph", "", lambda: ResourceGraphClient(self.credential, **self._common())
        )

    def registries(self, subscription_id: str) -> ContainerRegistryManagementClient:
        return self._get(  # type: ignore[no-any-return]
            "registries",
            subscription_id,
            lambda: _registry_client(self.credential, subscription_id, **self._common()),
        )

    def monitor(self) -> MonitorManagementClient:
        return self._get(  # type: ignore[no-any-return]
            "monitor",
            "",
            lambda: MonitorManagementClient(self.credential, _ANY_SUBSCRIPTION, **self._common()),
        )

    def activity_monitor(self, subscription_id: str) -> MonitorManagementClient:
        """A monitor client bound to one subscription: its activity log is listed under it."""
        return self._get(  # type: ignore[no-any-return]
            "activity",
            subscription_id,
            lambda: MonitorManagementClient(self.credential, subscription_id, **self._common()),
        )

    def workspaces(self, subscription_id: str) -> LogAnalyticsManagementClient:
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
            if self._transport is not None:
                self._transport.session.close()  # type: ignore[union-attr]
                self._transport = None


def _registry_client(
    credential: TokenCredential, subscription_id: str, **options: Any
) -> ContainerRegistryManagementClient:
    # Imported on first use: only the inventory's fallback reads registries through ARM, and
    # the import costs a twentieth of a second of every run's start-up.
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    return ContainerRegistryManagementClient(credential, subscription_id, **options)
