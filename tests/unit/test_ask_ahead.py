"""A change-driven run's workspaces asked ahead from the stored settings (`audit._AskAhead`):
which workspaces a page names, and that a failure to ask never reaches the store's read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from auditor.audit import _AskAhead
from auditor.changes import StoredState
from auditor.facts import DiagnosticSetting, LogEntry, Registry, normalize_id
from auditor.policy import Policy
from auditor.storage.entities import settings_json

SUB = "11111111-1111-1111-1111-111111111111"


def ws(name: str) -> str:
    return (
        f"/subscriptions/{SUB}/resourceGroups/rg-mon"
        f"/providers/Microsoft.OperationalInsights/workspaces/{name}"
    )


def stored(name: str, *workspaces: str, mode: str = "Dedicated") -> StoredState:
    settings = [
        DiagnosticSetting(
            id=f"s{i}",
            name=f"s{i}",
            workspace_id=ws(w),
            log_analytics_destination_type=mode,
            logs=(LogEntry(True, category_group="allLogs"),),
        )
        for i, w in enumerate(workspaces)
    ]
    registry = Registry(
        id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry"
        f"/registries/{name}",
        name=name,
        subscription_id=SUB,
        resource_group="rg",
    )
    return StoredState(registry, "compliant", (), None, None, settings=settings_json(settings))


class Collector:
    """What `_AskAhead` hands workspaces to; `fail` makes `prefetch` raise."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.asked: list[str] = []

    def prefetch(self, workspace_ids: Iterable[str]) -> None:
        if self.fail:
            raise RuntimeError("the pool is gone")
        self.asked += workspace_ids


def test_pages_name_each_workspace_once_whether_before_or_after_the_collector() -> None:
    ahead = _AskAhead(Policy())
    ahead.page([stored("acra", "law-a"), stored("acrb", "law-a", "law-b")])
    collector = Collector()
    ahead.attach(collector)  # type: ignore[arg-type]
    ahead.page([stored("acrc", "law-b"), stored("acrd", "law-c"), stored("acre")])
    # Not resource-specific: its rows go to AzureDiagnostics, which the run never routes.
    ahead.page([stored("acrf", "law-shared", mode="")])
    assert collector.asked == [normalize_id(ws(w)) for w in ("law-a", "law-b", "law-c")]
    assert not ahead.failed


def test_an_allow_list_limits_what_is_asked() -> None:
    ahead = _AskAhead(Policy(accepted_workspaces=frozenset({ws("law-b")})))
    collector = Collector()
    ahead.attach(collector)  # type: ignore[arg-type]
    ahead.page([stored("acra", "law-a", "law-b")])
    assert collector.asked == [normalize_id(ws("law-b"))]


@pytest.mark.parametrize("attached_first", [True, False])
def test_a_failure_to_ask_never_raises_and_is_remembered(attached_first: bool) -> None:
    ahead = _AskAhead(Policy())
    collector: Any = Collector(fail=True)
    if attached_first:
        ahead.attach(collector)
    ahead.page([stored("acra", "law-a")])
    if not attached_first:
        ahead.attach(collector)  # the store read every page before the collector was made
    assert ahead.failed
    collector.fail = False
    ahead.page([stored("acrb", "law-b")])
    assert collector.asked == []  # the collector is let go: nothing more is handed to it
