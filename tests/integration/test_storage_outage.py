"""A short Table Storage outage in the middle of an audit: Azurite's process is stopped and
started again on the same ports while the run goes on, and the run rides it out."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from auditor import audit as audit_module
from auditor.audit import run_audit
from auditor.runtime import build_arm_clients, build_credential, build_store
from auditor.settings import Settings
from auditor.storage import AuditStore, RunWriter
from emulator import azurite
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]
OUTAGE_SECONDS = 3.0


@pytest.fixture
def own_azurite() -> Iterator[azurite.Azurite]:
    """An Azurite of this test's own that keeps its data on disk across a restart (the
    session's one keeps it in memory, and other tests use it)."""
    server = azurite.start(persistent=True)
    try:
        yield server
    finally:
        server.stop()


class Outage:
    """Stops Azurite once, and starts it again `OUTAGE_SECONDS` later."""

    def __init__(self, server: azurite.Azurite) -> None:
        self._server = server
        self.back = threading.Timer(OUTAGE_SECONDS, server.resume)

    def begin(self) -> None:
        if not self.back.is_alive() and not self.back.finished.is_set():
            self._server.halt()
            self.back.start()


class OutageAtFirstWrite:
    """The store, with its Azurite stopped as the run hands it its first registries: their
    writes (transactions, posted once by the SDK) and all that follows meet the outage."""

    def __init__(self, store: AuditStore, outage: Outage) -> None:
        self._store = store
        self._outage = outage

    def run_writer(self, run_id: str, **options: Any) -> RunWriter:
        writer = self._store.run_writer(run_id, **options)
        write = writer.write

        def write_after_outage(*args: Any, **kwargs: Any) -> None:
            self._outage.begin()
            write(*args, **kwargs)

        writer.write = write_after_outage  # type: ignore[method-assign]
        return writer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_short_outage_mid_run_leaves_every_registry_stored(
    local_azure: LocalAzure, own_azurite: azurite.Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Registries go to the store after every read, as in a long run.
    monkeypatch.setattr(audit_module, "WRITE_EVERY_SECONDS", 0.0)
    _, env = local_azure()
    settings = Settings.from_env({**env, "AUDITOR_STORAGE": own_azurite.connection_string})
    store = build_store(settings)
    outage = Outage(own_azurite)
    clients = build_arm_clients(settings, build_credential())
    try:
        run = run_audit(
            clients, settings.policy, store=OutageAtFirstWrite(store, outage), trigger="test"
        )
    finally:
        clients.close()
        outage.back.join()
    assert outage.back.finished.is_set()  # the outage did happen, during the run

    judged = {v.registry.name for v in run.verdicts}
    assert len(judged) == 6
    stored, token = store.list_registries(page_size=100)
    assert token is None
    assert {r["name"]: r["lastRunId"] for r in stored} == dict.fromkeys(judged, run.run_id)
    runs, _ = store.list_runs()
    assert [(r["id"], r["status"]) for r in runs] == [(run.run_id, run.status.value)]
    summary = store.get_summary()
    assert summary is not None and summary["lastRun"]["id"] == run.run_id
