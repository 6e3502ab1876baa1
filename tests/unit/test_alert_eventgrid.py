"""Event Grid resource events -> the registry whose diagnostic setting changed.

Built from Microsoft's official example payloads (docs/reference/examples/eventgrid-*.json), in
both the Event Grid schema and CloudEvents 1.0, with the subject pointed at a diagnostic setting.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auditor.alerts.eventgrid import registry_from_event, setting_change_from_event
from auditor.alerts.model import SettingOperation

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "reference" / "examples"
SUB = "0000aaaa-0000-0000-0000-000000000001"
REGISTRY = (
    f"/subscriptions/{SUB}/resourceGroups/rg-prod/providers/"
    "Microsoft.ContainerRegistry/registries/acrprod01"
)
SETTING = f"{REGISTRY}/providers/Microsoft.Insights/diagnosticSettings/to-law"


def example(name: str, subject: str = SETTING) -> dict[str, Any]:
    """The official example, with every placeholder resource id pointing at `subject`."""
    [event] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    event = copy.deepcopy(event)
    event["subject"] = subject
    event["data"]["resourceUri"] = subject
    event["data"]["authorization"]["scope"] = subject
    return event


FILES = {
    "write": "eventgrid-ResourceWriteSuccess.json",
    "delete": "eventgrid-ResourceDeleteSuccess.json",
    "write-cloudevents": "eventgrid-ResourceWriteSuccess.cloudevents.json",
    "delete-cloudevents": "eventgrid-ResourceDeleteSuccess.cloudevents.json",
}


@pytest.mark.parametrize("name", FILES.values(), ids=FILES.keys())
def test_official_examples_on_a_registry_setting(name: str) -> None:
    assert registry_from_event(example(name)) == REGISTRY


@pytest.mark.parametrize("name", FILES.values(), ids=FILES.keys())
def test_official_examples_as_published_are_not_ours(name: str) -> None:
    # As published they concern a storage account, with `{placeholders}` for ids.
    [event] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    assert registry_from_event(event) is None
    assert setting_change_from_event(event) is None


def test_setting_change_from_a_delete() -> None:
    event = example(FILES["delete"])
    event["data"]["claims"]["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] = (
        "bob@contoso.com"
    )
    event["data"]["correlationId"] = "c0ffee"
    change = setting_change_from_event(event)
    assert change is not None
    assert change.registry_id == REGISTRY
    assert change.operation is SettingOperation.DELETE
    assert change.setting_name == "to-law"
    assert change.caller == "bob@contoso.com"
    assert change.at == datetime(2018, 7, 19, 19, 24, 12, 763881, tzinfo=UTC)
    assert change.source == "eventgrid"
    assert change.correlation_id == "c0ffee"


def test_setting_change_from_a_cloudevents_write() -> None:
    change = setting_change_from_event(example(FILES["write-cloudevents"]))
    assert change is not None
    assert change.operation is SettingOperation.WRITE
    assert change.at == datetime(2018, 7, 19, 18, 38, 4, 611735, tzinfo=UTC)
    assert change.caller == "{user-name}"  # the example's placeholder upn


def test_case_insensitive_and_canonical_id() -> None:
    subject = SETTING.lower()  # Azure sends `resourcegroups` in lower case at times
    assert registry_from_event(example(FILES["write"], subject)) == (
        f"/subscriptions/{SUB}/resourceGroups/rg-prod/providers/"
        "Microsoft.ContainerRegistry/registries/acrprod01"
    )
    upper = example(FILES["delete"], SETTING.upper())
    assert registry_from_event(upper) == (
        f"/subscriptions/{SUB}/resourceGroups/RG-PROD/providers/"
        "Microsoft.ContainerRegistry/registries/ACRPROD01"
    )


def test_event_type_is_case_insensitive() -> None:
    event = example(FILES["write"])
    event["eventType"] = event["eventType"].upper()
    assert registry_from_event(event) == REGISTRY


def test_subject_falls_back_to_resource_uri() -> None:
    event = example(FILES["write"])
    del event["subject"]
    assert registry_from_event(event) == REGISTRY


@pytest.mark.parametrize(
    "subject",
    [
        REGISTRY,  # the registry itself, not its diagnostic setting
        f"{REGISTRY}/providers/Microsoft.Insights/diagnosticSettings",  # no setting name
        f"{REGISTRY}/providers/Microsoft.Insights/diagnosticSettings/a/b",
        f"{REGISTRY}/replications/westus/providers/Microsoft.Insights/diagnosticSettings/x",
        SETTING.replace(
            "Microsoft.ContainerRegistry/registries", "Microsoft.Storage/storageAccounts"
        ),
        SETTING.replace(SUB, "not-a-guid"),
        SETTING.replace("acrprod01", "acr"),  # registry names have 5-50 characters
        SETTING.replace("acrprod01", "acr-prod"),  # ... alphanumerics only
        SETTING.replace("acrprod01", "..%2f.."),
        "/subscriptions/../" + SETTING,
        SETTING + "?api-version=2021-05-01-preview",
        SETTING + "\n",
        " " * 5000 + SETTING,
        SETTING + "x" * 2000,
        "",
    ],
)
def test_other_subjects_are_not_ours(subject: str) -> None:
    event = example(FILES["write"], subject)
    assert registry_from_event(event) is None
    assert setting_change_from_event(event) is None


@pytest.mark.parametrize(
    "event_type",
    [
        "Microsoft.Resources.ResourceWriteFailure",
        "Microsoft.Resources.ResourceActionSuccess",
        "Microsoft.EventGrid.SubscriptionValidationEvent",
        "",
        None,
        42,
    ],
)
def test_other_event_types_are_not_ours(event_type: object) -> None:
    event = example(FILES["write"])
    event["eventType"] = event_type
    assert registry_from_event(event) is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(subject=None, data=None),
        lambda e: e.update(subject=123),
        lambda e: e.update(subject=["x"]),
        lambda e: e.update(data="not an object"),
        lambda e: e.update(eventTime="yesterday"),
        lambda e: e.update(eventTime=None),
        lambda e: e["data"].update(claims="not an object"),
        lambda e: e["data"].update(claims={"name": 7, "appid": ["x"]}),
        lambda e: e["data"].update(correlationId={"x": 1}),
    ],
)
def test_malformed_events_never_crash(mutate: Any) -> None:
    event = example(FILES["delete"])
    mutate(event)
    registry_from_event(event)  # None or an id; never an exception
    change = setting_change_from_event(event)
    assert change is None or change.registry_id == REGISTRY


def test_naive_or_bad_times_are_dropped() -> None:
    event = example(FILES["delete"])
    event["eventTime"] = "2018-07-19T19:24:12"
    change = setting_change_from_event(event)
    assert change is not None and change.at is None


@pytest.mark.parametrize("not_an_event", [None, "text", 5, ["a"], [{"subject": SETTING}]])
def test_non_objects_raise_value_error(not_an_event: Any) -> None:
    with pytest.raises(ValueError, match="JSON object"):
        registry_from_event(not_an_event)


def test_hostile_caller_is_cleaned_and_bounded() -> None:
    event = example(FILES["delete"])
    claims = event["data"]["claims"]
    claims["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] = (
        "eve\x1b[31m\n<!channel>" + "x" * 500
    )
    change = setting_change_from_event(event)
    assert change is not None
    assert "\x1b" not in change.caller and "\n" not in change.caller
    assert len(change.caller) <= 200
