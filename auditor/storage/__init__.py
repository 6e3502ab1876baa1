"""Audit results in Azure Table Storage; see `store` for the tables and `keys` for the keys."""

from auditor.storage.errors import StorageError
from auditor.storage.keys import InvalidContinuationToken
from auditor.storage.store import AuditStore

__all__ = ["AuditStore", "InvalidContinuationToken", "StorageError"]
