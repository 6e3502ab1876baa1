"""The served API against its own OpenAPI document: schemathesis generates requests for every
operation (valid and invalid parameters, forged continuation tokens, odd names) and runs all of
its checks on each answer (no 5xx, status codes and bodies as documented, content types,
headers). The store behind it is a real AuditStore on Azurite with two runs in it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from auditor.api import create_app
from auditor.facts import Reason, Registry, Status, Verdict
from auditor.run_record import AuditRun, RunStatus
from auditor.storage import AuditStore
from emulator.azurite import Azurite

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-00000000000a"


def _verdict(name: str, status: Status, *codes: str) -> Verdict:
    registry = Registry(
        id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=SUB,
        resource_group="rg",
    )
    return Verdict(registry, status, tuple(Reason(code, f"why {code}") for code in codes))


@pytest.fixture(scope="module")
def api_schema(azurite_server: Azurite) -> Iterator[schemathesis.BaseSchema]:
    store = AuditStore.from_connection_string(
        azurite_server.connection_string, prefix="t" + uuid.uuid4().hex[:12]
    )
    # Anchored to the wall clock the app reads: "since 24h" and data age mean what they say.
    start = datetime.now(UTC) - timedelta(hours=3)
    for number, verdicts in enumerate(
        (
            (_verdict("acrgood01", Status.COMPLIANT), _verdict("acrgone01", Status.COMPLIANT)),
            (
                _verdict("acrgood01", Status.COMPLIANT),
                _verdict("acrbad001", Status.NONCOMPLIANT, "metrics_missing"),
                _verdict("acrdark01", Status.UNKNOWN, "unknown:http_403"),
            ),
        )
    ):
        begun = start + timedelta(hours=number)
        run = AuditRun(
            run_id=f"run{number:03d}",
            started_at=begun,
            finished_at=begun + timedelta(minutes=2),
            status=RunStatus.SUCCEEDED,
            verdicts=verdicts,
            inventoried_subscriptions=frozenset({SUB}),
            trigger="timer",
        )
        store.start_run(run.run_id, run.started_at, run.trigger)
        store.finish_run(run)
    yield schemathesis.openapi.from_asgi("/api/openapi.json", create_app(lambda: store))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same requests every run: a failure here is reproducible
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case: schemathesis.Case) -> None:
    # A continuation token, `since`, `until`, `at`, `from` or `to` can be well-formed yet not
    # valid (forged, a 13th month, in the future): a schema cannot say which, and the API
    # documents their 400. So on the
    # operations taking one, a schema-valid request may be refused; every other check runs.
    opaque = OPAQUE & {p.name for p in case.operation.query}
    # The function key the document declares is checked by the Functions host in front of
    # this app, not by the app: a request without one reaching the app is not a finding.
    excluded = [ignored_auth, *([positive_data_acceptance] if opaque else [])]
    case.call_and_validate(excluded_checks=excluded)


# Query parameters whose validity the OpenAPI document cannot express.
OPAQUE = frozenset({"continuation", "since", "until", "at", "from", "to"})
