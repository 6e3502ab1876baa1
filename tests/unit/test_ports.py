"""The real adapters, and the SDK clients behind `ArmClients`, have every member the
Protocols of `auditor.ports` name.

mypy checks the signatures where the adapters are passed in (`audit.py`, `cli.py`,
`runtime.py`); this checks at run time what mypy cannot see: the multi-API monitor client's
operations are untyped, and an SDK upgrade that renames one fails here first. Building the
clients sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.data.tables import TableServiceClient
from azure.mgmt.resourcegraph.models import QueryResponse

from auditor import ports
from auditor.azure.clients import ArmClients
from auditor.azure.logs import LogsReader, QueryOutcome
from auditor.pacing import TokenBucketPacer
from auditor.storage import AuditStore, RunWriter

SUB = "11111111-1111-1111-1111-111111111111"
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


class NoToken:
    """A credential that is never asked: building a client asks for no token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise AssertionError("no token is asked for")


@pytest.fixture(scope="module")
def arm() -> Iterator[ArmClients]:
    clients = ArmClients(
        credential=NoToken(),
        endpoint="https://127.0.0.1:1",
        audience="https://management.azure.com",
        pacer=TokenBucketPacer(rate=1.0, burst=1),
    )
    yield clients
    clients.close()


# (what, the object, the Protocol it must fit)
ARM: list[tuple[str, Callable[[ArmClients], object], type]] = [
    ("ArmClients", lambda a: a, ports.WorkspaceReads),
    ("ArmClients", lambda a: a, ports.SettingsReads),
    ("ArmClients", lambda a: a, ports.SettingsWrites),
    ("ArmClients", lambda a: a, ports.InventoryReads),
    ("ArmClients", lambda a: a, ports.TrailReads),
    ("workspaces()", lambda a: a.workspaces(SUB), ports.WorkspaceClient),
    ("workspaces().workspaces", lambda a: a.workspaces(SUB).workspaces, ports.ByName),
    ("monitor()", lambda a: a.monitor(), ports.MonitorClient),
    ("monitor()", lambda a: a.monitor(), ports.MonitorWriteClient),
    (
        "monitor().diagnostic_settings",
        lambda a: a.monitor().diagnostic_settings,
        ports.SettingWrites,
    ),
    ("monitor().diagnostic_settings", lambda a: a.monitor().diagnostic_settings, ports.ByResource),
    (
        "monitor().diagnostic_settings_category",
        lambda a: a.monitor().diagnostic_settings_category,
        ports.ByResource,
    ),
    ("registries()", lambda a: a.registries(SUB), ports.RegistryClient),
    (
        "registries().registries",
        lambda a: a.registries(SUB).registries,
        ports.RegistryOperations,
    ),
    ("subscriptions()", lambda a: a.subscriptions(), ports.SubscriptionsClient),
    ("subscriptions().subscriptions", lambda a: a.subscriptions().subscriptions, ports.Listing),
    ("resource_graph()", lambda a: a.resource_graph(), ports.GraphClient),
    ("ArmClients", lambda a: a, ports.ActivityLogReads),
    ("activity_monitor()", lambda a: a.activity_monitor(SUB), ports.ActivityLogClient),
    (
        "activity_monitor().activity_logs",
        lambda a: a.activity_monitor(SUB).activity_logs,
        ports.ActivityLogOperations,
    ),
]


@pytest.mark.parametrize(
    ("what", "made", "protocol"), ARM, ids=[f"{w}-{p.__name__}" for w, _, p in ARM]
)
def test_arm_clients_fit(
    arm: ArmClients, what: str, made: Callable[[ArmClients], object], protocol: type
) -> None:
    assert isinstance(made(arm), protocol), f"{what} is no {protocol.__name__}"


def test_a_resource_graph_page_fits() -> None:
    page = QueryResponse(total_records=0, count=0, result_truncated="false", data={})
    assert isinstance(page, ports.GraphPage)


def test_the_logs_reader_and_its_answers_fit() -> None:
    with LogsReader(NoToken()) as reader:
        assert isinstance(reader, ports.LogQueries)
    assert isinstance(QueryOutcome(), ports.QueryAnswer)


def test_the_store_and_its_run_writer_fit() -> None:
    store = AuditStore(TableServiceClient.from_connection_string(AZURITE), prefix="t")
    assert isinstance(store, ports.RunStore)
    assert isinstance(store.reader, ports.HistoryReads)
    with RunWriter(store.tables, "run", {}) as writer:
        assert isinstance(writer, ports.VerdictWriter)


@pytest.mark.parametrize(
    "protocol",
    [
        ports.WorkspaceReads,
        ports.LogQueries,
        ports.RunStore,
        ports.VerdictWriter,
        ports.HistoryReads,
    ],
    ids=lambda p: p.__name__,
)
def test_an_adapter_missing_a_member_does_not_fit(protocol: type) -> None:
    assert not isinstance(QueryOutcome(), protocol)
