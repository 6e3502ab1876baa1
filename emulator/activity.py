"""One activity record (a change the world made, or one a scenario declares) as the activity log
tells it: a "Started" event, then the final status 0.4-2 s later, sharing one correlation id.
Both views of the activity log derive their events here, so the Activity Log REST API
(`emulator/arm/activitylog.py`) and the AzureActivity table (`emulator/loganalytics/events.py`)
agree on every id and instant."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulator.state import ActivityRecord

ACTIVITY_NAMES = {
    "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE": "Create or update resource diagnostic setting",
    "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE": "Delete resource diagnostic setting",
    "MICROSOFT.CONTAINERREGISTRY/REGISTRIES/WRITE": "Create or Update Container Registry",
    "MICROSOFT.CONTAINERREGISTRY/REGISTRIES/DELETE": "Delete Container Registry",
}
# The REST API's operationName.value keeps the provider's casing; AzureActivity upper-cases it.
OPERATION_VALUES = {
    v.upper(): v
    for v in (
        "Microsoft.Insights/diagnosticSettings/write",
        "Microsoft.Insights/diagnosticSettings/delete",
        "Microsoft.ContainerRegistry/registries/write",
        "Microsoft.ContainerRegistry/registries/delete",
    )
}
# The first event of an operation: "Started" (REST, new AzureActivity) or "Start" (old names).
_FIRST_STATUS = {
    "Succeeded": "Started",
    "Failed": "Started",
    "Success": "Start",
    "Failure": "Start",
}


def guid(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(str(p) for p in parts)))


def seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # fits a signed BIGINT


def segments(resource_id: str) -> tuple[str, str, str]:
    """(resource group, provider namespace, resource name) of an ARM id; the provider is the
    last one named, so a diagnostic setting on a registry belongs to microsoft.insights."""
    parts = [p for p in resource_id.split("/") if p]
    low = [p.lower() for p in parts]
    rg = parts[low.index("resourcegroups") + 1] if "resourcegroups" in low[:-1] else ""
    provider = ""
    if "providers" in low[:-1]:
        provider = parts[len(low) - 1 - low[::-1].index("providers") + 1]
    return rg, provider, parts[-1] if parts else ""


@dataclass(frozen=True)
class Phase:
    """One event of an operation."""

    status: str
    at: datetime
    final: bool
    correlation_id: str
    event_data_id: str
    operation_id: str


def phases(rec: ActivityRecord) -> list[Phase]:
    """The operation's events, oldest first: its first status, then its final one."""
    op = rec.operation.upper()
    correlation = guid("correlation", rec.at.isoformat(), rec.resource_id, op)
    offset = timedelta(milliseconds=400 + seed(correlation) % 1600)
    steps = [(_FIRST_STATUS.get(rec.status, "Start"), rec.at - offset, False)]
    steps.append((rec.status, rec.at, True))
    return [
        Phase(
            status=status,
            at=at,
            final=final,
            correlation_id=correlation,
            event_data_id=guid("event", correlation, status),
            operation_id=guid("operation", correlation),
        )
        for status, at, final in steps
    ]
