"""Remediation against Azure: the fleet's current settings read afresh (the audit's own
adapters and judgement), each noncompliant registry's plan, and with `apply` the write
(`diagnostic_settings.create_or_update`), the registry re-read and re-judged, and the action
recorded.

A write goes out only over the setting the plan was made from: the setting is read again
just before (one GET), and a setting changed in between is a `conflict`, never overwritten.
A write refused with 403 is `forbidden`, once, with the right it needs named; 429, 5xx and
timeouts are tried again up to `retries` times, then `failed`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.mgmt.monitor.v2021_05_01_preview.models import (
    DiagnosticSettingsResource,
    LogSettings,
    MetricSettings,
)

from auditor.alerts.model import SettingChange, SettingOperation
from auditor.azure.diagnostics import setting_from_model
from auditor.azure.errors import describe_error, retry_after, transient
from auditor.facts import CategoryInfo, DiagnosticSetting, Registry, Verdict, normalize_id
from auditor.policy import Policy
from auditor.ports import SettingsWrites
from auditor.remediation.documents import (
    ActionDocument,
    Actor,
    RemediationEntry,
    Result,
    plan_document,
    setting_document,
)
from auditor.remediation.plan import Plan, PlanKind, plan_remediation
from auditor.storage.errors import StorageError

log = logging.getLogger(__name__)

WRITE_RIGHT = "Microsoft.Insights/diagnosticSettings/write"
# Sending to a workspace also needs this on the workspace (ARM: LinkedAuthorizationFailed).
WORKSPACE_RIGHT = "Microsoft.OperationalInsights/workspaces/sharedKeys/action"
_BACKOFF_SECONDS = 0.5
_MAX_WAIT_SECONDS = 30.0

# The registry read and judged again after a write; the change names the write for alerts.
Reread = Callable[[Registry, SettingChange], Verdict]
# Where an action goes (the actions table); raises on failure.
Record = Callable[[ActionDocument], None]


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    action: ActionDocument | None = None

    def document(self) -> RemediationEntry:
        return {"plan": plan_document(self.plan), "action": self.action}


class _Changed(Exception):
    """The setting is not what the plan was made from any more."""


@dataclass
class Remediator:
    """Plans and, when asked, applies one registry's remediation at a time."""

    clients: SettingsWrites
    policy: Policy
    workspace: str | None
    actor: Actor
    reread: Reread
    record: Record | None = None
    retries: int = 4
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    errors: list[str] = field(default_factory=list)

    def remediate(
        self, verdict: Verdict, categories: Sequence[CategoryInfo], *, apply: bool
    ) -> Outcome:
        plan = plan_remediation(verdict, categories, self.policy, self.workspace)
        if not apply or not plan.writes:
            return Outcome(plan)
        at = self.clock()
        result, message = self._write(plan)
        after: Verdict | None = None
        if result is Result.APPLIED:
            after = self._reread(plan, at)
        action = _action(plan, self.actor, at, result, message, after)
        if self.record is not None:
            try:
                self.record(action)
            except StorageError as exc:  # the write happened: losing its record must not hide it
                self.errors.append(f"{plan.registry.name}: the action was not stored: {exc}")
        return Outcome(plan, action)

    def _reread(self, plan: Plan, at: datetime) -> Verdict | None:
        change = SettingChange(
            registry_id=plan.registry.id,
            operation=SettingOperation.WRITE,
            setting_name=plan.setting_name or "",
            at=at,
            caller=f"acr-auditor remediation ({self.actor.value})",
            source="remediation",
        )
        try:
            return self.reread(plan.registry, change)
        except Exception as exc:  # reported; the next audit judges it anyway
            log.exception("re-reading %s after its remediation failed", plan.registry.id)
            self.errors.append(f"{plan.registry.name}: re-reading after the write failed: {exc}")
            return None

    def _write(self, plan: Plan) -> tuple[Result, str]:
        attempt = 0
        while True:
            try:
                return self._write_once(plan)
            except _Changed as exc:
                return Result.CONFLICT, str(exc)
            except HttpResponseError as exc:
                if exc.status_code == 403:
                    return Result.FORBIDDEN, forbidden_message(exc, plan)
                wait = self._wait(exc, attempt)
                if wait is None:
                    return Result.FAILED, describe_error(exc)
            except AzureError as exc:
                wait = self._wait(exc, attempt)
                if wait is None:
                    return Result.FAILED, describe_error(exc)
            self.sleep(wait)
            attempt += 1

    def _wait(self, exc: AzureError, attempt: int) -> float | None:
        if not transient(exc) or attempt >= self.retries:
            return None
        asked = retry_after(exc)
        return min(asked if asked is not None else _BACKOFF_SECONDS * 2**attempt, _MAX_WAIT_SECONDS)

    def _write_once(self, plan: Plan) -> tuple[Result, str]:
        after = plan.after
        assert after is not None  # a plan that writes has the setting it writes
        monitor = self.clients.monitor()
        try:
            current = monitor.diagnostic_settings.get(plan.registry.id, after.name, retry_total=0)
        except ResourceNotFoundError:
            current = None
        model = _parameters(plan, current)
        if model is None:  # an earlier attempt was written after all
            return Result.APPLIED, f"the setting '{after.name}' was already as planned"
        monitor.diagnostic_settings.create_or_update(
            plan.registry.id, after.name, model, retry_total=0
        )
        verb = "created" if plan.kind is PlanKind.CREATE else "updated"
        return Result.APPLIED, f"{verb} the setting '{after.name}'"


def forbidden_message(exc: HttpResponseError, plan: Plan) -> str:
    """A 403 in words a person can act on: which right, on what."""
    code = getattr(exc.error, "code", None) if exc.error is not None else None
    if code == "LinkedAuthorizationFailed":
        workspace = plan.after.workspace_id if plan.after is not None else "the workspace"
        need = f"'{WORKSPACE_RIGHT}' on the workspace {workspace}"
    else:
        need = f"'{WRITE_RIGHT}' on the registry {plan.registry.id}"
    return (
        f"Azure refused the write: the identity lacks {need}. Deploy with "
        "AUDITOR_ENABLE_REMEDIATION=true (docs/deploy.md) or run `remediate --apply` as someone "
        f"who has it ({describe_error(exc)})"
    )


def _same(a: DiagnosticSetting, b: DiagnosticSetting) -> bool:
    def key(s: DiagnosticSetting) -> tuple[Any, ...]:
        ids = (s.workspace_id, s.storage_account_id, s.event_hub_authorization_rule_id)
        return (
            s.name.casefold(),
            tuple(normalize_id(i) if i else None for i in ids),
            (s.event_hub_name or "").casefold(),
            (s.log_analytics_destination_type or "").casefold(),
            frozenset(s.logs),
            frozenset(s.metrics),
        )

    return key(a) == key(b)


def _parameters(plan: Plan, current: Any) -> Any:
    """The body to PUT: the setting as ARM has it now with the plan's additions made, so
    what the auditor does not read (retention, time grains, partner destinations) stays;
    None when it is already as planned. _Changed when it is not what the plan was made from."""
    after = plan.after
    assert after is not None
    if current is not None and _same(setting_from_model(current), after):
        return None
    if plan.kind is PlanKind.CREATE:
        if current is not None:
            raise _Changed(f"a setting named '{after.name}' appeared since the settings were read")
        current = DiagnosticSettingsResource()
    elif current is None or plan.before is None:
        raise _Changed(f"the setting '{after.name}' was deleted since it was read")
    elif not _same(setting_from_model(current), plan.before):
        raise _Changed(f"the setting '{after.name}' changed since it was read; run again")
    current.workspace_id = after.workspace_id
    current.log_analytics_destination_type = after.log_analytics_destination_type
    current.logs = _merged(
        list(current.logs or []),
        ((e.category, e.category_group, e.enabled) for e in after.logs),
        lambda category, group: LogSettings(enabled=True, category=category, category_group=group),
    )
    current.metrics = _merged(
        list(current.metrics or []),
        ((m.category, None, m.enabled) for m in after.metrics),
        lambda category, _: MetricSettings(enabled=True, category=category),
    )
    return current


def _merged(
    entries: list[Any],
    wanted: Iterable[tuple[str | None, str | None, bool]],
    new: Callable[[str | None, str | None], Any],
) -> list[Any]:
    """`entries` (SDK models) with each wanted enabled entry enabled in place or appended."""

    def name(entry: Any) -> tuple[str, str]:
        return (
            (getattr(entry, "category", None) or "").casefold(),
            (getattr(entry, "category_group", None) or "").casefold(),
        )

    for category, group, enabled in wanted:
        if not enabled:
            continue
        key = ((category or "").casefold(), (group or "").casefold())
        found = [e for e in entries if name(e) == key]
        for entry in found:
            entry.enabled = True
        if not found:
            entries.append(new(category, group))
    return entries


def _action(
    plan: Plan,
    actor: Actor,
    at: datetime,
    result: Result,
    message: str,
    after: Verdict | None,
) -> ActionDocument:
    assert plan.after is not None
    applied = result is Result.APPLIED
    return {
        "id": at.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8],
        "at": at.isoformat(),
        "actor": actor.value,
        "registry": plan.registry.name,
        "registryId": plan.registry.id,
        "subscriptionId": plan.registry.subscription_id,
        "operation": "create" if plan.kind is PlanKind.CREATE else "update",
        "settingName": plan.after.name,
        "before": setting_document(plan.before) if plan.before is not None else None,
        "after": setting_document(plan.after),
        "result": result.value,
        "message": message,
        "statusBefore": plan.status_before.value,
        "reasonsBefore": list(plan.reasons_before),
        "statusAfter": after.status.value if after is not None else None,
        "reasonsAfter": [r.code for r in after.reasons] if after is not None else [],
        "pendingSince": at.isoformat() if applied else None,
    }
