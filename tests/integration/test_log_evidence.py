"""Do the logs arrive? The log evidence end to end: the settings audit and the Log Analytics
queries with the real SDKs against the emulator (KQL run by duckdb-kql behind Microsoft's
parser), then the findings on the verdicts. Scenario: tests/integration/scenarios/
log_evidence.yaml, one registry per finding.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from auditor import kql
from auditor.audit import run_audit
from auditor.azure.clients import ArmClients
from auditor.azure.logs import LogsReader
from auditor.evidence.judgement import apply_evidence
from auditor.evidence.model import Operation
from auditor.facts import Status, Verdict
from auditor.logs_audit import EvidenceResult, LogOptions, collect_evidence
from auditor.runtime import build_arm_clients, build_credential
from auditor.settings import Settings
from emulator.loganalytics.kusto_parser import KustoValidator
from emulator.testing import RunningEmulator, sdk_environment, start_emulator

pytestmark = pytest.mark.integration

SCENARIO = Path(__file__).with_name("scenarios") / "log_evidence.yaml"
SUB = "11111111-1111-1111-1111-111111111111"
LAW_LOGS = "bbbbbbbb-0000-0000-0000-000000000001"
LAW_OTHER = "bbbbbbbb-0000-0000-0000-000000000002"
PURPOSES = len(kql.Purpose)
OPTIONS = LogOptions()


def rid(name: str, group: str = "rg-prod") -> str:
    return (
        f"/subscriptions/{SUB}/resourcegroups/{group}"
        f"/providers/microsoft.containerregistry/registries/{name}"
    )


@dataclass
class Run:
    emu: RunningEmulator
    clients: ArmClients
    reader: LogsReader
    verdicts: tuple[Verdict, ...]
    result: EvidenceResult
    judged: dict[str, Verdict]

    def logs_requests(self, since: int = 0) -> list[Any]:
        return [
            e
            for e in self.emu.world.requests()[since:]
            if e.api == "logs" and e.path.endswith("/query")
        ]


@dataclass
class Estate:
    emu: RunningEmulator
    clients: ArmClients
    reader: LogsReader

    def run(self, options: LogOptions = OPTIONS) -> Run:
        audit = run_audit(self.clients, Settings.from_env({}, require_storage=False).policy)
        now = self.emu.world.now()
        result = collect_evidence(
            self.clients, self.reader, audit.verdicts, now=now, options=options
        )
        judged = apply_evidence(
            audit.verdicts,
            result.evidence,
            now=now,
            silent_after=options.silent_after,
            pending_window=options.pending_window,
        )
        return Run(
            self.emu,
            self.clients,
            self.reader,
            audit.verdicts,
            result,
            {v.registry.name: v for v in judged},
        )


def _estate(
    knobs: dict[str, Any] | None = None, *, now: datetime | None = None, **reader: Any
) -> Iterator[Estate]:
    """`now`: the emulator's clock, for a test comparing with another emulator's run. Each
    otherwise starts at the wall clock, and the generated events sit on the hours of that
    clock: two windows minutes apart cut them apart differently."""
    emu = start_emulator(SCENARIO, knobs=knobs, now=now or "real")
    try:
        with sdk_environment(emu.environ()):
            settings = Settings.from_env(emu.environ(), require_storage=False)
            credential = build_credential()
            clients = build_arm_clients(settings, credential)
            logs = LogsReader(
                credential,
                endpoint=settings.logs.endpoint,
                audience=settings.logs.audience,
                **{"backoff": 0.05, **reader},
            )
            try:
                yield Estate(emu, clients, logs)
            finally:
                logs.close()
                clients.close()
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def first_run() -> Iterator[Run]:
    """One audit of the scenario as it is, shared by the tests that only read it."""
    for estate in _estate():
        yield estate.run()


@pytest.fixture
def estate(first_run: Run) -> Iterator[Estate]:
    """A private emulator for tests that change the world or inject faults, on the clock of
    the first run they compare with."""
    yield from _estate(now=first_run.emu.world.now())


def statuses(run: Run) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {
        name: (v.status.value, tuple(r.code for r in v.reasons)) for name, v in run.judged.items()
    }


# --------------------------------------------------------------------------- freshness


def test_freshness_silence_and_pending(first_run: Run) -> None:
    assert statuses(first_run) == {
        "acrbusy01": ("compliant", ()),
        "acrpublic01": ("compliant", ()),
        "acrother01": ("compliant", ()),
        "acrsilent01": ("noncompliant", ("logs_silent",)),
        "acrnew01": ("compliant", ("pending",)),
        "acrsetnew01": ("compliant", ("pending",)),
        "acrgone01": ("unknown", ("logs_unreadable:http_404",)),
    }
    now = first_run.emu.world.now()
    busy = first_run.result.evidence[rid("acrbusy01")]
    tables = {t.table: t for w in busy.workspaces for t in w.per_table}
    assert set(tables) == {kql.LOGIN_TABLE, kql.REPOSITORY_TABLE}
    for table in tables.values():
        assert table.events > 0 and table.previous_events > 0
        # Fresh at any hour: at the diurnal trough (02:00 UTC) the scenario's rates still put
        # at least 3 events in every hour, so the last is never two hours old (it can be
        # more than one: the current hour's may all lie ahead of now).
        assert table.last_event is not None and now - table.last_event < timedelta(hours=2)

    silent = first_run.result.evidence[rid("acrsilent01")]
    last = silent.last_event
    assert last is not None
    assert timedelta(hours=30) <= now - last < timedelta(hours=32)
    detail = first_run.judged["acrsilent01"].reasons[0].detail
    assert last.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") in detail
    assert "law-logs" in detail

    gone = first_run.judged["acrgone01"].reasons[0]
    assert "law-gone" in gone.detail and "404" in gone.detail
    assert any("law-gone" in e for e in first_run.result.errors)


def test_query_count_is_workspaces_times_purposes(first_run: Run) -> None:
    assert len(first_run.result.routed) == 7  # every registry routes logs somewhere
    readable = [w for w in first_run.result.workspaces.values() if w.customer_id]
    assert len(readable) == 2  # law-logs and law-other; law-gone does not resolve
    sent = first_run.logs_requests()
    assert len(sent) == first_run.result.queries == len(readable) * PURPOSES
    per_workspace = {ws: sum(1 for e in sent if ws in e.path) for ws in (LAW_LOGS, LAW_OTHER)}
    assert per_workspace == {LAW_LOGS: PURPOSES, LAW_OTHER: PURPOSES}
    assert all(e.status == 200 for e in sent)


def test_queries_start_while_settings_are_still_being_read(first_run: Run) -> None:
    """The audit feeds verdicts to the log queries as they are judged: with slow,
    one-at-a-time settings reads, queries go out before the last read, and the findings are
    the same as querying after every read."""
    for estate in _estate({"latency": {"arm": 250}}, now=first_run.emu.world.now()):
        run = run_audit(
            estate.clients,
            Settings.from_env({}, require_storage=False).policy,
            max_concurrency=1,
            logs_reader=estate.reader,
            log_options=LogOptions(chunk_size=1),
            clock=estate.emu.world.now,
        )
        log = estate.emu.world.requests()
        reads = [e.time for e in log if e.path.endswith("/diagnosticSettings")]
        # When a query reached the emulator (it logs a request as it answers).
        queries = [
            e.time - e.latency_ms / 1000
            for e in log
            if e.api == "logs" and e.path.endswith("/query")
        ]
        assert len(reads) == len(run.verdicts) == len(first_run.verdicts)
        assert min(queries) < max(reads)
        streamed = {
            v.registry.name: (v.status.value, tuple(r.code for r in v.reasons))
            for v in run.verdicts
        }
        assert streamed == statuses(first_run)
        # A run of more registries than `chunk_size` selects them by subscription: the same
        # one query per workspace and purpose, and the same findings as selecting by id.
        assert run.log_queries == first_run.result.queries


# --------------------------------------------------------------------------- logins


def test_failure_burst_is_found(first_run: Run) -> None:
    busy = first_run.result.evidence[rid("acrbusy01")]
    bursts = {(b.kind, b.key): b for b in busy.bursts}
    assert set(bursts) == {("ip", "192.0.2.66"), ("identity", "attacker@evil.example")}
    ip = bursts[("ip", "192.0.2.66")]
    assert ip.failures >= 20 and ip.end - ip.start <= timedelta(minutes=6)
    assert timedelta(hours=1) < first_run.emu.world.now() - ip.start < timedelta(hours=3)
    assert "login_failure_burst" in [r.code for r in busy.observations]
    for name in ("acrpublic01", "acrother01"):
        assert first_run.result.evidence[rid(name, _group(name))].bursts == ()


def test_first_seen_identities_and_ips(first_run: Run) -> None:
    busy = first_run.result.evidence[rid("acrbusy01")]
    seen = {(f.kind, f.value) for f in busy.first_seen}
    assert seen == {("identity", "attacker@evil.example"), ("ip", "192.0.2.66")}
    totals = {t.key: t for t in busy.by_identity}
    assert totals["attacker@evil.example"].failures == totals["attacker@evil.example"].attempts
    assert totals["ci-pipeline@contoso.com"].attempts > 0


def test_anonymous_pulls_and_admin_logins(first_run: Run) -> None:
    public = first_run.result.evidence[rid("acrpublic01")]
    assert [p.repository for p in public.anonymous_pulls] == ["public/base"]
    assert public.anonymous_pulls[0].count > 0 and public.anonymous_pulls[0].caller_ips
    assert {s.identity for s in public.admin_logins} == {"acrpublic01"}
    codes = {r.code for r in public.observations}
    assert {"anonymous_pull", "admin_user_login"} <= codes
    busy = first_run.result.evidence[rid("acrbusy01")]
    assert busy.anonymous_pulls == () and busy.admin_logins == ()


# --------------------------------------------------------------------------- activity trail


def test_every_delete_and_untag_is_listed(first_run: Run) -> None:
    busy = first_run.result.evidence[rid("acrbusy01")]
    counts = busy.operation_counts
    removed = sum(counts.get(op, 0) for op in (Operation.DELETE, Operation.UNTAG, Operation.PURGE))
    assert counts[Operation.PULL] > 0 and counts[Operation.PUSH] > 0 and removed > 0
    assert len(busy.deletions) == removed  # every one, individually
    window = first_run.result.window
    for entry in busy.deletions:
        assert entry.operation in (Operation.DELETE, Operation.UNTAG, Operation.PURGE)
        assert entry.identity in ("ci-pipeline@contoso.com", "release-bot@contoso.com")
        assert entry.caller_ip and entry.repository in ("app/web", "app/api")
        assert entry.at is not None and window.start <= entry.at <= window.end
    untags = [e for e in busy.deletions if e.operation is Operation.UNTAG]
    assert untags and all(e.tag for e in untags)
    # Counts by identity and repository: both identities, both repositories.
    identities = {"ci-pipeline@contoso.com", "release-bot@contoso.com"}
    assert {t.identity for t in busy.trail} == identities
    assert {t.repository for t in busy.trail} == {"app/web", "app/api"}


def test_setting_deleted_and_recreated_between_runs_is_caught(estate: Estate) -> None:
    first = estate.run()
    assert first.judged["acrbusy01"].status is Status.COMPLIANT
    assert "logging_interrupted" not in [r.code for r in first.judged["acrbusy01"].reasons]

    world = estate.emu.world
    busy = rid("acrbusy01")
    props = world.setting(busy, "to-law")
    assert props is not None
    world.advance(timedelta(minutes=5))
    world.delete_setting(busy, "to-law", caller="mallory@contoso.com", caller_ip="198.51.100.66")
    world.advance(timedelta(minutes=10))
    world.put_setting(busy, "to-law", props.properties, caller="mallory@contoso.com")
    world.advance(timedelta(minutes=15))

    second = estate.run()
    verdict = second.judged["acrbusy01"]
    assert verdict.status is Status.COMPLIANT  # configured and logging again
    assert [r.code for r in verdict.reasons] == ["logging_interrupted"]
    assert "'to-law' deleted at" in verdict.reasons[0].detail
    assert "mallory@contoso.com (198.51.100.66)" in verdict.reasons[0].detail
    kinds = [a.kind.value for a in second.result.evidence[busy].activity]
    assert kinds == ["setting_delete", "setting_write"]


# --------------------------------------------------------------------------- failures


def test_partial_error_keeps_rows_and_is_recorded(estate: Estate) -> None:
    estate.emu.world.add_fault(
        {"kind": "partial", "api": "logs", "path": LAW_LOGS, "count": PURPOSES}
    )
    run = estate.run()
    partial = [e for e in run.result.errors if "partial result" in e]
    assert len(partial) == PURPOSES  # recorded on the run, one per query of law-logs
    assert all("law-logs" in e and "PartialError" in e for e in partial)
    # The rows that came back are used...
    busy = run.result.evidence[rid("acrbusy01")]
    assert busy.last_event is not None and busy.bursts and busy.deletions
    assert any("partial" in p for p in busy.problems)
    assert run.judged["acrbusy01"].status is Status.COMPLIANT
    # ...but silence seen only in a partial result is not trusted; pending stays pending.
    assert statuses(run)["acrsilent01"] == ("unknown", ("logs_unreadable:partial_query_result",))
    assert statuses(run)["acrnew01"] == ("compliant", ("pending",))
    assert statuses(run)["acrother01"] == ("compliant", ())  # law-other was not affected


def test_oversized_results_are_split_by_time_window(first_run: Run) -> None:
    removed = len(first_run.result.evidence[rid("acrbusy01")].deletions)
    assert removed > 60
    for estate in _estate({"logs": {"max_rows": 60}}, now=first_run.emu.world.now()):
        run = estate.run()
        # The listing came back truncated (PartialError, too many rows), was split in
        # halves of its time range, and the halves together list every operation.
        assert not [e for e in run.result.errors if "partial" in e]
        assert len(run.result.evidence[rid("acrbusy01")].deletions) == removed
        assert run.result.queries > 2 * PURPOSES
        assert statuses(run) == statuses(first_run)


def test_throttling_is_retried_and_changes_nothing(estate: Estate, first_run: Run) -> None:
    estate.emu.world.add_fault(
        {"kind": "status", "api": "logs", "status": 429, "count": 3, "retry_after": 1}
    )
    run = estate.run()
    assert statuses(run) == statuses(first_run)
    sent = run.logs_requests()
    assert sum(1 for e in sent if e.status == 429) == 3
    assert len(sent) == 2 * PURPOSES + 3  # each throttled query retried once
    assert run.result.queries == 2 * PURPOSES
    assert not [e for e in run.result.errors if "429" in e]


def test_a_workspace_that_keeps_failing_makes_its_registries_unknown(estate: Estate) -> None:
    estate.emu.world.add_fault({"kind": "status", "api": "logs", "status": 504, "path": LAW_OTHER})
    estate.reader.retries = 1
    run = estate.run(LogOptions(max_splits=1))
    assert statuses(run)["acrother01"] == ("unknown", ("logs_unreadable:http_504",))
    assert statuses(run)["acrbusy01"] == ("compliant", ())
    # Too big: each query was split once (two halves) before giving up.
    other = [e for e in run.logs_requests() if LAW_OTHER in e.path]
    assert len(other) == PURPOSES * 2 + PURPOSES * 2 * 2  # (1 try + 1 retry) x (1 + 2 halves)
    assert any("504" in e and LAW_OTHER not in e for e in run.result.errors)


def test_a_workspace_that_never_answers_times_out_and_is_split() -> None:
    """law-other answers after 100 s. With a read timeout of 4 s given to the reader (above
    what the emulator's queries take on a busy machine), each query there times out, is split
    once (two halves) and times out again: its registry is unknown with a timeout reason and
    the rest are judged as usual."""
    for estate in _estate(read_timeout=4.0):
        slow = estate.emu.world.add_fault(
            {"kind": "slow", "api": "logs", "delay_s": 100, "path": LAW_OTHER}
        )
        run = estate.run(LogOptions(max_splits=1))
        assert statuses(run)["acrother01"] == ("unknown", ("logs_unreadable:timeout",))
        assert statuses(run)["acrbusy01"] == ("compliant", ())
        assert slow.fired == PURPOSES * (1 + 2)  # a read timeout is not retried as it is
        assert not [e for e in run.logs_requests() if LAW_OTHER in e.path]  # none answered
        assert any("timed out" in e and "law-other" in e for e in run.result.errors)


# --------------------------------------------------------------------------- KQL


def _group(name: str) -> str:
    return "rg-other" if name == "acrother01" else "rg-prod"


HOSTILE_IDS = [
    rid("acrbusy01"),
    '") | take 1 //',
    "' or 1==1 //",
    'back\\slash\\" quote',
    "new\nline\r\n| union AzureActivity",
    "nul\x00 and \u2028 and é中😀",
    "x" * 4000,
]


def _every_query(ids: list[str], subs: list[str]) -> list[kql.Query]:
    window = kql.Window.ending(datetime(2026, 11, 25, 12, tzinfo=UTC), timedelta(hours=24))
    span = (window.start + timedelta(hours=3), window.end - timedelta(minutes=7))
    out: list[kql.Query] = []
    selections = (kql.Selection.of_registries(ids), kql.Selection.of_subscriptions(subs))
    for s, pick in itertools.product((None, span), selections):
        out += [
            kql.freshness_query(pick, window, reach_back=timedelta(days=7), span=s),
            kql.logins_query(pick, window, span=s),
            kql.bursts_query(pick, window, min_failures=10, span=s),
            kql.bursts_query(pick, window, min_failures=1, step=timedelta(seconds=30), span=s),
            kql.repository_query(pick, window, span=s),
            kql.deletions_query(pick, window, cap=1, span=s),
        ]
    out += [kql.activity_query(subs, window, cap=100_000, span=s) for s in (None, span)]
    return out


@pytest.fixture(scope="module")
def validator() -> Iterator[KustoValidator]:
    v = KustoValidator()
    yield v
    v.close()


@pytest.mark.parametrize("hostile", [False, True], ids=["plain", "hostile"])
def test_every_query_passes_microsofts_parser(validator: KustoValidator, hostile: bool) -> None:
    ids = HOSTILE_IDS if hostile else [rid("acrbusy01"), rid("acrother01", "rg-other")]
    subs = [SUB, *HOSTILE_IDS] if hostile else [SUB]
    queries = _every_query(ids, subs)
    assert {q.purpose for q in queries} == set(kql.Purpose)
    for query in queries:
        assert validator.diagnostics(query.text) == [], (query.purpose, query.text[:300])


def test_the_parser_check_can_fail(validator: KustoValidator) -> None:
    query = kql.logins_query([rid("acrbusy01")], kql.Window.ending(datetime.now(UTC), timedelta(1)))
    broken = query.text.replace("CallerIpAddress", "CallerIp")
    assert [d.code for d in validator.validate(broken)]


def test_hostile_queries_run_in_the_emulator(first_run: Run) -> None:
    queries = _every_query(HOSTILE_IDS[1:], [*HOSTILE_IDS[1:]])
    outcomes = first_run.reader.run([(LAW_LOGS, q) for q in queries])
    for query, outcome in zip(queries, outcomes, strict=True):
        assert outcome.error is None, (query.purpose, outcome.error)
        assert outcome.rows == ()  # no registry has such an id: nothing leaks through


def test_the_query_token_is_fetched_ahead(estate: Estate) -> None:
    """`warm_up` asks for the query token in the background; the first query then asks for
    none. Without it, the first query asks for its own (the check that this can fail)."""
    emu = estate.emu
    query = _every_query([rid("acrprod")], [SUB])[0]

    def tokens_since(mark: int) -> int:
        return sum(1 for e in emu.world.requests()[mark:] if e.api == "identity")

    asked: dict[bool, tuple[int, int]] = {}
    with sdk_environment(emu.environ()):
        settings = Settings.from_env(emu.environ(), require_storage=False)
        for ahead in (False, True):
            # A credential of its own: the token it keeps is the point of the test.
            reader = LogsReader(
                build_credential(), endpoint=settings.logs.endpoint, audience=settings.logs.audience
            )
            try:
                mark = len(emu.world.requests())
                if ahead:
                    fetching = reader.warm_up()
                    assert fetching is not None
                    fetching.join(timeout=30)
                    assert not fetching.is_alive()
                fetched = tokens_since(mark)
                mark = len(emu.world.requests())
                outcome = reader.query(LAW_LOGS, query)
                assert outcome.error is None, outcome.error
                asked[ahead] = (fetched, tokens_since(mark))
            finally:
                reader.close()
    assert asked[False] == (0, 1)
    assert asked[True] == (1, 0)
