"""The log part's orchestration with fake ARM and Log Analytics: the query plan (one query per
workspace and purpose, chunked ids), splitting oversized queries, options."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditor import kql
from auditor.azure.logs import QueryOutcome
from auditor.errors import ConfigError
from auditor.facts import DiagnosticSetting, LogEntry, Registry, Status, Verdict
from auditor.kql import Purpose, Query
from auditor.logs_audit import EvidenceCollector, LogOptions, build_logs_reader, collect_evidence
from auditor.policy import Policy
from auditor.settings import Settings

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
SUB = "11111111-1111-1111-1111-111111111111"


def ws_id(name: str) -> str:
    return (
        f"/subscriptions/{SUB}/resourceGroups/rg-mon"
        f"/providers/Microsoft.OperationalInsights/workspaces/{name}"
    )


GUIDS = {
    "law-a": "aaaaaaaa-0000-0000-0000-00000000000a",
    "law-b": "aaaaaaaa-0000-0000-0000-00000000000b",
}


class FakeArm:
    def __init__(self) -> None:
        self.reads: list[str] = []

    def workspaces(self, subscription: str) -> Any:
        arm = self

        class Ops:
            def get(self, group: str, name: str) -> Any:
                arm.reads.append(name)
                return type("W", (), {"customer_id": GUIDS.get(name)})()

        return type("C", (), {"workspaces": Ops()})()


@dataclass
class FakeReader:
    """Answers every query with no rows, or with `answer(customer_id, query)`."""

    answer: Any = None
    sent: list[tuple[str, Query]] = field(default_factory=list)

    def run(self, requests: Sequence[tuple[str, Query]]) -> list[QueryOutcome]:
        self.sent.extend(requests)
        if self.answer is None:
            return [QueryOutcome(attempts=1) for _ in requests]
        return [self.answer(c, q) for c, q in requests]


def verdict(name: str, *workspaces: str) -> Verdict:
    registry = Registry(
        id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry"
        f"/registries/{name}",
        name=name,
        subscription_id=SUB,
        resource_group="rg",
        created_at=NOW - timedelta(days=100),
    )
    settings = tuple(
        DiagnosticSetting(
            id=f"s{i}",
            name=f"s{i}",
            workspace_id=ws_id(w),
            log_analytics_destination_type="Dedicated",
            logs=(LogEntry(True, category_group="allLogs"),),
        )
        for i, w in enumerate(workspaces)
    )
    return Verdict(registry=registry, status=Status.COMPLIANT, settings=settings)


def test_one_query_per_workspace_and_purpose_whatever_the_number_of_registries() -> None:
    verdicts = [verdict(f"acr{i:04d}", "law-a") for i in range(150)]
    verdicts += [verdict(f"acrb{i:04d}", "law-b") for i in range(3)]
    reader = FakeReader()
    arm = FakeArm()
    result = collect_evidence(arm, reader, verdicts, now=NOW)  # type: ignore[arg-type]
    assert result.queries == len(reader.sent) == 2 * len(Purpose)
    assert sorted(arm.reads) == ["law-a", "law-b"]  # each workspace resolved once
    per = {(c, q.purpose) for c, q in reader.sent}
    assert per == {(g, p) for g in GUIDS.values() for p in Purpose}
    # Every registry is in its workspace's queries; selected case-insensitively.
    law_a = [q for c, q in reader.sent if c == GUIDS["law-a"] and q.purpose is Purpose.LOGINS]
    assert law_a[0].text.count("/registries/acr0") == 150
    assert "_ResourceId in~ (" in law_a[0].text


def test_ids_are_chunked_beyond_the_chunk_size() -> None:
    verdicts = [verdict(f"acr{i:04d}", "law-a") for i in range(450)]
    reader = FakeReader()
    collect_evidence(FakeArm(), reader, verdicts, now=NOW)  # type: ignore[arg-type]
    registry_purposes = len(Purpose) - 1  # the activity query is by subscription
    assert len(reader.sent) == 3 * registry_purposes + 1
    sizes = [q.text.count("/registries/") for _, q in reader.sent if q.purpose is Purpose.LOGINS]
    assert sorted(sizes) == [50, 200, 200]


def test_a_workspace_that_does_not_resolve_is_not_queried_and_is_reported() -> None:
    verdicts = [verdict("acrone", "law-a"), verdict("acrtwo", "law-missing")]
    reader = FakeReader()
    result = collect_evidence(FakeArm(), reader, verdicts, now=NOW)  # type: ignore[arg-type]
    assert {c for c, _ in reader.sent} == {GUIDS["law-a"]}
    assert any("law-missing" in e and "customerId" in e for e in result.errors)
    two = result.evidence[verdicts[1].registry.key]
    assert two.workspaces[0].unknown == "workspace has no customerId"


def test_an_allow_list_limits_the_workspaces() -> None:
    policy = Policy(accepted_workspaces=frozenset({ws_id("law-a")}))
    reader = FakeReader()
    collect_evidence(
        FakeArm(),  # type: ignore[arg-type]
        reader,  # type: ignore[arg-type]
        [verdict("acrone", "law-a", "law-b")],
        now=NOW,
        policy=policy,
    )
    assert {c for c, _ in reader.sent} == {GUIDS["law-a"]}


def test_extra_activity_workspaces_get_only_the_activity_query() -> None:
    reader = FakeReader()
    options = LogOptions(activity_workspaces=(ws_id("law-b"),))
    collect_evidence(
        FakeArm(),  # type: ignore[arg-type]
        reader,  # type: ignore[arg-type]
        [verdict("acrone", "law-a")],
        now=NOW,
        options=options,
    )
    law_b = [q.purpose for c, q in reader.sent if c == GUIDS["law-b"]]
    assert law_b == [Purpose.ACTIVITY]


def test_too_big_queries_are_split_into_halves_with_burst_overlap() -> None:
    def answer(customer_id: str, query: Query) -> QueryOutcome:
        whole = query.end - query.start >= timedelta(hours=24)
        if whole and query.purpose in (Purpose.BURSTS, Purpose.REPOSITORY):
            return QueryOutcome(error="HTTP 504 GatewayTimeout: took too long", status=504)
        return QueryOutcome()

    reader = FakeReader(answer)
    result = collect_evidence(
        FakeArm(),  # type: ignore[arg-type]
        reader,  # type: ignore[arg-type]
        [verdict("acrone", "law-a")],
        now=NOW,
        options=LogOptions(burst_window=timedelta(minutes=5)),
    )
    assert result.queries == len(Purpose) + 4
    assert not result.errors
    bursts = [q for _, q in reader.sent if q.purpose is Purpose.BURSTS]
    whole, first, second = bursts
    middle = whole.start + (whole.end - whole.start) / 2
    assert (first.start, first.end) == (whole.start, middle)
    # The later half reaches back one burst window (and a step) so a burst across the
    # middle lies whole in it.
    assert (second.start, second.end) == (middle - timedelta(minutes=6), whole.end)
    repository = [q for _, q in reader.sent if q.purpose is Purpose.REPOSITORY]
    assert repository[2].start == repository[1].end  # no overlap needed


def test_splitting_stops_after_max_splits_and_keeps_the_failure() -> None:
    def answer(customer_id: str, query: Query) -> QueryOutcome:
        if query.purpose is Purpose.FRESHNESS:
            return QueryOutcome(error="HTTP 504 GatewayTimeout", status=504)
        return QueryOutcome()

    reader = FakeReader(answer)
    v = verdict("acrone", "law-a")
    result = collect_evidence(
        FakeArm(),  # type: ignore[arg-type]
        reader,  # type: ignore[arg-type]
        [v],
        now=NOW,
        options=LogOptions(max_splits=2),
    )
    fresh = [q for _, q in reader.sent if q.purpose is Purpose.FRESHNESS]
    assert len(fresh) == 1 + 2 + 4
    # The four failed quarters say the same thing: recorded once.
    assert sum("freshness query" in e and "failed" in e for e in result.errors) == 1
    assert result.evidence[v.registry.key].workspaces[0].unknown is not None


def test_throttling_is_never_split() -> None:
    def answer(customer_id: str, query: Query) -> QueryOutcome:
        return QueryOutcome(error="HTTP 429 ThrottledError: Rate limit exceeded", status=429)

    reader = FakeReader(answer)
    result = collect_evidence(
        FakeArm(),  # type: ignore[arg-type]
        reader,  # type: ignore[arg-type]
        [verdict("acrone", "law-a")],
        now=NOW,
    )
    assert result.queries == len(Purpose)


def test_capped_listing_is_reported() -> None:
    def answer(customer_id: str, query: Query) -> QueryOutcome:
        if query.purpose is Purpose.DELETIONS:
            return QueryOutcome(rows=tuple({} for _ in range(3)))
        return QueryOutcome()

    result = collect_evidence(
        FakeArm(),  # type: ignore[arg-type]
        FakeReader(answer),  # type: ignore[arg-type]
        [verdict("acrone", "law-a")],
        now=NOW,
        options=LogOptions(list_cap=3),
    )
    assert any("reached its cap of 3 rows" in e for e in result.errors)


def test_no_routes_no_queries() -> None:
    reader = FakeReader()
    v = Verdict(
        registry=verdict("acrone").registry,
        status=Status.NONCOMPLIANT,
        settings=(DiagnosticSetting(id="x", name="x", storage_account_id="/st"),),
    )
    result = collect_evidence(FakeArm(), reader, [v], now=NOW)  # type: ignore[arg-type]
    assert reader.sent == [] and result.queries == 0 and result.evidence == {}


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "bad",
    [
        {"lookback": timedelta(0)},
        {"silent_after": timedelta(hours=-1)},
        {"pending_window": timedelta(minutes=-1)},
        {"burst_failures": 0},
        {"burst_window": timedelta(seconds=30)},
        {"chunk_size": 0},
        {"list_cap": 0},
        {"max_splits": 9},
        {"burst_step": timedelta(milliseconds=500)},
    ],
)
def test_bad_options_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        LogOptions(**bad)


def test_options_from_settings() -> None:
    settings = Settings.from_env(
        {
            "AUDITOR_LOGS_LOOKBACK_HOURS": "12",
            "AUDITOR_SILENT_AFTER_HOURS": "6",
            "AUDITOR_PENDING_MINUTES": "45",
            "AUDITOR_BURST_FAILURES": "3",
            "AUDITOR_BURST_MINUTES": "2",
            "AUDITOR_LOGS_CONCURRENCY": "2",
        },
        require_storage=False,
    )
    options = LogOptions.from_settings(settings)
    assert options.lookback == timedelta(hours=12)
    assert options.silent_after == timedelta(hours=6)
    assert options.pending_window == timedelta(minutes=45)
    assert options.burst_failures == 3 and options.burst_window == timedelta(minutes=2)
    assert settings.logs_concurrency == 2
    assert options.reach() == timedelta(days=7)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUDITOR_LOGS_CONCURRENCY", "6"),
        ("AUDITOR_LOGS_LOOKBACK_HOURS", "0"),
        ("AUDITOR_BURST_FAILURES", "0"),
        ("AUDITOR_BURST_MINUTES", "x"),
    ],
)
def test_bad_log_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value}, require_storage=False)
    assert caught.value.setting == name


def test_defaults() -> None:
    settings = Settings.from_env({}, require_storage=False)
    options = LogOptions.from_settings(settings)
    assert options == LogOptions()
    assert settings.logs_concurrency == 5
    assert kql.DEFAULT_CHUNK_SIZE == options.chunk_size == 200


def test_reader_from_settings() -> None:
    settings = Settings.from_env(
        {
            "AUDITOR_LOGS_ENDPOINT": "https://127.0.0.1:8443",
            "AUDITOR_LOGS_CONCURRENCY": "3",
            "AUDITOR_HTTP_RETRIES": "2",
        },
        require_storage=False,
    )
    reader = build_logs_reader(settings, object())  # type: ignore[arg-type]
    try:
        assert (reader.max_concurrency, reader.retries) == (3, 2)
        assert reader._client._config.endpoint == "https://127.0.0.1:8443"
        assert reader._client._config.credential_scopes == ["https://api.loganalytics.io/.default"]
    finally:
        reader.close()


# --------------------------------------------------------------------------- settling early


def _drain(collector: EvidenceCollector, count: int = 1) -> tuple[list[str], dict[str, Any]]:
    """settle() until it has handed out `count` registries (the fake reader answers on
    worker threads)."""
    ready: list[str] = []
    evidence: dict[str, Any] = {}
    for _ in range(500):
        keys, found = collector.settle()
        ready += keys
        evidence.update(found)
        if len(ready) >= count:
            return ready, evidence
        threading.Event().wait(0.01)
    raise AssertionError(f"{len(ready)} of {count} settled")


def test_full_chunks_settle_before_the_end_and_the_rest_at_finish() -> None:
    reader = FakeReader()
    verdicts = [verdict(f"acr{i:04d}", "law-a") for i in range(5)]
    with EvidenceCollector(
        FakeArm(),  # type: ignore[arg-type]
        reader,  # type: ignore[arg-type]
        now=NOW,
        subscriptions=[SUB],
        options=LogOptions(chunk_size=2),
    ) as collector:
        for v in verdicts:
            collector.add(v)
        ready, evidence = _drain(collector, 4)
        threading.Event().wait(0.05)
        # Two full chunks went out; the fifth registry still waits for its chunk to fill.
        assert ready == [v.registry.key for v in verdicts[:4]]
        assert set(evidence) == set(ready)
        assert collector.settle() == ([], {})  # handed out once
        result = collector.finish(verdicts)
    assert set(result.evidence) == {v.registry.key for v in verdicts}
    assert result.evidence[ready[0]] is evidence[ready[0]]  # the same evidence, not rebuilt
    assert result.revised == frozenset()
    registry_queries = [q for _, q in reader.sent if q.purpose is Purpose.LOGINS]
    assert sorted(q.text.count("/registries/") for q in registry_queries) == [1, 2, 2]


def test_a_chunk_waiting_too_long_is_sent_without_filling() -> None:
    moments = itertools.chain([0.0, 0.0], itertools.repeat(100.0))  # then 100 s later
    reader = FakeReader()
    with EvidenceCollector(
        FakeArm(),  # type: ignore[arg-type]
        reader,  # type: ignore[arg-type]
        now=NOW,
        subscriptions=[SUB],
        max_wait=30.0,
        clock=lambda: next(moments),
    ) as collector:
        collector.add(verdict("acrslow", "law-a"))
        ready, _ = _drain(collector)
        assert ready == [verdict("acrslow").registry.key]


def test_activity_found_after_a_registry_settled_is_added_to_its_evidence() -> None:
    early = verdict("acrearly")  # no routes: it settles once the activity queries return
    late = verdict("acrlate", "law-b")  # its workspace (and activity query) comes after
    deletion = {
        kql.COL_TIME: NOW - timedelta(hours=1),
        kql.COL_REGISTRY_ID: early.registry.id.lower(),
        kql.COL_ACTIVITY_RESOURCE: early.registry.id + "/providers/microsoft.insights/x",
        kql.COL_ACTIVITY_OPERATION: kql.SETTING_DELETE,
        kql.COL_ACTIVITY_STATUS: "Success",
        kql.COL_CALLER: "someone@contoso.com",
        kql.COL_IP: "203.0.113.9",
    }

    def answer(customer_id: str, query: Query) -> QueryOutcome:
        if query.purpose is Purpose.ACTIVITY and customer_id == GUIDS["law-b"]:
            return QueryOutcome(rows=(deletion,))
        return QueryOutcome()

    with EvidenceCollector(
        FakeArm(),  # type: ignore[arg-type]
        FakeReader(answer),  # type: ignore[arg-type]
        now=NOW,
        subscriptions=[SUB],
    ) as collector:
        collector.add(early)
        ready, evidence = _drain(collector)
        assert ready == [early.registry.key] and evidence == {}  # nothing known of it yet
        collector.add(late)
        result = collector.finish([early, late])
    assert result.revised == {early.registry.key}
    found = result.evidence[early.registry.key]
    assert [a.operation for a in found.activity] == [kql.SETTING_DELETE.upper()]
