"""`GraphQueries`, the inventory's Resource Graph adapter, side by side with the SDK's own
`ResourceGraphClient.resources` against the emulator: the same rows, pages and errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import AzureError, DecodeError, HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from auditor.azure.inventory import REGISTRY_QUERY
from auditor.runtime import build_arm_clients, build_credential
from auditor.settings import Settings
from emulator.testing import RunningEmulator

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]


def _query(subs: list[str], skip: str | None = None, query: str = REGISTRY_QUERY) -> QueryRequest:
    options = QueryRequestOptions(top=4, skip_token=skip, result_format="objectArray")
    return QueryRequest(subscriptions=subs, query=query, options=options)


def _pages(resources: Callable[[QueryRequest], Any], subs: list[str]) -> list[tuple[Any, Any]]:
    pages, skip = [], None
    while True:
        page = resources(_query(subs, skip))
        pages.append((page.data, page.skip_token))
        skip = page.skip_token
        if not skip:
            return pages


def test_pages_are_the_sdks_own(local_azure: LocalAzure) -> None:
    emu, env = local_azure()
    settings = Settings.from_env(env)
    credential = build_credential()
    clients = build_arm_clients(settings, credential)
    sdk = ResourceGraphClient(credential, base_url=emu.base_url)
    try:
        subs = sorted(s.id for s in emu.world.subscriptions())
        ours = _pages(clients.resource_graph().resources, subs)
        theirs = _pages(sdk.resources, subs)
    finally:
        clients.close()
        sdk.close()
    assert len(ours) > 1  # paged, so the skip token is exercised
    assert ours == theirs
    # Through the run's pipeline: paced like every ARM call, and answered once per page.
    assert len(emu.world.requests(api="resourcegraph")) == 2 * len(ours)


def test_refusals_are_the_sdks_errors(local_azure: LocalAzure) -> None:
    emu, env = local_azure()
    clients = build_arm_clients(Settings.from_env(env), build_credential())
    sdk = ResourceGraphClient(build_credential(), base_url=emu.base_url)
    subs = sorted(s.id for s in emu.world.subscriptions())
    bad = _query(subs, query="Resources | project id | limit 3")
    try:
        with pytest.raises(HttpResponseError) as ours:
            clients.resource_graph().resources(bad)
        with pytest.raises(HttpResponseError) as theirs:
            sdk.resources(bad)
    finally:
        clients.close()
        sdk.close()
    assert type(ours.value) is type(theirs.value)
    assert ours.value.status_code == theirs.value.status_code == 400
    assert ours.value.error is not None and theirs.value.error is not None
    assert ours.value.error.code == theirs.value.error.code
    assert [d.code for d in ours.value.error.details] == [
        d.code for d in theirs.value.error.details
    ]


def test_a_body_cut_short_is_a_decode_error(local_azure: LocalAzure) -> None:
    emu, env = local_azure(faults=[{"kind": "malformed", "api": "resourcegraph", "count": 1_000}])
    clients = build_arm_clients(Settings.from_env(env), build_credential())
    subs = sorted(s.id for s in emu.world.subscriptions())
    try:
        with pytest.raises(DecodeError) as err:
            clients.resource_graph().resources(_query(subs))
    finally:
        clients.close()
    # An AzureError: the inventory falls back to the per-subscription lists on it.
    assert isinstance(err.value, AzureError)
    assert "not JSON" in str(err.value)
