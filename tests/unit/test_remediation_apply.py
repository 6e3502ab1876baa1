"""Writing a plan: over the setting it was made from only, keeping what the auditor does not
read, refused and transient answers told apart (a fake monitor client in the SDK's shape)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.monitor.v2021_05_01_preview.models import (
    DiagnosticSettingsResource,
    LogSettings,
    MetricSettings,
    RetentionPolicy,
)

from auditor.alerts.model import SettingChange
from auditor.azure.diagnostics import setting_from_model
from auditor.facts import Registry, Status, Verdict
from auditor.policy import Policy
from auditor.remediation.apply import WORKSPACE_RIGHT, WRITE_RIGHT, Remediator
from auditor.remediation.documents import ActionDocument, Actor

SUB = "11111111-1111-1111-1111-111111111111"
WS = (
    f"/subscriptions/{SUB}/resourceGroups/rg-mon/providers/Microsoft.OperationalInsights"
    "/workspaces/law-central"
)
REGISTRY = Registry(
    id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acrx",
    name="acrx",
    subscription_id=SUB,
    resource_group="rg",
)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class _Error(HttpResponseError):
    def __init__(self, status: int, code: str = "") -> None:
        super().__init__(message=f"HTTP {status}")
        self.status_code = status
        self.error = type("E", (), {"code": code, "message": "no"})() if code else None  # type: ignore[assignment]


@dataclass
class FakeSettings:
    stored: dict[str, DiagnosticSettingsResource] = field(default_factory=dict)
    put_errors: list[Exception] = field(default_factory=list)
    puts: list[tuple[str, Any]] = field(default_factory=list)
    # Written between the plan's read and the write (another person, another run).
    meddle: DiagnosticSettingsResource | None = None

    def get(self, resource_uri: str, name: str, **options: Any) -> object:
        if self.meddle is not None:
            self.stored[name.casefold()] = self.meddle
        found = self.stored.get(name.casefold())
        if found is None:
            raise ResourceNotFoundError("not found")
        return found

    def create_or_update(
        self, resource_uri: str, name: str, parameters: Any, **options: Any
    ) -> object:
        self.puts.append((name, parameters))
        if self.put_errors:
            raise self.put_errors.pop(0)
        parameters.name = name
        self.stored[name.casefold()] = parameters
        return parameters


@dataclass
class FakeClients:
    settings: FakeSettings

    def monitor(self) -> Any:
        return type("Monitor", (), {"diagnostic_settings": self.settings})()


def remediator(fake: FakeSettings, recorded: list[ActionDocument]) -> Remediator:
    def reread(registry: Registry, change: SettingChange) -> Verdict:
        settings = tuple(setting_from_model(m) for m in fake.stored.values())
        return Verdict(registry, Status.COMPLIANT, settings=settings)

    return Remediator(
        clients=FakeClients(fake),
        policy=Policy(),
        workspace=WS,
        actor=Actor.CLI,
        reread=reread,
        record=recorded.append,
        retries=2,
        sleep=lambda _: None,
        clock=lambda: NOW,
    )


def legacy() -> DiagnosticSettingsResource:
    model = DiagnosticSettingsResource(
        workspace_id=WS,
        logs=[
            LogSettings(
                enabled=True,
                category_group="allLogs",
                retention_policy=RetentionPolicy(enabled=True, days=30),
            )
        ],
        metrics=[MetricSettings(enabled=True, category="AllMetrics")],
    )
    model.name = "legacy"
    return model


def verdict(fake: FakeSettings) -> Verdict:
    settings = tuple(setting_from_model(m) for m in fake.stored.values())
    return Verdict(REGISTRY, Status.NONCOMPLIANT, settings=settings)


def test_an_update_keeps_what_the_auditor_does_not_read() -> None:
    fake = FakeSettings(stored={"legacy": legacy()})
    recorded: list[ActionDocument] = []
    outcome = remediator(fake, recorded).remediate(verdict(fake), (), apply=True)
    assert outcome.action is not None and outcome.action["result"] == "applied"
    ((name, body),) = fake.puts
    assert name == "legacy" and body.log_analytics_destination_type == "Dedicated"
    assert body.logs[0].retention_policy.days == 30  # kept as it was
    assert recorded == [outcome.action]
    assert outcome.action["statusAfter"] == "compliant"


def test_a_setting_changed_since_the_read_is_a_conflict_and_not_written() -> None:
    fake = FakeSettings(stored={"legacy": legacy()})
    planned = verdict(fake)
    changed = legacy()
    changed.logs = []
    fake.meddle = changed
    outcome = remediator(fake, []).remediate(planned, (), apply=True)
    assert outcome.action is not None and outcome.action["result"] == "conflict"
    assert fake.puts == [] and outcome.action["pendingSince"] is None


def test_a_write_that_already_happened_is_not_repeated() -> None:
    fake = FakeSettings()
    fake.put_errors = [_Error(503)]  # the write landed but its answer was lost
    original = fake.create_or_update

    def lands_then_fails(resource_uri: str, name: str, parameters: Any, **options: Any) -> object:
        if fake.put_errors:
            fake.stored[name.casefold()] = parameters
            parameters.name = name
        return original(resource_uri, name, parameters, **options)

    fake.create_or_update = lands_then_fails  # type: ignore[method-assign]
    outcome = remediator(fake, []).remediate(verdict(fake), (), apply=True)
    assert outcome.action is not None and outcome.action["result"] == "applied"
    assert len(fake.puts) == 1
    assert "already as planned" in outcome.action["message"]


def test_refusals_name_the_right_and_are_not_retried() -> None:
    fake = FakeSettings(put_errors=[_Error(403, "AuthorizationFailed")])
    outcome = remediator(fake, []).remediate(verdict(fake), (), apply=True)
    assert outcome.action is not None and outcome.action["result"] == "forbidden"
    assert WRITE_RIGHT in outcome.action["message"] and len(fake.puts) == 1

    linked = FakeSettings(put_errors=[_Error(403, "LinkedAuthorizationFailed")])
    outcome = remediator(linked, []).remediate(verdict(linked), (), apply=True)
    assert outcome.action is not None and WORKSPACE_RIGHT in outcome.action["message"]


def test_transient_failures_stop_after_the_retries() -> None:
    fake = FakeSettings(put_errors=[_Error(503), _Error(429), _Error(500)])
    outcome = remediator(fake, []).remediate(verdict(fake), (), apply=True)
    assert outcome.action is not None and outcome.action["result"] == "failed"
    assert len(fake.puts) == 3  # the first try and 2 retries


def test_a_dry_run_reads_and_writes_nothing() -> None:
    fake = FakeSettings()
    outcome = remediator(fake, []).remediate(verdict(fake), (), apply=False)
    assert outcome.action is None and outcome.plan.writes and fake.puts == []
