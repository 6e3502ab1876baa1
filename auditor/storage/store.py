"""`AuditStore`: the writer and the read side over one set of tables (see `tables`), for
callers that hold one store for both: a run writes its results and reads which registries it
should find; the API's provider hands it out and the API only reads."""

from __future__ import annotations

from datetime import datetime

from azure.core.credentials import TokenCredential
from azure.data.tables import TableServiceClient

from auditor.storage.actions import ActionLog
from auditor.storage.connect import table_service_client
from auditor.storage.errors import StorageError
from auditor.storage.pruning import Deadline, Pruned, prune_audit_tables
from auditor.storage.reader import AuditReader
from auditor.storage.retry import StorageRetry
from auditor.storage.tables import Tables
from auditor.storage.writer import AuditWriter, RunWriter

__all__ = ["AuditStore", "RunWriter", "StorageRetry"]


class AuditStore:
    """Composes `AuditWriter` and `AuditReader`; their methods are this store's, by name.
    Thread-safe as the SDK clients it holds are."""

    def __init__(
        self,
        table_service: TableServiceClient,
        *,
        prefix: str,
        retry: StorageRetry | None = None,
    ) -> None:
        """`retry`: how long a run's reads and writes ride out an outage (default
        `StorageRetry()`: 30 s) before StorageError."""
        self.tables = Tables(table_service, prefix=prefix, retry=retry)
        self.writer = AuditWriter(self.tables)
        self.reader = AuditReader(self.tables)
        # What a run calls.
        self.start_run = self.writer.start_run
        self.run_writer = self.writer.run_writer
        self.finish_run = self.writer.finish_run
        self.known_registries = self.reader.known_registries
        self.last_sweeps = self.reader.last_sweeps
        self.recent_remediations = ActionLog(self.tables).applied_since
        # What the API reads.
        self.get_summary = self.reader.get_summary
        self.ping = self.reader.ping
        self.list_registries = self.reader.list_registries
        self.get_registry = self.reader.get_registry
        self.registry_history = self.reader.registry_history
        self.list_runs = self.reader.list_runs
        self.registry_logins = self.reader.registry_logins
        self.registry_activity = self.reader.registry_activity

    def prune(
        self,
        *,
        evidence_before: datetime,
        runs_before: datetime,
        history_before: datetime,
        deadline: Deadline,
    ) -> list[Pruned]:
        """Delete expired evidence, runs and history rows (see `pruning`)."""
        return prune_audit_tables(
            self.tables,
            evidence_before=evidence_before,
            runs_before=runs_before,
            history_before=history_before,
            deadline=deadline,
        )

    @classmethod
    def from_connection_string(
        cls, connection_string: str, prefix: str, *, retry: StorageRetry | None = None
    ) -> AuditStore:
        try:
            service = table_service_client(connection_string=connection_string)
        except ValueError:
            # The SDK's message may quote the string, and with it the account key.
            raise StorageError("reading the connection string", "it is malformed") from None
        return cls(service, prefix=prefix, retry=retry)

    @classmethod
    def from_endpoint(
        cls,
        endpoint: str,
        credential: TokenCredential,
        prefix: str,
        *,
        retry: StorageRetry | None = None,
    ) -> AuditStore:
        """Identity-based access: `endpoint` is the account's table URL
        (`https://<account>.table.core.windows.net`); the identity needs the
        "Storage Table Data Contributor" role."""
        service = table_service_client(endpoint=endpoint, credential=credential)
        return cls(service, prefix=prefix, retry=retry)
