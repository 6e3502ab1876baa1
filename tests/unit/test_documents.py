"""Every document builder against its one definition. A built document must validate strictly
(no coercion) against the `TypedDict` the API serves and the docs point to, and come back
whole (nothing dropped as unknown, no default filled in): a key added, dropped or retyped on
one side only fails here, for a realistic `LogEvidence` and run."""

from __future__ import annotations

import json
import re
import types
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_origin, get_type_hints

import pytest
from pydantic import TypeAdapter

from auditor import changes
from auditor.cli_json import AuditDocument, TrailDocument, run_document, trail_document
from auditor.evidence import model
from auditor.evidence.documents import (
    ACTIVITY_LISTS,
    LOGIN_LISTS,
    ActivityDocument,
    ActivityEntry,
    LoginEntry,
    LoginsDocument,
    LogsDocument,
    activity_document,
    logins_document,
    logs_document,
)
from auditor.facts import Reason, Registry, Status, Verdict
from auditor.reasons import catalog
from auditor.run_record import AuditRun, RunStatus
from auditor.storage import entities
from auditor.summary import (
    ComplianceDocument,
    HistoryEntry,
    RegistryDocument,
    RegistryRecord,
    Run,
    empty_summary,
    registry_document,
    summarize,
)

CLI_JSON_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli-json.md"
SUB = "00000000-0000-0000-0000-00000000000a"
REGISTRIES = "Microsoft.ContainerRegistry/registries"
STARTED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
FINISHED = STARTED + timedelta(minutes=3, seconds=30)
WINDOW_START = FINISHED - timedelta(hours=24)
LAW = (
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/law"
)


def registry(name: str) -> Registry:
    group = f"rg-{name}"
    arm_id = f"/subscriptions/{SUB}/resourceGroups/{group}/providers/{REGISTRIES}/{name}"
    return Registry(arm_id, name, SUB, group, "westeurope")


def realistic_evidence(key: str) -> model.LogEvidence:
    """Every list filled, times both known and unknown, one workspace unreadable."""
    at = FINISHED - timedelta(hours=1)
    logins = tuple(
        model.LoginSummary(
            identity=f"user{i % 4}@contoso.com",
            caller_ip=f"203.0.113.{i}",
            attempts=10 + i,
            failures=i % 3,
            first_seen=at - timedelta(minutes=i),
            last_seen=at if i % 5 else None,
        )
        for i in range(12)
    )
    return model.LogEvidence(
        registry_key=key,
        window_start=WINDOW_START,
        window_end=FINISHED,
        workspaces=(
            model.WorkspaceFreshness(
                workspace_id=LAW,
                tables=frozenset({"ContainerRegistryLoginEvents"}),
                per_table=(
                    model.TableFreshness("ContainerRegistryLoginEvents", at, 120, 98),
                    model.TableFreshness("ContainerRegistryRepositoryEvents", None, 0, 3),
                ),
                partial=True,
            ),
            model.WorkspaceFreshness(
                workspace_id=LAW + "2",
                tables=frozenset({"ContainerRegistryLoginEvents"}),
                unknown="HTTP 403",
            ),
        ),
        logins=logins,
        bursts=(
            model.FailureBurst("ip", "203.0.113.5", 12, at - timedelta(minutes=5), at, 14),
            model.FailureBurst("identity", "user1@contoso.com", 11, at, at, 11),
        ),
        first_seen=(
            model.FirstSeen("identity", "user3@contoso.com", at, 4, 1),
            model.FirstSeen("ip", "203.0.113.9", None, 1, 0),
        ),
        admin_logins=logins[:1],
        anonymous_pulls=(model.AnonymousPull("library/nginx", 3, 1, ("198.51.100.7",), at, None),),
        trail=(
            model.TrailCount(model.Operation.PUSH, "Push", "ci@contoso.com", "app", 8, 0),
            model.TrailCount(
                model.Operation.DELETE,
                "Delete",
                "user1@contoso.com",
                "app",
                2,
                1,
                ("203.0.113.1", "203.0.113.2"),
                at,
                at,
            ),
        ),
        deletions=(
            model.TrailEntry(
                at,
                model.Operation.UNTAG,
                "Untag",
                "user1@contoso.com",
                "203.0.113.1",
                "app",
                "v1",
                "sha256:" + "a" * 64,
                "Success",
            ),
            model.TrailEntry(
                None, model.Operation.PURGE, "PurgeManifest", "", "", "app", "", "", "Failure"
            ),
        ),
        activity=(
            model.ActivityEvent(
                at,
                model.ActivityKind.SETTING_DELETE,
                "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE",
                key,
                key + "/providers/microsoft.insights/diagnosticSettings/to-law",
                "admin@contoso.com",
                "198.51.100.1",
                "Succeeded",
            ),
        ),
        observations=(
            Reason(catalog.LOGIN_FAILURE_BURST, "14 failures from 203.0.113.5"),
            Reason(catalog.ARTIFACT_DELETED, "2 deletes"),
        ),
        problems=("login query in workspace law2 failed: HTTP 403",),
    )


def realistic_run() -> AuditRun:
    checked = Verdict(registry("acrbusy01"), Status.COMPLIANT)
    verdicts = (
        checked,
        Verdict(
            registry("acrbad01"),
            Status.NONCOMPLIANT,
            (Reason("category_missing:ContainerRegistryLoginEvents", "not sent"),),
        ),
        Verdict(registry("acrdark01"), Status.UNKNOWN, (Reason("unknown:HTTP 403", "denied"),)),
        Verdict(registry("acrgone01"), Status.REMOVED, (Reason("removed", "gone"),)),
    )
    evidence = {checked.registry.key: realistic_evidence(checked.registry.key)}
    run = AuditRun("20240501T120000Z-0a1b2c3d", STARTED, FINISHED, RunStatus.PARTIAL, verdicts)
    return replace(run, errors=("subscription x: throttled",), evidence=evidence, log_queries=6)


def conforms(definition: Any, document: object) -> None:
    """`document` is exactly a `definition`, as built and as its JSON reads back."""
    adapter: TypeAdapter[Any] = TypeAdapter(definition)
    assert adapter.dump_python(adapter.validate_python(document, strict=True)) == document
    text = json.dumps(document)
    again = adapter.validate_json(text, strict=True)
    assert adapter.dump_python(again, mode="json") == json.loads(text)


EMPTY = model.LogEvidence("k", WINDOW_START, FINISHED)


@pytest.mark.parametrize("evidence", [realistic_evidence(registry("acrbusy01").key), EMPTY])
def test_evidence_documents_are_their_definitions(evidence: model.LogEvidence) -> None:
    conforms(LoginsDocument, logins_document(evidence))
    conforms(ActivityDocument, activity_document(evidence))
    conforms(LogsDocument, logs_document(evidence))
    assert logs_document(None) is None


def test_the_lists_storage_trims_are_lists_of_the_documents() -> None:
    for definition, lists in ((LoginsDocument, LOGIN_LISTS), (ActivityDocument, ACTIVITY_LISTS)):
        hints = get_type_hints(definition)
        assert all(get_origin(hints[name]) is list for name in lists)


def test_summary_and_registry_documents_are_their_definitions() -> None:
    run = realistic_run()
    summary = summarize(run, generated_at=FINISHED)
    conforms(ComplianceDocument, summary.to_dict())
    conforms(ComplianceDocument, summary.trimmed(max_subscriptions=0, max_reasons=1).to_dict())
    conforms(ComplianceDocument, empty_summary(generated_at=FINISHED).to_dict())
    for verdict in run.verdicts:
        conforms(RegistryDocument, registry_document(verdict))


def test_cli_documents_are_their_definitions() -> None:
    run = realistic_run()
    conforms(AuditDocument, run_document(run))
    conforms(AuditDocument, run_document(replace(run, evidence={}, verdicts=())))
    busy = run.verdicts[0].registry
    trail = trail_document(
        busy,
        realistic_evidence(busy.key),
        workspaces=[(LAW + "2", "not found"), (LAW, None)],
        errors=["repository query in workspace law failed"],
        warnings=["deletions query reached its cap"],
    )
    conforms(TrailDocument, trail)
    assert [w["workspaceId"] for w in trail["workspaces"]] == [LAW, LAW + "2"]


def test_what_the_store_serves_back_is_its_definition() -> None:
    run = realistic_run()
    for verdict in run.verdicts:
        key = verdict.registry.key
        reasons, _ = entities.reasons_json(verdict.reasons)
        row = entities.registry_entity(
            key, verdict, reasons, run_id=run.run_id, observed_at=FINISHED, status_since=STARTED
        )
        conforms(RegistryRecord, entities.registry_doc(row))
        first_sight = changes.Change(None, verdict.status, changes.reason_codes(verdict.reasons))
        change = entities.history_entity(
            key, verdict, reasons, run_id=run.run_id, observed_at=FINISHED, change=first_sight
        )
        conforms(HistoryEntry, entities.history_doc(change))
    started = entities.started_run_entity(run.run_id, STARTED, run.trigger)
    conforms(Run, entities.run_doc(started, now=FINISHED + timedelta(days=2)))
    conforms(Run, entities.run_doc(entities.finished_run_entity(run)))
    summary = summarize(run, generated_at=FINISHED)
    conforms(ComplianceDocument, entities.summary_from_entity(entities.summary_entity(summary)))
    busy = run.verdicts[0].registry
    logins, activity = entities.evidence_entities(
        busy.key, busy, run.evidence[busy.key], run_id=run.run_id, observed_at=FINISHED
    )
    conforms(LoginEntry, entities.evidence_doc(logins))
    conforms(ActivityEntry, entities.evidence_doc(activity))


def documented_type(definition: Any, path: str) -> Any:
    """The type `path` (`registries[].logs.tables[]`, as docs/cli-json.md spells keys) names
    in `definition`; KeyError or AssertionError when the definition has no such key."""
    current = definition
    for part in path.split("."):
        name = part.removesuffix("[]")
        current = get_type_hints(current)[name]
        if isinstance(current, types.UnionType):  # `X | None`: the document when present
            (current,) = [t for t in current.__args__ if t is not type(None)]
        assert (get_origin(current) is list) == part.endswith("[]"), path
        if part.endswith("[]"):
            (current,) = current.__args__
    return current


def test_the_keys_docs_cli_json_explains_are_keys_of_the_definitions() -> None:
    audit, trail = CLI_JSON_DOC.read_text(encoding="utf-8").split("## `python -m auditor trail")
    for definition, text in ((AuditDocument, audit), (TrailDocument, trail)):
        keys = re.findall(r"^\| `([A-Za-z.\[\]]+)` \|", text, flags=re.MULTILINE)
        assert keys
        for key in keys:
            documented_type(definition, key)


def test_the_logs_digest_counts_distinct_identities_and_caller_ips() -> None:
    logins = (
        model.LoginSummary("alice", "10.0.0.1", attempts=3, failures=1),
        model.LoginSummary("alice", "10.0.0.2", attempts=2, failures=0),
        model.LoginSummary("bob", "10.0.0.1", attempts=1, failures=1),
        model.LoginSummary("carol", "10.0.0.1", attempts=1, failures=0),
    )
    evidence = model.LogEvidence("acr", WINDOW_START, FINISHED, logins=logins)
    document = logs_document(evidence)
    assert document is not None
    assert document["logins"] == {"attempts": 7, "failures": 2, "identities": 3, "callerIps": 2}
    assert document["logins"]["identities"] == len(evidence.by_identity)
    assert document["logins"]["callerIps"] == len(evidence.by_ip)
