"""A registry's activity trail, read live from Log Analytics (`python -m auditor trail`).

Not from storage: the trail shows what the workspaces hold now, for any time range. The
settings say which workspaces receive the registry's events (`auditor.evidence.routing`);
the rows become evidence as in an audit (`auditor.evidence.build`), shown as the trail
document (`auditor.cli_json`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from auditor import kql
from auditor.cli_json import TrailDocument, trail_document
from auditor.evidence.build import build_evidence
from auditor.evidence.model import LogEvidence, QueryRows
from auditor.evidence.routing import Route, plan_routes
from auditor.facts import DiagnosticSetting, Registry, Status, Verdict
from auditor.kql import Purpose, Window
from auditor.ports import LogQueries, TrailReads

if TYPE_CHECKING:
    from auditor.azure.logs import WorkspaceRef


class TrailError(Exception):
    """The trail cannot be shown; `exit_code` is what the CLI exits with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Trail:
    """One registry's activity trail over `window`, from the workspaces its settings send
    ContainerRegistry* events to (resource-specific mode only)."""

    registry: Registry
    window: Window
    workspaces: tuple[WorkspaceRef, ...]
    evidence: LogEvidence
    errors: tuple[str, ...] = ()  # queries failed or partial: the trail may be incomplete
    warnings: tuple[str, ...] = ()  # listings that hit their cap

    def document(self) -> TrailDocument:
        return trail_document(
            self.registry,
            self.evidence,
            workspaces=[(w.id, w.error) for w in self.workspaces],
            errors=self.errors,
            warnings=self.warnings,
        )


def no_workspace_message(registry: Registry, settings: Sequence[DiagnosticSetting]) -> str:
    to_workspace = [s for s in settings if s.workspace_id]
    if not to_workspace:
        return (
            f"registry {registry.name} sends no logs to a Log Analytics workspace "
            f"({len(settings)} diagnostic settings): there is no trail to read"
        )
    names = ", ".join(sorted(s.name for s in to_workspace))
    return (
        f"registry {registry.name} sends no repository or login events to a workspace in "
        f"resource-specific mode (settings: {names}): the ContainerRegistry* tables are empty"
    )


def read_trail(
    clients: TrailReads,
    reader: LogQueries,
    registry: Registry,
    *,
    window: Window,
    list_cap: int = kql.DEFAULT_LIST_CAP,
) -> Trail:
    """Query the registry's workspaces for its repository counts, every delete/untag/purge
    and the activity-log events about it. Raises TrailError(exit 1) when no workspace
    receives its events; an Azure error reading its settings propagates."""
    from azure.core.exceptions import AzureError

    from auditor.azure.diagnostics import MalformedSettingError, read_categories, read_settings
    from auditor.azure.logs import resolve_workspaces

    settings = read_settings(clients, registry.id)
    try:
        categories = read_categories(clients, registry.id)
    except (AzureError, MalformedSettingError):  # the documented groups are the fallback
        categories = []
    verdict = Verdict(registry, Status.UNKNOWN, settings=tuple(settings))
    routes: tuple[Route, ...] = plan_routes([verdict], categories=categories)
    if not routes:
        raise TrailError(no_workspace_message(registry, settings), 1)
    refs = resolve_workspaces(clients, [r.workspace_id for r in routes])
    errors = [f"workspace {r.id}: {r.error}" for r in refs.values() if r.error is not None]

    key = registry.key
    plan: list[tuple[WorkspaceRef, kql.Query, frozenset[str]]] = []
    for ref in sorted(refs.values(), key=lambda r: r.id):
        if ref.customer_id is None:
            continue
        own = frozenset({key})
        plan += [
            (ref, kql.repository_query([key], window), own),
            (ref, kql.deletions_query([key], window, cap=list_cap), own),
            # By subscription, as in the audit; rows of other registries are dropped below.
            (ref, kql.activity_query([registry.subscription_id], window, cap=list_cap), own),
        ]
    outcomes = reader.run([(ref.customer_id or "", query) for ref, query, _ in plan])
    results: list[QueryRows] = []
    warnings: list[str] = []
    for (ref, query, keys), outcome in zip(plan, outcomes, strict=True):
        where = f"{query.purpose.value} query in workspace {ref.id}"
        if outcome.error is not None:
            errors.append(f"{where} failed: {outcome.error}")
        if outcome.partial_error is not None:
            errors.append(f"{where} returned a partial result: {outcome.partial_error}")
        capped = query.purpose in (Purpose.DELETIONS, Purpose.ACTIVITY) and (
            len(outcome.rows) >= list_cap
        )
        if capped:
            warnings.append(f"{where} reached its cap of {list_cap} rows; older entries missing")
        results.append(
            QueryRows(
                workspace_id=ref.id,
                purpose=query.purpose,
                registry_keys=keys,
                rows=outcome.rows,
                error=outcome.error,
                partial_error=outcome.partial_error,
                capped=capped,
            )
        )
    evidence, _ = build_evidence(
        routes,
        results,
        window=window,
        registry_keys=[key],
        unavailable={w: r.error for w, r in refs.items() if r.error is not None},
    )
    found = evidence.get(key) or LogEvidence(key, window.start, window.end)
    return Trail(
        registry=registry,
        window=window,
        workspaces=tuple(refs.values()),
        evidence=found,
        errors=tuple(dict.fromkeys(errors)),
        warnings=tuple(dict.fromkeys(warnings)),
    )
