"""Which registry should be filling which tables of which workspace.

From the settings-based verdicts: only enabled log categories sent to a workspace in
resource-specific (Dedicated) mode count; in AzureDiagnostics mode the ContainerRegistry*
tables stay empty by design, and the settings judgement already reports that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from auditor import kql
from auditor.facts import CategoryInfo, DiagnosticSetting, Verdict, normalize_id
from auditor.judgement import enabled_log_categories, is_resource_specific


@dataclass(frozen=True, slots=True)
class Route:
    """A registry should be filling `tables` of this workspace (ARM id, normalized)."""

    registry_key: str
    workspace_id: str
    tables: frozenset[str]
    settings: tuple[str, ...] = ()


def plan_routes(
    verdicts: Iterable[Verdict],
    *,
    categories: Sequence[CategoryInfo] = (),
    accepts_workspace: Callable[[str], bool] | None = None,
) -> tuple[Route, ...]:
    """One route per (registry, workspace) that should receive ContainerRegistry* events.

    `accepts_workspace` (e.g. `policy.accepts_workspace` when the policy has an allow-list)
    limits the check to workspaces the policy cares about, so a stray extra destination the
    auditor may not even be allowed to read cannot make a compliant registry unknown.
    """
    found: dict[tuple[str, str], tuple[set[str], list[str]]] = {}
    for verdict in verdicts:
        for setting in verdict.settings:
            workspace = _destination(setting, accepts_workspace)
            if workspace is None:
                continue
            tables = enabled_log_categories(setting, categories, kql.REGISTRY_TABLES)
            if not tables:
                continue
            key = (verdict.registry.key, workspace)
            entry = found.setdefault(key, (set(), []))
            entry[0].update(tables)
            entry[1].append(setting.name)
    return tuple(
        Route(registry_key=r, workspace_id=w, tables=frozenset(t), settings=tuple(names))
        for (r, w), (t, names) in sorted(found.items())
    )


def destinations(
    settings: Iterable[DiagnosticSetting],
    *,
    accepts_workspace: Callable[[str], bool] | None = None,
) -> set[str]:
    """The workspaces `settings` could route registries to (`plan_routes`' ids), whatever
    categories they send: a change-driven run asks them ahead from the stored settings."""
    return {w for s in settings if (w := _destination(s, accepts_workspace)) is not None}


def _destination(
    setting: DiagnosticSetting, accepts_workspace: Callable[[str], bool] | None
) -> str | None:
    """The workspace `setting` sends resource-specific logs to, if the policy checks it."""
    workspace = setting.workspace_id
    if not workspace or not workspace.strip() or not is_resource_specific(setting):
        return None
    if accepts_workspace is not None and not accepts_workspace(workspace):
        return None
    return normalize_id(workspace)
