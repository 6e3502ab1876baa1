"""Large, realistic fleets for scale tests and demos: thousands of registries across many
subscriptions with the same compliance cases as emulator/scenarios/demo.yaml, in realistic
proportions (most registries compliant, a long tail of misconfigurations).

    from emulator import fleet
    data = fleet.generate(10_000, 100, seed=1)          # scenario-file form (a dict)
    sc = fleet.generate_scenario(10_000, 100, seed=1)    # parsed Scenario

    python -m emulator.fleet --registries 10000 --subscriptions 100 -o fleet.json

The output is deterministic for a seed. Accepted destinations (the allow-list a policy would
use) are the `law-central-*` and `law-security` workspaces; `law-sandbox-*` workspaces exist
but are not accepted, and `other_tenant_workspace()` lies outside the estate.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from emulator import scenario as scenario_mod
from emulator.scenario import Scenario

DEFAULT_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
FOREIGN_SUBSCRIPTION = "e7d6c5b4-a3f2-4e1d-9c0b-a9f8e7d6c5b4"
LOGIN = "ContainerRegistryLoginEvents"
REPOSITORY = "ContainerRegistryRepositoryEvents"

# (case, weight): the share of the fleet showing each case.
CASES: tuple[tuple[str, float], ...] = (
    ("compliant_categories", 30),
    ("compliant_alllogs", 20),
    ("compliant_audit", 8),
    ("missing_category", 5),
    ("disabled_entry", 4),
    ("other_tenant", 2),
    ("not_allowed_workspace", 4),
    ("storage_only", 4),
    ("event_hub_only", 2),
    ("azure_diagnostics", 4),
    ("no_setting", 10),
    ("split_settings", 2),
    ("five_settings", 1),
    ("metrics_only", 2),
    ("pending", 1),
    ("silent", 1),
)
TEAMS = (
    "payments",
    "checkout",
    "orders",
    "identity",
    "search",
    "mobile",
    "billing",
    "shipping",
    "inventory",
    "loyalty",
    "analytics",
    "platform",
    "data",
    "ml",
    "portal",
    "reporting",
    "security",
    "web",
    "api",
    "batch",
    "media",
    "iot",
    "crm",
    "erp",
    "hr",
    "risk",
    "fraud",
    "catalog",
    "pricing",
    "notify",
)
ENVS = ("prod", "prod", "prod", "stg", "test", "dev", "dev")
REGIONS = ("westeurope", "westeurope", "northeurope", "swedencentral", "germanywestcentral")
SKUS = ("Premium", "Standard", "Standard", "Standard", "Basic")
FIRST_NAMES = (
    "anna",
    "james",
    "priya",
    "lena",
    "marco",
    "yuki",
    "sofia",
    "tomasz",
    "nora",
    "omar",
    "chen",
    "fatima",
    "lucas",
    "ines",
    "kofi",
)
LAST_NAMES = (
    "schmidt",
    "okafor",
    "natarajan",
    "fischer",
    "bianchi",
    "tanaka",
    "rossi",
    "nowak",
    "hansen",
    "haddad",
    "wei",
    "zahra",
    "martin",
    "silva",
    "mensah",
)


def _guid(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "acr-fleet/" + "/".join(str(p) for p in parts)))


def other_tenant_workspace() -> str:
    return (
        f"/subscriptions/{FOREIGN_SUBSCRIPTION}/resourceGroups/rg-vendor-soc"
        "/providers/Microsoft.OperationalInsights/workspaces/law-vendor-soc"
    )


def _logs(*entries: tuple[str, str, bool]) -> list[dict[str, Any]]:
    return [{kind: name, "enabled": enabled} for kind, name, enabled in entries]


_BOTH = _logs(("category", LOGIN, True), ("category", REPOSITORY, True))
_ALL = _logs(("categoryGroup", "allLogs", True))
_AUDIT = _logs(("categoryGroup", "audit", True))
_METRICS = [{"category": "AllMetrics", "enabled": True}]


@dataclass(frozen=True)
class _Targets:
    """Where one registry's diagnostic settings can send its logs."""

    central: str
    sandbox: str
    storage: str
    hub: str

    def ws(
        self, setting: str, logs: list[dict[str, Any]], target: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": setting,
            "workspace": self.central if target is None else target,
            "logs": logs,
        }
        out.update(extra)
        return out

    def archive(self, logs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": "archive", "storageAccountId": self.storage, "logs": logs}

    def event_hub(self, setting: str, logs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "name": setting,
            "eventHubAuthorizationRuleId": self.hub,
            "eventHubName": "acr",
            "logs": logs,
        }


def _five_settings(t: _Targets) -> list[dict[str, Any]]:
    return [
        t.archive(_ALL),
        t.event_hub("stream", _AUDIT),
        t.ws("legacy", _ALL, logAnalyticsDestinationType="AzureDiagnostics"),
        t.ws(
            "disabled",
            _logs(("category", LOGIN, False), ("category", REPOSITORY, False)),
            "law-security",
        ),
        {"name": "metrics-only", "workspace": t.central, "metrics": _METRICS},
    ]


# Each case's diagnostic settings; a case not listed (no_setting) has none.
_CASE_SETTINGS: dict[str, Callable[[_Targets], list[dict[str, Any]]]] = {
    "compliant_categories": lambda t: [t.ws("send-to-central", _BOTH, metrics=_METRICS)],
    # Configured like compliant_categories; its events stop (see _events).
    "silent": lambda t: [t.ws("send-to-central", _BOTH, metrics=_METRICS)],
    "compliant_alllogs": lambda t: [t.ws("setbypolicy", _ALL, metrics=_METRICS)],
    "compliant_audit": lambda t: [
        t.ws("audit-to-security", _AUDIT, "law-security", metrics=_METRICS)
    ],
    "missing_category": lambda t: [
        t.ws("login-audit", _logs(("category", LOGIN, True)), metrics=_METRICS)
    ],
    "disabled_entry": lambda t: [
        t.ws(
            "send-to-central",
            _logs(("category", LOGIN, True), ("category", REPOSITORY, False)),
            metrics=_METRICS,
        )
    ],
    "other_tenant": lambda t: [t.ws("vendor-soc", _ALL, other_tenant_workspace())],
    "not_allowed_workspace": lambda t: [t.ws("to-sandbox", _ALL, t.sandbox, metrics=_METRICS)],
    "storage_only": lambda t: [t.archive(_ALL)],
    "event_hub_only": lambda t: [t.event_hub("to-siem", _ALL)],
    "azure_diagnostics": lambda t: [
        t.ws("legacy-diag", _BOTH, logAnalyticsDestinationType="AzureDiagnostics")
    ],
    "split_settings": lambda t: [
        t.ws("logins-to-central", _logs(("category", LOGIN, True))),
        t.ws("repo-to-security", _logs(("category", REPOSITORY, True)), "law-security"),
    ],
    "five_settings": _five_settings,
    "metrics_only": lambda t: [{"name": "metrics", "workspace": t.central, "metrics": _METRICS}],
    "pending": lambda t: [t.ws("setbypolicy", _ALL, metrics=_METRICS, createdAt=_ago(minutes=30))],
}


def _settings(
    case: str, central: str, sandbox: str, sub: str, rg: str, name: str
) -> list[dict[str, Any]]:
    build = _CASE_SETTINGS.get(case)
    if build is None:
        return []
    targets = _Targets(
        central=central,
        sandbox=sandbox,
        storage=(
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage"
            f"/storageAccounts/st{name[3:][:16]}logs"
        ),
        hub=(
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.EventHub/namespaces"
            "/evhns-siem/authorizationRules/RootManageSharedAccessKey"
        ),
    )
    return build(targets)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(*, days: float = 0, hours: float = 0, minutes: float = 0) -> str:
    """A time relative to the scenario's now, so a fleet anchored to the wall clock (the
    emulator's default) shows the same cases on any date."""
    total = f"{days * 1440 + hours * 60 + minutes:.3f}".rstrip("0").rstrip(".")
    return f"-{total}m"


def _events(
    rng: random.Random, case: str, name: str, admin: bool, anonymous: bool
) -> list[dict[str, Any]]:
    team = name[3:].rstrip("0123456789")
    sp = _guid("sp", name)
    people = [
        f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}@contoso.com"
        for _ in range(rng.randint(0, 2))
    ]
    ips = [f"20.31.{rng.randint(0, 63)}.{rng.randint(1, 254)}" for _ in range(rng.randint(1, 3))]
    logins: dict[str, Any] = {
        "kind": "logins",
        "perHour": round(rng.uniform(0.5, 6), 1),
        "identities": [sp, *people] + (["admin"] if admin and rng.random() < 0.5 else []),
        "ips": ips + [f"203.0.113.{rng.randint(1, 254)}" for _ in people],
        "failureRate": round(rng.choice((0.0, 0.0, 0.01, 0.02, 0.05)), 2),
    }
    repository: dict[str, Any] = {
        "kind": "repository",
        "perHour": round(rng.uniform(1, 15), 1),
        "identities": [sp],
        "ips": ips,
        "repositories": [f"{team}/{r}" for r in rng.sample(("api", "web", "worker", "jobs"), 2)],
        "mix": {"pull": 0.85, "push": 0.1, "untag": 0.03, "delete": 0.02},
    }
    if anonymous:
        repository["ips"] = [*ips, "198.51.100.10", "198.51.100.11", "192.0.2.17"]
    if case == "silent":
        silent = _ago(hours=rng.choice((30, 50, 72, 120)))
        for gen in (logins, repository):
            gen["hours"] = 168
            gen["silentSince"] = silent
    if rng.random() < 0.005:
        logins["burst"] = {
            "count": rng.randint(20, 80),
            "minutes": rng.choice((3, 5, 10)),
            "agoHours": rng.randint(1, 20),
            "ip": f"192.0.2.{rng.randint(2, 250)}",
            "identity": "admin" if admin else people[0] if people else sp,
        }
    return [logins, repository]


def generate(
    registries: int = 10_000,
    subscriptions: int = 100,
    *,
    seed: int = 0,
    one_subscription_share: float | None = None,
    events: bool = False,
    now: datetime = DEFAULT_NOW,
) -> dict[str, Any]:
    """A fleet in scenario-file form. `one_subscription_share` puts that share of the
    registries into the first subscription (the ARM throttling worst case); `events` adds
    log traffic generators (a few events per hour each)."""
    if registries < 0 or subscriptions < 1:
        raise ValueError("need at least one subscription and a non-negative registry count")
    if one_subscription_share is not None and not 0 <= one_subscription_share <= 1:
        raise ValueError("one_subscription_share must be between 0 and 1")
    rng = random.Random(seed)
    subs = [_guid("subscription", seed, i) for i in range(subscriptions)]
    shared = subs[0]
    regions = sorted(set(REGIONS))
    workspaces = [
        {
            "name": f"law-central-{r}",
            "subscription": shared,
            "resourceGroup": f"rg-monitoring-{r}",
            "customerId": _guid("workspace", seed, r),
            "location": r,
        }
        for r in regions
    ] + [
        {
            "name": "law-security",
            "subscription": shared,
            "resourceGroup": "rg-security",
            "customerId": _guid("workspace", seed, "security"),
        },
    ]
    sandboxes = []
    for i in range(0, subscriptions, 10):
        name = f"law-sandbox-{i // 10:02d}"
        sandboxes.append(name)
        workspaces.append(
            {
                "name": name,
                "subscription": subs[i],
                "resourceGroup": "rg-sandbox",
                "customerId": _guid("workspace", seed, name),
            }
        )
    sub_docs = [
        {
            "id": s,
            "displayName": f"Contoso {ENVS[i % len(ENVS)].upper()} {i:03d}",
            "tenantId": TENANT,
            "activityLogWorkspace": "law-central-westeurope",
        }
        for i, s in enumerate(subs)
    ]
    names = [c for c, _ in CASES]
    weights = [w for _, w in CASES]
    cases = rng.choices(names, weights, k=registries)
    concentrated = round(registries * one_subscription_share) if one_subscription_share else 0
    regs: list[dict[str, Any]] = []
    for i in range(registries):
        case = cases[i]
        team = TEAMS[rng.randrange(len(TEAMS))]
        env = ENVS[rng.randrange(len(ENVS))]
        name = f"acr{team}{env}{i:05d}"
        sub_index = 0 if i < concentrated else rng.randrange(subscriptions)
        sub = subs[sub_index]
        region = REGIONS[rng.randrange(len(REGIONS))]
        rg = f"rg-{team}-{env}"
        created = _ago(days=rng.uniform(2, 1100))
        if case == "pending":
            created = _ago(minutes=30)
        admin = rng.random() < 0.12
        anonymous = rng.random() < 0.02
        sandbox = sandboxes[sub_index // 10]
        reg: dict[str, Any] = {
            "name": name,
            "subscription": sub,
            "resourceGroup": rg,
            "location": region,
            "sku": SKUS[rng.randrange(len(SKUS))],
            "createdAt": created,
            "settings": _settings(case, f"law-central-{region}", sandbox, sub, rg, name),
        }
        if admin:
            reg["adminUserEnabled"] = True
        if anonymous and reg["sku"] != "Basic":
            reg["anonymousPullEnabled"] = True
        if events and case != "pending":
            reg["events"] = _events(rng, case, name, admin, bool(reg.get("anonymousPullEnabled")))
        regs.append(reg)
    return {
        "description": f"generated fleet: {registries} registries, {subscriptions} subscriptions, "
        f"seed {seed}",
        "now": _iso(now),
        "subscriptions": sub_docs,
        "workspaces": workspaces,
        "registries": regs,
    }


def generate_scenario(
    registries: int = 10_000,
    subscriptions: int = 100,
    *,
    seed: int = 0,
    one_subscription_share: float | None = None,
    events: bool = False,
    now: datetime = DEFAULT_NOW,
) -> Scenario:
    data = generate(
        registries,
        subscriptions,
        seed=seed,
        one_subscription_share=one_subscription_share,
        events=events,
        now=now,
    )
    return scenario_mod.parse(data, source=f"<fleet seed={seed}>")


def write(data: dict[str, Any], path: Path) -> None:
    """JSON for .json (fastest to load), YAML otherwise."""
    if path.suffix == ".json":
        path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        return
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with path.open("w", encoding="utf-8") as f:
        yaml.dump(data, f, Dumper=dumper, sort_keys=False, default_flow_style=None, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.fleet", description=__doc__)
    parser.add_argument("--registries", type=int, default=10_000)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--one-subscription-share",
        type=float,
        default=None,
        help="share of registries in the first subscription (0-1)",
    )
    parser.add_argument("--events", action="store_true", help="add log traffic generators")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="output file (.json or .yaml)"
    )
    args = parser.parse_args(argv)
    try:
        data = generate(
            args.registries,
            args.subscriptions,
            seed=args.seed,
            one_subscription_share=args.one_subscription_share,
            events=args.events,
        )
    except ValueError as exc:
        parser.error(str(exc))
    write(data, args.output)
    print(
        f"{args.output}: {args.registries} registries in {args.subscriptions} subscriptions",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
