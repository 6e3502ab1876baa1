"""The pure log analysis: routes from settings, evidence from rows, findings on verdicts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditor import exemptions, kql
from auditor.evidence.build import build_evidence, find_burst, orphan_activity
from auditor.evidence.judgement import apply_evidence, remediation_pending
from auditor.evidence.model import (
    ActivityKind,
    EvidenceOptions,
    LogEvidence,
    Operation,
    QueryRows,
    classify_operation,
)
from auditor.evidence.routing import Route, plan_routes
from auditor.facts import (
    CategoryInfo,
    DiagnosticSetting,
    LogEntry,
    Reason,
    Registry,
    Status,
    Verdict,
)
from auditor.kql import Purpose, Window
from auditor.reasons import describe

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW = Window.ending(NOW, timedelta(hours=24))
SUB = "11111111-1111-1111-1111-111111111111"
WS = (
    f"/subscriptions/{SUB}/resourceGroups/rg-mon"
    "/providers/Microsoft.OperationalInsights/workspaces/law-central"
)
WS_KEY = WS.lower()
WS2 = WS.replace("law-central", "law-other")
LOGIN = kql.LOGIN_TABLE
REPO = kql.REPOSITORY_TABLE
SILENT_AFTER = timedelta(hours=24)
PENDING = timedelta(minutes=90)


def registry(name: str = "acrone01", **kw: Any) -> Registry:
    rid = (
        f"/subscriptions/{SUB}/resourceGroups/RG-Prod"
        f"/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
    return Registry(id=rid, name=name, subscription_id=SUB, resource_group="RG-Prod", **kw)


def setting(
    name: str = "to-law",
    workspace: str | None = WS,
    *,
    logs: Sequence[LogEntry] = (
        LogEntry(enabled=True, category=LOGIN),
        LogEntry(enabled=True, category=REPO),
    ),
    mode: str | None = "Dedicated",
    storage: str | None = None,
) -> DiagnosticSetting:
    return DiagnosticSetting(
        id=f"x/{name}",
        name=name,
        workspace_id=workspace,
        storage_account_id=storage,
        log_analytics_destination_type=mode,
        logs=tuple(logs),
    )


def verdict(
    reg: Registry | None = None,
    *settings: DiagnosticSetting,
    status: Status = Status.COMPLIANT,
    reasons: Sequence[Reason] = (),
) -> Verdict:
    return Verdict(
        registry=reg or registry(),
        status=status,
        reasons=tuple(reasons),
        settings=settings or (setting(),),
    )


def fresh_row(reg: Registry, table: str = LOGIN, *, last: datetime | str | None, events: int = 5,
              previous: int = 5) -> dict[str, Any]:  # fmt: skip
    return {
        kql.COL_RESOURCE: reg.id.lower(),
        kql.COL_TABLE: table,
        kql.COL_LAST_EVENT: last,
        kql.COL_EVENTS: events,
        kql.COL_PREVIOUS_EVENTS: previous,
    }


def rows(
    purpose: Purpose,
    data: Sequence[Mapping[str, Any]] = (),
    *,
    regs: Sequence[Registry] = (),
    workspace: str = WS_KEY,
    **kw: Any,
) -> QueryRows:
    keys = frozenset(r.key for r in regs)
    return QueryRows(workspace, purpose, keys, tuple(data), **kw)


def evidence_for(
    verdicts: Sequence[Verdict],
    results: Sequence[QueryRows],
    *,
    unavailable: Mapping[str, str] | None = None,
    options: EvidenceOptions | None = None,
) -> dict[str, LogEvidence]:
    routes = plan_routes(verdicts)
    found, _ = build_evidence(
        routes,
        results,
        window=WINDOW,
        registry_keys=[v.registry.key for v in verdicts],
        unavailable=unavailable,
        options=options,
    )
    return found


def judged(
    verdicts: Sequence[Verdict],
    results: Sequence[QueryRows],
    *,
    changed: Mapping[str, datetime] | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> list[Verdict]:
    found = evidence_for(verdicts, results, unavailable=unavailable)
    return list(
        apply_evidence(
            verdicts,
            found,
            now=NOW,
            silent_after=SILENT_AFTER,
            pending_window=PENDING,
            settings_changed_at=changed,
        )
    )


def codes(v: Verdict) -> list[str]:
    return [r.code for r in v.reasons]


# --------------------------------------------------------------------------- routes


def test_routes_only_enabled_categories_to_dedicated_workspaces() -> None:
    verdicts = [
        verdict(registry("acrboth01"), setting()),
        verdict(
            registry("acrlogin01"),
            setting(logs=(LogEntry(True, LOGIN), LogEntry(False, REPO))),
        ),
        verdict(registry("acrlegacy01"), setting(mode=None)),
        verdict(registry("acrstore01"), setting(workspace=None, storage="/x/storage")),
        verdict(registry("acroff01"), setting(logs=(LogEntry(False, category_group="allLogs"),))),
    ]
    routes = {r.registry_key.rsplit("/", 1)[-1]: r for r in plan_routes(verdicts)}
    assert set(routes) == {"acrboth01", "acrlogin01"}
    assert routes["acrboth01"].tables == {LOGIN, REPO}
    assert routes["acrlogin01"].tables == {LOGIN}
    assert routes["acrboth01"].workspace_id == WS_KEY


def test_category_groups_expand_through_the_judgements_rules() -> None:
    group = setting(logs=(LogEntry(True, category_group="audit"),))
    assert plan_routes([verdict(None, group)])[0].tables == {LOGIN, REPO}
    # The categories API may say a group holds only one of them.
    api = [CategoryInfo(LOGIN, "Logs", ("audit",)), CategoryInfo(REPO, "Logs", ("allLogs",))]
    assert plan_routes([verdict(None, group)], categories=api)[0].tables == {LOGIN}


def test_settings_to_the_same_workspace_merge_and_others_stay_apart() -> None:
    v = verdict(
        None,
        setting("a", logs=(LogEntry(True, LOGIN),)),
        setting("b", WS.upper(), logs=(LogEntry(True, REPO),)),
        setting("c", WS2),
    )
    routes = plan_routes([v])
    assert [(r.workspace_id, r.tables, r.settings) for r in routes] == [
        (WS_KEY, frozenset({LOGIN, REPO}), ("a", "b")),
        (WS2.lower(), frozenset({LOGIN, REPO}), ("c",)),
    ]


def test_an_allow_list_limits_the_workspaces_checked() -> None:
    v = verdict(None, setting("a"), setting("b", WS2))
    routes = plan_routes([v], accepts_workspace=lambda w: w.lower() == WS_KEY)
    assert [r.workspace_id for r in routes] == [WS_KEY]


# --------------------------------------------------------------------------- silence


def test_fresh_events_leave_a_compliant_verdict_alone() -> None:
    reg = registry()
    out = judged(
        [verdict(reg)],
        [rows(Purpose.FRESHNESS, [fresh_row(reg, last=NOW - timedelta(hours=2))], regs=[reg])],
    )
    assert out[0].status is Status.COMPLIANT and out[0].reasons == ()


def test_a_registry_silent_too_long_is_noncompliant_with_its_last_event() -> None:
    reg = registry(created_at=NOW - timedelta(days=30))
    last = NOW - timedelta(hours=30)
    out = judged([verdict(reg)], [rows(Purpose.FRESHNESS, [fresh_row(reg, last=last)], regs=[reg])])
    assert out[0].status is Status.NONCOMPLIANT
    assert codes(out[0]) == ["logs_silent"]
    detail = out[0].reasons[0].detail
    assert "law-central" in detail and "2026-11-24 06:00 UTC" in detail and "24 h" in detail


def test_no_events_at_all_is_silent() -> None:
    reg = registry()
    out = judged([verdict(reg)], [rows(Purpose.FRESHNESS, [], regs=[reg])])
    assert codes(out[0]) == ["logs_silent"]
    assert "none found" in out[0].reasons[0].detail


def test_events_only_in_a_table_the_registry_does_not_route_do_not_count() -> None:
    reg = registry()
    v = verdict(reg, setting(logs=(LogEntry(True, LOGIN),)))
    data = [fresh_row(reg, REPO, last=NOW - timedelta(minutes=5))]
    out = judged([v], [rows(Purpose.FRESHNESS, data, regs=[reg])])
    assert codes(out[0]) == ["logs_silent"]


def test_silence_threshold_is_exclusive_of_fresh_enough_events() -> None:
    reg = registry()
    data = [fresh_row(reg, last=NOW - SILENT_AFTER + timedelta(seconds=1))]
    out = judged([verdict(reg)], [rows(Purpose.FRESHNESS, data, regs=[reg])])
    assert out[0].reasons == ()


def test_one_silent_workspace_of_two_is_enough() -> None:
    reg = registry()
    v = verdict(reg, setting("a"), setting("b", WS2))
    results = [
        rows(Purpose.FRESHNESS, [fresh_row(reg, last=NOW)], regs=[reg]),
        rows(Purpose.FRESHNESS, [], regs=[reg], workspace=WS2.lower()),
    ]
    out = judged([v], results)
    assert codes(out[0]) == ["logs_silent"]
    assert "law-other" in out[0].reasons[0].detail
    assert "law-central" not in out[0].reasons[0].detail


def test_a_noncompliant_verdict_keeps_its_status_and_gains_the_reason() -> None:
    reg = registry()
    old = Reason("metrics_missing", "AllMetrics is not enabled.")
    v = verdict(reg, status=Status.NONCOMPLIANT, reasons=[old])
    out = judged([v], [rows(Purpose.FRESHNESS, [], regs=[reg])])
    assert out[0].status is Status.NONCOMPLIANT
    assert codes(out[0]) == ["logs_silent", "metrics_missing"]


def test_applying_twice_does_not_stack_reasons() -> None:
    reg = registry()
    v = [verdict(reg)]
    found = evidence_for(v, [rows(Purpose.FRESHNESS, [], regs=[reg])])
    once = apply_evidence(v, found, now=NOW, silent_after=SILENT_AFTER, pending_window=PENDING)
    twice = apply_evidence(once, found, now=NOW, silent_after=SILENT_AFTER, pending_window=PENDING)
    assert codes(twice[0]) == ["logs_silent"]


def test_registries_without_routes_are_untouched() -> None:
    reg = registry()
    v = verdict(reg, setting(mode=None))
    out = judged([v], [])
    assert out == [v]


# --------------------------------------------------------------------------- pending


def test_recently_created_registry_is_pending_not_silent() -> None:
    reg = registry(created_at=NOW - timedelta(minutes=30))
    out = judged([verdict(reg)], [rows(Purpose.FRESHNESS, [], regs=[reg])])
    assert out[0].status is Status.COMPLIANT
    assert codes(out[0]) == ["pending"]


def test_registry_created_long_ago_is_silent() -> None:
    reg = registry(created_at=NOW - PENDING - timedelta(minutes=1))
    out = judged([verdict(reg)], [rows(Purpose.FRESHNESS, [], regs=[reg])])
    assert codes(out[0]) == ["logs_silent"]


def test_setting_written_recently_in_the_activity_log_is_pending() -> None:
    reg = registry(created_at=NOW - timedelta(days=300))
    activity = activity_row(reg, kql.SETTING_WRITE, NOW - timedelta(minutes=20))
    out = judged(
        [verdict(reg)],
        [rows(Purpose.FRESHNESS, [], regs=[reg]), rows(Purpose.ACTIVITY, [activity])],
    )
    assert codes(out[0]) == ["pending"]
    assert out[0].status is Status.COMPLIANT


def test_auditors_own_history_makes_it_pending() -> None:
    reg = registry(created_at=NOW - timedelta(days=300))
    out = judged(
        [verdict(reg)],
        [rows(Purpose.FRESHNESS, [], regs=[reg])],
        changed={reg.id.upper(): NOW - timedelta(minutes=89)},
    )
    assert codes(out[0]) == ["pending"]


def test_old_history_does_not_make_it_pending() -> None:
    reg = registry(created_at=NOW - timedelta(days=300))
    out = judged(
        [verdict(reg)],
        [rows(Purpose.FRESHNESS, [], regs=[reg])],
        changed={reg.key: NOW - timedelta(hours=3)},
    )
    assert codes(out[0]) == ["logs_silent"]


def test_a_registry_update_counts_only_when_creation_time_is_unknown() -> None:
    activity = [rows(Purpose.ACTIVITY, [activity_row(registry(), kql.REGISTRY_WRITE, NOW)])]
    known = registry(created_at=NOW - timedelta(days=300))
    unknown = registry()
    out_known = judged([verdict(known)], [rows(Purpose.FRESHNESS, [], regs=[known]), *activity])
    out_unknown = judged(
        [verdict(unknown)], [rows(Purpose.FRESHNESS, [], regs=[unknown]), *activity]
    )
    assert codes(out_known[0]) == ["logs_silent"]
    assert codes(out_unknown[0]) == ["pending"]


# --------------------------------------------------------------------------- remediated


def remediated(reg: Registry, *results: QueryRows, remediated: bool = True, **kw: Any) -> Verdict:
    """The registry judged as a run does: its evidence, then the pending rule, then its
    exemption; `remediated`: the auditor applied its setting within the pending window."""
    v = verdict(reg, **kw)
    [after] = judged([v], [rows(Purpose.FRESHNESS, [], regs=[reg]), *results])
    [after] = remediation_pending([after], {reg.key} if remediated else set())
    [after] = exemptions.apply([after], {}, now=NOW)
    return after


def setting_written(reg: Registry, ago: timedelta) -> QueryRows:
    return rows(Purpose.ACTIVITY, [activity_row(reg, kql.SETTING_WRITE, NOW - ago)])


def test_a_remediated_registry_waiting_for_its_events_is_pending() -> None:
    reg = registry(created_at=NOW - timedelta(days=300))
    out = remediated(reg, setting_written(reg, timedelta(minutes=20)))
    assert (out.status, codes(out)) == (Status.PENDING, ["pending"])


def test_a_remediated_registry_whose_events_arrived_is_compliant() -> None:
    reg = registry(created_at=NOW - timedelta(days=300))
    fresh = rows(Purpose.FRESHNESS, [fresh_row(reg, last=NOW - timedelta(minutes=5))], regs=[reg])
    v = verdict(reg)
    [after] = judged([v], [fresh, setting_written(reg, timedelta(minutes=20))])
    [after] = remediation_pending([after], {reg.key})
    assert (after.status, codes(after)) == (Status.COMPLIANT, [])


def test_a_remediated_registry_silent_past_the_window_is_noncompliant() -> None:
    reg = registry(created_at=NOW - timedelta(days=300))
    out = remediated(reg, setting_written(reg, PENDING + timedelta(minutes=1)))
    assert (out.status, codes(out)) == (Status.NONCOMPLIANT, ["logs_silent"])


def test_a_registry_not_remediated_keeps_its_verdict_while_pending() -> None:
    reg = registry(created_at=NOW - timedelta(days=300))
    out = remediated(reg, setting_written(reg, timedelta(minutes=20)), remediated=False)
    assert (out.status, codes(out)) == (Status.COMPLIANT, ["pending"])
    # Nor does another registry's remediation change it.
    [other] = remediation_pending([out], {registry("acrother01").key})
    assert other is out


def test_only_a_compliant_registry_becomes_pending() -> None:
    reg = registry(created_at=NOW - timedelta(minutes=10))
    missing = Reason("category_missing:ContainerRegistryLoginEvents")
    still = verdict(reg, status=Status.NONCOMPLIANT, reasons=[missing, Reason("pending")])
    unknown = verdict(reg, status=Status.UNKNOWN, reasons=[Reason("pending")])
    assert remediation_pending([still, unknown], {reg.key}) == (still, unknown)


def test_an_exempt_registry_stays_exempt() -> None:
    until = (NOW + timedelta(days=30)).date().isoformat()
    reg = registry(
        created_at=NOW - timedelta(days=300),
        tags=((exemptions.TAG, f"Retiring; until={until}"),),
    )
    out = remediated(reg, setting_written(reg, timedelta(minutes=20)))
    assert out.status is Status.EXEMPT
    assert codes(out)[0] == "exempted:pending"
    assert remediation_pending([out], {reg.key}) == (out,)


def test_judged_on_settings_alone_a_remediated_registry_awaits_its_events() -> None:
    reg = registry()
    fixed, other = verdict(reg), verdict(registry("acrother01"))
    broken = verdict(registry("acrbroken01"), status=Status.NONCOMPLIANT)
    out = remediation_pending(
        [fixed, other, broken], {reg.id.upper(), broken.registry.key}, logs_checked=False
    )
    assert (out[0].status, codes(out[0])) == (Status.PENDING, ["pending"])
    assert out[0].reasons[0].detail == describe("pending").detail()
    assert out[1:] == (other, broken)
    assert remediation_pending(out, {reg.key}, logs_checked=False) == out  # no second reason


# --------------------------------------------------------------------------- unknown


def test_unreadable_workspace_makes_a_compliant_registry_unknown() -> None:
    reg = registry()
    why = "workspace unreadable: HTTP 403 AuthorizationFailed: no access"
    out = judged([verdict(reg)], [], unavailable={WS: why})
    assert out[0].status is Status.UNKNOWN
    assert codes(out[0]) == ["logs_unreadable:http_403"]
    assert describe(out[0].reasons[0].code).parameter == "http_403"
    assert out[0].reasons[0].detail == f"Events in law-central could not be checked: {why}."


def test_failed_freshness_query_makes_it_unknown_never_compliant() -> None:
    reg = registry()
    failed = rows(Purpose.FRESHNESS, regs=[reg], error="HTTP 504: GatewayTimeout")
    out = judged([verdict(reg)], [failed])
    assert out[0].status is Status.UNKNOWN
    assert codes(out[0]) == ["logs_unreadable:http_504"]
    assert "HTTP 504: GatewayTimeout" in out[0].reasons[0].detail


def test_a_workspace_never_queried_is_unknown() -> None:
    out = judged([verdict(registry())], [])
    assert out[0].status is Status.UNKNOWN


def test_noncompliant_stays_noncompliant_when_logs_are_unreadable() -> None:
    v = verdict(status=Status.NONCOMPLIANT, reasons=[Reason("metrics_missing", "x")])
    out = judged([v], [], unavailable={WS: "gone"})
    assert out[0].status is Status.NONCOMPLIANT
    assert "logs_unreadable:gone" in codes(out[0])


def test_partial_result_with_fresh_row_is_trusted() -> None:
    reg = registry()
    partial = rows(
        Purpose.FRESHNESS,
        [fresh_row(reg, last=NOW - timedelta(hours=1))],
        regs=[reg],
        partial_error="PartialError: some shards failed",
    )
    out = judged([verdict(reg)], [partial])
    assert out[0].status is Status.COMPLIANT and out[0].reasons == ()
    assert any("partial" in p for p in evidence_for([verdict(reg)], [partial])[reg.key].problems)


def test_silence_seen_in_a_partial_result_is_unknown_not_silent() -> None:
    reg = registry()
    partial = rows(Purpose.FRESHNESS, [], regs=[reg], partial_error="PartialError: x")
    out = judged([verdict(reg)], [partial])
    assert out[0].status is Status.UNKNOWN
    assert codes(out[0]) == ["logs_unreadable:partial_query_result"]


def test_pending_holds_in_a_partial_result() -> None:
    reg = registry(created_at=NOW - timedelta(minutes=10))
    partial = rows(Purpose.FRESHNESS, [], regs=[reg], partial_error="PartialError: x")
    out = judged([verdict(reg)], [partial])
    assert (out[0].status, codes(out[0])) == (Status.COMPLIANT, ["pending"])


def test_silent_wins_over_unknown_in_another_workspace() -> None:
    reg = registry()
    v = verdict(reg, setting("a"), setting("b", WS2))
    out = judged([v], [rows(Purpose.FRESHNESS, [], regs=[reg])], unavailable={WS2: "gone"})
    assert out[0].status is Status.NONCOMPLIANT
    assert codes(out[0]) == ["logs_silent", "logs_unreadable:gone"]


def test_split_results_merge_and_a_failed_part_wins() -> None:
    reg = registry()
    halves = [
        rows(Purpose.FRESHNESS, [fresh_row(reg, last=NOW - timedelta(hours=30))], regs=[reg]),
        rows(Purpose.FRESHNESS, [fresh_row(reg, last=NOW - timedelta(hours=1))], regs=[reg]),
    ]
    found = evidence_for([verdict(reg)], halves)[reg.key]
    assert found.last_event == NOW - timedelta(hours=1)
    assert found.workspaces[0].events == 10
    failed = [*halves, rows(Purpose.FRESHNESS, regs=[reg], error="boom")]
    assert judged([verdict(reg)], failed)[0].status is Status.UNKNOWN


# --------------------------------------------------------------------------- activity log


def activity_row(reg: Registry, operation: str, at: datetime, **kw: Any) -> dict[str, Any]:
    resource = reg.id
    if "DIAGNOSTICSETTINGS" in operation:
        resource += "/providers/microsoft.insights/diagnosticSettings/to-law"
    return {
        kql.COL_TIME: at,
        kql.COL_REGISTRY_ID: reg.id.lower(),
        kql.COL_ACTIVITY_RESOURCE: resource,
        kql.COL_ACTIVITY_OPERATION: operation,
        kql.COL_ACTIVITY_STATUS: "Succeeded",
        kql.COL_CALLER: kw.get("caller", "mallory@contoso.com"),
        kql.COL_IP: "198.51.100.7",
    }


def test_setting_deleted_and_recreated_between_runs_is_caught() -> None:
    reg = registry(created_at=NOW - timedelta(days=300))
    deleted = activity_row(reg, kql.SETTING_DELETE, NOW - timedelta(hours=5))
    written = activity_row(reg, kql.SETTING_WRITE, NOW - timedelta(hours=4))
    fresh = fresh_row(reg, last=NOW - timedelta(minutes=10))
    results = [
        rows(Purpose.FRESHNESS, [fresh], regs=[reg]),
        rows(Purpose.ACTIVITY, [written, deleted]),
        rows(Purpose.ACTIVITY, [deleted], workspace=WS2.lower()),  # same log, 2nd workspace
    ]
    out = judged([verdict(reg)], results)
    assert out[0].status is Status.COMPLIANT  # configured and logging again now
    assert codes(out[0]) == ["logging_interrupted"]
    detail = out[0].reasons[0].detail
    assert "'to-law' deleted at 2026-11-25 07:00 UTC by mallory@contoso.com" in detail
    assert "written at 2026-11-25 08:00 UTC" in detail
    found = evidence_for([verdict(reg)], results)[reg.key]
    assert [a.kind for a in found.activity] == [
        ActivityKind.SETTING_DELETE,
        ActivityKind.SETTING_WRITE,
    ]  # de-duplicated across workspaces, oldest first
    assert found.activity[0].setting_name == "to-law"


def test_activity_of_a_registry_without_routes_is_kept_and_orphans_returned() -> None:
    reg = registry()
    gone = registry("acrgone01")
    v = verdict(reg, setting(workspace=None, storage="/x/storage"))
    results = [
        rows(Purpose.ACTIVITY, [activity_row(reg, kql.SETTING_DELETE, NOW)]),
        rows(Purpose.ACTIVITY, [activity_row(gone, kql.REGISTRY_DELETE, NOW)]),
    ]
    found, orphans = build_evidence(
        plan_routes([v]), results, window=WINDOW, registry_keys=[reg.key]
    )
    assert [a.kind for a in found[reg.key].activity] == [ActivityKind.SETTING_DELETE]
    assert [(o.registry_key, o.kind) for o in orphans] == [(gone.key, ActivityKind.REGISTRY_DELETE)]
    # Alone, without building anyone's evidence: the same orphans, whatever else is there.
    results.append(rows(Purpose.FRESHNESS, [fresh_row(gone, last=NOW)], regs=[gone]))
    assert orphan_activity(results, [reg.key.upper()]) == orphans
    assert orphan_activity(results, [reg.key, gone.key]) == ()
    out = apply_evidence([v], found, now=NOW, silent_after=SILENT_AFTER, pending_window=PENDING)
    assert codes(out[0]) == ["logging_interrupted"]


# --------------------------------------------------------------------------- logins


def login_row(reg: Registry, identity: str, ip: str, attempts: int, failures: int = 0,
              previous: int = 0, first: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        kql.COL_RESOURCE: reg.id.lower(),
        kql.COL_IDENTITY: identity,
        kql.COL_IP: ip,
        kql.COL_ATTEMPTS: attempts,
        kql.COL_FAILURES: failures,
        kql.COL_PREVIOUS_ATTEMPTS: previous,
        kql.COL_FIRST_SEEN: first or NOW - timedelta(hours=30),
        kql.COL_LAST_SEEN: NOW - timedelta(minutes=1),
    }


def test_login_summary_per_identity_and_ip() -> None:
    reg = registry()
    data = [
        login_row(reg, "ci@contoso.com", "203.0.113.10", 10, 1, previous=4),
        login_row(reg, "ci@contoso.com", "203.0.113.11", 5, 0, previous=4),
        login_row(reg, "bob@contoso.com", "203.0.113.10", 2, 2, previous=1),
        login_row(reg, "old@contoso.com", "203.0.113.12", 0, 0, previous=3),  # previous only
    ]
    found = evidence_for([verdict(reg)], [rows(Purpose.LOGINS, data, regs=[reg])])[reg.key]
    assert [(t.key, t.attempts, t.failures) for t in found.by_identity] == [
        ("ci@contoso.com", 15, 1),
        ("bob@contoso.com", 2, 2),
    ]
    assert [(t.key, t.attempts, t.failures) for t in found.by_ip] == [
        ("203.0.113.10", 12, 3),
        ("203.0.113.11", 5, 0),
    ]
    assert found.first_seen == ()


def test_first_seen_identities_and_ips() -> None:
    reg = registry()
    new_at = NOW - timedelta(hours=3)
    data = [
        login_row(reg, "ci@contoso.com", "203.0.113.10", 10, previous=8),
        login_row(reg, "ci@contoso.com", "192.0.2.99", 1, first=new_at),  # new IP, known id
        login_row(reg, "eve@evil.example", "203.0.113.10", 3, 3, first=new_at),  # new id
    ]
    found = evidence_for([verdict(reg)], [rows(Purpose.LOGINS, data, regs=[reg])])[reg.key]
    assert [(f.kind, f.value, f.first_seen, f.attempts) for f in found.first_seen] == [
        ("identity", "eve@evil.example", new_at, 3),
        ("ip", "192.0.2.99", new_at, 1),
    ]
    assert "new_login_source" in [r.code for r in found.observations]


def test_nothing_is_first_seen_without_a_previous_window() -> None:
    reg = registry()
    data = [login_row(reg, "ci@contoso.com", "203.0.113.10", 10)]
    found = evidence_for([verdict(reg)], [rows(Purpose.LOGINS, data, regs=[reg])])[reg.key]
    assert found.first_seen == ()


@pytest.mark.parametrize("identity", ["acrone01", "ACRONE01", " acrone01 ", "acrone01.azurecr.io"])
def test_admin_user_logins_match_the_registry_name_tolerantly(identity: str) -> None:
    reg = registry("acrone01")
    data = [
        login_row(reg, identity, "198.51.100.1", 4, 1),
        login_row(reg, "acrone01-bot@contoso.com", "198.51.100.2", 4),
    ]
    found = evidence_for([verdict(reg)], [rows(Purpose.LOGINS, data, regs=[reg])])[reg.key]
    assert [s.identity for s in found.admin_logins] == [identity]
    admin = [r for r in found.observations if r.code == "admin_user_login"]
    assert admin and "4 times (1 failed) from 198.51.100.1" in admin[0].detail


def test_admin_identities_are_configurable() -> None:
    reg = registry("acrone01")
    data = [login_row(reg, "acrone01", "198.51.100.1", 4)]
    options = EvidenceOptions(admin_identities=("admin-{name}",))
    found = evidence_for([verdict(reg)], [rows(Purpose.LOGINS, data, regs=[reg])], options=options)[
        reg.key
    ]
    assert found.admin_logins == ()


# --------------------------------------------------------------------------- bursts


def _bins(*pairs: tuple[int, int]) -> dict[datetime, int]:
    base = NOW - timedelta(hours=2)
    return {base + timedelta(minutes=m): n for m, n in pairs}


def test_burst_inside_the_window_is_found_with_its_peak() -> None:
    base = NOW - timedelta(hours=2)
    found = find_burst(
        _bins((0, 3), (2, 4), (5, 3), (30, 9)),
        threshold=10,
        window=timedelta(minutes=5),
        step=timedelta(minutes=1),
    )
    assert found == (10, base, base + timedelta(minutes=6))


def test_spread_out_failures_are_not_a_burst() -> None:
    spread = _bins(*((m, 3) for m in range(0, 120, 6)))  # 3 every 6 minutes: 60 in total
    assert (
        find_burst(spread, threshold=10, window=timedelta(minutes=5), step=timedelta(minutes=1))
        is None
    )


def test_burst_across_a_bin_boundary_is_found() -> None:
    # 10 failures between 10:04:30 and 10:05:29 land in two one-minute bins.
    found = find_burst(
        _bins((4, 5), (5, 5)), threshold=10, window=timedelta(minutes=5), step=timedelta(minutes=1)
    )
    assert found is not None and found[0] == 10


def burst_row(reg: Registry, kind: str, key: str, bins: Mapping[datetime, int],
              as_text: bool = False) -> dict[str, Any]:  # fmt: skip
    pairs: list[Any] = [
        [at.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"), n] for at, n in sorted(bins.items())
    ]
    if as_text:  # duckdb-kql's make_list hands back each element as JSON text
        pairs = [json.dumps(p) for p in pairs]
    return {
        kql.COL_RESOURCE: reg.id.lower(),
        kql.COL_KIND: kind,
        kql.COL_KEY: key,
        kql.COL_TOTAL: sum(bins.values()),
        kql.COL_BINS: json.dumps(pairs),
    }


@pytest.mark.parametrize("as_text", [False, True])
def test_bursts_from_rows(as_text: bool) -> None:
    reg = registry()
    data = [
        burst_row(reg, "ip", "192.0.2.66", _bins((0, 6), (3, 6)), as_text),
        burst_row(reg, "identity", "admin", _bins((0, 6), (30, 6)), as_text),
    ]
    found = evidence_for([verdict(reg)], [rows(Purpose.BURSTS, data, regs=[reg])])[reg.key]
    assert [(b.kind, b.key, b.failures, b.total_failures) for b in found.bursts] == [
        ("ip", "192.0.2.66", 12, 12)
    ]
    burst = [r for r in found.observations if r.code == "login_failure_burst"]
    assert "12 failed logins from caller IP 192.0.2.66 within 5 minutes" in burst[0].detail


def test_overlapping_split_bins_are_not_double_counted() -> None:
    reg = registry()
    bins = _bins((0, 6), (3, 3))
    data = [burst_row(reg, "ip", "192.0.2.66", bins), burst_row(reg, "ip", "192.0.2.66", bins)]
    found = evidence_for([verdict(reg)], [rows(Purpose.BURSTS, data, regs=[reg])])[reg.key]
    assert found.bursts == ()


# --------------------------------------------------------------------------- repository


@pytest.mark.parametrize(
    ("name", "op"),
    [
        ("Push", Operation.PUSH),
        ("Pull", Operation.PULL),
        ("Delete", Operation.DELETE),
        ("DeleteRepository", Operation.DELETE),
        ("Untag", Operation.UNTAG),
        ("PurgeManifest", Operation.PURGE),
        ("PurgeTag", Operation.PURGE),
        ("Login", Operation.OTHER),
    ],
)
def test_operation_names_are_classified(name: str, op: Operation) -> None:
    assert classify_operation(name) is op


def trail_row(reg: Registry, op: str, identity: str, repo: str, count: int,
              ips: Sequence[str] = ("203.0.113.10",)) -> dict[str, Any]:  # fmt: skip
    return {
        kql.COL_RESOURCE: reg.id.lower(),
        kql.COL_OPERATION: op,
        kql.COL_IDENTITY: identity,
        kql.COL_REPOSITORY: repo,
        kql.COL_COUNT: count,
        kql.COL_FAILURES: 0,
        kql.COL_FIRST_SEEN: NOW - timedelta(hours=5),
        kql.COL_LAST_SEEN: NOW - timedelta(hours=1),
        kql.COL_CALLER_IPS: json.dumps(list(ips)),
    }


def test_split_parts_merge_logins_and_trail_per_key() -> None:
    """A window split in parts returns a key's row once per part: counts add up, the
    earliest first-seen and latest last-seen win (a part without them changes neither), and
    the caller IPs are the union. Ids differ in case and trailing slash between parts."""
    reg = registry()
    early, late = NOW - timedelta(hours=40), NOW - timedelta(seconds=30)
    first = login_row(reg, "ci@contoso.com", "203.0.113.10", 3, 1, previous=2, first=early)
    second = {
        **login_row(reg, "ci@contoso.com", "203.0.113.10", 4, 2, previous=1),
        kql.COL_RESOURCE: reg.id.upper() + "/",
        kql.COL_LAST_SEEN: late,
    }
    blank = {**first, kql.COL_FIRST_SEEN: None, kql.COL_LAST_SEEN: None, kql.COL_ATTEMPTS: 1}
    pushes = [
        trail_row(reg, "Push", "ci@contoso.com", "app/web", 3, ("192.0.2.2", "192.0.2.1")),
        {
            **trail_row(reg, "Push", "ci@contoso.com", "app/web", 4, ("192.0.2.3", "192.0.2.1")),
            kql.COL_FIRST_SEEN: early,
            kql.COL_LAST_SEEN: late,
        },
    ]
    parts = [
        rows(Purpose.LOGINS, [first], regs=[reg]),
        rows(Purpose.LOGINS, [second, blank], regs=[reg]),
    ]
    trail = [rows(Purpose.REPOSITORY, [p], regs=[reg]) for p in pushes]
    found = evidence_for([verdict(reg)], [*parts, *trail])[reg.key]
    (login,) = found.logins
    assert (login.attempts, login.failures) == (8, 4)
    assert (login.first_seen, login.last_seen) == (early, late)
    (push,) = found.trail
    assert (push.count, push.first_seen, push.last_seen) == (7, early, late)
    assert push.caller_ips == ("192.0.2.1", "192.0.2.2", "192.0.2.3")


def test_trail_counts_and_anonymous_pulls() -> None:
    reg = registry()
    data = [
        trail_row(reg, "Push", "ci@contoso.com", "app/web", 3),
        trail_row(reg, "Pull", "ci@contoso.com", "app/web", 40),
        trail_row(reg, "Pull", "", "public/base", 7, ("192.0.2.1", "192.0.2.2")),
        trail_row(reg, "Pull", None, "public/base", 1, ("192.0.2.3",)),  # type: ignore[arg-type]
        trail_row(reg, "Delete", "bob@contoso.com", "app/api", 2),
    ]
    found = evidence_for([verdict(reg)], [rows(Purpose.REPOSITORY, data, regs=[reg])])[reg.key]
    assert found.operation_counts == {
        Operation.PUSH: 3,
        Operation.PULL: 48,
        Operation.DELETE: 2,
    }
    (pull,) = found.anonymous_pulls
    assert (pull.repository, pull.count, pull.caller_ips) == (
        "public/base",
        8,
        ("192.0.2.1", "192.0.2.2", "192.0.2.3"),
    )
    anon = [r for r in found.observations if r.code == "anonymous_pull"]
    assert "8 anonymous pulls of public/base" in anon[0].detail


def test_every_delete_and_untag_is_listed_once() -> None:
    reg = registry()
    entry = {
        kql.COL_TIME: "2026-11-25T09:15:00.1234567Z",
        kql.COL_RESOURCE: reg.id.lower(),
        kql.COL_OPERATION: "Untag",
        kql.COL_IDENTITY: "bob@contoso.com",
        kql.COL_IP: "203.0.113.50",
        kql.COL_REPOSITORY: "app/web",
        kql.COL_TAG: "v1",
        kql.COL_DIGEST: "sha256:abc",
        kql.COL_RESULT: "200",
    }
    other = {**entry, kql.COL_OPERATION: "Delete", kql.COL_TAG: "", kql.COL_TIME: NOW}
    data = [entry, other, entry]  # the same event from two overlapping split queries
    found = evidence_for([verdict(reg)], [rows(Purpose.DELETIONS, data, regs=[reg])])[reg.key]
    assert [
        (d.operation, d.identity, d.repository, d.tag, d.caller_ip) for d in found.deletions
    ] == [
        (Operation.UNTAG, "bob@contoso.com", "app/web", "v1", "203.0.113.50"),
        (Operation.DELETE, "bob@contoso.com", "app/web", "", "203.0.113.50"),
    ]
    assert found.deletions[0].at == datetime(2026, 11, 25, 9, 15, 0, 123456, tzinfo=UTC)


def test_capped_listing_is_reported_as_a_problem() -> None:
    reg = registry()
    capped = rows(Purpose.DELETIONS, [], regs=[reg], capped=True)
    found = evidence_for([verdict(reg)], [capped])[reg.key]
    assert any("cap" in p for p in found.problems)


def test_route_type_is_plain_data() -> None:
    route = Route("k", "w", frozenset({LOGIN}))
    assert route.settings == ()
