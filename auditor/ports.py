"""What the use cases need from the adapters, as Protocols. The log evidence (`logs_audit`),
the trail and the run's store take these rather than the concrete adapters, so a test passes
a plain fake; mypy checks the real adapters where they are passed in, and
`tests/unit/test_ports.py` that they have every member.

ARM reads go through `auditor.azure.clients.ArmClients`, the one factory of the Azure SDK
clients; each Protocol below names only the SDK calls one concern makes through it, in the
SDK's own shape (`workspaces(subscription).workspaces.get(group, name)`), so a fake mirrors
the SDK and a reader who knows the SDK knows the fake. Models come back as `object`: the
adapters read them tolerantly (`getattr`) and turn them into facts.

Log Analytics is `auditor.azure.logs.LogsReader`, storage `auditor.storage.AuditStore`.
Alert sinks keep theirs beside the error every sink raises: `auditor.alerts.sinks.base.Sink`.

No adapter of the project is imported here: the adapters import this module to name what
they accept, and the import graph stays free of loops.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from azure.mgmt.resourcegraph.models import QueryRequest

    from auditor.change_feed import ChangeLog
    from auditor.changes import StoredState
    from auditor.compliance_history import HistoryRow
    from auditor.evidence.model import LogEvidence, Row
    from auditor.facts import DiagnosticSetting, Registry, Verdict
    from auditor.kql import Query
    from auditor.run_record import AuditRun, Sweeps
    from auditor.summary import Run

# runtime_checkable: `tests/unit/test_ports.py` checks the real SDK clients behind ArmClients,
# whose multi-API monitor client mypy cannot see into.

# --------------------------------------------------------------------------- SDK shapes


@runtime_checkable
class ByName(Protocol):
    """An ARM operations group read by resource group and name (`workspaces`, `registries`)."""

    def get(self, resource_group_name: str, name: str, /) -> object: ...


@runtime_checkable
class Listing(Protocol):
    """An ARM operations group listed whole (`subscriptions`, a subscription's `registries`)."""

    def list(self) -> Iterable[object]: ...


@runtime_checkable
class ByResource(Protocol):
    """A resource's diagnostic settings, or their categories."""

    def list(self, resource_uri: str, **options: Any) -> Iterable[object]: ...


@runtime_checkable
class RegistryOperations(ByName, Listing, Protocol):
    pass


@runtime_checkable
class WorkspaceClient(Protocol):
    @property
    def workspaces(self) -> ByName: ...


@runtime_checkable
class MonitorClient(Protocol):
    @property
    def diagnostic_settings(self) -> ByResource: ...

    @property
    def diagnostic_settings_category(self) -> ByResource: ...


@runtime_checkable
class SettingWrites(Protocol):
    """A resource's diagnostic settings read and written one by one (remediation only)."""

    def get(self, resource_uri: str, name: str, **options: Any) -> object: ...

    def create_or_update(
        self, resource_uri: str, name: str, parameters: Any, **options: Any
    ) -> object: ...


@runtime_checkable
class MonitorWriteClient(Protocol):
    @property
    def diagnostic_settings(self) -> SettingWrites: ...


@runtime_checkable
class ActivityLogOperations(Protocol):
    """A subscription's activity log (`activity_logs`); `filter` is the SDK's own name."""

    def list(self, filter: str, select: str | None = None, **options: Any) -> Iterable[object]: ...


@runtime_checkable
class ActivityLogClient(Protocol):
    @property
    def activity_logs(self) -> ActivityLogOperations: ...


@runtime_checkable
class RegistryClient(Protocol):
    @property
    def registries(self) -> RegistryOperations: ...


@runtime_checkable
class SubscriptionsClient(Protocol):
    @property
    def subscriptions(self) -> Listing: ...


@runtime_checkable
class GraphPage(Protocol):
    @property
    def data(self) -> object: ...

    @property
    def skip_token(self) -> str | None: ...


@runtime_checkable
class GraphClient(Protocol):
    def resources(self, query: QueryRequest, /) -> GraphPage: ...


# --------------------------------------------------------------------------- ARM reads


@runtime_checkable
class WorkspaceReads(Protocol):
    """Workspace resolution: a Log Analytics workspace's query GUID."""

    def workspaces(self, subscription_id: str, /) -> WorkspaceClient: ...


@runtime_checkable
class SettingsReads(Protocol):
    """A registry's diagnostic settings and the categories it offers."""

    def monitor(self) -> MonitorClient: ...


@runtime_checkable
class SettingsWrites(Protocol):
    """Remediation: one diagnostic setting read and written (`auditor.remediation.apply`)."""

    def monitor(self) -> MonitorWriteClient: ...


@runtime_checkable
class InventoryReads(Protocol):
    """Listing the registries (Resource Graph, or ARM per subscription), reading one."""

    def subscriptions(self) -> SubscriptionsClient: ...

    def resource_graph(self) -> GraphClient: ...

    def registries(self, subscription_id: str, /) -> RegistryClient: ...


@runtime_checkable
class TrailReads(SettingsReads, WorkspaceReads, Protocol):
    """The trail's reads: one registry's settings, then its workspaces."""


@runtime_checkable
class ActivityLogReads(Protocol):
    """A subscription's activity log (the client is bound to the subscription it lists)."""

    def activity_monitor(self, subscription_id: str, /) -> ActivityLogClient: ...


@runtime_checkable
class ChangeReads(Protocol):
    """What a change-driven run needs (`auditor.azure.activity_log.ActivityLogReader`): one
    subscription's registry changes in a window; never raises for a failed read (the
    `ChangeLog` says so)."""

    def changes(self, subscription_id: str, start: datetime, end: datetime, /) -> ChangeLog: ...


# --------------------------------------------------------------------------- Log Analytics


@runtime_checkable
class QueryAnswer(Protocol):
    """One query's answer (`auditor.azure.logs.QueryOutcome`)."""

    @property
    def rows(self) -> tuple[Row, ...]: ...

    @property
    def error(self) -> str | None: ...

    @property
    def partial_error(self) -> str | None: ...

    @property
    def too_big(self) -> bool: ...


@runtime_checkable
class LogQueries(Protocol):
    """Runs KQL in workspaces; never raises for a failed query (the answer says so)."""

    @property
    def max_concurrency(self) -> int:
        """How many queries it runs at once: more in flight would only wait."""
        ...

    def run(self, requests: Sequence[tuple[str, Query]], /) -> Sequence[QueryAnswer]:
        """(workspace GUID, query) pairs in, their answers out, in the same order."""
        ...


# --------------------------------------------------------------------------- storage


@runtime_checkable
class VerdictWriter(Protocol):
    """Where a run's settled verdicts go while it runs, then the run itself."""

    @property
    def busy(self) -> bool:
        """Still writing the last batch: the caller may gather a bigger one instead."""
        ...

    def wait_idle(self) -> None:
        """Returns when every queued batch is written (or failed: `finish` raises that)."""
        ...

    def write(
        self,
        verdicts: Iterable[Verdict],
        evidence: Mapping[str, LogEvidence],
        *,
        observed_at: datetime,
    ) -> None: ...

    def finish(self, run: AuditRun) -> AuditRun: ...

    def close(self) -> None: ...

    def stored_facts(self, key: str) -> bool:
        """Registry `key`'s stored row holds every fact of the registry, so a change-driven
        run can take it from the store instead of listing its subscription."""
        ...

    def judged_from_store(self, registry_keys: Collection[str]) -> None:
        """Registries judged from their stored settings, not read: rows written only when
        what they say changed."""
        ...

    def known_registries(self) -> list[Registry]:
        """Registries stored as present when the writer opened (not removed): what the
        inventory should find."""
        ...

    def stored_settings(self, key: str) -> tuple[DiagnosticSetting, ...] | None:
        """The diagnostic settings the last run read for registry `key`
        (`keys.registry_key(name)`), as stored when the writer opened: what a change-driven
        run judges a registry by without reading it again. None when not known (the last
        read failed, the registry is new, or the row predates stored settings)."""
        ...


@runtime_checkable
class RunStore(Protocol):
    """The store as a run sees it."""

    def start_run(self, run_id: str, started_at: datetime, trigger: str) -> None: ...

    def finish_run(self, run: AuditRun, *, update_summary: bool = True) -> AuditRun: ...

    def known_registries(self) -> list[Registry]: ...

    def run_writer(
        self,
        run_id: str,
        *,
        on_page: Callable[[Sequence[StoredState]], None] | None = None,
    ) -> VerdictWriter: ...

    def last_sweeps(self, subscriptions: Collection[str] = ()) -> Sweeps:
        """When each subscription was last listed by a finished run, and the newest full
        sweep's start."""
        ...

    def recent_remediations(self, since: datetime) -> frozenset[str]:
        """The registries (normalised ids) whose setting a remediation applied after `since`
        (the actions table)."""
        ...


@runtime_checkable
class HistoryReads(Protocol):
    """The stored history as the compliance-over-time views read it (`AuditReader`)."""

    def fleet_history(self) -> list[HistoryRow]: ...

    def runs_between(self, since: datetime, until: datetime) -> list[Run]: ...

    def runs_finished_by(self, at: datetime) -> list[Run]: ...
