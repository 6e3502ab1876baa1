"""`python -m auditor remediate`: per noncompliant registry, the setting it would create or
update (before and after); with `--apply`, the write, the registry re-read and re-judged.

Exit codes: 0 every noncompliant registry has a plan (dry run) or was fixed (`--apply`);
1 some cannot be remediated, or a write was refused or failed; 2 the command could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TextIO

from auditor.facts import PASSING, Status
from auditor.remediation.documents import (
    SCHEMA_VERSION,
    RemediationDocument,
    RemediationEntry,
    SettingDocument,
)
from auditor.settings import Settings
from auditor.terminal import shown as _shown

EXIT_OK, EXIT_LEFT, EXIT_FAILED = 0, 1, 2


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], subscription: Callable[[str], str]
) -> None:
    remediate = sub.add_parser(
        "remediate",
        help="show (or with --apply, write) the diagnostic setting each noncompliant registry "
        "needs",
    )
    remediate.add_argument(
        "--apply",
        action="store_true",
        help="write the settings (default: a dry run that writes nothing)",
    )
    remediate.add_argument(
        "--registry",
        action="append",
        default=[],
        metavar="NAME",
        help="only this registry (repeatable); default every registry of the subscriptions",
    )
    remediate.add_argument(
        "--subscription",
        action="append",
        type=subscription,
        default=[],
        metavar="ID",
        help="limit to this subscription (repeatable); default AUDITOR_SUBSCRIPTIONS or all",
    )
    remediate.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table for people (default) or JSON",
    )
    remediate.add_argument(
        "--no-store",
        action="store_true",
        help="record no action and store no re-judged registry (no storage settings needed)",
    )


def cmd_remediate(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from auditor.remediation.documents import Actor
    from auditor.remediation.service import read_fleet, remediator
    from auditor.runtime import build_arm_clients, build_credential, build_store, remediation_alerts

    settings = Settings.from_env(environ, require_storage=not args.no_store)
    credential = build_credential()
    store = None if args.no_store else build_store(settings, credential)
    clients = build_arm_clients(settings, credential)
    try:
        fleet = read_fleet(clients, settings, subscriptions=args.subscription, names=args.registry)
        writer = remediator(
            settings,
            clients,
            Actor.CLI,
            store=store,
            alerts=remediation_alerts(settings, credential),
        )
        entries = [
            writer.remediate(v, fleet.categories, apply=args.apply).document()
            for v in fleet.verdicts
            if v.status not in PASSING
        ]
    finally:
        clients.close()
    document: RemediationDocument = {
        "schemaVersion": SCHEMA_VERSION,
        "mode": "apply" if args.apply else "dry-run",
        "workspace": settings.remediation.workspace,
        "registries": entries,
        "errors": [*fleet.errors, *writer.errors],
    }
    if args.format == "json":
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(document, sys.stdout)
    return exit_code(document)


def exit_code(document: RemediationDocument) -> int:
    apply = document["mode"] == "apply"
    for entry in document["registries"]:
        plan, action = entry["plan"], entry["action"]
        if plan["action"] == "blocked" and plan["statusBefore"] != Status.UNKNOWN.value:
            return EXIT_LEFT
        if apply and action is not None and action["result"] != "applied":
            return EXIT_LEFT
    return EXIT_LEFT if document["errors"] else EXIT_OK


def _last(resource_id: str | None) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1] if resource_id else "-"


def setting_line(setting: SettingDocument) -> str:
    """`to law-central (Dedicated); logs allLogs; metrics AllMetrics`, disabled entries
    marked `(off)`."""
    places = []
    if setting["workspaceId"]:
        mode = setting["logAnalyticsDestinationType"] or "AzureDiagnostics"
        places.append(f"{_last(setting['workspaceId'])} ({mode})")
    if setting["storageAccountId"]:
        places.append(f"storage {_last(setting['storageAccountId'])}")
    if setting["eventHubAuthorizationRuleId"]:
        places.append(f"event hub {setting['eventHubName'] or '-'}")
    logs = [
        (e["category"] or e["categoryGroup"] or "?") + ("" if e["enabled"] else " (off)")
        for e in setting["logs"]
    ]
    metrics = [m["category"] + ("" if m["enabled"] else " (off)") for m in setting["metrics"]]
    return _shown(
        f"to {', '.join(places) or 'nowhere'}; logs {', '.join(logs) or 'none'}; "
        f"metrics {', '.join(metrics) or 'none'}"
    )


def render(document: RemediationDocument, out: TextIO) -> None:
    apply = document["mode"] == "apply"
    head = "Remediation" if apply else "Dry run: nothing is written (add --apply to write)"
    out.write(f"{head}. Workspace: {_shown(document['workspace'] or 'not set')}\n")
    for entry in document["registries"]:
        _render_entry(entry, out)
    counts: dict[str, int] = {}
    for entry in document["registries"]:
        action = entry["action"]
        key = action["result"] if action is not None else entry["plan"]["action"]
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{n} {key}" for key, n in sorted(counts.items())) or "nothing to do"
    out.write(f"\n{len(document['registries'])} registries not compliant: {summary}\n")
    for error in document["errors"]:
        out.write(f"warning: {_shown(error)}\n")


def _render_entry(entry: RemediationEntry, out: TextIO) -> None:
    plan, action = entry["plan"], entry["action"]
    reasons = ", ".join(plan["reasonsBefore"]) or "-"
    out.write(f"\n{_shown(plan['registry'])}  {plan['statusBefore']} ({_shown(reasons)})\n")
    if plan["action"] in ("none", "blocked"):
        out.write(f"  {plan['action']}: {_shown(plan['why'])}\n")
        return
    out.write(f"  {plan['action']} the setting '{_shown(plan['settingName'])}'\n")
    if plan["before"] is not None:
        out.write(f"    before: {setting_line(plan['before'])}\n")
    if plan["after"] is not None:
        out.write(f"    after:  {setting_line(plan['after'])}\n")
    for change in plan["changes"]:
        out.write(f"    - {_shown(change)}\n")
    if action is not None:
        now = action["statusAfter"] or "not re-read"
        out.write(f"  {action['result']}: {_shown(action['message'])}; now {now}")
        if action["pendingSince"]:
            out.write(f" (logs pending since {action['pendingSince']})")
        out.write("\n")
