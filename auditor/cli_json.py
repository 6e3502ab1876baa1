"""The documents `python -m auditor` prints as JSON (docs/cli-json.md), each defined once as a
`TypedDict` next to its builder: `AuditDocument` (`audit --format json`) and `TrailDocument`
(`trail --format json`). Keys are only ever added within a `schemaVersion`.

They are made of the core's documents: `RegistryDocument` and the summary's `Totals` and
`LogCounts` (`auditor.summary`), the evidence digest and trail items
(`auditor.evidence.documents`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from typing_extensions import TypedDict

from auditor.evidence.documents import (
    ActivityLogEvent,
    Deletion,
    LogsDocument,
    TrailCount,
    Window,
    activity_document,
    logs_document,
)
from auditor.evidence.model import LogEvidence
from auditor.facts import Registry
from auditor.run_record import AuditRun
from auditor.summary import (
    LogCounts,
    ReasonItem,
    RegistryDocument,
    StatusCounts,
    Totals,
    log_counts,
    registry_document,
)

SCHEMA_VERSION = 1


class AuditRunInfo(TypedDict):
    id: str
    startedAt: str
    finishedAt: str
    status: str
    trigger: str
    errors: list[str]
    mode: str  # full, or changes: only what the activity log says changed was read
    settingsReads: int  # registries whose settings were read from ARM
    rereads: dict[str, list[str]]  # a change-driven run: registry id -> why it was read
    fullReads: dict[str, str]  # a change-driven run: subscription -> why all of it was read


class AuditedRegistry(RegistryDocument):
    logs: LogsDocument | None  # null when the registry's logs were not checked


class AuditDocument(TypedDict):
    """`python -m auditor audit --format json`."""

    schemaVersion: int
    run: AuditRunInfo
    totals: Totals
    registries: list[AuditedRegistry]
    logs: LogCounts


class TrailRegistry(TypedDict):
    id: str
    name: str
    subscriptionId: str
    resourceGroup: str


class TrailWorkspace(TypedDict):
    workspaceId: str
    error: str | None  # the workspace could not be resolved


class TrailDocument(TypedDict):
    """`python -m auditor trail --format json`: the activity document of a trail read live,
    without what only an audit checks (arrival per workspace, trimming for storage)."""

    schemaVersion: int
    registry: TrailRegistry
    window: Window
    problems: list[str]
    operations: dict[str, int]
    observations: list[ReasonItem]
    trail: list[TrailCount]
    deletions: list[Deletion]
    activityLog: list[ActivityLogEvent]
    workspaces: list[TrailWorkspace]
    errors: list[str]  # queries failed or partial: the trail may be incomplete
    warnings: list[str]  # listings that hit their cap


def run_document(run: AuditRun) -> AuditDocument:
    """The documented `--format json` output; keys are stable."""
    document = run_document_streamed(run)
    document["registries"] = list(document["registries"])
    return cast(AuditDocument, document)


def run_document_streamed(run: AuditRun) -> dict[str, Any]:
    """`run_document` with its registries as an iterator, each built as it is written
    (`cli.write_json`): a fleet's documents are never all held at once."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "run": {
            "id": run.run_id,
            "startedAt": run.started_at.isoformat(),
            "finishedAt": run.finished_at.isoformat(),
            "status": run.status.value,
            "trigger": run.trigger,
            "errors": list(run.errors),
            "mode": run.mode.value,
            "settingsReads": run.settings_reads,
            "rereads": {key: list(why) for key, why in sorted(run.rereads.items())},
            "fullReads": dict(sorted(run.full_reads.items())),
        },
        "totals": StatusCounts.of(v.status for v in run.verdicts).to_dict(),
        "registries": (
            {**registry_document(v), "logs": logs_document(run.evidence.get(v.registry.key))}
            for v in run.verdicts
        ),
        "logs": log_counts(run),
    }


def trail_document(
    registry: Registry,
    evidence: LogEvidence,
    *,
    workspaces: Iterable[tuple[str, str | None]],
    errors: Iterable[str] = (),
    warnings: Iterable[str] = (),
) -> TrailDocument:
    """`workspaces`: (id, error or None) of each workspace read."""
    activity = activity_document(evidence)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "registry": {
            "id": registry.id,
            "name": registry.name,
            "subscriptionId": registry.subscription_id,
            "resourceGroup": registry.resource_group,
        },
        "window": activity["window"],
        "problems": activity["problems"],
        "operations": activity["operations"],
        "observations": activity["observations"],
        "trail": activity["trail"],
        "deletions": activity["deletions"],
        "activityLog": activity["activityLog"],
        "workspaces": [
            {"workspaceId": workspace, "error": error}
            for workspace, error in sorted(workspaces, key=lambda w: w[0])
        ],
        "errors": list(errors),
        "warnings": list(warnings),
    }
