"""Which registries the timer remediates after a run: noncompliant ones of the allowed
subscriptions (AUDITOR_REMEDIATION_SUBSCRIPTIONS) or carrying the remediation tag
(AUDITOR_REMEDIATION_TAG), never an exempt one, chosen again on the read just before the write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from auditor import exemptions
from auditor.exemptions import TAG
from auditor.facts import Registry, Status, Verdict
from auditor.judgement import judge
from auditor.remediation import service
from auditor.remediation.service import due, in_scope, remediate_after_run
from auditor.run_record import AuditRun, RunStatus
from auditor.settings import Settings

pytestmark = pytest.mark.usefixtures("kept_tags")
PROD = "11111111-1111-1111-1111-111111111111"
DEV = "22222222-2222-2222-2222-222222222222"
WS = (
    f"/subscriptions/{PROD}/resourceGroups/rg-mon/providers/Microsoft.OperationalInsights"
    "/workspaces/law-central"
)
NOW = datetime.now(UTC)
OPT_IN = ("Auto-Remediate", "yes")


def settings(**env: str) -> Settings:
    return Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "AUDITOR_ENABLE_REMEDIATION": "true",
            "AUDITOR_REMEDIATION_WORKSPACE": WS,
            **env,
        }
    )


def registry(name: str, subscription: str, *tag: tuple[str, str]) -> Registry:
    return Registry(
        id=f"/subscriptions/{subscription}/resourceGroups/rg/providers"
        f"/Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=subscription,
        resource_group="rg",
        tags=tag,
    )


def noncompliant(reg: Registry) -> Verdict:
    """No diagnostic setting: a write fixes it; exempt when its tags say so."""
    [verdict] = exemptions.apply([judge(reg, (), (), settings().policy)], {}, now=NOW)
    return verdict


def exempt_tag() -> tuple[str, str]:
    until = (NOW + timedelta(days=30)).date().isoformat()
    return (TAG, f"Decommissioned next month; until={until}")


FLEET = {
    "prod": noncompliant(registry("acrprod01", PROD)),
    "dev": noncompliant(registry("acrdev01", DEV)),
    "dev_tagged": noncompliant(registry("acrdevtagged01", DEV, OPT_IN)),
    "dev_tagged_no": noncompliant(registry("acrdevno01", DEV, ("auto-remediate", "no"))),
    "dev_tagged_exempt": noncompliant(registry("acrdevexempt01", DEV, OPT_IN, exempt_tag())),
    "prod_exempt": noncompliant(registry("acrprodexempt01", PROD, exempt_tag())),
    "prod_compliant": judge(registry("acrprodok01", PROD, OPT_IN), None, (), settings().policy),
}


def chosen(**env: str) -> set[str]:
    return {v.registry.name for v in due(settings(**env), FLEET.values())}


def test_the_fleet_is_what_the_cases_say() -> None:
    assert FLEET["dev_tagged_exempt"].status is Status.EXEMPT
    assert FLEET["prod_exempt"].status is Status.EXEMPT
    assert FLEET["prod_compliant"].status is Status.UNKNOWN  # unread: nothing to write
    assert FLEET["dev_tagged"].status is Status.NONCOMPLIANT


def test_a_listed_subscription_alone() -> None:
    assert chosen(AUDITOR_REMEDIATION_SUBSCRIPTIONS=PROD) == {"acrprod01"}


def test_the_tag_alone_reaches_any_subscription() -> None:
    assert chosen(AUDITOR_REMEDIATION_TAG="auto-remediate") == {"acrdevtagged01", "acrdevno01"}


def test_a_tag_value_must_match() -> None:
    assert chosen(AUDITOR_REMEDIATION_TAG="AUTO-REMEDIATE=yes") == {"acrdevtagged01"}
    assert chosen(AUDITOR_REMEDIATION_TAG="auto-remediate=YES") == set()


def test_either_allow_list_is_enough() -> None:
    both = chosen(
        AUDITOR_REMEDIATION_SUBSCRIPTIONS=PROD, AUDITOR_REMEDIATION_TAG="auto-remediate=yes"
    )
    assert both == {"acrprod01", "acrdevtagged01"}


def test_nothing_without_an_allow_list() -> None:
    assert chosen() == set()
    assert not in_scope(FLEET["dev_tagged"].registry, settings().remediation)


def test_an_exempt_registry_is_never_chosen() -> None:
    options = settings(AUDITOR_REMEDIATION_SUBSCRIPTIONS=f"{PROD},{DEV}").remediation
    assert in_scope(FLEET["prod_exempt"].registry, options)
    assert in_scope(FLEET["dev_tagged_exempt"].registry, options)
    everything = chosen(
        AUDITOR_REMEDIATION_SUBSCRIPTIONS=f"{PROD},{DEV}", AUDITOR_REMEDIATION_TAG="auto-remediate"
    )
    assert everything == {"acrprod01", "acrdev01", "acrdevtagged01", "acrdevno01"}


class Writes:
    """The timer's writer, faked: what it was asked to remediate."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.errors: list[str] = []

    def remediate(self, verdict: Verdict, categories: Any, *, apply: bool) -> Any:
        self.asked.append(verdict.registry.name)
        return SimpleNamespace(action=None)


class Clients:
    closed = False

    def close(self) -> None:
        self.closed = True


def timer_step(
    monkeypatch: pytest.MonkeyPatch, run: list[Verdict], now: dict[str, Verdict], **env: str
) -> tuple[Writes, Clients | None]:
    """The step after a run of `run`, each registry reading `now` when read again."""
    writes, connected = Writes(), []
    monkeypatch.setattr(service, "fresh", lambda clients, s, reg: now[reg.name])
    monkeypatch.setattr(service, "remediator", lambda *args, **kwargs: writes)
    monkeypatch.setattr(service, "_categories", lambda clients, fleet: [])
    record = AuditRun("run-1", NOW, NOW, RunStatus.SUCCEEDED, tuple(run))

    def connect() -> Any:
        connected.append(Clients())
        return connected[0]

    remediate_after_run(settings(**env), record, None, connect=connect)  # type: ignore[arg-type]
    return writes, connected[0] if connected else None


def test_the_tag_alone_switches_the_step_on(monkeypatch: pytest.MonkeyPatch) -> None:
    tagged = FLEET["dev_tagged"]
    writes, clients = timer_step(
        monkeypatch,
        [tagged, FLEET["dev"]],
        {"acrdevtagged01": tagged},
        AUDITOR_REMEDIATION_TAG="auto-remediate=yes",
    )
    assert writes.asked == ["acrdevtagged01"]
    assert clients is not None and clients.closed


def test_a_registry_exempted_since_the_run_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    tagged = FLEET["dev_tagged"]
    exempted = noncompliant(registry(tagged.registry.name, DEV, OPT_IN, exempt_tag()))
    untagged = noncompliant(registry("acrprod01", PROD))
    writes, _ = timer_step(
        monkeypatch,
        [tagged, FLEET["prod"]],
        {"acrdevtagged01": exempted, "acrprod01": untagged},
        AUDITOR_REMEDIATION_TAG="auto-remediate=yes",
        AUDITOR_REMEDIATION_SUBSCRIPTIONS=PROD,
    )
    assert exempted.status is Status.EXEMPT
    assert writes.asked == ["acrprod01"]


def test_a_registry_untagged_since_the_run_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    tagged = FLEET["dev_tagged"]
    writes, _ = timer_step(
        monkeypatch,
        [tagged],
        {"acrdevtagged01": noncompliant(registry(tagged.registry.name, DEV))},
        AUDITOR_REMEDIATION_TAG="auto-remediate=yes",
    )
    assert writes.asked == []
