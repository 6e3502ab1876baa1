"""The Activity Log API through azure-mgmt-monitor 6.0.2 (`activity_logs.list`): events for
the world's changes and the scenario's past ones, the filter grammar and its errors, paging,
the ingestion delay. Every instant is derived from the emulator's clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
import yaml
from azure.core.exceptions import HttpResponseError
from azure.identity import DefaultAzureCredential
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.monitor.models import DiagnosticSettingsResource, LogSettings

from auditor.azure.errors import describe_error
from emulator.testing import RunningEmulator, sdk_environment, start_emulator

pytestmark = pytest.mark.integration

SMALL = Path(__file__).resolve().parents[3] / "emulator" / "scenarios" / "small.yaml"
SUB2 = "22222222-2222-2222-2222-222222222222"
RG = f"/subscriptions/{SUB2}/resourceGroups/rg-dev"
NOSETTING = f"{RG}/providers/Microsoft.ContainerRegistry/registries/acrnosetting01"
LAW = (
    f"/subscriptions/{SUB2}/resourceGroups/rg-dev-monitoring/providers"
    "/Microsoft.OperationalInsights/workspaces/law-dev"
)
GONE = f"{RG}/providers/Microsoft.ContainerRegistry/registries/acrgoneaway01"


def odata_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def window(emu: RunningEmulator, back: timedelta = timedelta(hours=1), *extra: str) -> str:
    now = emu.world.now()
    clauses = [
        f"eventTimestamp ge '{odata_time(now - back)}'",
        f"eventTimestamp le '{odata_time(now)}'",
        *extra,
    ]
    return " and ".join(clauses)


@pytest.fixture
def emu(fresh_emulator: Callable[..., RunningEmulator]) -> RunningEmulator:
    return fresh_emulator()


def client_for(emu: RunningEmulator, sub: str = SUB2) -> MonitorManagementClient:
    return MonitorManagementClient(DefaultAzureCredential(), sub, base_url=emu.base_url)


def put_setting(emu: RunningEmulator, name: str = "to-law") -> None:
    body = DiagnosticSettingsResource(
        workspace_id=LAW, logs=[LogSettings(category_group="allLogs", enabled=True)]
    )
    client_for(emu).diagnostic_settings.create_or_update(NOSETTING, name, body)


def test_a_setting_write_and_delete_are_listed_as_started_then_succeeded(
    emu: RunningEmulator,
) -> None:
    put_setting(emu)
    emu.world.advance(timedelta(minutes=3))
    client_for(emu).diagnostic_settings.delete(NOSETTING, "to-law")
    events = list(client_for(emu).activity_logs.list(filter=window(emu)))
    ops = [(e.operation_name.value, e.status.value) for e in events]
    assert ops == [
        ("Microsoft.Insights/diagnosticSettings/delete", "Succeeded"),
        ("Microsoft.Insights/diagnosticSettings/delete", "Started"),
        ("Microsoft.Insights/diagnosticSettings/write", "Succeeded"),
        ("Microsoft.Insights/diagnosticSettings/write", "Started"),
    ]
    write = events[2]
    assert (
        write.resource_id == f"{NOSETTING}/providers/microsoft.insights/diagnosticSettings/to-law"
    )
    assert write.resource_provider_name.value == "microsoft.insights"
    assert write.caller == emu.world.identity.principal_id
    assert write.subscription_id == SUB2 and write.resource_group_name == "rg-dev"
    assert write.correlation_id == events[3].correlation_id != events[0].correlation_id
    assert write.event_data_id != events[3].event_data_id
    assert write.event_timestamp == emu.world.now() - timedelta(minutes=3)
    assert write.submission_timestamp == write.event_timestamp  # no ingestion delay by default
    assert write.operation_name.localized_value == "Create or update resource diagnostic setting"


def test_registries_added_and_removed_are_listed_by_their_provider(emu: RunningEmulator) -> None:
    emu.world.add_registry(
        {"name": "acrbrandnew01", "subscription": SUB2, "resourceGroup": "rg-dev"}
    )
    emu.world.advance(timedelta(minutes=1))
    emu.world.remove_registry("acrnosetting01")
    put_setting_elsewhere = "resourceProvider eq 'Microsoft.ContainerRegistry'"
    events = list(
        client_for(emu).activity_logs.list(
            filter=window(emu, timedelta(hours=1), put_setting_elsewhere)
        )
    )
    finals = [
        (e.operation_name.value, e.resource_id) for e in events if e.status.value == "Succeeded"
    ]
    assert finals == [
        ("Microsoft.ContainerRegistry/registries/delete", NOSETTING),
        (
            "Microsoft.ContainerRegistry/registries/write",
            f"{RG}/providers/Microsoft.ContainerRegistry/registries/acrbrandnew01",
        ),
    ]
    insights = window(emu, timedelta(hours=1), "resourceProvider eq 'microsoft.insights'")
    assert list(client_for(emu).activity_logs.list(filter=insights)) == []


def test_narrowing_by_resource_group_resource_uri_and_correlation(emu: RunningEmulator) -> None:
    put_setting(emu)
    client = client_for(emu)
    setting_id = f"{NOSETTING}/providers/microsoft.insights/diagnosticSettings/to-law"
    by_uri = list(
        client.activity_logs.list(
            filter=window(emu, timedelta(hours=1), f"resourceUri eq '{setting_id.upper()}'")
        )
    )
    assert len(by_uri) == 2
    assert (
        list(
            client.activity_logs.list(
                filter=window(emu, timedelta(hours=1), f"resourceUri eq '{NOSETTING}'")
            )
        )
        == []
    )
    assert (
        len(
            list(
                client.activity_logs.list(
                    filter=window(emu, timedelta(hours=1), "resourceGroupName eq 'RG-DEV'")
                )
            )
        )
        == 2
    )
    assert (
        list(
            client.activity_logs.list(
                filter=window(emu, timedelta(hours=1), "resourceGroupName eq 'rg-prod'")
            )
        )
        == []
    )
    one = by_uri[0].correlation_id
    same = list(
        client.activity_logs.list(
            filter=window(emu, timedelta(hours=1), f"correlationId eq '{one}'")
        )
    )
    assert {e.correlation_id for e in same} == {one} and len(same) == 2
    # The other subscription's log holds none of it.
    assert (
        list(
            client_for(emu, "11111111-1111-1111-1111-111111111111").activity_logs.list(
                filter=window(emu)
            )
        )
        == []
    )


def test_the_time_range_bounds_the_events(emu: RunningEmulator) -> None:
    put_setting(emu)
    emu.world.advance(timedelta(hours=2))
    assert list(client_for(emu).activity_logs.list(filter=window(emu, timedelta(hours=1)))) == []
    assert (
        len(list(client_for(emu).activity_logs.list(filter=window(emu, timedelta(hours=3))))) == 2
    )
    only_start = f"eventTimestamp ge '{odata_time(emu.world.now() - timedelta(hours=3))}'"
    assert len(list(client_for(emu).activity_logs.list(filter=only_start))) == 2


def test_select_returns_only_the_named_properties(emu: RunningEmulator) -> None:
    put_setting(emu)
    events = list(
        client_for(emu).activity_logs.list(
            filter=window(emu), select="eventTimestamp,operationName,resourceId"
        )
    )
    assert events and all(e.caller is None and e.status is None for e in events)
    assert all(e.resource_id and e.operation_name.value and e.event_timestamp for e in events)


def test_pages_follow_next_link_with_the_page_size_knob(
    fresh_emulator: Callable[..., RunningEmulator],
) -> None:
    emu = fresh_emulator(activity_log={"page_size": 3})
    for _ in range(4):
        put_setting(emu)
        emu.world.advance(timedelta(seconds=10))
    since = emu.world.requests(api="arm")[-1].time
    events = list(client_for(emu).activity_logs.list(filter=window(emu)))
    assert len(events) == 8 and len({e.event_data_id for e in events}) == 8
    stamps = [e.event_timestamp for e in events]
    assert stamps == sorted(stamps, reverse=True)
    pages = [r for r in emu.world.requests(api="arm", since=since) if "eventtypes" in r.path]
    assert len(pages) == 3 and all(r.status == 200 for r in pages)


def test_a_page_token_made_for_another_list_is_refused(
    fresh_emulator: Callable[..., RunningEmulator],
) -> None:
    emu = fresh_emulator(activity_log={"page_size": 1})
    put_setting(emu)
    first = client_for(emu).activity_logs.list(filter=window(emu)).by_page()
    next(first)
    link = urlsplit(first.continuation_token)
    query = dict(parse_qsl(link.query))
    query["$filter"] = window(emu, timedelta(hours=2))  # same token, another list
    other = link._replace(query=urlencode(query, quote_via=quote)).geturl()
    with pytest.raises(HttpResponseError) as err:
        pager = client_for(emu).activity_logs.list(filter=window(emu))
        next(pager.by_page(continuation_token=other))
    assert err.value.status_code == 400 and "$skiptoken" in err.value.message


def test_ingestion_delay_hides_an_event_until_it_is_submitted(
    fresh_emulator: Callable[..., RunningEmulator],
) -> None:
    emu = fresh_emulator(activity_log={"ingestion_delay_seconds": 300})
    put_setting(emu)
    assert list(client_for(emu).activity_logs.list(filter=window(emu))) == []
    emu.world.advance(timedelta(minutes=5))
    events = list(client_for(emu).activity_logs.list(filter=window(emu)))
    assert [e.status.value for e in events] == ["Succeeded", "Started"]
    assert all(e.submission_timestamp - e.event_timestamp == timedelta(seconds=300) for e in events)


@pytest.mark.parametrize(
    ("make_filter", "fragment"),
    [
        (lambda now: "", "required"),
        (lambda now: f"eventTimestamp le '{odata_time(now)}'", "start time"),
        (lambda now: f"eventTimestamp gt '{odata_time(now)}'", "not supported"),
        (lambda now: f"eventTimestamp ge '{odata_time(now)}' or caller eq 'x'", "joined by 'and'"),
        (lambda now: f"eventTimestamp ge '{odata_time(now)}' and caller eq 'x'", "not supported"),
        (lambda now: "eventTimestamp ge 'yesterday'", "not a valid date"),
        (lambda now: f"eventTimestamp ge {odata_time(now)}", "not valid"),
        (
            lambda now: f"eventTimestamp ge '{odata_time(now - timedelta(days=91))}'",
            "90 days",
        ),
        (
            lambda now: (
                f"eventTimestamp ge '{odata_time(now - timedelta(days=10))}' and "
                f"eventTimestamp le '{odata_time(now + timedelta(days=85))}'"
            ),
            "90 days",
        ),
        (
            lambda now: (
                f"eventTimestamp ge '{odata_time(now)}' and "
                f"eventTimestamp le '{odata_time(now - timedelta(hours=1))}'"
            ),
            "before its start",
        ),
        (
            lambda now: (
                f"eventTimestamp ge '{odata_time(now)}' and resourceGroupName eq 'a' "
                "and resourceProvider eq 'b'"
            ),
            "not several",
        ),
    ],
)
def test_bad_filters_get_the_api_error(
    emu: RunningEmulator, make_filter: Callable[[datetime], str], fragment: str
) -> None:
    with pytest.raises(HttpResponseError) as err:
        list(client_for(emu).activity_logs.list(filter=make_filter(emu.world.now())))
    assert err.value.status_code == 400
    assert err.value.error is not None and err.value.error.code == "BadRequest"
    assert fragment in err.value.error.message
    assert describe_error(err.value).startswith("HTTP 400 BadRequest: ")


def test_a_wrong_api_version_or_subscription_is_arms_error(emu: RunningEmulator) -> None:
    with pytest.raises(HttpResponseError) as err:
        list(
            client_for(emu, "33333333-3333-3333-3333-333333333333").activity_logs.list(
                filter=window(emu)
            )
        )
    assert err.value.status_code == 404


@pytest.fixture
def past_events(tmp_path: Path) -> Iterator[RunningEmulator]:
    scenario: dict[str, Any] = yaml.safe_load(SMALL.read_text())
    scenario["activity"] = [
        {"registry": "acrnosetting01", "at": "-2d", "setting": "old",
         "operation": "Microsoft.Insights/diagnosticSettings/delete", "status": "Failed"},
        {"resourceId": GONE, "at": "-30m", "caller": "ops@contoso.com",
         "operation": "MICROSOFT.CONTAINERREGISTRY/REGISTRIES/DELETE"},
    ]  # fmt: skip
    path = tmp_path / "past.yaml"
    path.write_text(yaml.safe_dump(scenario))
    with start_emulator(path, now="scenario") as running, sdk_environment(running.environ()):
        yield running


def test_the_scenario_declares_past_events(past_events: RunningEmulator) -> None:
    emu = past_events
    events = list(client_for(emu).activity_logs.list(filter=window(emu, timedelta(days=3))))
    finals = [
        (e.operation_name.value, e.resource_id, e.status.value, e.event_timestamp)
        for e in events
        if e.event_name.value == "EndRequest"
    ]
    now = emu.world.now()
    assert finals == [
        (
            "Microsoft.ContainerRegistry/registries/delete",
            GONE,
            "Succeeded",
            now - timedelta(minutes=30),
        ),
        (
            "Microsoft.Insights/diagnosticSettings/delete",
            f"{NOSETTING}/providers/microsoft.insights/diagnosticSettings/old",
            "Failed",
            now - timedelta(days=2),
        ),
    ]
    failed = next(e for e in events if e.status.value == "Failed")
    assert failed.level == "Error"
