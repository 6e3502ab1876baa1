"""Which alerts a run owes: transitions only, reminders, resolution, no repeats, login alerts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditor.alerts.model import (
    AlertKind,
    AlertState,
    Change,
    SettingChange,
    SettingOperation,
    Topic,
    alert_key,
)
from auditor.alerts.payload import summary
from auditor.alerts.transitions import AlertPlan, plan_alerts
from auditor.exemptions import TAG, apply
from auditor.facts import Reason, Registry, Status, Verdict
from auditor.reasons.catalog import reason

SUB = "0000aaaa-0000-0000-0000-000000000001"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
LOGIN = "ContainerRegistryLoginEvents"


def registry(name: str = "acrprod", **extra: Any) -> Registry:
    return Registry(
        id=f"/subscriptions/{SUB}/resourceGroups/rg-{name}/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=SUB,
        resource_group=f"rg-{name}",
        **extra,
    )


REG = registry()


# Every field any catalog detail template asks for; each code uses what it needs.
FIELDS = {
    "settings": "diag",
    "metric": "AllMetrics",
    "workspaces": "law-central",
    "threshold": "24 hours",
    "last_event": "none found",
    "error": "HTTP 403",
    "events": "setting 'diag' deleted",
}


def verdict(status: Status, *codes: str, reg: Registry = REG) -> Verdict:
    reasons = tuple(reason(c, **FIELDS) for c in codes)
    return Verdict(registry=reg, status=status, reasons=reasons)


def compliant(reg: Registry = REG) -> Verdict:
    return verdict(Status.COMPLIANT, reg=reg)


def failing(*codes: str, reg: Registry = REG) -> Verdict:
    return verdict(Status.NONCOMPLIANT, *(codes or ("no_diagnostic_setting",)), reg=reg)


class Store:
    """Applies plans like the table would: each write gets a new ETag."""

    def __init__(self) -> None:
        self.states: dict[str, AlertState] = {}
        self.writes = 0

    def run(
        self,
        verdicts: Sequence[Verdict],
        now: datetime = NOW,
        remind_after: timedelta | None = DAY,
        **kw: Any,
    ) -> AlertPlan:
        plan = plan_alerts(self.states, verdicts, now=now, remind_after=remind_after, **kw)
        for change in plan.changes:
            self.writes += 1
            self.states[change.state.key] = replace(change.state, etag=f"e{self.writes}")
        return plan


def only(plan: AlertPlan) -> Any:
    assert len(plan.alerts) == 1, plan.alerts
    return plan.alerts[0]


def test_new_failing_registry_opens_one_alert() -> None:
    store = Store()
    alert = only(store.run([failing()]))
    assert alert.kind is AlertKind.OPENED
    assert alert.change is Change.NEW_REGISTRY
    assert alert.topic is Topic.COMPLIANCE
    assert alert.status == "noncompliant"
    assert [r.code for r in alert.reasons] == ["no_diagnostic_setting"]
    assert alert.detected_at == alert.opened_at == NOW
    assert alert.registry.name == "acrprod"
    assert "never been compliant" in summary(alert)


def test_compliant_registry_alerts_nothing_but_is_remembered() -> None:
    store = Store()
    plan = store.run([compliant()])
    assert plan.alerts == ()
    state = store.states[REG.key]
    assert state.ever_compliant and not state.open


def test_no_repeat_while_still_failing_and_no_write_when_nothing_changed() -> None:
    store = Store()
    store.run([failing()])
    writes = store.writes
    for hours in (1, 2, 23):
        plan = store.run([failing()], now=NOW + timedelta(hours=hours))
        assert plan.alerts == ()
        assert plan.changes == ()
    assert store.writes == writes


def test_reminder_after_the_interval_then_not_again_until_the_next() -> None:
    store = Store()
    opened = only(store.run([failing()]))
    assert store.run([failing()], now=NOW + DAY - timedelta(seconds=1)).alerts == ()
    reminder = only(store.run([failing()], now=NOW + DAY))
    assert reminder.kind is AlertKind.REMINDER
    assert reminder.change is Change.STILL_FAILING
    assert reminder.incident_id == opened.incident_id
    assert reminder.id != opened.id
    assert reminder.opened_at == NOW
    assert store.run([failing()], now=NOW + DAY + timedelta(hours=23)).alerts == ()
    assert only(store.run([failing()], now=NOW + 2 * DAY)).kind is AlertKind.REMINDER


@pytest.mark.parametrize("remind_after", [None, timedelta(0)])
def test_reminders_can_be_switched_off(remind_after: timedelta | None) -> None:
    store = Store()
    store.run([failing()], remind_after=remind_after)
    later = store.run([failing()], now=NOW + 30 * DAY, remind_after=remind_after)
    assert later.alerts == ()


def test_resolved_when_compliant_again_then_silent() -> None:
    store = Store()
    opened = only(store.run([failing()]))
    resolved = only(store.run([compliant()], now=NOW + timedelta(hours=2)))
    assert resolved.kind is AlertKind.RESOLVED
    assert resolved.change is Change.RECOVERED
    assert resolved.incident_id == opened.incident_id
    assert resolved.status == "compliant"
    assert not store.states[REG.key].open
    assert store.run([compliant()], now=NOW + timedelta(hours=3)).alerts == ()
    assert store.run([compliant()], now=NOW + 5 * DAY).alerts == ()  # no reminder when closed


def test_a_new_incident_after_resolution_gets_new_ids() -> None:
    store = Store()
    first = only(store.run([failing()]))
    store.run([compliant()], now=NOW + timedelta(hours=1))
    second = only(store.run([failing()], now=NOW + timedelta(hours=2)))
    assert second.kind is AlertKind.OPENED
    assert second.change is Change.SETTING_DELETED  # was compliant, now has no setting
    assert second.incident_id != first.incident_id
    assert second.id != first.id


@pytest.mark.parametrize(
    ("codes", "change"),
    [
        (("no_diagnostic_setting",), Change.SETTING_DELETED),
        ((f"category_disabled:{LOGIN}",), Change.SETTING_DISABLED),
        ((f"category_missing:{LOGIN}",), Change.SETTING_CHANGED),
        (("logs_silent",), Change.WENT_SILENT),
        (("metrics_missing",), Change.BECAME_NONCOMPLIANT),
    ],
)
def test_compliant_then_failing_names_what_changed(codes: tuple[str, ...], change: Change) -> None:
    store = Store()
    store.run([compliant()])
    alert = only(store.run([failing(*codes)], now=NOW + timedelta(hours=1)))
    assert alert.kind is AlertKind.OPENED
    assert alert.change is change


def test_logs_silent_alone_is_failing() -> None:
    store = Store()
    store.run([compliant()])
    alert = only(store.run([failing("logs_silent")], now=NOW + timedelta(hours=1)))
    assert "stopped arriving" in summary(alert)


def test_unknown_changes_nothing_by_default() -> None:
    store = Store()
    store.run([compliant()])
    before = dict(store.states)
    unknown = verdict(Status.UNKNOWN, "unknown:HTTP 403")
    assert store.run([unknown], now=NOW + timedelta(hours=1)).changes == ()
    assert store.states == before
    # The last judged state survives the unreadable run: the deletion is still recognised.
    alert = only(store.run([failing()], now=NOW + timedelta(hours=2)))
    assert alert.change is Change.SETTING_DELETED


def test_unknown_never_resolves_or_reminds_an_open_alert_by_default() -> None:
    store = Store()
    store.run([failing()])
    unknown = verdict(Status.UNKNOWN, "unknown:throttled")
    assert store.run([unknown], now=NOW + 3 * DAY).alerts == ()
    assert store.states[REG.key].open


def test_unknown_opens_an_alert_when_configured() -> None:
    store = Store()
    unknown = verdict(Status.UNKNOWN, "unknown:HTTP 403")
    alert = only(store.run([unknown], alert_on_unknown=True))
    assert alert.change is Change.UNREADABLE
    assert alert.status == "unknown"
    assert only(store.run([compliant()], now=NOW + timedelta(hours=1))).kind is AlertKind.RESOLVED


def test_removed_registry_resolves_its_open_alert() -> None:
    store = Store()
    store.run([failing()])
    alert = only(store.run([verdict(Status.REMOVED, "removed")], now=NOW + timedelta(hours=1)))
    assert alert.kind is AlertKind.RESOLVED
    assert alert.change is Change.REGISTRY_REMOVED
    assert alert.status == "removed"
    assert not store.states[REG.key].open


def test_removed_without_an_open_alert_is_quiet() -> None:
    store = Store()
    assert store.run([verdict(Status.REMOVED, "removed")]).changes == ()  # never seen
    store.run([compliant()])
    plan = store.run([verdict(Status.REMOVED, "removed")], now=NOW + timedelta(hours=1))
    assert plan.alerts == ()
    assert store.states[REG.key].status == "removed"


def test_getting_worse_while_open_is_told_at_once() -> None:
    store = Store()
    store.run([compliant()])
    store.run([failing("metrics_missing")], now=NOW + timedelta(hours=1))
    alert = only(store.run([failing()], now=NOW + timedelta(hours=2)))
    assert alert.kind is AlertKind.REMINDER
    assert alert.change is Change.SETTING_DELETED
    # ... and it restarts the reminder clock.
    assert store.run([failing()], now=NOW + timedelta(hours=3)).alerts == ()


def test_a_new_reason_that_does_not_stop_logging_waits_for_the_reminder() -> None:
    store = Store()
    store.run([failing(f"category_missing:{LOGIN}")])
    more = failing(f"category_missing:{LOGIN}", "metrics_missing")
    plan = store.run([more], now=NOW + timedelta(hours=1))
    assert plan.alerts == ()
    assert len(plan.changes) == 1  # the new reasons are stored


def test_a_just_created_registry_gets_a_grace_period() -> None:
    new = registry(created_at=NOW - timedelta(minutes=10))
    store = Store()
    assert store.run([failing(reg=new)]).alerts == ()
    assert store.run([failing(reg=new)], now=NOW + timedelta(minutes=30)).alerts == ()
    alert = only(store.run([failing(reg=new)], now=NOW + timedelta(minutes=51)))
    assert alert.change is Change.NEW_REGISTRY


def test_a_just_created_registry_that_becomes_compliant_never_alerts() -> None:
    new = registry(created_at=NOW - timedelta(minutes=10))
    store = Store()
    store.run([failing(reg=new)])
    assert store.run([compliant(reg=new)], now=NOW + timedelta(minutes=20)).alerts == ()
    assert store.run([compliant(reg=new)], now=NOW + 2 * DAY).alerts == ()


def test_setting_change_from_an_event_names_the_caller() -> None:
    store = Store()
    store.run([compliant()])
    change = SettingChange(
        registry_id=REG.id.upper(),
        operation=SettingOperation.DELETE,
        setting_name="to-law",
        at=NOW,
        caller="alice@contoso.com",
    )
    alert = only(
        store.run(
            [failing(f"category_missing:{LOGIN}")],
            now=NOW + timedelta(minutes=1),
            setting_changes=[change],
        )
    )
    assert alert.change is Change.SETTING_DELETED
    assert alert.setting_change == change
    assert "alice@contoso.com" in summary(alert) and "'to-law'" in summary(alert)


def test_a_setting_change_alone_never_opens_an_alert() -> None:
    store = Store()
    store.run([compliant()])
    change = SettingChange(registry_id=REG.id, operation=SettingOperation.DELETE)
    assert store.run([compliant()], setting_changes=[change]).alerts == ()


def test_registries_missing_from_the_run_are_left_alone() -> None:
    other = registry("acrother")
    store = Store()
    store.run([failing(), failing(reg=other)])
    plan = store.run([compliant(reg=other)], now=NOW + 3 * DAY)  # a one-registry run
    assert [a.registry.name for a in plan.alerts] == ["acrother"]
    assert store.states[REG.key].open


def test_many_registries_each_get_their_own_alert() -> None:
    regs = [registry(f"acr{i:03d}") for i in range(50)]
    store = Store()
    plan = store.run([failing(reg=r) for r in regs] + [compliant()])
    assert sorted(a.registry.name for a in plan.alerts) == sorted(r.name for r in regs)
    assert len({a.id for a in plan.alerts}) == 50


def test_plan_is_pure_and_repeatable() -> None:
    states: dict[str, AlertState] = {}
    one = plan_alerts(states, [failing()], now=NOW, remind_after=DAY)
    two = plan_alerts(states, [failing()], now=NOW, remind_after=DAY)
    assert one == two
    assert states == {}


# -- sign-ins and interrupted logging ----------------------------------------------------------


def burst(failures: int = 40) -> Reason:
    return reason(
        "login_failure_burst",
        failures=failures,
        kind="caller IP",
        key="203.0.113.9",
        minutes=5,
        start="2026-03-01 11:50 UTC",
        end="2026-03-01 11:55 UTC",
    )


def anonymous() -> Reason:
    return reason("anonymous_pull", count=3, repositories="app", ips="198.51.100.7")


def interrupted() -> Reason:
    return reason("logging_interrupted", events="setting 'to-law' deleted at 10:02 by bob")


def test_login_alerts_are_off_unless_enabled() -> None:
    store = Store()
    plan = store.run([compliant()], login_evidence={REG.key: [burst()]})
    assert plan.alerts == ()


def test_login_burst_opens_reminds_and_resolves() -> None:
    store = Store()
    kw: dict[str, Any] = {"login_alerts_enabled": True}
    opened = only(store.run([compliant()], login_evidence={REG.key: [burst()]}, **kw))
    assert (opened.kind, opened.topic, opened.change) == (
        AlertKind.OPENED,
        Topic.LOGIN_FAILURE_BURST,
        Change.LOGIN_FAILURE_BURST,
    )
    assert opened.status == "compliant"  # the registry's own status
    assert opened.key == alert_key(REG.key, Topic.LOGIN_FAILURE_BURST)
    assert "40 failed logins from caller IP 203.0.113.9" in summary(opened)

    def again(hours: float, evidence: Any) -> AlertPlan:
        return store.run([compliant()], NOW + timedelta(hours=hours), login_evidence=evidence, **kw)

    assert again(1, {REG.key: [burst(12)]}).alerts == ()  # still bursting: no repeat
    assert again(30, None).alerts == ()  # no evidence this run: nothing changes
    assert again(30, {}).alerts == ()  # this registry's logs not examined: nothing changes
    reminder = only(again(31, {REG.key: [burst()]}))
    assert reminder.kind is AlertKind.REMINDER
    resolved = only(again(32, {REG.key.upper(): []}))
    assert resolved.kind is AlertKind.RESOLVED
    assert resolved.incident_id == opened.incident_id


def test_login_topics_and_compliance_are_separate_incidents() -> None:
    store = Store()
    deleted = reason("artifact_deleted", count=1, identity="x", at="now")  # not a login topic
    evidence = {REG.key: [burst(), anonymous(), deleted]}
    plan = store.run([failing()], login_alerts_enabled=True, login_evidence=evidence)
    assert sorted(a.topic.value for a in plan.alerts) == [
        "anonymous_pull",
        "compliance",
        "login_failure_burst",
    ]
    assert len({a.incident_id for a in plan.alerts}) == 3


def test_removed_registry_closes_its_login_alerts() -> None:
    store = Store()
    kw: dict[str, Any] = {"login_alerts_enabled": True}
    store.run([compliant()], login_evidence={REG.key: [burst()]}, **kw)
    plan = store.run([verdict(Status.REMOVED, "removed")], NOW + timedelta(hours=1), **kw)
    assert [(a.topic, a.change) for a in plan.alerts] == [
        (Topic.LOGIN_FAILURE_BURST, Change.REGISTRY_REMOVED)
    ]


def test_deleted_and_recreated_between_runs_is_told_once() -> None:
    """The activity log shows a deletion though the registry is compliant again."""
    store = Store()
    store.run([compliant()])
    gap = Verdict(registry=REG, status=Status.COMPLIANT, reasons=(interrupted(),))
    alert = only(store.run([gap], now=NOW + timedelta(hours=1)))
    assert (alert.topic, alert.kind, alert.change) == (
        Topic.LOGGING_INTERRUPTED,
        AlertKind.OPENED,
        Change.LOGGING_INTERRUPTED,
    )
    assert "bob" in summary(alert)
    assert store.run([gap], now=NOW + 2 * DAY).alerts == ()  # no reminders for a past gap
    plan = store.run([compliant()], now=NOW + 3 * DAY)  # out of the lookback: closed quietly
    assert plan.alerts == ()
    assert not store.states[alert.key].open


def test_activity_log_deletion_on_a_failing_registry_says_deleted() -> None:
    store = Store()
    store.run([compliant()])
    v = failing(f"category_missing:{LOGIN}")
    v = Verdict(registry=REG, status=v.status, reasons=(*v.reasons, interrupted()))
    alert = only(store.run([v], now=NOW + timedelta(hours=1)))
    assert (alert.topic, alert.change) == (Topic.COMPLIANCE, Change.SETTING_DELETED)


def test_reason_detail_travels_with_the_alert() -> None:
    store = Store()
    v = Verdict(
        registry=REG,
        status=Status.NONCOMPLIANT,
        reasons=(Reason("destination_not_allowed", "Sends only to storage account sa1."),),
    )
    alert = only(store.run([v]))
    assert alert.reasons[0].detail == "Sends only to storage account sa1."


def test_log_findings_back_after_an_unreadable_workspace_are_not_news() -> None:
    """An open incident whose activity log showed the setting deleted; one run cannot read the
    workspace, so `logging_interrupted` is missing from it; the next run sees it again. That is
    the same incident as before, not a worsening."""
    store = Store()
    before = ("category_disabled:ContainerRegistryLoginEvents", "logging_interrupted")
    assert only(store.run([failing(*before)])).kind is AlertKind.OPENED
    outage = failing(before[0], "logs_unreadable:http_404")
    assert store.run([outage], now=NOW + timedelta(hours=1)).alerts == ()
    assert store.run([failing(*before)], now=NOW + timedelta(hours=2)).alerts == ()
    # A finding that is really new after the outage still is news.
    worse = failing(*before, "no_diagnostic_setting")
    assert only(store.run([worse], now=NOW + timedelta(hours=3))).kind is AlertKind.REMINDER


# -- exemptions ---------------------------------------------------------------------------------


def exempted(verdict_: Verdict, *, now: datetime = NOW, days: int = 30) -> Verdict:
    """The verdict as a run reports it under an `acr-auditor-exempt` tag ending `days` on."""
    until = (now + timedelta(days=days)).date().isoformat()
    tagged = replace(verdict_.registry, tags=((TAG, f"Decommissioning; until={until}"),))
    [result] = apply([replace(verdict_, registry=tagged)], {}, now=now)
    return result


def test_an_exempt_registry_opens_no_alert_whatever_it_would_be() -> None:
    store = Store()
    for status_of in (failing, compliant):
        plan = store.run([exempted(status_of())])
        assert plan.alerts == ()
    assert store.run([exempted(failing())], now=NOW + 30 * DAY).alerts == ()  # nor reminders
    state = store.states[REG.key]
    assert state.status == "exempt" and not state.open


def test_an_open_incident_is_resolved_when_the_registry_becomes_exempt() -> None:
    store = Store()
    opened = only(store.run([failing()]))
    resolved = only(store.run([exempted(failing())], now=NOW + timedelta(hours=1)))
    assert (resolved.kind, resolved.change) == (AlertKind.RESOLVED, Change.EXEMPTED)
    assert resolved.incident_id == opened.incident_id and resolved.status == "exempt"
    assert resolved.reasons[0].code == "exempted:noncompliant"
    assert "is exempt" in summary(resolved) and "Decommissioning" in summary(resolved)
    assert not store.states[REG.key].open


def test_a_failing_registry_whose_exemption_ended_opens_an_alert_saying_so() -> None:
    store = Store()
    store.run([exempted(failing(), days=0)])
    later = NOW + 2 * DAY  # the exemption's last day has passed
    lapsed = exempted(failing(), now=later, days=-1)
    assert lapsed.status is Status.NONCOMPLIANT
    alert = only(store.run([lapsed], now=later))
    assert (alert.kind, alert.change) == (AlertKind.OPENED, Change.EXEMPTION_EXPIRED)
    assert "exemption ended" in summary(alert)
    # Compliant when it ends: the expired finding is noted, nothing is alerted.
    assert Store().run([exempted(compliant(), now=later, days=-1)]).alerts == ()


def pending(reg: Registry = REG) -> Verdict:
    """Remediated by the auditor, its first events awaited."""
    return verdict(Status.PENDING, "pending", reg=reg)


def test_a_remediated_registry_resolves_its_open_incident_and_opens_none() -> None:
    store = Store()
    opened = only(store.run([failing()]))
    write = SettingChange(
        registry_id=REG.id,
        operation=SettingOperation.WRITE,
        setting_name="acr-auditor",
        at=NOW + timedelta(minutes=5),
        caller="acr-auditor remediation (timer)",
        source="remediation",
    )
    later = NOW + timedelta(minutes=5)
    resolved = only(store.run([pending()], now=later, setting_changes=[write]))
    assert (resolved.kind, resolved.change) == (AlertKind.RESOLVED, Change.REMEDIATED)
    assert resolved.incident_id == opened.incident_id and resolved.status == "pending"
    assert summary(resolved) == (
        "acrprod was remediated (diagnostic setting 'acr-auditor' by acr-auditor remediation "
        "(timer)); its alert is closed while its first events are awaited"
    )
    assert not store.states[REG.key].open
    # Still pending, then compliant once its events arrive: nothing more to tell.
    assert store.run([pending()], now=later + 5 * DAY).alerts == ()
    assert store.run([compliant()], now=later + 6 * DAY).alerts == ()
    # A registry first seen pending opens nothing either.
    assert Store().run([pending(registry("acrnew"))]).alerts == ()


def test_a_remediated_registry_whose_events_never_came_opens_went_silent() -> None:
    store = Store()
    store.run([failing()])
    store.run([pending()], now=NOW + timedelta(minutes=5))
    alert = only(store.run([failing("logs_silent")], now=NOW + timedelta(hours=2)))
    assert (alert.kind, alert.change) == (AlertKind.OPENED, Change.WENT_SILENT)
