"""The custom roles against what the code really sends: full audits (with the log check, the
subscription list, the per-subscription registry list after a Resource Graph failure) and an
Event Grid re-audit run against the emulator with the real Azure SDK clients, and every request
in the emulator's log must be an operation of the reader role in infra/operations.json; a
remediation's requests are the reader's and the remediator's.

A new Azure call the role does not grant fails here, before it fails with 403 in Azure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from auditor.run_record import RunMode
from auditor.runtime import audit_once, audit_registry_once
from auditor.settings import Settings
from emulator.testing import RunningEmulator
from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.integration

LocalAzure = Callable[..., tuple[RunningEmulator, dict[str, str]]]
ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = json.loads((ROOT / "infra" / "operations.json").read_text(encoding="utf-8"))
ROUTES = [
    (request["method"], re.compile(request["path"], re.IGNORECASE), operation["action"])
    for operation in OPERATIONS["operations"]
    for request in operation["requests"]
]
READER = set(OPERATIONS["roles"]["reader"]["actions"])
REMEDIATOR = set(OPERATIONS["roles"]["remediator"]["actions"])
AUDITED_APIS = ("arm", "resourcegraph", "logs")
WORKSPACE = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-monitoring"
    "/providers/Microsoft.OperationalInsights/workspaces/law-central"
)


def operations_sent(emu: RunningEmulator) -> dict[str, int]:
    """Each request the emulator saw, as the operation it needs; unmapped ones fail."""
    used: dict[str, int] = {}
    for entry in emu.world.requests():
        if entry.api not in AUDITED_APIS:
            continue  # the managed-identity token endpoint needs no role
        path = re.sub("/{2,}", "/", entry.path).rstrip("/")
        matches = {
            action
            for method, pattern, action in ROUTES
            if method == entry.method and pattern.fullmatch(path)
        }
        assert len(matches) == 1, f"{entry.method} {path} maps to {sorted(matches)}"
        (action,) = matches
        used[action] = used.get(action, 0) + 1
    return used


def test_every_request_of_an_audit_is_an_operation_of_the_reader_role(
    local_azure: LocalAzure,
) -> None:
    used: dict[str, int] = {}

    # A full audit of every visible subscription, logs checked, then an Event Grid re-audit.
    emu, env = local_azure()
    settings = Settings.from_env({**env, "AUDITOR_SUBSCRIPTIONS": ""})
    run = audit_once(settings, trigger="test", alerts=False)
    assert run.verdicts and run.log_queries > 0
    audit_registry_once(settings, run.verdicts[0].registry.id, trigger="event")
    # A change-driven run: the activity log since the run above.
    audit_once(settings, trigger="test", alerts=False, mode=RunMode.CHANGES)
    for action, count in operations_sent(emu).items():
        used[action] = used.get(action, 0) + count

    # Resource Graph down: the registries are listed per subscription instead.
    emu, env = local_azure(faults=[{"kind": "status", "status": 500, "api": "resourcegraph"}])
    settings = Settings.from_env({**env, "AUDITOR_HTTP_RETRIES": "0"})
    run = audit_once(settings, trigger="test", alerts=False, check_logs=False)
    assert run.verdicts
    for action, count in operations_sent(emu).items():
        used[action] = used.get(action, 0) + count

    assert set(used) <= READER, sorted(set(used) - READER)

    # A remediation written: its one read of the setting and its write.
    emu.world.reset_request_log()
    remediated = run_cli(
        {**env, "AUDITOR_REMEDIATION_WORKSPACE": WORKSPACE},
        "remediate", "--apply", "--registry", "acrnosetting01", "--no-store",
    )  # fmt: skip
    assert remediated.returncode == 0, remediated.stdout + remediated.stderr
    writes = operations_sent(emu)
    assert set(writes) <= READER | REMEDIATOR, sorted(set(writes) - READER - REMEDIATOR)
    assert REMEDIATOR <= set(writes)
    for action, count in writes.items():
        used[action] = used.get(action, 0) + count

    # Every operation that names its requests was seen, so the mapping itself is exercised.
    mapped = {action for _, _, action in ROUTES}
    assert set(used) == mapped, f"never sent: {sorted(mapped - set(used))}"


def test_the_routes_recognise_what_they_should() -> None:
    # The one write, remediation's, is not a reader operation.
    write = {a for m, p, a in ROUTES if m == "PUT"}
    assert write == REMEDIATOR and not write & READER
    sample: dict[str, Any] = {
        "GET /subscriptions": "Microsoft.Resources/subscriptions/read",
        "POST /providers/Microsoft.ResourceGraph/resources": (
            "Microsoft.ResourceGraph/resources/read"
        ),
        "GET /subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries"
        "/acr1/providers/Microsoft.Insights/diagnosticSettings": (
            "Microsoft.Insights/diagnosticSettings/read"
        ),
        "POST /v1/workspaces/0b4c4f1c-0000-0000-0000-000000000000/query": (
            "Microsoft.OperationalInsights/workspaces/query/read"
        ),
    }
    for request, action in sample.items():
        method, path = request.split(" ", 1)
        found = {a for m, p, a in ROUTES if m == method and p.fullmatch(path)}
        assert found == {action}, request
