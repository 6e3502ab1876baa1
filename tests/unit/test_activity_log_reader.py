"""The activity-log adapter on plain fakes: events in the SDK's own model (deserialized from
the REST shape), malformed ones skipped and counted, failures turned into a ChangeLog error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import DeserializationError, HttpResponseError
from azure.mgmt.monitor.v2015_04_01.models import EventData

from auditor import ports
from auditor.azure.activity_log import PROVIDERS, ActivityLogReader, change_from_event
from auditor.change_feed import ChangeKind

NOW = datetime.now(UTC)
SUB = "11111111-1111-1111-1111-111111111111"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-Prod"
REG = f"{RG}/providers/Microsoft.ContainerRegistry/registries/Acr1"
SETTING = f"{REG}/providers/microsoft.insights/diagnosticSettings/To-Law"


def event(**fields: Any) -> EventData:
    base: dict[str, Any] = {
        "eventTimestamp": (NOW - timedelta(minutes=5)).isoformat(),
        "operationName": {"value": "Microsoft.Insights/diagnosticSettings/write"},
        "resourceId": SETTING,
        "status": {"value": "Succeeded"},
        "caller": "someone@contoso.com",
        "correlationId": "ABC-1",
    }
    base.update(fields)
    return EventData.deserialize({k: v for k, v in base.items() if v is not None})


class FakeOperations:
    def __init__(self, pages: dict[str, list[Any]]) -> None:
        self.pages = pages
        self.filters: list[str] = []

    def list(self, filter: str, select: str | None = None, **options: Any) -> Iterator[object]:
        self.filters.append(filter)
        provider = filter.rsplit("'", 2)[-2]
        for item in self.pages.get(provider, []):
            if isinstance(item, Exception):
                raise item
            yield item


class FakeClients:
    def __init__(self, pages: dict[str, list[Any]]) -> None:
        self.operations = FakeOperations(pages)
        self.subscriptions: list[str] = []

    def activity_monitor(self, subscription_id: str, /) -> FakeClients:
        self.subscriptions.append(subscription_id)
        return self

    @property
    def activity_logs(self) -> FakeOperations:
        return self.operations


def test_a_setting_write_is_a_change_of_its_registry() -> None:
    change, reason = change_from_event(event(), SUB)
    assert reason == "" and change is not None
    assert change.registry_id == REG.lower()
    assert change.kind is ChangeKind.SETTING_WRITTEN and change.setting_name == "To-Law"
    assert change.at == NOW - timedelta(minutes=5) and change.status == "Succeeded"
    assert change.caller == "someone@contoso.com" and change.correlation_id == "abc-1"


def test_operation_names_compare_without_case() -> None:
    change, _ = change_from_event(
        event(operationName={"value": "MICROSOFT.CONTAINERREGISTRY/REGISTRIES/DELETE"},
              resourceId=REG.upper()),
        SUB,
    )  # fmt: skip
    assert change is not None and change.kind is ChangeKind.REGISTRY_DELETED
    assert change.registry_id == REG.lower() and change.setting_name is None


def test_malformed_and_foreign_events_are_skipped_with_a_reason() -> None:
    vm = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"
    cases = {
        "other_operation": event(operationName={"value": "Microsoft.Insights/alertRules/write"}),
        "no_operation": event(operationName={"localizedValue": "no value"}),
        "no_timestamp": event(eventTimestamp=None),
        "no_resource_id": event(resourceId=None),
        "not_a_registry": event(
            resourceId=f"{vm}/providers/microsoft.insights/diagnosticSettings/x"
        ),
        "setting_on_registry_op": event(
            operationName={"value": "Microsoft.ContainerRegistry/registries/write"}
        ),
        "hostile": event(resourceId=REG + "/../../x' or 1 eq 1\n"),
        "other_subscription": event(resourceId=SETTING.replace(SUB, SUB.replace("1", "2"))),
    }
    reasons = {name: change_from_event(e, SUB) for name, e in cases.items()}
    assert all(change is None for change, _ in reasons.values())
    assert {name: why for name, (_, why) in reasons.items()} == {
        "other_operation": "other_operation",
        "no_operation": "other_operation",
        "no_timestamp": "no_timestamp",
        "no_resource_id": "no_resource_id",
        "not_a_registry": "not_a_registry",
        "setting_on_registry_op": "not_a_registry",
        "hostile": "not_a_registry",
        "other_subscription": "other_subscription",
    }


def test_both_providers_are_listed_and_skips_are_counted() -> None:
    registry_write = event(
        operationName={"value": "Microsoft.ContainerRegistry/registries/write"}, resourceId=REG
    )
    clients = FakeClients(
        {
            "Microsoft.ContainerRegistry": [registry_write],
            "Microsoft.Insights": [event(), event(resourceId=None), event(resourceId=None)],
        }
    )
    assert isinstance(clients, ports.ActivityLogReads)
    reader = ActivityLogReader(clients)
    assert isinstance(reader, ports.ChangeReads)
    log = reader.changes(SUB, NOW - timedelta(hours=1), NOW)
    assert log.error is None and log.subscription_id == SUB
    assert [c.kind for c in log.changes] == [
        ChangeKind.REGISTRY_WRITTEN,
        ChangeKind.SETTING_WRITTEN,
    ]
    assert log.skipped == {"no_resource_id": 2}
    assert [f.rsplit("'", 2)[-2] for f in clients.operations.filters] == list(PROVIDERS)
    assert all(f.startswith("eventTimestamp ge '") for f in clients.operations.filters)


def test_a_failed_listing_makes_the_whole_log_an_error() -> None:
    failing = FakeClients({"Microsoft.Insights": [event(), HttpResponseError("boom")]})
    log = ActivityLogReader(failing).changes(SUB, NOW - timedelta(hours=1), NOW)
    assert log.changes == () and log.error == "HTTP ?: HttpResponseError"  # describe_error's
    garbled = FakeClients({"Microsoft.ContainerRegistry": [DeserializationError("x")]})
    log = ActivityLogReader(garbled).changes(SUB, NOW - timedelta(hours=1), NOW)
    assert log.error is not None and log.error.startswith("invalid response")


def test_more_events_than_the_cap_is_an_error_not_a_partial_feed() -> None:
    clients = FakeClients({"Microsoft.ContainerRegistry": [], "Microsoft.Insights": [event()] * 4})
    log = ActivityLogReader(clients, max_events=3).changes(SUB, NOW - timedelta(hours=1), NOW)
    assert log.error == "more than 3 events in the window" and log.changes == ()
