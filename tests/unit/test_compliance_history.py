"""Compliance over time from history rows: intervals, the fleet at an instant, a period's
statistics, and the printable report built from them. Pure: every time is given."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

from auditor import compliance_history as ch
from auditor.compliance_history import HistoryRow
from auditor.facts import Reason
from auditor.period_report import duration, render_report
from auditor.policy import Policy, policy_document
from auditor.summary import Run

SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
NOW = T0 + 10 * H
MISSING = "category_missing:ContainerRegistryLoginEvents"


def row(
    name: str, hours: float, status: str, *codes: str, sub: str = SUB_A, run: str | None = None
) -> HistoryRow:
    return HistoryRow(
        registry=name.lower(),
        name=name,
        resource_id=f"/subscriptions/{sub}/resourceGroups/rg-{name}/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        subscription_id=sub,
        status=status,
        reasons=tuple(Reason(code, f"why {code}") for code in codes),
        observed_at=T0 + hours * H,
        run_id=run if run is not None else f"run{int(hours)}",
    )


def run(number: int, status: str = "succeeded", *, finished: bool = True) -> Run:
    started = T0 + number * H - timedelta(minutes=2)
    return {
        "id": f"run{number}",
        "status": status if finished else "running",
        "trigger": "timer",
        "startedAt": started.isoformat(),
        "finishedAt": (started + timedelta(minutes=2)).isoformat() if finished else None,
        "totals": None,
        "errorCount": 0,
        "errors": [],
        "errorsOmitted": 0,
    }


# acrflip01: compliant at 0, noncompliant at 2, compliant again at 5 (fixed after 3 h).
# acrlate01: first seen at 4, noncompliant throughout.
# acrgone01: compliant at 0, removed at 3.
# acrdark01: unknown at 0, compliant at 6 (still open).
FLEET = (
    row("acrflip01", 0, "compliant"),
    row("acrflip01", 2, "noncompliant", MISSING),
    row("acrflip01", 5, "compliant"),
    row("acrlate01", 4, "noncompliant", "metrics_missing", sub=SUB_B),
    row("acrgone01", 0, "compliant"),
    row("acrgone01", 3, "removed", "removed"),
    row("acrdark01", 0, "unknown", "unknown:HTTP 403"),
    row("acrdark01", 6, "compliant"),
)
RUNS = [run(n) for n in range(7)]


def test_intervals_run_from_change_to_change_and_the_last_stays_open() -> None:
    found = ch.intervals(reversed(FLEET))  # any order in
    flip = found["acrflip01"]
    assert [(i.status, i.start, i.end) for i in flip] == [
        ("compliant", T0, T0 + 2 * H),
        ("noncompliant", T0 + 2 * H, T0 + 5 * H),
        ("compliant", T0 + 5 * H, None),
    ]
    assert ch.interval_document(flip[1], NOW) == {
        "status": "noncompliant",
        "reasonCodes": [MISSING],
        "from": (T0 + 2 * H).isoformat(),
        "to": (T0 + 5 * H).isoformat(),
        "durationSeconds": 3 * 3600,
    }
    # Still open: up to `now`, and `to` null.
    assert ch.interval_document(flip[2], NOW)["to"] is None
    assert ch.interval_document(flip[2], NOW)["durationSeconds"] == 5 * 3600


def test_a_row_repeating_the_state_before_it_starts_no_new_interval() -> None:
    rows = [row("acrflip01", 0, "compliant"), row("acrflip01", 1, "compliant")]
    assert [(i.start, i.end) for i in ch.intervals(rows)["acrflip01"]] == [(T0, None)]


def test_no_history_gives_no_intervals_and_an_empty_fleet() -> None:
    assert ch.intervals([]) == {}
    document = ch.compliance_at([], [], T0)
    assert document["totals"]["total"] == 0
    assert document["lastRun"] is None and document["lastChangeAt"] is None
    period = ch.period_document([], [], start=T0, end=NOW, now=NOW)
    assert period["registries"] == [] and period["meanTimeToFixSeconds"] is None
    assert period["runs"]["total"] == 0


def test_the_fleet_at_an_instant_is_each_registry_s_last_change_by_then() -> None:
    at = T0 + 2.5 * H
    document = ch.compliance_at(FLEET, RUNS, at)
    assert document["at"] == at.isoformat()
    assert document["lastRun"] is not None and document["lastRun"]["id"] == "run2"
    assert document["lastChangeAt"] == (T0 + 2 * H).isoformat()
    # acrlate01 is not there yet; acrgone01 not removed yet.
    assert document["totals"] == {
        "total": 3,
        "compliant": 1,
        "noncompliant": 1,
        "unknown": 1,
        "removed": 0,
        "exempt": 0,
        "pending": 0,
    }
    assert document["compliancePercent"] == 50.0
    assert document["byReason"] == [
        {"code": MISSING, "count": 1},
        {"code": "unknown:HTTP 403", "count": 1},
    ]
    assert [s["subscriptionId"] for s in document["bySubscription"]] == [SUB_A]


def test_a_removal_counts_in_the_run_that_found_it_and_then_the_registry_is_gone() -> None:
    removed_then = ch.compliance_at(FLEET, RUNS[:4], T0 + 3 * H)
    assert removed_then["lastRun"] is not None and removed_then["lastRun"]["id"] == "run3"
    assert removed_then["totals"]["removed"] == 1
    later = ch.compliance_at(FLEET, RUNS, T0 + 4.5 * H)
    assert later["totals"]["removed"] == 0
    assert later["totals"]["total"] == 3  # flip, late, dark
    assert "acrgone01" not in [r.name for r in ch.state_at(FLEET, T0 + 4.5 * H, "run4")]


def test_at_before_any_run_is_an_empty_fleet() -> None:
    document = ch.compliance_at(FLEET, RUNS, T0 - H)
    assert document["lastRun"] is None
    assert document["totals"]["total"] == 0


def test_the_state_s_run_is_the_newest_finished_by_then_not_one_still_running() -> None:
    runs = [run(1), run(2, finished=False)]
    document = ch.compliance_at(FLEET, runs, T0 + 2.5 * H)
    assert document["lastRun"] is not None and document["lastRun"]["id"] == "run1"


def test_a_status_this_version_does_not_know_counts_as_unknown() -> None:
    rows = [row("acrflip01", 0, "quarantined", "odd")]
    assert ch.compliance_at(rows, RUNS, T0 + H)["totals"]["unknown"] == 1
    assert ch.intervals(rows)["acrflip01"][0].status == "quarantined"


def period(start_hours: float = 1, end_hours: float = 8) -> ch.PeriodDocument:
    return ch.period_document(
        FLEET, RUNS, start=T0 + start_hours * H, end=T0 + end_hours * H, now=NOW
    )


def registry(document: ch.PeriodDocument, name: str) -> ch.RegistryPeriod:
    return next(r for r in document["registries"] if r["name"] == name)


def test_time_in_compliance_is_cut_at_the_period_s_bounds() -> None:
    document = period()  # hours 1 to 8: 7 hours
    flip = registry(document, "acrflip01")
    # compliant 1-2 and 5-8, noncompliant 2-5.
    assert flip["compliantSeconds"] == 4 * 3600
    assert flip["knownSeconds"] == 7 * 3600
    assert flip["complianceRatio"] == round(4 / 7, 4)
    assert not flip["neverCompliant"]
    assert [i["status"] for i in flip["intervals"]] == ["compliant", "noncompliant", "compliant"]
    # Intervals are as recorded: the first began before the period.
    assert flip["intervals"][0]["from"] == T0.isoformat()


def test_a_registry_first_seen_mid_period_is_known_from_then_on() -> None:
    late = registry(period(), "acrlate01")
    assert late["knownSeconds"] == 4 * 3600  # hours 4 to 8
    assert late["compliantSeconds"] == 0
    assert late["complianceRatio"] == 0.0
    assert late["neverCompliant"]
    assert late["subscriptionId"] == SUB_B


def test_unknown_time_is_not_judged_and_an_open_interval_ends_at_the_period_s_end() -> None:
    dark = registry(period(), "acrdark01")
    assert dark["knownSeconds"] == 2 * 3600  # compliant 6-8; unknown 1-6 is not judged
    assert dark["compliantSeconds"] == 2 * 3600
    assert dark["complianceRatio"] == 1.0
    assert dark["intervals"][-1]["to"] is None


def test_a_registry_removed_in_the_period_counts_until_its_removal() -> None:
    gone = registry(period(), "acrgone01")
    assert gone["knownSeconds"] == 2 * 3600  # compliant 1-3
    assert [i["status"] for i in gone["intervals"]] == ["compliant", "removed"]
    # Removed before the period: not there at all.
    assert "acrgone01" not in [r["name"] for r in period(4, 8)["registries"]]


def test_registries_first_seen_after_the_period_are_not_in_it() -> None:
    assert "acrlate01" not in [r["name"] for r in period(0, 3)["registries"]]


def test_mean_time_to_fix_counts_noncompliant_intervals_that_ended_compliant_in_the_period() -> (
    None
):
    document = period()
    assert document["fixes"] == 1
    assert document["meanTimeToFixSeconds"] == 3 * 3600
    # The fix at hour 5 is outside a period that ends at 4.
    early = period(1, 4)
    assert early["fixes"] == 0 and early["meanTimeToFixSeconds"] is None
    # Unknown -> compliant is not a fix.
    assert ch.fixes(ch.intervals(FLEET)["acrdark01"], T0, NOW) == []


def test_mean_time_to_fix_is_the_mean_of_the_whole_intervals() -> None:
    rows = [
        row("acrflip01", 0, "noncompliant", MISSING),
        row("acrflip01", 1, "compliant"),
        row("acrlate01", 0, "noncompliant", MISSING),
        row("acrlate01", 3, "compliant"),
    ]
    document = ch.period_document(rows, [], start=T0 + 0.5 * H, end=NOW, now=NOW)
    assert document["fixes"] == 2
    assert document["meanTimeToFixSeconds"] == 2 * 3600


def test_never_compliant_lists_the_registries_without_compliant_time() -> None:
    assert period()["neverCompliant"] == ["acrlate01"]
    # Before hour 6, acrdark01 was never compliant either.
    assert period(1, 5.5)["neverCompliant"] == ["acrdark01", "acrlate01"]


def test_the_period_ends_at_now_at_the_latest() -> None:
    document = ch.period_document(FLEET, RUNS, start=T0, end=NOW + 5 * H, now=NOW)
    assert document["to"] == NOW.isoformat()
    assert registry(document, "acrflip01")["knownSeconds"] == 10 * 3600


# acrwaived: noncompliant at 0, exempt at 2 (what it would otherwise be kept in the reason),
# compliant at 6 (fixed, the exemption removed). acrparked: exempt from 0 on (still open).
EXEMPTIONS = (
    row("acrwaived", 0, "noncompliant", MISSING),
    row("acrwaived", 2, "exempt", "exempted:noncompliant", MISSING),
    row("acrwaived", 6, "compliant"),
    row("acrparked", 0, "exempt", "exempted:unknown", "unknown:HTTP 403"),
)


def test_exempt_time_is_counted_apart_and_not_judged() -> None:
    document = ch.period_document(EXEMPTIONS, RUNS, start=T0 + H, end=T0 + 8 * H, now=NOW)
    waived = registry(document, "acrwaived")
    # noncompliant 1-2, exempt 2-6, compliant 6-8: the ratio is over the judged 3 hours.
    assert waived["exemptSeconds"] == 4 * 3600
    assert waived["knownSeconds"] == 3 * 3600
    assert waived["compliantSeconds"] == 2 * 3600
    assert waived["complianceRatio"] == round(2 / 3, 4)
    assert not waived["neverCompliant"]
    assert [i["status"] for i in waived["intervals"]] == ["noncompliant", "exempt", "compliant"]
    # Exempt the whole period: nothing judged, no ratio, and never compliant (as unknown).
    parked = registry(document, "acrparked")
    assert parked["exemptSeconds"] == 7 * 3600
    assert parked["knownSeconds"] == parked["compliantSeconds"] == 0
    assert parked["complianceRatio"] is None
    assert document["neverCompliant"] == ["acrparked"]
    # Noncompliant, exempt, compliant: the exemption came between, so it is not a fix.
    assert document["fixes"] == 0 and document["meanTimeToFixSeconds"] is None
    # Registries never exempt have none.
    assert registry(period(), "acrflip01")["exemptSeconds"] == 0


def test_the_fleet_at_an_instant_counts_exempt_registries_apart() -> None:
    both = ch.compliance_at(EXEMPTIONS, RUNS, T0 + 3 * H)
    assert both["totals"]["exempt"] == 2 and both["totals"]["total"] == 2
    assert both["compliancePercent"] is None  # none judged
    later = ch.compliance_at(EXEMPTIONS, RUNS, T0 + 6.5 * H)
    assert (later["totals"]["exempt"], later["totals"]["compliant"]) == (1, 1)
    assert later["compliancePercent"] == 100.0  # the exempt one is left out
    assert [s["exempt"] for s in later["bySubscription"]] == [1]


def test_the_report_shows_exempt_counts_and_time() -> None:
    document = ch.period_document(EXEMPTIONS, RUNS, start=T0 + H, end=T0 + 8 * H, now=NOW)
    html = render_report(
        document,
        ch.compliance_at(EXEMPTIONS, RUNS, T0 + 3 * H),
        policy=policy_document(Policy()),
        scope=[],
        generated_at=NOW,
    )
    fleet = html.split("<h2>Fleet at the end of the period</h2>")[1].split("</table>")[0]
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", fleet)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", fleet)
    assert dict(zip(headers, cells, strict=True)) == {
        "Registries": "2",
        "Compliant": "0",
        "Noncompliant": "0",
        "Unknown": "0",
        "Removed": "0",
        "Exempt": "2",
        "Pending": "0",
        "Compliant %": "-",
    }
    time_in = html.split("<h2>Time in compliance</h2>")[1].split("</table>")[0]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", r) for r in time_in.split("<tr>")[2:]]
    assert [(r[0], r[3], r[4], r[5], r[6], r[7]) for r in rows] == [
        ("acrparked", "0s", "-", "-", "7h", "yes"),
        ("acrwaived", "3h", "66.7 %", "-", "4h", ""),
    ]


# acrfixed: noncompliant at 0, remediated (pending) at 2, its events arrived at 3.
# acrsilent: noncompliant at 0, remediated at 1, its events never came: noncompliant at 2.5.
REMEDIATED = (
    row("acrfixed", 0, "noncompliant", MISSING),
    row("acrfixed", 2, "pending", "pending"),
    row("acrfixed", 3, "compliant"),
    row("acrsilent", 0, "noncompliant", MISSING),
    row("acrsilent", 1, "pending", "pending"),
    row("acrsilent", 2.5, "noncompliant", "logs_silent"),
)


def test_pending_time_counts_as_compliant_and_apart() -> None:
    document = ch.period_document(REMEDIATED, RUNS, start=T0, end=T0 + 4 * H, now=NOW)
    fixed = registry(document, "acrfixed")
    assert fixed["pendingSeconds"] == 3600
    assert (fixed["compliantSeconds"], fixed["knownSeconds"]) == (2 * 3600, 4 * 3600)
    assert fixed["complianceRatio"] == 0.5
    silent = registry(document, "acrsilent")
    assert silent["pendingSeconds"] == silent["compliantSeconds"] == 1.5 * 3600
    assert not silent["neverCompliant"]
    # Each remediation ended a noncompliant interval: a fix (2 h and 1 h).
    assert document["fixes"] == 2 and document["meanTimeToFixSeconds"] == 1.5 * 3600
    assert [i["status"] for i in silent["intervals"]] == ["noncompliant", "pending", "noncompliant"]
    # At 2.25 h both are pending: counted apart, and as compliant in the percent.
    fleet = ch.compliance_at(REMEDIATED, RUNS, T0 + 2.25 * H)
    assert (fleet["totals"]["pending"], fleet["totals"]["compliant"]) == (2, 0)
    assert fleet["compliancePercent"] == 100.0


def test_run_coverage_counts_the_runs_started_in_the_period_by_outcome() -> None:
    runs = [run(1), run(2, "partial"), run(3, "failed"), run(4, finished=False), run(9)]
    coverage = ch.run_coverage(runs, T0 + 0.5 * H, T0 + 5 * H)
    assert coverage == {
        "total": 4,
        "succeeded": 1,
        "partial": 1,
        "failed": 1,
        "unfinished": 1,
        "firstStartedAt": (T0 + H - timedelta(minutes=2)).isoformat(),
        "lastFinishedAt": (T0 + 3 * H).isoformat(),
    }


def test_a_registry_s_intervals_within_a_period() -> None:
    rows = [r for r in FLEET if r.registry == "acrflip01"]
    document = ch.registry_intervals("acrflip01", rows, start=T0 + 3 * H, end=NOW, now=NOW)
    assert document["name"] == "acrflip01"
    assert [i["status"] for i in document["intervals"]] == ["noncompliant", "compliant"]


def test_registry_records_are_the_exports_registries() -> None:
    fleet = ch.state_at(FLEET, T0 + 2.5 * H, None)
    records = ch.registry_records(fleet)
    flip = next(r for r in records if r["name"] == "acrflip01")
    assert flip["resourceGroup"] == "rg-acrflip01"
    assert flip["status"] == "noncompliant"
    assert flip["reasons"] == [{"code": MISSING, "detail": f"why {MISSING}"}]
    assert flip["statusSince"] == (T0 + 2 * H).isoformat()


@pytest.mark.parametrize(
    ("adapter", "document"),
    [
        (ch.ComplianceAtDocument, lambda: ch.compliance_at(FLEET, RUNS, T0 + 3 * H)),
        (ch.PeriodDocument, period),
        (
            ch.RegistryIntervalsDocument,
            lambda: ch.registry_intervals("acrflip01", FLEET[:3], start=T0, end=NOW, now=NOW),
        ),
    ],
    ids=["at", "period", "intervals"],
)
def test_documents_match_their_definitions(adapter: Any, document: Any) -> None:
    built = document()
    checked = TypeAdapter(adapter).validate_python(built, strict=True)
    assert checked == built


HOSTILE = '<script>alert("x")</script>&amp;'


def test_the_report_escapes_every_stored_string_and_needs_no_script_or_asset() -> None:
    rows = [
        HistoryRow(
            registry="~hostile",
            name=HOSTILE,
            resource_id="/x",
            subscription_id=SUB_A,
            status="noncompliant",
            reasons=(Reason(f"unknown:{HOSTILE}", ""),),
            observed_at=T0,
            run_id="run0",
        )
    ]
    document = ch.period_document(rows, [], start=T0, end=NOW, now=NOW)
    html = render_report(
        document,
        ch.compliance_at(rows, [run(0)], NOW),
        policy=policy_document(Policy()),
        scope=[],
        generated_at=NOW,
    )
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;amp;" in html
    assert "src=" not in html and "href=" not in html and "@import" not in html
    assert "@media print" in html and "@page" in html
    assert "ContainerRegistryLoginEvents" in html  # the policy
    assert SUB_A in html  # the scope: the subscriptions the history holds
    assert "still open" in html


def test_durations_for_people() -> None:
    assert duration(None) == "-"
    assert duration(42) == "42s"
    assert duration(3 * 86_400 + 4 * 3600 + 5 * 60 + 6) == "3d 4h 5m"
