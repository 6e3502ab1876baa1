"""The compliance summary and the registry document: pure, exact documents."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from auditor.evidence.model import LogEvidence
from auditor.facts import Reason, Registry, Status, Verdict
from auditor.policy import Policy, policy_document
from auditor.run_record import AuditRun, RunStatus
from auditor.summary import (
    StatusCounts,
    compliance_percent,
    empty_summary,
    registry_document,
    summarize,
)

SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"
STARTED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
FINISHED = datetime(2024, 5, 1, 12, 3, 30, tzinfo=UTC)
LOGIN_MISSING = "category_missing:ContainerRegistryLoginEvents"
REPO_MISSING = "category_missing:ContainerRegistryRepositoryEvents"


def verdict(name: str, status: Status, *codes: str, sub: str = SUB_A) -> Verdict:
    registry = Registry(
        id=f"/subscriptions/{sub}/resourceGroups/rg/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=sub,
        resource_group="rg",
        location="westeurope",
    )
    return Verdict(registry, status, tuple(Reason(code, f"{code} detail") for code in codes))


def run_of(*verdicts: Verdict, errors: tuple[str, ...] = ()) -> AuditRun:
    return AuditRun(
        run_id="20240501T120000Z-0a1b2c3d",
        started_at=STARTED,
        finished_at=FINISHED,
        status=RunStatus.PARTIAL,
        verdicts=verdicts,
        inventoried_subscriptions=frozenset({SUB_A, SUB_B}),
        errors=errors,
        trigger="timer",
    )


def test_summary_document_is_exact() -> None:
    run = run_of(
        verdict("acrgood1", Status.COMPLIANT),
        verdict("acrgood2", Status.COMPLIANT),
        verdict("acrbad01", Status.NONCOMPLIANT, LOGIN_MISSING, REPO_MISSING),
        verdict("acrbad02", Status.NONCOMPLIANT, LOGIN_MISSING, sub=SUB_B),
        verdict("acrdark1", Status.UNKNOWN, "unknown:HTTP 403", sub=SUB_B),
        verdict("acrgone1", Status.REMOVED, "removed", sub=SUB_B),
        # Exempt: counted apart, its reasons kept (and counted) behind the exemption.
        verdict("acrwaived", Status.EXEMPT, "exempted:noncompliant", LOGIN_MISSING),
        # Pending (remediated, its events awaited): counted apart, compliant in the percent.
        verdict("acrfixed1", Status.PENDING, "pending", sub=SUB_B),
        errors=("subscription x: throttled", "categories unavailable"),
    )
    assert summarize(run, generated_at=FINISHED).to_dict() == {
        "schemaVersion": 1,
        "policy": None,  # the run records none (see test_the_summary_keeps_the_runs_policy)
        "generatedAt": "2024-05-01T12:03:30+00:00",
        "lastRun": {
            "id": "20240501T120000Z-0a1b2c3d",
            "startedAt": "2024-05-01T12:00:00+00:00",
            "finishedAt": "2024-05-01T12:03:30+00:00",
            "status": "partial",
            "trigger": "timer",
            "errorCount": 2,
        },
        "totals": {
            "total": 8,
            "compliant": 2,
            "noncompliant": 2,
            "unknown": 1,
            "removed": 1,
            "exempt": 1,
            "pending": 1,
        },
        # 3 of the 5 judged (pending counts as compliant); unknown, removed and exempt are not
        # judgements.
        "compliancePercent": 60.0,
        "bySubscription": [
            {
                "subscriptionId": SUB_A,
                "total": 4,
                "compliant": 2,
                "noncompliant": 1,
                "unknown": 0,
                "removed": 0,
                "exempt": 1,
                "pending": 0,
                "compliancePercent": 66.6,
            },
            {
                "subscriptionId": SUB_B,
                "total": 4,
                "compliant": 0,
                "noncompliant": 1,
                "unknown": 1,
                "removed": 1,
                "exempt": 0,
                "pending": 1,
                "compliancePercent": 50.0,
            },
        ],
        "byReason": [
            {"code": LOGIN_MISSING, "count": 3},
            {"code": REPO_MISSING, "count": 1},
            {"code": "exempted:noncompliant", "count": 1},
            {"code": "pending", "count": 1},
            {"code": "removed", "count": 1},
            {"code": "unknown:HTTP 403", "count": 1},
        ],
        "omitted": {"subscriptions": 0, "reasons": 0},
        # Logs were not checked in this run.
        "logs": {
            "checked": 0,
            "silent": 0,
            "pending": 1,
            "unknown": 0,
            "interrupted": 0,
            "loginAlerts": 0,
            "byObservation": [],
            "logQueries": 0,
        },
    }


def evidence(v: Verdict, *observations: str) -> LogEvidence:
    return LogEvidence(
        v.registry.key,
        STARTED - timedelta(hours=24),
        STARTED,
        observations=tuple(Reason(code, f"{code} detail") for code in observations),
    )


def test_log_counts() -> None:
    silent = verdict("acrsilent", Status.NONCOMPLIANT, "logs_silent", LOGIN_MISSING)
    pending = verdict("acrpending", Status.COMPLIANT, "pending")
    dark = verdict(
        "acrdark", Status.UNKNOWN, "logs_unreadable:http_403", "logs_unreadable:http_404"
    )
    cut = verdict("acrcut", Status.COMPLIANT, "logging_interrupted")
    burst = verdict("acrburst", Status.COMPLIANT)
    public = verdict("acrpublic", Status.COMPLIANT, sub=SUB_B)
    deleting = verdict("acrdeleting", Status.COMPLIANT)
    unchecked = verdict("acrunchecked", Status.COMPLIANT)
    gone = verdict("acrgone", Status.REMOVED, "removed")
    verdicts = (silent, pending, dark, cut, burst, public, deleting, unchecked, gone)
    observed = {
        burst: ("login_failure_burst", "login_failure_burst", "new_login_source"),
        public: ("anonymous_pull", "admin_user_login", "artifact_deleted"),
        deleting: ("artifact_deleted",),
        # Evidence of a registry removed in this run is not counted.
        gone: ("anonymous_pull",),
    }
    run = replace(
        run_of(*verdicts),
        evidence={
            v.registry.key: evidence(v, *observed.get(v, ()))
            for v in verdicts
            if v is not unchecked
        },
        log_queries=42,
    )
    assert summarize(run, generated_at=FINISHED).to_dict()["logs"] == {
        "checked": 7,
        "silent": 1,
        "pending": 1,
        "unknown": 1,  # one registry, however many workspaces failed
        "interrupted": 1,
        "loginAlerts": 2,  # acrburst, acrpublic; deletions alone are not a login alert
        "byObservation": [
            {"code": "artifact_deleted", "count": 2},
            {"code": "admin_user_login", "count": 1},
            {"code": "anonymous_pull", "count": 1},
            {"code": "login_failure_burst", "count": 1},
            {"code": "new_login_source", "count": 1},
        ],
        "logQueries": 42,
    }
    # The trimmed summary keeps the log counts whole.
    trimmed = summarize(run, generated_at=FINISHED).trimmed(max_subscriptions=0, max_reasons=0)
    assert trimmed.to_dict()["logs"]["loginAlerts"] == 2


def test_a_code_counts_once_per_registry_and_subscriptions_fold_case() -> None:
    repeated = Verdict(
        verdict("acrbad01", Status.NONCOMPLIANT).registry,
        Status.NONCOMPLIANT,
        (Reason(LOGIN_MISSING, "setting 1"), Reason(LOGIN_MISSING, "setting 2")),
    )
    upper = verdict("acrbad02", Status.NONCOMPLIANT, LOGIN_MISSING, sub=SUB_A.upper())
    document = summarize(run_of(repeated, upper), generated_at=FINISHED).to_dict()
    assert document["byReason"] == [{"code": LOGIN_MISSING, "count": 2}]
    assert [s["subscriptionId"] for s in document["bySubscription"]] == [SUB_A]
    assert document["bySubscription"][0]["total"] == 2


@pytest.mark.parametrize(
    ("compliant", "noncompliant", "expected"),
    [
        (0, 0, None),
        (0, 3, 0.0),
        (3, 0, 100.0),
        (2, 1, 66.6),
        (999, 1, 99.9),  # rounded down: 100.0 only when all are compliant
        (1, 2, 33.3),
        (1, 7, 12.5),
    ],
)
def test_compliance_percent(compliant: int, noncompliant: int, expected: float | None) -> None:
    assert compliance_percent(compliant, noncompliant) == expected


def test_the_counts_have_one_field_per_status() -> None:
    counts = StatusCounts.of(Status)
    assert counts.to_dict() == {"total": len(Status), **{s.value: 1 for s in Status}}
    # Compliant and pending of compliant, pending and noncompliant.
    assert counts.compliance_percent == 66.6


def test_only_unknown_and_removed_give_no_percent() -> None:
    run = run_of(verdict("acrdark1", Status.UNKNOWN), verdict("acrgone1", Status.REMOVED))
    document = summarize(run, generated_at=FINISHED).to_dict()
    assert document["compliancePercent"] is None
    assert document["totals"]["total"] == 2


def test_empty_run_and_empty_state() -> None:
    document = summarize(run_of(), generated_at=FINISHED).to_dict()
    assert document["totals"] == {
        "total": 0,
        "compliant": 0,
        "noncompliant": 0,
        "unknown": 0,
        "removed": 0,
        "exempt": 0,
        "pending": 0,
    }
    assert document["bySubscription"] == []
    assert document["byReason"] == []
    empty = empty_summary(generated_at=FINISHED).to_dict()
    assert empty["lastRun"] is None
    assert empty["compliancePercent"] is None
    assert empty["totals"] == document["totals"]
    assert set(empty) == set(document)


def test_trimmed_keeps_totals_and_counts_the_cut() -> None:
    run = run_of(
        *(verdict(f"acrbad{i:02d}", Status.NONCOMPLIANT, f"unknown:why {i}") for i in range(5)),
        verdict("acrother", Status.COMPLIANT, sub=SUB_B),
    )
    summary = summarize(run, generated_at=FINISHED)
    trimmed = summary.trimmed(max_subscriptions=1, max_reasons=2).to_dict()
    assert trimmed["totals"] == summary.to_dict()["totals"]
    assert [s["subscriptionId"] for s in trimmed["bySubscription"]] == [SUB_A]
    assert trimmed["byReason"] == [
        {"code": "unknown:why 0", "count": 1},
        {"code": "unknown:why 1", "count": 1},
    ]
    assert trimmed["omitted"] == {"subscriptions": 1, "reasons": 3}


def test_naive_times_are_taken_as_utc() -> None:
    naive = AuditRun(
        run_id="r",
        started_at=datetime(2024, 5, 1, 12, 0),
        finished_at=datetime(2024, 5, 1, 12, 1),
        status=RunStatus.SUCCEEDED,
        verdicts=(),
    )
    document = summarize(naive, generated_at=datetime(2024, 5, 1, 12, 1)).to_dict()
    assert document["generatedAt"] == "2024-05-01T12:01:00+00:00"
    assert document["lastRun"]["startedAt"] == "2024-05-01T12:00:00+00:00"


def test_summary_is_json() -> None:
    run = run_of(verdict("acrbad01", Status.NONCOMPLIANT, 'unknown:naïve "quoted" 🙂'))
    document = summarize(run, generated_at=FINISHED).to_dict()
    assert json.loads(json.dumps(document)) == document


def test_registry_document() -> None:
    assert registry_document(verdict("acrbad01", Status.NONCOMPLIANT, LOGIN_MISSING)) == {
        "id": f"/subscriptions/{SUB_A}/resourceGroups/rg/providers/"
        "Microsoft.ContainerRegistry/registries/acrbad01",
        "name": "acrbad01",
        "subscriptionId": SUB_A,
        "resourceGroup": "rg",
        "location": "westeurope",
        "status": "noncompliant",
        "reasons": [{"code": LOGIN_MISSING, "detail": f"{LOGIN_MISSING} detail"}],
    }


def test_the_summary_keeps_the_runs_policy() -> None:
    judged = Policy(require_metrics=False)
    run = replace(run_of(verdict("acrgood1", Status.COMPLIANT)), policy=judged)
    assert summarize(run, generated_at=FINISHED).to_dict()["policy"] == policy_document(judged)


def test_a_run_row_counts_pending_registries_and_older_rows_none() -> None:
    from auditor.storage import entities

    run = run_of(
        verdict("acrfixed1", Status.PENDING, "pending"), verdict("acrgood1", Status.COMPLIANT)
    )
    row = entities.finished_run_entity(run)
    assert row["Pending"] == 1
    totals = entities.run_doc(row)["totals"]
    assert (totals["total"], totals["compliant"], totals["pending"]) == (2, 1, 1)
    del row["Pending"]  # written before the `pending` status
    assert entities.run_doc(row)["totals"]["pending"] == 0
