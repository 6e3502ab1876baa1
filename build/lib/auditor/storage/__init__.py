"""Audit results in Azure Table Storage: `writer` writes a run's results, `reader` reads them
back, over the `tables` (what each holds) with the `keys` (how rows are found)."""

from auditor.storage.errors import StorageError
from auditor.storage.keys import InvalidContinuationToken
from auditor.storage.reader import AuditReader
from auditor.storage.retry import StorageRetry
from auditor.storage.store import AuditStore
from auditor.storage.writer import AuditWriter, RunWriter

__all__ = [
    "AuditReader",
    "AuditStore",
    "AuditWriter",
    "InvalidContinuationToken",
    "RunWriter",
    "StorageError",
    "StorageRetry",
]
