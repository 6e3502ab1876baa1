"""Which alerts a run owes: transitions between the stored alert states and this run's verdicts.

Pure: no I/O, no clock (`now` is passed in), so every rule is a unit test with plain values.
Alerts follow transitions, never every run:

- failing (status `noncompliant`, any reason, including `logs_silent`) with no open incident
  -> `opened`; the `change` says why: a deleted or disabled setting, a setting write that broke
  it, logs gone silent, a new registry that was never compliant, or simply became noncompliant;
- still failing -> a `reminder` once `remind_after` has passed since the last notice, or at
  once when it got worse (a reason that stops logging appeared: no setting, a category missing
  or disabled, logs silent);
- compliant again -> `resolved`;
- `pending` (the auditor remediated it and waits for its first events) -> never an alert; an
  open incident is `resolved` with change `remediated`: the fix is under way. Should its events
  not arrive in the pending window it is noncompliant (`logs_silent`), which opens one again;
- `exempt` (an exemption in force, `auditor.exemptions`) -> never an alert; an open incident
  is `resolved` with change `exempted`. When the exemption ends the registry is judged as
  usual: failing then opens an incident with change `exemption_expired`;
- `removed` (the registry is gone) -> `resolved` with change `registry_removed`: whoever was
  told about the incident is told it is over, rather than left with an alert nobody closes;
- `unknown` (the auditor could not read the settings) changes nothing unless
  `alert_on_unknown`: it is usually our own access or throttling problem, and treating it as
  compliant would resolve real incidents during an outage.

Two more topics run beside `compliance`, each its own incident per registry: sign-ins
(`login_failure_burst`, `anonymous_pull` from the log evidence, when enabled) and
`logging_interrupted` (the activity log saw a setting deleted, though the registry is
compliant again: told once, closed quietly when the deletion leaves the lookback window).

Registries absent from `verdicts` are left alone, so a one-registry run (an Event Grid event)
plans only for that registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from auditor.alerts.model import (
    LOGIN_TOPICS,
    Alert,
    AlertKind,
    AlertState,
    Change,
    SettingChange,
    SettingOperation,
    Topic,
    alert_key,
    notice_id,
    short_hash,
)
from auditor.facts import JUDGED, PASSING, Reason, Registry, Status, Verdict, normalize_id
from auditor.reasons import catalog

# Base reason codes meaning the registry records less than it did: their appearance while an
# incident is open is news worth telling at once, not at the next reminder.
STOPS_LOGGING = frozenset(
    {
        catalog.NO_DIAGNOSTIC_SETTING,
        catalog.CATEGORY_MISSING,
        catalog.CATEGORY_DISABLED,
        catalog.LOGS_SILENT,
        catalog.LOGGING_INTERRUPTED,
    }
)
# Observation topics (sign-ins, interrupted logging) store these instead of a verdict status.
OBSERVATION_ACTIVE = "active"
OBSERVATION_CLEAR = "clear"
# Default wait before a just-created registry counts as "never compliant": deployment
# pipelines and Azure Policy (DeployIfNotExists) usually add the setting within minutes.
DEFAULT_NEW_REGISTRY_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class StateChange:
    """A state to store; when `alert` is set, storing it (with `previous`'s ETag) claims the
    alert, and only the run whose write succeeds sends it."""

    previous: AlertState | None
    state: AlertState
    alert: Alert | None = None


@dataclass(frozen=True)
class AlertPlan:
    changes: tuple[StateChange, ...] = ()

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return tuple(c.alert for c in self.changes if c.alert is not None)


def snapshot(registry: Registry) -> Registry:
    """Only what an alert names; stored states compare equal run after run."""
    return Registry(
        id=registry.id,
        name=registry.name,
        subscription_id=registry.subscription_id,
        resource_group=registry.resource_group,
    )


def plan_alerts(
    previous: Mapping[str, AlertState],
    verdicts: Sequence[Verdict],
    *,
    now: datetime,
    remind_after: timedelta | None,
    login_alerts_enabled: bool = False,
    login_evidence: Mapping[str, Sequence[Reason]] | None = None,
    setting_changes: Sequence[SettingChange] = (),
    alert_on_unknown: bool = False,
    new_registry_grace: timedelta = DEFAULT_NEW_REGISTRY_GRACE,
    run_id: str = "",
) -> AlertPlan:
    """The notices due and the states to store after this run.

    `previous` maps alert keys (`model.alert_key`) to stored states. `remind_after` None or
    zero sends no reminders. `login_evidence` maps the registry keys whose login logs were
    examined to their observations (`LogEvidence.observations`: catalog reasons such as
    `login_failure_burst` and `anonymous_pull`); an empty list resolves an open login incident,
    and a registry not in it (or None) keeps its login incidents as they are.
    `setting_changes` (Event Grid, activity log) only enrich the text of alerts.
    """
    planner = _Planner(now, remind_after, run_id)
    latest_change = _latest_changes(setting_changes)
    for verdict in verdicts:
        key = verdict.registry.key
        counted = verdict.status is not Status.UNKNOWN or alert_on_unknown
        if not counted:
            continue  # an unreadable registry changes nothing (module doc)
        planner.compliance(
            previous.get(alert_key(key, Topic.COMPLIANCE)),
            verdict,
            latest_change.get(key),
            grace=new_registry_grace,
        )
        # Deleted and re-created between two runs: compliant now, but logging had a gap.
        interrupted = [
            r
            for r in verdict.reasons
            if verdict.status in PASSING and _base(r.code) == catalog.LOGGING_INTERRUPTED
        ]
        planner.observation(
            previous.get(alert_key(key, Topic.LOGGING_INTERRUPTED)),
            verdict.registry,
            Topic.LOGGING_INTERRUPTED,
            interrupted,
            verdict.status.value,
            reminders=False,
            resolved_notice=False,
        )
    if login_alerts_enabled:
        _plan_logins(planner, previous, verdicts, login_evidence or {})
    return AlertPlan(tuple(planner.changes))


def _plan_logins(
    planner: _Planner,
    previous: Mapping[str, AlertState],
    verdicts: Sequence[Verdict],
    evidence: Mapping[str, Sequence[Reason]],
) -> None:
    by_key = {v.registry.key: v for v in verdicts}
    for key, verdict in by_key.items():
        if verdict.status is Status.REMOVED:
            for topic in LOGIN_TOPICS:
                planner.observation(
                    previous.get(alert_key(key, topic)),
                    verdict.registry,
                    topic,
                    [],
                    Status.REMOVED.value,
                    reminders=True,
                    resolved_notice=True,
                    resolved_change=Change.REGISTRY_REMOVED,
                )
    for raw_key, observations in evidence.items():
        key = normalize_id(raw_key)
        current = by_key.get(key)
        if current is not None and current.status is Status.REMOVED:
            continue
        stored = previous.get(alert_key(key, Topic.COMPLIANCE))
        if current is not None:
            registry, status = current.registry, current.status.value
        elif stored is not None:
            registry, status = stored.registry, stored.status
        else:
            continue  # nothing to name the registry by
        for topic in LOGIN_TOPICS:
            planner.observation(
                previous.get(alert_key(key, topic)),
                registry,
                topic,
                [r for r in observations if _base(r.code) == topic.value],
                status,
                reminders=True,
                resolved_notice=True,
            )


def _latest_changes(changes: Iterable[SettingChange]) -> dict[str, SettingChange]:
    latest: dict[str, SettingChange] = {}
    for change in changes:
        held = latest.get(change.registry_key)
        if held is None or held.at is None or (change.at is not None and change.at >= held.at):
            latest[change.registry_key] = change
    return latest


def _base(code: str) -> str:
    return code.partition(catalog.SEPARATOR)[0]


def cause(previous: AlertState | None, verdict: Verdict, change: SettingChange | None) -> Change:
    """Why a failing registry is news, most specific first."""
    if verdict.status is Status.UNKNOWN:
        return Change.UNREADABLE
    now_codes = {r.code for r in verdict.reasons}
    # An Event Grid delete, or the activity log (logging_interrupted), saw the deletion.
    deleted = (change is not None and change.operation is SettingOperation.DELETE) or any(
        _base(c) == catalog.LOGGING_INTERRUPTED for c in now_codes
    )
    if not deleted and _exemption_ended(previous, now_codes):
        return Change.EXEMPTION_EXPIRED
    if previous is None:
        return Change.SETTING_DELETED if deleted else Change.NEW_REGISTRY
    known = previous.status in JUDGED
    # Codes that appeared since the last judged run (none can be "new" after an unknown).
    new = {_base(c) for c in now_codes - set(previous.reason_codes)} if known else set()
    if deleted or catalog.NO_DIAGNOSTIC_SETTING in new:
        return Change.SETTING_DELETED
    if catalog.CATEGORY_DISABLED in new:
        return Change.SETTING_DISABLED
    if change is not None or catalog.CATEGORY_MISSING in new:
        return Change.SETTING_CHANGED
    if catalog.LOGS_SILENT in new:
        return Change.WENT_SILENT
    if not previous.ever_compliant:
        return Change.NEW_REGISTRY
    return Change.BECAME_NONCOMPLIANT


def _exemption_ended(previous: AlertState | None, codes: Iterable[str]) -> bool:
    """Failing because its exemption ended: first seen so, or exempt the run before."""
    lapsed = any(_base(c) == catalog.EXEMPTION_EXPIRED for c in codes)
    return lapsed and (previous is None or previous.status == Status.EXEMPT.value)


# The statuses that close an open compliance incident, and the change their notice names.
_CLOSES = {
    Status.COMPLIANT: Change.RECOVERED,
    Status.PENDING: Change.REMEDIATED,
    Status.EXEMPT: Change.EXEMPTED,
}

# Reason codes only the logs can show: while the logs cannot be read they are unknown, not gone.
_LOG_FINDINGS = frozenset({catalog.LOGS_SILENT, catalog.LOGGING_INTERRUPTED, catalog.PENDING})


def _observed_codes(previous: AlertState | None, verdict: Verdict) -> tuple[str, ...]:
    """The codes to remember: the verdict's, plus, while its logs are unreadable, the log
    findings known before, so their return after an outage is not news."""
    codes = tuple(r.code for r in verdict.reasons)
    if previous is None or not any(_base(c) == catalog.LOGS_UNREADABLE for c in codes):
        return codes
    kept = [c for c in previous.reason_codes if _base(c) in _LOG_FINDINGS and c not in codes]
    return (*codes, *kept)


def _worsened(previous: AlertState, verdict: Verdict) -> bool:
    if previous.status not in JUDGED:
        return False
    before = set(previous.reason_codes)
    return any(_base(r.code) in STOPS_LOGGING and r.code not in before for r in verdict.reasons)


class _Planner:
    def __init__(self, now: datetime, remind_after: timedelta | None, run_id: str) -> None:
        self.now = now
        self.remind_after = remind_after if remind_after and remind_after > timedelta(0) else None
        self.run_id = run_id
        self.changes: list[StateChange] = []

    # -- compliance ------------------------------------------------------------------------

    def compliance(
        self,
        previous: AlertState | None,
        verdict: Verdict,
        change: SettingChange | None,
        *,
        grace: timedelta,
    ) -> None:
        status = verdict.status
        registry = snapshot(verdict.registry)
        key = alert_key(registry.key, Topic.COMPLIANCE)
        codes = _observed_codes(previous, verdict)
        base = previous or AlertState(
            key=key,
            topic=Topic.COMPLIANCE,
            registry=registry,
            status=status.value,
            first_seen_at=self.now,
        )
        observed = replace(base, registry=registry, status=status.value, reason_codes=codes)

        if status is Status.REMOVED:
            if previous is None:
                return  # never seen alive: nothing to tell or keep
            if previous.open:
                self._notice(
                    previous,
                    observed,
                    AlertKind.RESOLVED,
                    Change.REGISTRY_REMOVED,
                    verdict.reasons,
                    change,
                )
            else:
                self._store(previous, observed)
            return

        if status in _CLOSES:
            # An exemption or a remediation closes an open incident as recovery does, and
            # opens none.
            if status is Status.COMPLIANT:
                observed = replace(observed, ever_compliant=True)
            if previous is not None and previous.open:
                why = _CLOSES[status]
                self._notice(previous, observed, AlertKind.RESOLVED, why, verdict.reasons, change)
            else:
                self._store(previous, observed)
            return

        # Failing: noncompliant, or unknown when it counts.
        if previous is not None and previous.open:
            if _worsened(previous, verdict):
                why = cause(previous, verdict, change)
                if why in (Change.NEW_REGISTRY, Change.BECAME_NONCOMPLIANT):
                    why = Change.SETTING_CHANGED
                self._notice(previous, observed, AlertKind.REMINDER, why, verdict.reasons, change)
            elif self._reminder_due(previous):
                self._notice(
                    previous,
                    observed,
                    AlertKind.REMINDER,
                    Change.STILL_FAILING,
                    verdict.reasons,
                    change,
                )
            else:
                self._store(previous, observed)
            return
        created = verdict.registry.created_at
        if not base.ever_compliant and created is not None and self.now - created < grace:
            self._store(previous, observed)  # remembered; alerted once the grace is over
            return
        why = cause(previous, verdict, change)
        self._notice(previous, observed, AlertKind.OPENED, why, verdict.reasons, change)

    # -- observations (sign-ins, interrupted logging) -------------------------------------

    def observation(
        self,
        previous: AlertState | None,
        registry: Registry,
        topic: Topic,
        found: Sequence[Reason],
        registry_status: str,
        *,
        reminders: bool,
        resolved_notice: bool,
        resolved_change: Change = Change.RECOVERED,
    ) -> None:
        """An incident that is open while `found` holds reasons for `topic`."""
        if not found:
            if previous is not None and previous.open:
                observed = replace(previous, status=OBSERVATION_CLEAR, reason_codes=())
                if resolved_notice:
                    self._notice(
                        previous,
                        observed,
                        AlertKind.RESOLVED,
                        resolved_change,
                        (),
                        None,
                        shown_status=registry_status,
                    )
                else:
                    self._store(previous, replace(observed, open=False, resolved_at=self.now))
            return
        snap = snapshot(registry)
        base = previous or AlertState(
            key=alert_key(snap.key, topic),
            topic=topic,
            registry=snap,
            status=OBSERVATION_CLEAR,
            first_seen_at=self.now,
        )
        codes = tuple(r.code for r in found)
        observed = replace(base, registry=snap, status=OBSERVATION_ACTIVE, reason_codes=codes)
        why = Change(topic.value)
        if previous is not None and previous.open:
            if reminders and self._reminder_due(previous):
                self._notice(
                    previous,
                    observed,
                    AlertKind.REMINDER,
                    why,
                    found,
                    None,
                    shown_status=registry_status,
                )
            else:
                self._store(previous, observed)
            return
        self._notice(
            previous, observed, AlertKind.OPENED, why, found, None, shown_status=registry_status
        )

    # -- helpers ---------------------------------------------------------------------------

    def _reminder_due(self, state: AlertState) -> bool:
        if self.remind_after is None:
            return False
        last = state.last_notified_at or state.opened_at
        return last is None or self.now - last >= self.remind_after

    def _store(self, previous: AlertState | None, observed: AlertState) -> None:
        if previous is not None and observed == previous:
            return  # nothing new: no write
        self.changes.append(StateChange(previous, replace(observed, updated_at=self.now)))

    def _notice(
        self,
        previous: AlertState | None,
        observed: AlertState,
        kind: AlertKind,
        why: Change,
        reasons: Sequence[Reason],
        change: SettingChange | None,
        *,
        shown_status: str | None = None,
    ) -> None:
        if kind is AlertKind.OPENED:
            incidents = observed.incidents + 1
            incident = short_hash(f"{observed.key}|{incidents}|{self.now.isoformat()}")
            state = replace(
                observed,
                open=True,
                incident_id=incident,
                incidents=incidents,
                notices=1,
                opened_at=self.now,
                last_notified_at=self.now,
                resolved_at=None,
            )
        elif kind is AlertKind.REMINDER:
            state = replace(observed, notices=observed.notices + 1, last_notified_at=self.now)
        else:
            state = replace(
                observed,
                open=False,
                notices=observed.notices + 1,
                last_notified_at=self.now,
                resolved_at=self.now,
            )
        state = replace(state, updated_at=self.now)
        alert = Alert(
            id=notice_id(state.incident_id, state.notices),
            incident_id=state.incident_id,
            key=state.key,
            kind=kind,
            topic=state.topic,
            change=why,
            registry=state.registry,
            status=shown_status or state.status,
            reasons=tuple(reasons),
            detected_at=self.now,
            opened_at=state.opened_at or self.now,
            setting_change=change,
            run_id=self.run_id,
        )
        self.changes.append(StateChange(previous, state, alert))
