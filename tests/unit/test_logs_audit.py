"""The log part's orchestration with fake ARM and Log Analytics: the query plan (one query per
workspace and purpose, selected by id or by subscription), splitting oversized queries,
settling registries as their answers arrive, options."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from auditor import kql, logs_audit
from auditor.azure.logs import QueryOutcome
from auditor.errors import ConfigError
from auditor.facts import DiagnosticSetting, LogEntry, Registry, Status, Verdict, normalize_id
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


@dataclass(frozen=True)
class Workspace:
    customer_id: str | None


@dataclass(frozen=True)
class WorkspaceOperations:
    """Reads a workspace: the names in GUIDS have a customer id, any other has none."""

    reads: list[str]

    def get(self, group: str, name: str, /) -> Workspace:
        self.reads.append(name)
        return Workspace(GUIDS.get(name))


@dataclass(frozen=True)
class LogAnalyticsClient:
    workspaces: WorkspaceOperations


@dataclass
class FakeArm:
    """ARM as workspace resolution reads it: `workspaces(sub).workspaces.get(group, name)`."""

    reads: list[str] = field(default_factory=list)  # workspace names, one per read

    def workspaces(self, subscription_id: str, /) -> LogAnalyticsClient:
        return LogAnalyticsClient(WorkspaceOperations(self.reads))


@dataclass
class FakeReader:
    """Answers every query with no rows, or with `answer(customer_id, query)`."""

    answer: Any = None
    sent: list[tuple[str, Query]] = field(default_factory=list)
    max_concurrency: int = 5

    def run(self, requests: Sequence[tuple[str, Query]]) -> list[QueryOutcome]:
        self.sent.extend(requests)
        if self.answer is None:
            return [QueryOutcome(attempts=1) for _ in requests]
        return [self.answer(c, q) for c, q in requests]


def fresh_row(resource_id: str) -> dict[str, Any]:
    return {
        kql.COL_RESOURCE: resource_id,
        kql.COL_TABLE: kql.LOGIN_TABLE,
        kql.COL_LAST_EVENT: NOW - timedelta(hours=1),
        kql.COL_EVENTS: 3,
        kql.COL_PREVIOUS_EVENTS: 2,
    }


def verdict(name: str, *workspaces: str, sub: str = SUB) -> Verdict:
    registry = Registry(
        id=f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.ContainerRegistry"
        f"/registries/{name}",
        name=name,
        subscription_id=sub,
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
    result = collect_evidence(arm, reader, verdicts, now=NOW)
    assert result.queries == len(reader.sent) == 2 * len(Purpose)
    assert sorted(arm.reads) == ["law-a", "law-b"]  # each workspace resolved once
    per = {(c, q.purpose) for c, q in reader.sent}
    assert per == {(g, p) for g in GUIDS.values() for p in Purpose}
    # Every registry is in its workspace's queries; selected case-insensitively.
    law_a = [q for c, q in reader.sent if c == GUIDS["law-a"] and q.purpose is Purpose.LOGINS]
    assert law_a[0].text.count("/registries/acr0") == 150
    assert "_ResourceId in~ (" in law_a[0].text


def test_a_fleet_larger_than_a_chunk_is_selected_by_subscription() -> None:
    # 450 registries in 250 subscriptions: one query per purpose and chunk of 200
    # subscriptions, whatever the number of registries, and the deletions cap grows with it.
    verdicts = [verdict(f"acr{i:04d}", "law-a", sub=f"sub-{i % 250:03d}") for i in range(450)]
    reader = FakeReader()
    result = collect_evidence(FakeArm(), reader, verdicts, now=NOW)
    assert result.queries == len(reader.sent) == 2 * len(Purpose)
    logins = [q.text for _, q in reader.sent if q.purpose is Purpose.LOGINS]
    assert all("/registries/" not in t and "_SubscriptionId in~ (" in t for t in logins)
    assert sorted(t.count('"sub-') for t in logins) == [50, 200]
    deletions = [q.text for _, q in reader.sent if q.purpose is Purpose.DELETIONS]
    assert all(f"| top {3 * kql.DEFAULT_LIST_CAP} by" in t for t in deletions)


def test_rows_of_registries_outside_the_run_are_dropped() -> None:
    # Selected by subscription, a workspace answers for registries the run does not judge
    # (deleted since, or out of scope); their rows reach no one.
    verdicts = [verdict(f"acr{i:04d}", "law-a") for i in range(kql.DEFAULT_CHUNK_SIZE + 1)]
    stranger = verdict("acrstranger").registry.id.lower()
    seen = verdicts[0].registry.id.lower()

    def answer(customer_id: str, query: Query) -> QueryOutcome:
        if query.purpose is Purpose.FRESHNESS:
            return QueryOutcome(rows=(fresh_row(stranger), fresh_row(seen)))
        return QueryOutcome()

    result = collect_evidence(FakeArm(), FakeReader(answer), verdicts, now=NOW)
    assert verdict("acrstranger").registry.key not in result.evidence
    first = result.evidence[verdicts[0].registry.key].workspaces[0]
    assert first.per_table[0].events == 3 and not first.unknown
    assert result.evidence[verdicts[1].registry.key].workspaces[0].per_table == ()


def test_evidence_built_a_slice_at_a_time_is_the_evidence_built_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verdicts = [verdict(f"acr{i:04d}", "law-a" if i % 3 else "law-b") for i in range(23)]

    def answer(customer_id: str, query: Query) -> QueryOutcome:
        if query.purpose is Purpose.FRESHNESS:
            return QueryOutcome(rows=tuple(fresh_row(v.registry.id) for v in verdicts[::2]))
        return QueryOutcome()

    whole = collect_evidence(FakeArm(), FakeReader(answer), verdicts, now=NOW)
    monkeypatch.setattr(logs_audit, "_BUILD_SLICE", 4)
    sliced = collect_evidence(FakeArm(), FakeReader(answer), verdicts, now=NOW)
    assert len(whole.evidence) == 23
    assert sliced.evidence == whole.evidence
    fresh = {k for k, e in sliced.evidence.items() if e.last_event is not None}
    assert fresh == {v.registry.key for v in verdicts[::2]}


def _sent(reader: FakeReader, count: int) -> list[tuple[str, Query]]:
    """The queries sent once `count` have gone out (the pool sends them on its threads)."""
    for _ in range(500):
        if len(reader.sent) >= count:
            return list(reader.sent)
        threading.Event().wait(0.01)
    raise AssertionError(f"{len(reader.sent)} of {count} queries sent")


def test_workspaces_asked_ahead_give_what_a_run_that_did_not_ask_ahead_gives() -> None:
    """A change-driven run asks the workspaces of the stored settings before its registries
    are known (`prefetch`), then names them (`restrict`): the evidence, errors, workspaces
    and queries are those of a collector made with them, a workspace no registry is routed
    to adds nothing, and activity queries and listings wait for the registries."""
    verdicts = [
        verdict(f"acr{i:04d}", "law-a" if i % 2 else "law-b", sub=f"sub-{i % 3}")
        for i in range(450)
    ]
    stranger = verdict("acrstranger", "law-a", sub="sub-0").registry.id.lower()

    def answer(customer_id: str, query: Query) -> QueryOutcome:
        if query.purpose is Purpose.FRESHNESS:
            fresh = [fresh_row(v.registry.id.lower()) for v in verdicts[::3]]
            return QueryOutcome(rows=(fresh_row(stranger), *fresh))
        return QueryOutcome()

    plain = FakeReader(answer)
    expected = collect_evidence(FakeArm(), plain, verdicts, now=NOW)
    reader = FakeReader(answer)
    subscriptions = ["sub-0", "sub-1", "sub-2", "sub-without-registries"]
    with EvidenceCollector(
        FakeArm(), reader, now=NOW, subscriptions=subscriptions, registries=None
    ) as collector:
        hinted = ("law-a", "law-b", "law-not-routed", "law-b")
        collector.prefetch(normalize_id(ws_id(w)) for w in hinted)
        assert collector.prefetched
        ahead = {(c, q.purpose) for c, q in _sent(reader, 2 * 4)}
        assert ahead == {
            (GUIDS[w], p)
            for w in ("law-a", "law-b")
            for p in Purpose
            if p not in (Purpose.ACTIVITY, Purpose.DELETIONS)
        }
        assert collector.restrict(
            [v.registry.key for v in verdicts], {v.registry.subscription_id for v in verdicts}
        )
        collector.add_all(verdicts)
        result = collector.finish(verdicts)
    assert result.evidence == expected.evidence and len(result.evidence) == 450
    assert stranger not in {k.lower() for k in result.evidence}
    assert result.errors == expected.errors == ()  # law-not-routed has no customerId
    assert result.workspaces == expected.workspaces and len(result.workspaces) == 2
    assert result.routed == expected.routed
    assert sorted((c, q.purpose) for c, q in reader.sent) == sorted(
        (c, q.purpose) for c, q in plain.sent
    )
    assert result.queries == expected.queries == len(plain.sent)
    # The listings' cap grows with the fleet named by `restrict`; activity queries select
    # its subscriptions only.
    for purpose in (Purpose.DELETIONS, Purpose.ACTIVITY):
        texts = [q.text for _, q in reader.sent if q.purpose is purpose]
        assert len(texts) == 2
        if purpose is Purpose.DELETIONS:
            assert all(f"| top {3 * kql.DEFAULT_LIST_CAP} by" in t for t in texts)
        else:
            assert sorted(texts) == sorted(q.text for _, q in plain.sent if q.purpose is purpose)


def test_a_collector_asked_ahead_refuses_subscriptions_it_was_not_made_with() -> None:
    with EvidenceCollector(
        FakeArm(), FakeReader(), now=NOW, subscriptions=["sub-0"], registries=None
    ) as collector:
        collector.prefetch([normalize_id(ws_id("law-a"))])
        assert not collector.restrict(["acrone"], ["sub-0", "sub-1"])
        assert collector.restrict(["acrone"], ["SUB-0"])
        collector.add(verdict("acrone", "law-a", sub="sub-0"))
        assert not collector.restrict(["acrone"], ["sub-0"])  # routed since: too late


def test_a_workspace_that_does_not_resolve_is_not_queried_and_is_reported() -> None:
    verdicts = [verdict("acrone", "law-a"), verdict("acrtwo", "law-missing")]
    reader = FakeReader()
    result = collect_evidence(FakeArm(), reader, verdicts, now=NOW)
    assert {c for c, _ in reader.sent} == {GUIDS["law-a"]}
    assert any("law-missing" in e and "customerId" in e for e in result.errors)
    two = result.evidence[verdicts[1].registry.key]
    assert two.workspaces[0].unknown == "workspace has no customerId"


def test_an_allow_list_limits_the_workspaces() -> None:
    policy = Policy(accepted_workspaces=frozenset({ws_id("law-a")}))
    reader = FakeReader()
    collect_evidence(
        FakeArm(),
        reader,
        [verdict("acrone", "law-a", "law-b")],
        now=NOW,
        policy=policy,
    )
    assert {c for c, _ in reader.sent} == {GUIDS["law-a"]}


def test_extra_activity_workspaces_get_only_the_activity_query() -> None:
    reader = FakeReader()
    options = LogOptions(activity_workspaces=(ws_id("law-b"),))
    collect_evidence(
        FakeArm(),
        reader,
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
        FakeArm(),
        reader,
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
        FakeArm(),
        reader,
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
        FakeArm(),
        reader,
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
        FakeArm(),
        FakeReader(answer),
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
    result = collect_evidence(FakeArm(), reader, [v], now=NOW)
    assert reader.sent == [] and result.queries == 0 and result.evidence == {}


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "bad",
    [
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
    options = LogOptions.from_settings(settings.logs)
    assert options.lookback == timedelta(hours=12)
    assert options.silent_after == timedelta(hours=6)
    assert options.pending_window == timedelta(minutes=45)
    assert options.burst_failures == 3 and options.burst_window == timedelta(minutes=2)
    assert settings.logs.concurrency == 2
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
    options = LogOptions.from_settings(settings.logs)
    assert options == LogOptions()
    assert settings.logs.concurrency == 5
    assert kql.DEFAULT_CHUNK_SIZE == options.chunk_size == 200


class NoToken:
    """A credential that is never asked: building the client asks for no token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise AssertionError("no token is asked for")


def test_reader_from_settings() -> None:
    settings = Settings.from_env(
        {
            "AUDITOR_LOGS_ENDPOINT": "https://127.0.0.1:8443",
            "AUDITOR_LOGS_CONCURRENCY": "3",
            "AUDITOR_HTTP_RETRIES": "2",
        },
        require_storage=False,
    )
    reader = build_logs_reader(settings, NoToken())
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


def _collector(reader: FakeReader, *verdicts: Verdict) -> EvidenceCollector:
    """A collector over `verdicts`' registries (none are added yet)."""
    return EvidenceCollector(
        FakeArm(),
        reader,
        now=NOW,
        subscriptions=[SUB],
        registries=[v.registry.key for v in verdicts],
    )


def test_a_workspace_is_queried_once_at_first_sight_and_later_registries_use_its_rows() -> None:
    """Queries go out when a workspace is first routed to; a registry routed there after
    they were sent settles from the same answers, and its rows were in them."""
    gate = {GUIDS["law-a"]: threading.Event(), GUIDS["law-b"]: threading.Event()}
    first, later, other = (
        verdict("acrfirst", "law-a"),
        verdict("acrlater", "law-a"),
        verdict("acrother", "law-b"),
    )

    def answer(customer_id: str, query: Query) -> QueryOutcome:
        gate[customer_id].wait(5)
        if query.purpose is Purpose.FRESHNESS and customer_id == GUIDS["law-a"]:
            return QueryOutcome(rows=(fresh_row(later.registry.id.lower()),))
        return QueryOutcome()

    reader = FakeReader(answer)
    with _collector(reader, first, later, other) as collector:
        collector.add(first)
        collector.add(other)
        assert collector.settle() == ([], {})  # nothing answered yet
        gate[GUIDS["law-a"]].set()
        threading.Event().wait(0.1)
        assert collector.settle() == ([], {})  # law-b's activity query is still out
        gate[GUIDS["law-b"]].set()
        ready, _ = _drain(collector, 2)
        assert ready == [first.registry.key, other.registry.key]
        sent = len(reader.sent)
        collector.add(later)
        ready, evidence = _drain(collector)
        assert ready == [later.registry.key]
        assert len(reader.sent) == sent  # no new query for a workspace already asked
        assert evidence[later.registry.key].workspaces[0].per_table[0].events == 3
        assert collector.settle() == ([], {})  # handed out once
        result = collector.finish([first, later, other])
    assert set(result.evidence) == {v.registry.key for v in (first, later, other)}
    assert result.evidence[later.registry.key] is evidence[later.registry.key]
    assert result.revised == frozenset()
    assert result.queries == len(reader.sent) == 2 * len(Purpose)


def test_settle_hands_out_slices_in_arrival_order_as_workspaces_answer() -> None:
    """`limit` slices the registries ready at once, in the order they came, each handed
    out once."""
    gate = {GUIDS["law-a"]: threading.Event(), GUIDS["law-b"]: threading.Event()}
    a1, b1, a2, a3 = (
        verdict("acra1", "law-a"),
        verdict("acrb1", "law-b"),
        verdict("acra2", "law-a"),
        verdict("acra3", "law-a"),
    )

    def answer(customer_id: str, query: Query) -> QueryOutcome:
        gate[customer_id].wait(5)
        return QueryOutcome()

    reader = FakeReader(answer)
    with _collector(reader, a1, b1, a2, a3) as collector:
        for v in (a1, b1, a2, a3):
            collector.add(v)
        gate[GUIDS["law-a"]].set()
        gate[GUIDS["law-b"]].set()
        assert any(collector.wait(1) for _ in range(50))  # every query has returned
        assert collector.settle(limit=2)[0] == [a1.registry.key, b1.registry.key]
        assert collector.settle(limit=2)[0] == [a2.registry.key, a3.registry.key]
        assert collector.settle(limit=2) == ([], {})


def test_settle_releases_a_workspace_s_registries_only_once_it_answers() -> None:
    gate = {GUIDS["law-a"]: threading.Event(), GUIDS["law-b"]: threading.Event()}
    a1, b1, a2 = verdict("acra1", "law-a"), verdict("acrb1", "law-b"), verdict("acra2", "law-a")

    def answer(customer_id: str, query: Query) -> QueryOutcome:
        if query.purpose is Purpose.ACTIVITY:
            return QueryOutcome()
        gate[customer_id].wait(5)
        return QueryOutcome()

    reader = FakeReader(answer)
    with _collector(reader, a1, b1, a2) as collector:
        for v in (a1, b1, a2):
            collector.add(v)
        gate[GUIDS["law-a"]].set()
        ready, _ = _drain(collector, 1)
        while len(ready) < 2:
            more, _ = collector.settle(limit=1)
            ready += more
            threading.Event().wait(0.01)
        assert ready == [a1.registry.key, a2.registry.key]  # in arrival order, b1 not yet
        assert collector.settle(limit=1) == ([], {})
        gate[GUIDS["law-b"]].set()
        late, _ = _drain(collector, 1)
        assert late == [b1.registry.key]


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
        FakeArm(),
        FakeReader(answer),
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


def added_together(fleet: list[Verdict], reader: FakeReader) -> None:
    """The fleet routed in one `add_all`, and every query waited for."""
    with EvidenceCollector(
        FakeArm(), reader, now=NOW, subscriptions=[SUB], registries=[v.registry.key for v in fleet]
    ) as collector:
        collector.add_all(fleet)
        while not collector.wait(5):
            pass
        assert collector.wait(0)  # every query returned
        collector.finish(fleet)


def test_registries_added_together_get_every_activity_query_before_registry_queries() -> None:
    """Every registry's settling waits on all the activity queries: sent first, one query
    at a time, they return before the registry queries of any workspace."""
    fleet = [verdict("acra", "law-a"), verdict("acrb", "law-b"), verdict("acrc", "law-a")]
    reader = FakeReader(max_concurrency=1)
    added_together(fleet, reader)
    purposes = [query.purpose for _, query in reader.sent]
    assert purposes[:2] == [Purpose.ACTIVITY] * 2
    assert Purpose.ACTIVITY not in purposes[2:]
    assert len(purposes) == 2 * len(Purpose)


def test_a_workspace_first_seen_late_has_its_activity_query_before_queued_registry_queries() -> (
    None
):
    """Every registry waits on all the activity queries: a workspace first routed to while
    registry queries are queued gets its activity query out at the next free worker."""
    gate = threading.Event()
    reader_started = threading.Event()

    def answer(customer_id: str, query: Query) -> QueryOutcome:
        if query.purpose is not Purpose.ACTIVITY:
            reader_started.set()
            gate.wait(5)
        return QueryOutcome()

    early, late = verdict("acrearly", "law-a"), verdict("acrlate", "law-b")
    reader = FakeReader(answer, max_concurrency=1)
    with _collector(reader, early, late) as collector:
        collector.add(early)
        assert reader_started.wait(5)  # law-a's first registry query holds the only worker
        collector.add(late)
        gate.set()
        while not collector.wait(5):
            pass
        collector.finish([early, late])
    names = {guid: name for name, guid in GUIDS.items()}
    sent = [(names[c], q.purpose) for c, q in reader.sent]
    registry_queries = len(Purpose) - 1
    assert sent[:2] == [("law-a", Purpose.ACTIVITY), ("law-a", sent[1][1])]
    assert sent[2] == ("law-b", Purpose.ACTIVITY)  # ahead of law-a's other registry queries
    assert [w for w, _ in sent[3 : 2 + registry_queries]] == ["law-a"] * (registry_queries - 1)


def test_wait_returns_when_a_query_returns_and_says_whether_any_is_still_out() -> None:
    gate = threading.Event()

    def answer(customer_id: str, query: Query) -> QueryOutcome:
        if query.purpose is not Purpose.ACTIVITY:
            gate.wait(5)
        return QueryOutcome()

    one = verdict("acrone", "law-a")
    with EvidenceCollector(
        FakeArm(), FakeReader(answer), now=NOW, subscriptions=[SUB], registries=[one.registry.key]
    ) as collector:
        collector.add(one)
        while not collector._activity[0].done():
            threading.Event().wait(0.01)
        # The activity query has returned, the registry queries are held: it waits its time
        # for them (a caller looping on it must not spin), then says they are still out.
        began = time.monotonic()
        assert collector.wait(0.2) is False
        assert time.monotonic() - began >= 0.15
        gate.set()
        deadline = 50
        while not collector.wait(0.1) and deadline:
            deadline -= 1
        assert collector.wait(0)
        collector.finish([one])


def test_of_workspaces_seen_first_together_the_one_with_most_registries_asks_first() -> None:
    """A workspace's registries settle when its last query returns: the one holding most of
    the registries routed together gets its registry queries out first, whatever the order
    its registries came in."""
    fleet = [verdict("acra", "law-a"), verdict("acrb", "law-b"), verdict("acrc", "law-b")]
    reader = FakeReader(max_concurrency=1)
    added_together(fleet, reader)
    names = {guid: name for name, guid in GUIDS.items()}
    registry_queries = [names[c] for c, q in reader.sent if q.purpose is not Purpose.ACTIVITY]
    per_workspace = len(Purpose) - 1
    assert registry_queries == ["law-b"] * per_workspace + ["law-a"] * per_workspace
