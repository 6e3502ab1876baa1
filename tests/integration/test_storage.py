"""AuditStore against Azurite: keys, batching, idempotence, removals, summaries, paging."""

from __future__ import annotations

import socket
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from auditor import exemptions
from auditor.facts import Reason, Registry, Status, Verdict, normalize_id
from auditor.judgement import judge
from auditor.run_record import AuditRun, RunStatus
from auditor.storage import AuditStore, InvalidContinuationToken, StorageError, StorageRetry, keys
from auditor.storage import writer as writer_module
from auditor.storage.actions import ActionLog
from auditor.storage.writer import MAX_BATCH
from auditor.summary import summarize
from emulator.azurite import DEV_KEY
from tests.unit.test_judgement import CASES

pytestmark = pytest.mark.integration

SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LOGIN_MISSING = "category_missing:ContainerRegistryLoginEvents"


def registry(name: str, sub: str = SUB_A) -> Registry:
    return Registry(
        id=f"/subscriptions/{sub}/resourceGroups/rg/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=sub,
        resource_group="rg",
        location="westeurope",
    )


def verdict(name: str, status: Status, *codes: str, sub: str = SUB_A) -> Verdict:
    return Verdict(
        registry(name, sub), status, tuple(Reason(code, f"why {code}") for code in codes)
    )


def audit_run(
    number: int,
    *verdicts: Verdict,
    listed: frozenset[str] = frozenset({SUB_A, SUB_B}),
    errors: tuple[str, ...] = (),
) -> AuditRun:
    started = T0 + timedelta(hours=number)
    return AuditRun(
        run_id=f"run{number:03d}",
        started_at=started,
        finished_at=started + timedelta(minutes=2),
        status=RunStatus.SUCCEEDED,
        verdicts=verdicts,
        inventoried_subscriptions=listed,
        errors=errors,
        trigger="timer",
    )


def finish(store: AuditStore, run: AuditRun) -> AuditRun:
    store.start_run(run.run_id, run.started_at, run.trigger)
    return store.finish_run(run)


@pytest.fixture
def table_rows(storage_connection_string: str, table_prefix: str) -> Any:
    """Raw rows of `{prefix}<table>`, read around the store, to compare table contents."""
    service = TableServiceClient.from_connection_string(storage_connection_string)

    def rows(table: str) -> list[dict[str, Any]]:
        return [dict(row) for row in service.get_table_client(table_prefix + table).list_entities()]

    return rows


def all_registries(store: AuditStore, **filters: Any) -> list[dict[str, Any]]:
    items, token = store.list_registries(page_size=1000, **filters)
    assert token is None
    return items


@pytest.fixture
def store(storage_connection_string: str, table_prefix: str) -> AuditStore:
    return AuditStore.from_connection_string(storage_connection_string, prefix=table_prefix)


def test_empty_store_reads_as_empty(store: AuditStore) -> None:
    # No table exists yet: readers must not fail before the first run.
    assert store.get_summary() is None
    assert store.list_registries() == ([], None)
    assert store.list_runs() == ([], None)
    assert store.get_registry("acrnone1") is None
    assert store.registry_history("acrnone1") == []
    assert store.known_registries() == []
    store.ping()


HOSTILE = [
    "a/b",
    "back\\slash",
    "hash#tag?",
    "per%2Fcent",
    "ctrl\x01\x1f\x7f",
    "' or 1 eq 1",
    "名前ですよ",
    "emoji🙂",
    "x" * 1000,  # beyond this, names are clipped to 1024 characters when stored
    "ValidName01",
]


def test_hostile_names_round_trip(store: AuditStore) -> None:
    verdicts = [verdict(name, Status.NONCOMPLIANT, LOGIN_MISSING) for name in HOSTILE]
    finish(store, audit_run(1, *verdicts))

    for name in HOSTILE:
        document = store.get_registry(name)
        assert document is not None, name
        assert document["name"] == name
        assert document["status"] == "noncompliant"
        assert document["reasons"] == [{"code": LOGIN_MISSING, "detail": f"why {LOGIN_MISSING}"}]
        assert [h["runId"] for h in store.registry_history(name)] == ["run001"]
    # Case-insensitive like Azure; a different name is not found.
    assert store.get_registry("VALIDNAME01") is not None
    assert store.get_registry("a/c") is None
    assert sorted(d["name"] for d in all_registries(store)) == sorted(HOSTILE)


def test_more_than_100_rows_in_one_partition(store: AuditStore, table_rows: Any) -> None:
    names = [f"reg{i:05d}" for i in range(250)]  # one partition: "r"
    run = audit_run(1, *(verdict(n, Status.COMPLIANT) for n in names))
    finished = finish(store, run)

    assert len(finished.verdicts) == 250
    pages: list[list[str]] = []
    token = None
    while True:
        items, token = store.list_registries(page_size=MAX_BATCH, continuation=token)
        pages.append([item["name"] for item in items])
        if token is None:
            break
    assert [len(page) for page in pages] == [100, 100, 50]
    assert [name for page in pages for name in page] == names
    assert len(table_rows("history")) == 250
    summary = store.get_summary()
    assert summary is not None
    assert summary["totals"]["total"] == 250
    assert summary["compliancePercent"] == 100.0


def test_a_run_larger_than_a_write_slice_is_stored_whole(
    store: AuditStore, table_rows: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "_WRITE_SLICE", 7)
    names = [f"{first}reg{i:02d}" for i in range(12) for first in "zay"]  # three partitions
    statuses = [Status.COMPLIANT, Status.NONCOMPLIANT]
    run = audit_run(1, *(verdict(n, statuses[i % 2]) for i, n in enumerate(names)))
    finished = finish(store, run)

    assert len(finished.verdicts) == 36
    stored = {r["RowKey"]: r["Status"] for r in table_rows("registries")}
    assert stored == {n: statuses[i % 2].value for i, n in enumerate(names)}
    assert len(table_rows("history")) == 36


def test_a_slice_is_built_while_the_one_before_is_sent(
    store: AuditStore, table_rows: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "_WRITE_SLICE", 7)
    build, send = writer_module.RunWriter._slice_rows, writer_module.RunWriter._send
    built: list[int] = []
    second_built = threading.Event()
    overlapped: list[bool] = []

    def building(writer: Any, items: Any, observed_at: datetime) -> Any:
        built.append(len(items))
        if len(built) == 2:
            second_built.set()
        return build(writer, items, observed_at)

    def sending(writer: Any, rows: Any) -> None:
        if not overlapped:  # the first slice's send waits for the second slice's rows
            overlapped.append(second_built.wait(timeout=5))
        send(writer, rows)

    monkeypatch.setattr(writer_module.RunWriter, "_slice_rows", building)
    monkeypatch.setattr(writer_module.RunWriter, "_send", sending)
    names = [f"{first}reg{i:02d}" for i in range(6) for first in "zay"]
    finish(store, audit_run(1, *(verdict(n, Status.COMPLIANT) for n in names)))

    assert overlapped == [True]
    assert built == [7, 7, 4]
    assert sorted(r["RowKey"] for r in table_rows("registries")) == sorted(names)


def test_finishing_the_same_run_twice_changes_nothing(store: AuditStore, table_rows: Any) -> None:
    finish(
        store,
        audit_run(1, verdict("acrold01", Status.COMPLIANT), verdict("acrkeep1", Status.COMPLIANT)),
    )
    run = audit_run(
        2,
        verdict("acrkeep1", Status.NONCOMPLIANT, LOGIN_MISSING),
        verdict("acrnew01", Status.UNKNOWN, "unknown:HTTP 429", sub=SUB_B),
    )
    first = finish(store, run)
    snapshot = (
        table_rows("registries"),
        table_rows("history"),
        store.get_summary(),
        store.list_runs(),
    )
    second = store.finish_run(run)

    assert second == first
    assert [v.registry.name for v in first.verdicts] == ["acrkeep1", "acrnew01", "acrold01"]
    assert first.verdicts[-1].status is Status.REMOVED
    assert (
        table_rows("registries"),
        table_rows("history"),
        store.get_summary(),
        store.list_runs(),
    ) == snapshot
    summary = store.get_summary()
    assert summary == summarize(first, generated_at=run.finished_at).to_dict()
    assert summary is not None
    assert summary["totals"] == {
        "total": 3,
        "compliant": 0,
        "noncompliant": 1,
        "unknown": 1,
        "removed": 1,
        "exempt": 0,
        "pending": 0,
    }


def race(stores: list[AuditStore], runs: list[AuditRun]) -> None:
    """Overlapping runs: each reads the stored state before any of them writes, then all
    write at once."""
    for store, run in zip(stores, runs, strict=True):
        store.start_run(run.run_id, run.started_at, run.trigger)
    writers = [s.run_writer(r.run_id) for s, r in zip(stores, runs, strict=True)]
    together = threading.Barrier(len(runs))
    failures: list[BaseException] = []

    def finish_one(writer: Any, run: AuditRun) -> None:
        try:
            together.wait()
            with writer:
                writer.finish(run)
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=finish_one, args=(w, r)) for w, r in zip(writers, runs, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_two_overlapping_runs_write_each_change_once(
    storage_connection_string: str, table_prefix: str, table_rows: Any
) -> None:
    stores = [
        AuditStore.from_connection_string(storage_connection_string, prefix=table_prefix)
        for _ in range(2)
    ]
    names = [f"acrrace{i:02d}" for i in range(29)]
    failing = [verdict(n, Status.NONCOMPLIANT, LOGIN_MISSING) for n in names]
    race(stores, [audit_run(1, *failing), audit_run(2, *failing)])
    # First sight of 29 registries: 29 changes, whichever run wrote them.
    assert len(table_rows("history")) == 29

    fixed = [verdict(n, Status.COMPLIANT) for n in names]
    race(stores, [audit_run(3, *fixed), audit_run(4, *fixed)])
    assert len(table_rows("history")) == 58
    for name in names:
        history = stores[0].registry_history(name)
        assert [(h["status"], h["previousStatus"]) for h in history] == [
            ("compliant", "noncompliant"),
            ("noncompliant", None),
        ]

    # Two runs that judged differently record both changes: neither is lost.
    race(
        stores,
        [
            audit_run(5, verdict(names[0], Status.UNKNOWN, "unknown:HTTP 429")),
            audit_run(6, verdict(names[0], Status.NONCOMPLIANT, LOGIN_MISSING)),
        ],
    )
    latest = {h["status"] for h in stores[0].registry_history(names[0])[:2]}
    assert latest == {"unknown", "noncompliant"}


def test_history_only_on_change(store: AuditStore) -> None:
    finish(store, audit_run(1, verdict("acrflip1", Status.COMPLIANT)))
    finish(store, audit_run(2, verdict("acrflip1", Status.COMPLIANT)))
    finish(store, audit_run(3, verdict("acrflip1", Status.NONCOMPLIANT, LOGIN_MISSING)))
    # Same status, other reason code: a change.
    finish(store, audit_run(4, verdict("acrflip1", Status.NONCOMPLIANT, "no_diagnostic_setting")))
    # Same codes, other details (and order): not a change.
    finish(
        store,
        audit_run(
            5,
            Verdict(
                registry("acrflip1"),
                Status.NONCOMPLIANT,
                (Reason("no_diagnostic_setting", "reworded"),),
            ),
        ),
    )

    history = store.registry_history("acrflip1")
    assert [(h["runId"], h["status"], h["previousStatus"]) for h in history] == [
        ("run004", "noncompliant", "noncompliant"),
        ("run003", "noncompliant", "compliant"),
        ("run001", "compliant", None),
    ]
    assert [h["runId"] for h in store.registry_history("acrflip1", limit=2)] == [
        "run004",
        "run003",
    ]
    current = store.get_registry("acrflip1")
    assert current is not None
    assert current["lastRunId"] == "run005"
    assert current["reasons"] == [{"code": "no_diagnostic_setting", "detail": "reworded"}]
    assert current["statusSince"] == (T0 + timedelta(hours=4, minutes=2)).isoformat()
    assert current["checkedAt"] == (T0 + timedelta(hours=5, minutes=2)).isoformat()


def test_registries_written_during_the_run_are_not_written_again(
    store: AuditStore, table_rows: Any
) -> None:
    early = verdict("acrearly1", Status.COMPLIANT)
    late = verdict("acrlate1", Status.NONCOMPLIANT, LOGIN_MISSING)
    run = audit_run(1, early, late)
    seen = T0 + timedelta(hours=1, minutes=1)  # judged a minute before the run ended
    store.start_run(run.run_id, run.started_at, run.trigger)
    with store.run_writer(run.run_id) as writer:
        writer.write([early], {}, observed_at=seen)
        stored = writer.finish(run)
    assert {v.registry.name for v in stored.verdicts} == {"acrearly1", "acrlate1"}
    first, second = store.get_registry("acrearly1"), store.get_registry("acrlate1")
    assert first is not None and second is not None
    assert first["checkedAt"] == first["statusSince"] == seen.isoformat()
    assert second["checkedAt"] == run.finished_at.isoformat()
    assert [h["observedAt"] for h in store.registry_history("acrearly1")] == [seen.isoformat()]
    assert len(table_rows("history")) == 2
    summary = store.get_summary()
    assert summary is not None and summary["totals"]["total"] == 2


def test_a_registry_whose_result_changed_after_it_was_written_is_written_again(
    store: AuditStore,
) -> None:
    finish(store, audit_run(1, verdict("acrturn1", Status.NONCOMPLIANT, LOGIN_MISSING)))
    written = verdict("acrturn1", Status.COMPLIANT)
    changed = verdict("acrturn1", Status.NONCOMPLIANT, "logging_interrupted")
    run = audit_run(2, changed)
    store.start_run(run.run_id, run.started_at, run.trigger)
    with store.run_writer(run.run_id) as writer:
        writer.write([written], {}, observed_at=run.started_at)
        writer.finish(run)
    current = store.get_registry("acrturn1")
    assert current is not None
    assert current["status"] == "noncompliant" and current["lastRunId"] == "run002"
    history = store.registry_history("acrturn1")
    # The entry of the rewrite follows from what this run wrote first, not from run001.
    assert [(h["runId"], h["status"], h["previousStatus"]) for h in history] == [
        ("run002", "noncompliant", "compliant"),
        ("run002", "compliant", "noncompliant"),
        ("run001", "noncompliant", None),
    ]


def test_the_writer_is_busy_while_a_batch_is_written(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = audit_run(1, verdict("acrbusy1", Status.COMPLIANT))
    store.start_run(run.run_id, run.started_at, run.trigger)
    release = threading.Event()
    with store.run_writer(run.run_id) as writer:
        assert not writer.busy  # nothing queued yet
        write = writer._write

        def held(*args: Any) -> None:
            release.wait(5)
            write(*args)

        monkeypatch.setattr(writer, "_write", held)
        writer.write([verdict("acrbusy1", Status.COMPLIANT)], {}, observed_at=T0)
        assert writer.busy
        release.set()
        monkeypatch.setattr(writer, "_write", write)
        writer.finish(run)
        assert not writer.busy
    assert store.get_registry("acrbusy1") is not None


def test_a_failed_background_write_fails_the_finish(
    storage_connection_string: str, table_prefix: str
) -> None:
    store = AuditStore.from_connection_string(storage_connection_string, prefix=table_prefix)
    run = audit_run(1, verdict("acrfail1", Status.COMPLIANT))
    store.start_run(run.run_id, run.started_at, run.trigger)
    with store.run_writer(run.run_id) as writer:
        # The table is gone under the writer: the service refuses its rows.
        TableServiceClient.from_connection_string(storage_connection_string).delete_table(
            table_prefix + "registries"
        )
        writer.write([verdict("acrfail1", Status.COMPLIANT)], {}, observed_at=T0)
        with pytest.raises(StorageError, match="writing registry status"):
            writer.finish(run)
    assert store.get_summary() is None  # nothing claims the run finished


def test_an_out_of_band_run_reads_only_its_own_registries(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    finish(
        store,
        audit_run(1, verdict("acrmany1", Status.COMPLIANT), verdict("acrmany2", Status.COMPLIANT)),
    )
    listed: list[Any] = []
    table = store.tables.registries
    real = table.list_entities

    def spy(*args: Any, **kwargs: Any) -> Any:
        listed.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(table, "list_entities", spy)
    event = replace(
        audit_run(2, verdict("acrmany1", Status.NONCOMPLIANT, LOGIN_MISSING)),
        inventoried_subscriptions=frozenset(),
        trigger="event",
    )
    store.start_run(event.run_id, event.started_at, event.trigger)
    store.finish_run(event, update_summary=False)
    assert listed == []  # point reads, not the whole table
    history = store.registry_history("acrmany1")
    assert [(h["status"], h["previousStatus"]) for h in history] == [
        ("noncompliant", "compliant"),
        ("compliant", None),
    ]
    other = store.get_registry("acrmany2")
    assert other is not None and other["status"] == "compliant"


def test_removed_only_in_listed_subscriptions(store: AuditStore) -> None:
    finish(
        store,
        audit_run(
            1,
            verdict("acrsuba1", Status.COMPLIANT),
            verdict("acrsuba2", Status.COMPLIANT),
            verdict("acrsubb1", Status.COMPLIANT, sub=SUB_B),
            verdict("acrsubb2", Status.COMPLIANT, sub=SUB_B),
        ),
    )
    # Subscription B could not be listed: its missing registry keeps its last state.
    second = finish(
        store,
        audit_run(
            2,
            verdict("acrsuba1", Status.COMPLIANT),
            verdict("acrsubb1", Status.COMPLIANT, sub=SUB_B),
            listed=frozenset({SUB_A}),
        ),
    )
    removed = [v for v in second.verdicts if v.status is Status.REMOVED]
    assert [v.registry for v in removed] == [registry("acrsuba2")]
    assert [r.code for r in removed[0].reasons] == ["removed"]
    statuses = {d["name"]: (d["status"], d["lastRunId"]) for d in all_registries(store)}
    assert statuses == {
        "acrsuba1": ("compliant", "run002"),
        "acrsuba2": ("removed", "run002"),
        "acrsubb1": ("compliant", "run002"),
        "acrsubb2": ("compliant", "run001"),
    }
    assert sorted(r.name for r in store.known_registries()) == ["acrsuba1", "acrsubb1", "acrsubb2"]

    # The audit reports B's registries unknown (subscription unreadable): that is stored.
    third = finish(
        store,
        audit_run(
            3,
            verdict("acrsuba1", Status.COMPLIANT),
            verdict("acrsubb1", Status.UNKNOWN, "unknown:subscription unreadable", sub=SUB_B),
            verdict("acrsubb2", Status.UNKNOWN, "unknown:subscription unreadable", sub=SUB_B),
            listed=frozenset({SUB_A}),
        ),
    )
    assert not [v for v in third.verdicts if v.status is Status.REMOVED]  # not again
    document = store.get_registry("acrsubb2")
    assert document is not None
    assert document["status"] == "unknown"

    # A removed registry that comes back is present again, with a history entry.
    finish(store, audit_run(4, verdict("acrsuba2", Status.NONCOMPLIANT, LOGIN_MISSING)))
    assert [(h["status"], h["previousStatus"]) for h in store.registry_history("acrsuba2")] == [
        ("noncompliant", "removed"),
        ("removed", "compliant"),
        ("compliant", None),
    ]


def test_a_run_that_dies_leaves_the_previous_summary(store: AuditStore) -> None:
    finish(store, audit_run(1, verdict("acrbase1", Status.COMPLIANT)))
    before = store.get_summary()
    store.start_run("run002", T0 + timedelta(hours=2), "timer")  # ...and the process dies

    assert store.get_summary() == before
    assert before is not None
    assert before["lastRun"]["id"] == "run001"
    runs, _ = store.list_runs(now=T0 + timedelta(hours=3))
    assert [(r["id"], r["status"], r["totals"]) for r in runs] == [
        ("run002", "running", None),
        ("run001", "succeeded", before["totals"]),
    ]
    # A day on, nothing will finish it: it is shown abandoned, the finished run unchanged.
    later, _ = store.list_runs(now=T0 + timedelta(hours=26, minutes=1))
    assert [(r["id"], r["status"]) for r in later] == [
        ("run002", "abandoned"),
        ("run001", "succeeded"),
    ]


def test_run_records_keep_the_error_count_when_errors_are_cut(store: AuditStore) -> None:
    errors = tuple(f"error {i}: " + "x" * 5000 for i in range(100))
    huge_reason = Reason("unknown:HTTP 500", "d" * 100_000)
    finish(
        store,
        audit_run(1, Verdict(registry("acrhuge1"), Status.UNKNOWN, (huge_reason,)), errors=errors),
    )

    (run,), _ = store.list_runs()
    assert run["errorCount"] == 100
    assert 0 < len(run["errors"]) < 100
    assert run["errorsOmitted"] == 100 - len(run["errors"])
    assert run["errors"][0] == "error 0: " + "x" * (2000 - len("error 0: "))
    document = store.get_registry("acrhuge1")
    assert document is not None
    assert document["reasons"][0]["code"] == "unknown:HTTP 500"
    assert 0 < len(document["reasons"][0]["detail"]) <= 32_000


def test_an_oversized_summary_is_trimmed_not_lost(store: AuditStore) -> None:
    # Each registry has its own long `unknown:<why>` code: far more than 12 x 64 KiB of JSON.
    verdicts = [
        verdict(f"acrdark{i:03d}", Status.UNKNOWN, f"unknown:{i:03d} " + "w" * 1500)
        for i in range(300)
    ]
    finish(store, audit_run(1, *verdicts))

    summary = store.get_summary()
    assert summary is not None
    assert summary["totals"]["unknown"] == 300
    assert summary["omitted"]["reasons"] == 300 - len(summary["byReason"])
    assert 0 < len(summary["byReason"]) < 300
    assert summary["bySubscription"][0]["unknown"] == 300


def test_paging_runs(store: AuditStore) -> None:
    for number in range(1, 6):
        finish(store, audit_run(number))
    seen: list[str] = []
    token = None
    sizes = []
    while True:
        items, token = store.list_runs(limit=2, continuation=token)
        sizes.append(len(items))
        seen.extend(item["id"] for item in items)
        if token is None:
            break
    assert sizes == [2, 2, 1]
    assert seen == ["run005", "run004", "run003", "run002", "run001"]


def test_tokens_are_checked(store: AuditStore) -> None:
    finish(store, audit_run(1, *(verdict(f"acrpage{i}", Status.COMPLIANT) for i in range(3))))
    _, registries_token = store.list_registries(page_size=1)
    assert registries_token is not None
    with pytest.raises(InvalidContinuationToken):
        store.list_runs(continuation=registries_token)
    with pytest.raises(InvalidContinuationToken):
        store.list_registries(continuation="garbage!")
    with pytest.raises(ValueError, match="page_size"):
        store.list_registries(page_size=0)


def test_filters(store: AuditStore) -> None:
    finish(
        store,
        audit_run(
            1,
            verdict("acrfilt1", Status.COMPLIANT),
            verdict("acrfilt2", Status.NONCOMPLIANT, LOGIN_MISSING),
            verdict("acrfilt3", Status.NONCOMPLIANT, LOGIN_MISSING, sub=SUB_B),
            verdict("acrfilt4", Status.NONCOMPLIANT, "no_diagnostic_setting", sub=SUB_B),
            verdict("acrfilt5", Status.NONCOMPLIANT, LOGIN_MISSING, "metrics_missing"),
        ),
    )

    def names(**filters: Any) -> list[str]:
        return [item["name"] for item in all_registries(store, **filters)]

    assert names(status="compliant") == ["acrfilt1"]
    assert names(status=Status.NONCOMPLIANT, subscription=SUB_B) == ["acrfilt3", "acrfilt4"]
    assert names(subscription=SUB_A.upper()) == ["acrfilt1", "acrfilt2", "acrfilt5"]
    assert names(reason=LOGIN_MISSING) == ["acrfilt2", "acrfilt3", "acrfilt5"]
    assert names(reason=LOGIN_MISSING, subscription=SUB_A) == ["acrfilt2", "acrfilt5"]
    assert names(reason="category_missing") == []  # codes match exactly

    # The reason filter runs client-side, yet pages are exact and resume mid-service-page.
    page1, token = store.list_registries(reason=LOGIN_MISSING, page_size=2)
    assert [i["name"] for i in page1] == ["acrfilt2", "acrfilt3"]
    page2, token = store.list_registries(reason=LOGIN_MISSING, page_size=2, continuation=token)
    assert [i["name"] for i in page2] == ["acrfilt5"]
    assert token is None


@pytest.mark.parametrize(
    "hostile",
    [
        "' or 1 eq 1",
        "' or '1' eq '1",
        "x' or PartitionKey ne '",
        "') or (1 eq 1",
        "@status",
        "",
    ],
)
def test_hostile_filter_values_match_nothing(store: AuditStore, hostile: str) -> None:
    finish(store, audit_run(1, verdict("acrfilt1", Status.COMPLIANT)))
    assert all_registries(store, subscription=hostile) == []
    assert all_registries(store, reason=hostile) == []
    with pytest.raises(ValueError):
        store.list_registries(status=hostile)


def test_known_registries(store: AuditStore) -> None:
    finish(
        store,
        audit_run(1, verdict("acrknow1", Status.COMPLIANT), verdict("acrknow2", Status.COMPLIANT)),
    )
    finish(store, audit_run(2, verdict("acrknow1", Status.UNKNOWN, "unknown:x")))
    assert store.known_registries() == [registry("acrknow1")]


def test_a_registry_is_judged_again_from_the_settings_its_row_keeps(store: AuditStore) -> None:
    """What a change-driven run does for a registry whose settings did not change: judge it
    from the settings the last run read, with the same result as that run."""
    cases = {f"acrcase{i:03d}": case for i, case in enumerate(CASES)}
    judged = {
        name: judge(registry(name), c.settings, c.categories, c.policy, read_error=c.read_error)
        for name, c in cases.items()
    }
    waiver = exemptions.Exemption(
        "migration", exemptions.Category.WAIVER, T0 + timedelta(days=30), "setting"
    )
    # One exempt registry that would be compliant and one whose read failed.
    waived = [
        next(n for n, v in judged.items() if v.status is status)
        for status in (Status.COMPLIANT, Status.UNKNOWN)
    ]
    exempted = {normalize_id(registry(n).id): waiver for n in waived}
    verdicts = exemptions.apply(judged.values(), exempted, now=T0)
    assert {Status.COMPLIANT, Status.NONCOMPLIANT, Status.UNKNOWN, Status.EXEMPT} == {
        v.status for v in verdicts
    }
    finish(store, audit_run(1, *verdicts))

    with store.run_writer("run002") as writer:
        for name, case in cases.items():
            stored = writer.stored_settings(keys.registry_key(name))
            original = judged[name]
            if original.status is Status.UNKNOWN:
                assert stored is None, name  # not read: not known, not "no settings"
                continue
            assert stored == case.settings, name  # `()` for none: distinct from None
            again = judge(registry(name), stored, case.categories, case.policy)
            assert again.status is original.status, name
            assert [r.code for r in again.reasons] == [r.code for r in original.reasons], name

    # Rows are replaced whole: a registry whose next read fails is no longer known.
    unknown = verdict("acrcase001", Status.UNKNOWN, "unknown:throttled")
    finish(store, audit_run(2, unknown, listed=frozenset()))
    with store.run_writer("run003") as writer:
        assert writer.stored_settings(keys.registry_key("acrcase001")) is None
        assert writer.stored_settings(keys.registry_key("acrcase002")) == CASES[2].settings


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_errors_are_wrapped_without_secrets(table_prefix: str) -> None:
    port = _closed_port()
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    service = TableServiceClient.from_connection_string(connection_string, retry_total=0)
    # A run's writes ride out an outage (see test_storage_retry); a short one here.
    store = AuditStore(service, prefix=table_prefix, retry=StorageRetry(0.3, first_delay=0.1))
    for call in (store.get_summary, store.ping, lambda: store.start_run("r", T0, "cli")):
        with pytest.raises(StorageError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith("Table Storage: ")
        assert "could not be reached" in message
        assert DEV_KEY not in message
        assert "AccountKey" not in message


def test_a_malformed_connection_string_is_not_echoed(table_prefix: str) -> None:
    with pytest.raises(StorageError) as caught:
        AuditStore.from_connection_string("AccountKey=sekrit;nonsense", prefix=table_prefix)
    assert "sekrit" not in str(caught.value)


def test_prefix_is_validated(storage_connection_string: str) -> None:
    for prefix in ("", "1abc", "a-b", "a" * 60):
        with pytest.raises(ValueError):
            AuditStore.from_connection_string(storage_connection_string, prefix=prefix)


def _action(name: str, at: datetime, result: str = "applied") -> Any:
    """The columns and keys a remediation action is stored and found by."""
    return {
        "id": at.strftime("%Y%m%dT%H%M%SZ") + "-" + name[-4:],
        "at": at.isoformat(),
        "actor": "timer",
        "registry": name,
        "registryId": registry(name).id,
        "result": result,
        "settingName": "acr-auditor",
        "pendingSince": at.isoformat() if result == "applied" else None,
    }


def test_the_registries_remediated_since_an_instant_are_read_at_once(
    store: AuditStore, table_rows: Any
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=90)
    assert store.recent_remediations(since) == frozenset()  # no actions table yet
    log = ActionLog(store.tables)
    log.record(_action("acrfixed1", since + timedelta(minutes=10)))
    log.record(_action("acrrefused", since + timedelta(minutes=20), result="forbidden"))
    log.record(_action("acrbefore", since - timedelta(minutes=1)))
    # A row whose document cannot be read names no registry, and fails nothing.
    broken = _action("acrbroken", since + timedelta(minutes=30))
    log.record(broken)
    [row] = [r for r in table_rows("actions") if r["Registry"] == "acrbroken"]
    actions = store.tables.service.get_table_client(f"{store.tables.prefix}actions")
    actions.upsert_entity({**row, "Document": "{not json"})
    assert store.recent_remediations(since) == {normalize_id(registry("acrfixed1").id)}
