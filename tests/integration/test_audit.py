"""The compliance audit end to end: real SDK clients against the emulator, results in Azurite."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from azure.identity import DefaultAzureCredential
from fastapi.testclient import TestClient

from auditor import audit as audit_module
from auditor import runtime
from auditor.api import create_app
from auditor.audit import run_audit
from auditor.azure import inventory as inventory_module
from auditor.azure.clients import ArmClients
from auditor.facts import Status
from auditor.pacing import TokenBucketPacer
from auditor.run_record import AuditRun, RunStatus
from auditor.runtime import audit_once, build_arm_clients, build_credential, build_store
from auditor.settings import Settings
from auditor.storage import writer as writer_module
from auditor.storage.keys import registry_key
from emulator import azurite
from emulator.knobs import parse_knobs
from emulator.testing import RunningEmulator

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]

PROD = "11111111-1111-1111-1111-111111111111"
DEV = "22222222-2222-2222-2222-222222222222"
GHOST = "99999999-9999-9999-9999-999999999999"  # no subscription the identity can see

EXPECTED = {
    "acrcompliant01": ("compliant", ()),
    "acrgroups01": ("compliant", ()),
    # Its login events are routed to a workspace but it has no traffic: the logs prove silence.
    "acrdisabled01": (
        "noncompliant",
        ("category_disabled:ContainerRegistryRepositoryEvents", "logs_silent"),
    ),
    "acrstorage01": ("noncompliant", ("destination_not_allowed",)),
    "acrlegacy01": ("noncompliant", ("not_resource_specific",)),
    "acrnosetting01": ("noncompliant", ("no_diagnostic_setting",)),
}


# One reader waits on this read for 10 s while the other reads the rest: a margin that stays
# wide on a busy machine, for the early registries' log queries to return and be stored.
SLOW_LAST_READ = {
    "kind": "slow",
    "delay_s": 10,
    "api": "arm",
    "path": "acrnosetting01/providers/microsoft.insights/diagnosticsettings$",
}


def outcome(run: AuditRun) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {
        v.registry.name: (v.status.value, tuple(r.code for r in v.reasons)) for v in run.verdicts
    }


def audit(env: dict[str, str], **kwargs: Any) -> AuditRun:
    return audit_once(Settings.from_env(env), trigger="test", **kwargs)


@pytest.fixture(params=["at_the_end", "as_judged"])
def write_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Small runs store everything at their end; "as_judged" hands registries to the store
    (and alerts) after every read, as a long run does every few seconds."""
    if request.param == "as_judged":
        monkeypatch.setattr(audit_module, "WRITE_EVERY_SECONDS", 0.0)
    return str(request.param)


def test_small_estate_is_judged_exactly_and_stored(local_azure: LocalAzure) -> None:
    emu, env = local_azure()
    run = audit(env)
    assert outcome(run) == EXPECTED
    assert run.status is RunStatus.SUCCEEDED
    assert run.inventoried_subscriptions == {PROD, DEV}

    store = build_store(Settings.from_env(env))
    summary = store.get_summary()
    assert summary is not None
    assert summary["lastRun"]["id"] == run.run_id
    assert summary["totals"]["compliant"] == 2
    assert summary["totals"]["noncompliant"] == 4
    stored = store.get_registry("acrdisabled01")
    assert stored is not None and stored["status"] == "noncompliant"

    # One settings read per registry; per run: the subscription list, one Resource Graph page,
    # one category read, and one workspace read per workspace receiving logs.
    arm = [e for e in emu.world.requests() if e.api in ("arm", "resourcegraph")]
    settings_reads = [e for e in arm if e.path.lower().endswith("/diagnosticsettings")]
    assert len(settings_reads) == len(EXPECTED)
    workspace_reads = [e for e in arm if "/workspaces/" in e.path.lower()]
    assert len(workspace_reads) == 1  # law-dev receives only AzureDiagnostics-mode logs
    assert len(arm) == len(EXPECTED) + 3 + len(workspace_reads)


def test_a_run_gives_free_pages_back_while_it_lasts(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, env = local_azure()
    trims: list[float] = []
    real = runtime.free_pages_returned
    monkeypatch.setattr(
        runtime, "free_pages_returned", lambda: real(period=0.01, trim=lambda _: trims.append(1))
    )
    run = audit(env)
    assert run.verdicts and trims  # trimmed during the run...
    count = len(trims)
    time.sleep(0.05)
    assert len(trims) == count  # ...and not after it


def test_rerun_is_idempotent(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    first = audit(env)
    store = build_store(Settings.from_env(env))
    history_before = {name: store.registry_history(name) for name in EXPECTED}
    second = audit(env)
    assert outcome(second) == outcome(first)
    assert {name: store.registry_history(name) for name in EXPECTED} == history_before
    summary = store.get_summary()
    assert summary is not None and summary["lastRun"]["id"] == second.run_id
    assert summary["totals"] == {**summary["totals"], "compliant": 2, "noncompliant": 4}


def test_after_the_last_read_registries_settle_a_slice_at_a_time(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the last read, the registries waiting for their evidence go to the store (and
    the alerts) in slices, each built while the one before is written, not all at once."""
    monkeypatch.setattr(audit_module, "WRITE_EVERY_SECONDS", 3600.0)  # no hand-over before
    monkeypatch.setattr(audit_module, "TAIL_SLICE", 2)
    write = writer_module.RunWriter.write
    batches: list[list[str]] = []

    def writing(writer: Any, verdicts: Any, evidence: Any, **kwargs: Any) -> None:
        batches.append([v.registry.name for v in verdicts])
        write(writer, verdicts, evidence, **kwargs)

    monkeypatch.setattr(writer_module.RunWriter, "write", writing)
    _, env = local_azure(latency={"logs": 300})
    run = audit(env)
    assert outcome(run) == EXPECTED
    # At most a slice at a time; a slice may be short when fewer are ready at that moment.
    assert max(len(b) for b in batches) == 2
    assert len(batches) >= len(EXPECTED) // 2
    assert sorted(n for b in batches for n in b) == sorted(EXPECTED)
    store = build_store(Settings.from_env(env))
    for name in EXPECTED:
        stored = store.get_registry(name)
        assert stored is not None and stored["lastRunId"] == run.run_id


def test_after_the_last_read_registries_settle_as_soon_as_their_workspaces_answer(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the last read nothing waits for the hand-over's pause: the registries routed to
    no workspace are stored once the activity queries answer, while the registry queries are
    still out, and the others once those answer."""
    monkeypatch.setattr(audit_module, "WRITE_EVERY_SECONDS", 3600.0)  # no hand-over at all
    write = writer_module.RunWriter.write
    emu, env = local_azure(latency={"logs": 600})
    answered: list[int] = []  # log queries answered when each batch went to the store

    def writing(writer: Any, verdicts: Any, evidence: Any, **kwargs: Any) -> None:
        answered.append(len([e for e in emu.world.requests() if e.api == "logs"]))
        write(writer, verdicts, evidence, **kwargs)

    monkeypatch.setattr(writer_module.RunWriter, "write", writing)
    run = audit(env)
    assert outcome(run) == EXPECTED
    queries = len([e for e in emu.world.requests() if e.api == "logs"])
    assert len(answered) >= 2
    assert answered[0] < queries  # stored before the last query answered
    assert answered[-1] == queries


def test_registries_are_stored_while_the_rest_are_still_read(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow reads, one registry's far slower than the rest, and a hand-over after every read:
    registries whose log evidence is complete early are stored before the run ends, the rest
    at its end, and the results are those of the usual audit."""
    monkeypatch.setattr(audit_module, "WRITE_EVERY_SECONDS", 0.0)
    emu, env = local_azure(latency={"arm": 400}, faults=[SLOW_LAST_READ])
    run = audit({**env, "AUDITOR_MAX_CONCURRENCY": "2"})
    assert outcome(run) == EXPECTED
    store = build_store(Settings.from_env(env))
    checked = {}
    for name in EXPECTED:
        stored = store.get_registry(name)
        assert stored is not None and stored["lastRunId"] == run.run_id
        checked[name] = datetime.fromisoformat(stored["checkedAt"])
        assert [h["runId"] for h in store.registry_history(name)] == [run.run_id]
    assert min(checked.values()) < run.finished_at  # stored during the run
    assert max(checked.values()) <= run.finished_at
    summary = store.get_summary()
    assert summary is not None and summary["lastRun"]["id"] == run.run_id
    assert summary["totals"]["compliant"] == 2 and summary["totals"]["noncompliant"] == 4

    emu.world.knobs = emu.world.scenario.knobs  # no more slow reads
    second = audit({**env, "AUDITOR_MAX_CONCURRENCY": "2"})
    assert outcome(second) == EXPECTED
    for name in EXPECTED:  # nothing changed: no new history
        assert [h["runId"] for h in store.registry_history(name)] == [run.run_id]


def test_failures_are_isolated_and_reported_unknown(
    local_azure: LocalAzure, write_mode: str
) -> None:
    _, env = local_azure(
        faults=[
            {"kind": "status", "status": 403, "subscription": DEV},
            {
                "kind": "status",
                "status": 500,
                "api": "arm",
                "path": "acrgroups01/providers/microsoft.insights/diagnosticsettings$",
            },
        ]
    )
    run = audit({**env, "AUDITOR_HTTP_RETRIES": "1"})
    result = outcome(run)
    # The healthy registries are judged as usual.
    for name in ("acrcompliant01", "acrdisabled01", "acrstorage01"):
        assert result[name] == EXPECTED[name]
    # The failing ones are unknown with the reason, never dropped.
    assert result["acrgroups01"][0] == "unknown"
    assert "500" in result["acrgroups01"][1][0]
    for name in ("acrlegacy01", "acrnosetting01"):
        status, reasons = result[name]
        assert status == "unknown", name
        assert "403" in reasons[0], reasons
    assert run.status is RunStatus.PARTIAL
    store = build_store(Settings.from_env(env))
    for name, (status, _) in result.items():
        stored = store.get_registry(name)
        assert stored is not None and stored["status"] == status, name


def test_malformed_answers_are_retried_then_reported_invalid(local_azure: LocalAzure) -> None:
    """A 200 whose body is cut short is read again; one that stays malformed makes its
    registry unknown with a reason that says the response was invalid, not "HTTP 200: OK"."""
    settings = "/providers/microsoft.insights/diagnosticsettings$"
    emu, env = local_azure(
        faults=[
            {"kind": "malformed", "path": "acrstorage01" + settings, "count": 2},
            {"kind": "malformed", "path": "acrlegacy01" + settings},
        ]
    )
    run = audit(env)
    result = outcome(run)
    assert result["acrstorage01"] == EXPECTED["acrstorage01"]  # the third answer was whole
    assert result["acrlegacy01"] == ("unknown", ("unknown:invalid_response",))
    [legacy] = [v for v in run.verdicts if v.registry.name == "acrlegacy01"]
    assert "was not valid JSON (3 attempts)" in legacy.reasons[0].detail
    reads = [e for e in emu.world.requests() if e.path.lower().endswith("diagnosticsettings")]
    assert sum("acrstorage01" in e.path for e in reads) == 3
    assert sum("acrlegacy01" in e.path for e in reads) == 3


def test_a_read_that_never_answers_times_out_and_the_rest_are_judged(
    local_azure: LocalAzure,
) -> None:
    """One registry's settings answer after 100 s. With a read timeout of a fraction of
    a second and one retry given to the client builder, that registry costs the run two
    attempts of the timeout: it is unknown with a timeout reason, the others are judged."""
    settings_read = "/providers/microsoft.insights/diagnosticsettings$"
    emu, env = local_azure(
        faults=[
            {"kind": "slow", "delay_s": 100, "api": "arm", "path": "acrgroups01" + settings_read}
        ]
    )
    settings = Settings.from_env(env)
    clients = ArmClients(
        credential=DefaultAzureCredential(),
        endpoint=settings.arm.endpoint,
        audience=settings.arm.audience,
        pacer=TokenBucketPacer(rate=25, burst=100),
        retries=1,
        read_timeout=0.5,
    )
    try:
        run = run_audit(clients, settings.policy)  # settings only: no log queries
    finally:
        clients.close()
    result = outcome(run)
    assert result.pop("acrgroups01") == ("unknown", ("unknown:timeout",))
    on_settings_alone = {
        **EXPECTED,
        "acrdisabled01": ("noncompliant", EXPECTED["acrdisabled01"][1][:1]),  # no logs_silent
    }
    del on_settings_alone["acrgroups01"]
    assert result == on_settings_alone
    [slow] = [v for v in run.verdicts if v.registry.name == "acrgroups01"]
    assert "read timeout" in slow.reasons[0].detail
    assert run.status is RunStatus.PARTIAL
    # Two attempts reached the slow registry and neither was answered; every other registry's
    # settings were read once.
    [fault] = emu.world.knobs.faults
    assert fault.fired == 2
    reads = [e for e in emu.world.requests() if e.path.lower().endswith("/diagnosticsettings")]
    assert not [e for e in reads if "acrgroups01" in e.path]
    assert sorted(e.path.split("/")[-4] for e in reads) == sorted(set(EXPECTED) - {"acrgroups01"})


def test_registry_that_disappeared_is_removed_not_failed(
    local_azure: LocalAzure, write_mode: str
) -> None:
    emu, env = local_azure()
    audit(env)
    gone = emu.world.registry_by_name("acrstorage01")
    assert gone is not None
    emu.world.remove_registry(gone.id)
    run = audit(env)
    by_name = {v.registry.name: v for v in run.verdicts}
    assert by_name["acrstorage01"].status is Status.REMOVED
    assert by_name["acrcompliant01"].status is Status.COMPLIANT
    stored = build_store(Settings.from_env(env)).get_registry("acrstorage01")
    assert stored is not None and stored["status"] == "removed"


def test_subscription_filter_limits_the_audit(local_azure: LocalAzure) -> None:
    _, env = local_azure()
    run = audit(env, subscriptions=[DEV])
    assert {v.registry.name for v in run.verdicts} == {"acrlegacy01", "acrnosetting01"}


def test_a_configured_subscription_the_identity_cannot_see_is_an_error(
    local_azure: LocalAzure,
) -> None:
    _, env = local_azure()
    run = audit({**env, "AUDITOR_SUBSCRIPTIONS": f"{PROD},{GHOST}"})
    prod = {"acrcompliant01", "acrgroups01", "acrdisabled01", "acrstorage01"}
    assert outcome(run) == {k: v for k, v in EXPECTED.items() if k in prod}
    assert run.status is RunStatus.PARTIAL
    assert run.inventoried_subscriptions == {PROD}
    [error] = [e for e in run.errors if GHOST in e]
    assert "not visible to the auditor's identity" in error
    # Stored with the run, and served.
    store = build_store(Settings.from_env(env))
    [served] = TestClient(create_app(lambda: store)).get("/api/runs").json()["items"]
    assert served["id"] == run.run_id and served["status"] == "partial"
    assert error in served["errors"]


def test_a_configured_subscription_refused_to_the_identity_is_an_error(
    local_azure: LocalAzure,
) -> None:
    """Listed, but its registries may not be read: Resource Graph leaves it out without a
    word, the ARM list says 403."""
    emu, env = local_azure(faults=[{"kind": "status", "status": 403, "subscription": DEV}])
    for name in ("acrlegacy01", "acrnosetting01"):
        registry = emu.world.registry_by_name(name)
        assert registry is not None
        emu.world.remove_registry(registry.id)
    run = audit({**env, "AUDITOR_SUBSCRIPTIONS": DEV})
    assert run.verdicts == ()
    assert run.status is RunStatus.PARTIAL
    [error] = [e for e in run.errors if DEV in e]
    assert "HTTP 403" in error


def test_configured_subscriptions_are_confirmed_when_the_list_is_unreadable(
    local_azure: LocalAzure,
) -> None:
    _, env = local_azure(
        faults=[{"kind": "status", "status": 500, "api": "arm", "path": "^/subscriptions$"}]
    )
    run = audit({**env, "AUDITOR_SUBSCRIPTIONS": f"{DEV},{GHOST}", "AUDITOR_HTTP_RETRIES": "0"})
    assert {v.registry.name for v in run.verdicts} == {"acrlegacy01", "acrnosetting01"}
    assert run.status is RunStatus.PARTIAL
    assert any(e.startswith("subscription list unreadable") for e in run.errors)
    [error] = [e for e in run.errors if GHOST in e]
    assert "HTTP 404 SubscriptionNotFound" in error


def test_resource_graph_failure_falls_back_to_arm_lists(local_azure: LocalAzure) -> None:
    emu, env = local_azure(faults=[{"kind": "status", "status": 500, "api": "resourcegraph"}])
    run = audit({**env, "AUDITOR_HTTP_RETRIES": "0"})
    assert outcome(run) == EXPECTED
    assert any("Resource Graph failed" in e for e in run.errors)
    lists = [
        e
        for e in emu.world.requests()
        if e.path.lower().endswith("/providers/microsoft.containerregistry/registries")
    ]
    assert len(lists) == 2  # one ARM list per subscription


def test_throttled_reads_are_retried_after_retry_after(local_azure: LocalAzure) -> None:
    # The server's bucket is far smaller than the auditor believes: 429s must be absorbed.
    emu, env = local_azure(arm_throttle={"burst": 2, "refill_per_second": 5})
    run = audit(env)
    assert outcome(run) == EXPECTED
    throttled = [e for e in emu.world.requests() if e.status == 429]
    assert throttled, "the scenario should have throttled some reads"


def test_pacing_at_the_servers_rate_avoids_429(local_azure: LocalAzure) -> None:
    # The auditor keeps 8 tokens of the burst it is told in hand, so it spends 1 of these 4
    # and paces the rest at the server's rate: 3 tokens, 0.6 s, for requests bunched on the
    # way. The emulator shares the test's interpreter lock; with a burst of 2 (0.2 s), a
    # loaded CI machine bunched 3 reads once.
    emu, env = local_azure(arm_throttle={"burst": 4, "refill_per_second": 5})
    run = audit({**env, "AUDITOR_ARM_BURST": "4", "AUDITOR_ARM_READS_PER_SECOND": "5"})
    assert outcome(run) == EXPECTED
    requests = emu.world.requests()
    assert [e for e in requests if e.status == 429] == []
    # More reads than the server's burst: without pacing, some would have been refused.
    assert sum(1 for e in requests if e.api == "arm") > 4 + 3


def test_a_failing_log_analytics_makes_routed_registries_unknown(
    local_azure: LocalAzure, write_mode: str
) -> None:
    _, env = local_azure(faults=[{"kind": "status", "status": 500, "api": "logs"}])
    run = audit({**env, "AUDITOR_HTTP_RETRIES": "0"})
    result = outcome(run)
    # Registries whose logs go to a workspace cannot be proven to log: a compliant one is
    # unknown, a noncompliant one stays so; both say why.
    for name, status in (
        ("acrcompliant01", "unknown"),
        ("acrgroups01", "unknown"),
        ("acrdisabled01", "noncompliant"),
    ):
        assert result[name][0] == status, name
        assert any(r.startswith("logs_unreadable") for r in result[name][1]), result[name]
    # The others are judged on their settings alone, as usual.
    for name in ("acrstorage01", "acrlegacy01", "acrnosetting01"):
        assert result[name] == EXPECTED[name]
    assert run.status is RunStatus.PARTIAL
    stored = build_store(Settings.from_env(env)).get_registry("acrcompliant01")
    assert stored is not None and stored["status"] == "unknown"


def test_a_run_that_dies_is_recorded_failed_not_running(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "WRITE_EVERY_SECONDS", 0.0)
    _, env = local_azure(latency={"arm": 300})
    settings = Settings.from_env(env)
    store = build_store(settings)

    def crash(run_id: str, verdicts: Any, evidence: Any) -> None:
        raise RuntimeError("a bug on the way")

    clients = build_arm_clients(settings, build_credential())
    try:
        with pytest.raises(RuntimeError, match="a bug on the way"):
            run_audit(clients, settings.policy, store=store, on_judged=crash, trigger="test")
    finally:
        clients.close()
    [row], _ = store.list_runs()
    assert row["status"] == "failed"
    assert row["errors"] == ["the run died: RuntimeError: a bug on the way"]


def test_storage_lost_mid_run_costs_no_verdict(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Azurite goes away after the first registries are stored: the run still judges every
    registry, returns them all and says that its results were not stored."""
    monkeypatch.setattr(audit_module, "WRITE_EVERY_SECONDS", 0.0)
    _, env = local_azure(latency={"arm": 300})
    private = azurite.start()
    settings = Settings.from_env({**env, "AUDITOR_STORAGE": private.connection_string})
    stopped: list[str] = []

    def outage(run_id: str, verdicts: Any, evidence: Any) -> None:
        if not stopped:
            private.stop()
            stopped.append(run_id)

    clients = build_arm_clients(settings, build_credential())
    try:
        run = run_audit(
            clients, settings.policy, store=build_store(settings), on_judged=outage, trigger="t"
        )
    finally:
        clients.close()
        private.stop()
    assert stopped == [run.run_id]
    # Every registry judged as usual (this run reads no logs, so no logs_silent).
    statuses = {name: status for name, (status, _) in outcome(run).items()}
    assert statuses == {name: status for name, (status, _) in EXPECTED.items()}
    assert run.storage_error is not None and "Table Storage" in run.storage_error
    assert run.errors[-1] == run.storage_error


def test_a_misspelt_required_category_fails_the_run_instead_of_the_fleet(
    local_azure: LocalAzure, caplog: pytest.LogCaptureFixture
) -> None:
    """`ContainerRegistryLoginEvent` (no s) would make every registry noncompliant and send
    an alert for each: the run fails instead, naming the setting and the valid names, every
    registry unknown with that reason, and no alert goes out."""
    _, env = local_azure()
    settings = Settings.from_env(
        {
            **env,
            "AUDITOR_REQUIRED_CATEGORIES": "ContainerRegistryLoginEvent",
            "AUDITOR_ALERT_LOG_RECORDS": "true",
        }
    )
    with caplog.at_level("INFO"):
        run = audit_once(settings, trigger="test")
    assert run.status is RunStatus.FAILED
    [error] = [e for e in run.errors if e.startswith("configuration error")]
    assert "AUDITOR_REQUIRED_CATEGORIES" in error and "'ContainerRegistryLoginEvent'" in error
    assert "ContainerRegistryLoginEvents, ContainerRegistryRepositoryEvents" in error
    assert "categories API" in error
    assert {status for status, _ in outcome(run).values()} == {"unknown"}
    assert {codes for _, codes in outcome(run).values()} == {("unknown:configuration",)}
    assert len(run.verdicts) == len(EXPECTED)
    assert "ACR_AUDITOR_ALERT" not in caplog.text  # no alert for a fleet of false findings
    stored = build_store(settings).get_registry("acrcompliant01")
    assert stored is not None and stored["status"] == "unknown"


def test_a_registry_that_keeps_failing_retries_between_the_other_reads(
    local_azure: LocalAzure,
) -> None:
    """One reader, one registry answering 500 every time: its retries wait in the queue, so
    the other registries are read between its attempts instead of after its backoff."""
    settings_path = "/providers/microsoft.insights/diagnosticsettings$"
    emu, env = local_azure(
        faults=[
            {"kind": "status", "status": 500, "api": "arm", "path": "acrgroups01" + settings_path}
        ]
    )
    run = audit({**env, "AUDITOR_MAX_CONCURRENCY": "1", "AUDITOR_HTTP_RETRIES": "2"})
    assert outcome(run)["acrgroups01"] == ("unknown", ("unknown:http_500",))
    reads = [
        e.path.split("/registries/")[1].split("/")[0]
        for e in emu.world.requests()
        if e.path.lower().endswith("/diagnosticsettings")
    ]
    failing = [i for i, name in enumerate(reads) if name == "acrgroups01"]
    assert len(failing) == 3  # the first try and AUDITOR_HTTP_RETRIES more, no SDK retries
    between = reads[failing[0] : failing[-1]]
    assert set(between) - {"acrgroups01"}, reads  # others were read meanwhile
    assert sorted(set(reads)) == sorted(EXPECTED)


def test_settings_are_read_while_resource_graph_still_pages(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of two registries, each taking Resource Graph 300 ms: the registries of the
    first page are read while the later pages are on their way, and the run judges the same
    registries as one that waited for the whole inventory."""
    monkeypatch.setattr(inventory_module, "PAGE_SIZE", 2)
    emu, env = local_azure(latency={"resourcegraph": 300})
    run = audit(env)
    assert outcome(run) == EXPECTED
    assert run.status is RunStatus.SUCCEEDED
    log = emu.world.requests()
    pages = [e for e in log if e.api == "resourcegraph"]
    assert len(pages) == 3
    reads = [e for e in log if e.path.lower().endswith("/diagnosticsettings")]
    assert len(reads) == len(EXPECTED)
    first_read_sent = min(e.time - e.latency_ms / 1000 for e in reads)
    assert (
        first_read_sent < pages[-1].time - pages[-1].latency_ms / 1000
    )  # before the last page was asked


def test_resource_graph_failing_after_its_first_page_reads_each_registry_once(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first page's registries are already being read when the second page fails: the
    ARM lists that replace Resource Graph find them again, and each is still read and
    reported once."""
    monkeypatch.setattr(inventory_module, "PAGE_SIZE", 2)
    emu, env = local_azure(
        faults=[{"kind": "status", "status": 500, "api": "resourcegraph", "skip": 1}]
    )
    run = audit({**env, "AUDITOR_HTTP_RETRIES": "0"})
    assert outcome(run) == EXPECTED
    assert len(run.verdicts) == len(EXPECTED)
    assert any("Resource Graph failed" in e for e in run.errors)
    log = emu.world.requests()
    assert [e.status for e in log if e.api == "resourcegraph"] == [200, 500]
    reads = [e for e in log if e.path.lower().endswith("/diagnosticsettings")]
    assert len(reads) == len(EXPECTED)


def test_a_run_whose_inventory_ends_after_its_last_read_finishes_at_once(
    local_azure: LocalAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every registry is read while the inventory still confirms, through a slow ARM list,
    that a subscription known to the store has none left: the run ends as soon as that list
    answers, not at its next hand-over to the store (a minute away here)."""
    monkeypatch.setattr(audit_module, "WRITE_EVERY_SECONDS", 60.0)
    emu, env = local_azure()
    audit(env)
    for name in ("acrlegacy01", "acrnosetting01"):  # the development subscription's
        gone = emu.world.registry_by_name(name)
        assert gone is not None and gone.subscription == DEV
        emu.world.remove_registry(gone.id)
    dev_list = f"/subscriptions/{DEV}/providers/Microsoft.ContainerRegistry/registries$"
    emu.world.knobs = parse_knobs({"faults": [{"kind": "slow", "delay_s": 2, "path": dev_list}]})
    started = time.monotonic()
    run = audit(env)
    assert time.monotonic() - started < 30
    statuses = {v.registry.name: v.status for v in run.verdicts}
    assert statuses["acrlegacy01"] is statuses["acrnosetting01"] is Status.REMOVED
    assert statuses["acrcompliant01"] is Status.COMPLIANT
    lists = [e for e in emu.world.requests() if e.path.lower().endswith(dev_list[1:-1].lower())]
    assert len(lists) == 1


def test_a_full_sweep_lets_the_stored_settings_go_however_late_the_store_opens(
    local_azure: LocalAzure,
) -> None:
    """Reads start with Resource Graph's first page, which can be before the store has
    opened its writer (a fleet's stored registries to read): the writer still lets go of
    the stored settings text a full sweep never uses, rather than hold it to the run's end."""
    _, env = local_azure()
    audit(env)  # something stored
    settings = Settings.from_env(env)
    store = build_store(settings)
    writers: list[Any] = []

    class SlowToOpen:
        def run_writer(self, run_id: str, **options: Any) -> Any:
            time.sleep(1.0)
            writers.append(store.run_writer(run_id, **options))
            return writers[-1]

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    clients = build_arm_clients(settings, build_credential())
    try:
        run = run_audit(clients, settings.policy, store=SlowToOpen(), trigger="test")
    finally:
        clients.close()
    assert {n: status for n, (status, _) in outcome(run).items()} == {
        n: status for n, (status, _) in EXPECTED.items()
    }
    (writer,) = writers
    for name in EXPECTED:
        key = registry_key(name)
        assert writer.stored_settings(key) is None, name
        assert writer.known_registries()  # the rest of what it opened with stays
