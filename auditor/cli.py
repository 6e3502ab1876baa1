"""`python -m auditor`: ad-hoc audits, a registry's activity trail, and the local API server.

Exit codes of `audit`: 0 every registry compliant, 1 any registry is not (noncompliant or
unknown), 2 the audit itself failed (bad settings, inventory impossible).
Exit codes of `trail`: 0 the trail was printed, 1 the registry sends no events to a
workspace (nothing to read), 2 it could not be read completely (unknown registry, bad
arguments or settings, a query failed).
Exit codes of `export`: 0 printed, 2 no finished run is stored (or the store failed).
Exit codes of `report`: 0 printed, 2 bad times or the store failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from auditor import __version__
from auditor.cli_json import run_document_streamed
from auditor.errors import ConfigError
from auditor.facts import Status, Verdict
from auditor.reasons import catalog
from auditor.remediation.cli import add_parser as remediate_parser
from auditor.remediation.cli import cmd_remediate
from auditor.run_record import AuditRun, RunStatus
from auditor.settings import GUID_RE, Settings
from auditor.summary import LOGIN_OBSERVATIONS, Totals, log_counts
from auditor.terminal import shown as _shown

if TYPE_CHECKING:
    from auditor.azure.clients import ArmClients
    from auditor.compliance_history import ComplianceAtDocument, PeriodDocument
    from auditor.facts import Registry
    from auditor.trail import Trail

EXIT_OK, EXIT_FINDINGS, EXIT_FAILED = 0, 1, 2
EXPORT_FORMATS = ("sarif", "ocsf", "csv", "json")  # auditor.exports.ExportFormat, not imported
REPORT_PERIOD = timedelta(days=30)  # `report` without --from: the 30 days before --to


def _subscription(value: str) -> str:
    if not GUID_RE.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a subscription id (a GUID)")
    return value.lower()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        # `acr-auditor` when installed (pip install .), `python -m auditor` from a checkout.
        prog="acr-auditor" if Path(sys.argv[0]).name == "acr-auditor" else "python -m auditor",
        description="Audit Azure Container Registry diagnostic settings.",
    )
    parser.add_argument("--version", action="version", version=f"acr-auditor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    audit = sub.add_parser("audit", help="run one audit and print the result")
    audit.add_argument(
        "--format",
        choices=("table", "json", *EXPORT_FORMATS),
        default="table",
        help="table for people; json (docs/cli-json.md); sarif, ocsf or csv (docs/exports.md)",
    )
    audit.add_argument(
        "--subscription",
        action="append",
        type=_subscription,
        default=[],
        metavar="ID",
        help="limit to this subscription (repeatable); default AUDITOR_SUBSCRIPTIONS or all",
    )
    audit.add_argument(
        "--no-store",
        action="store_true",
        help="do not write results to Table Storage (no storage settings needed)",
    )
    audit.add_argument("--no-alerts", action="store_true", help="do not send alerts for this run")
    mode = audit.add_mutually_exclusive_group()
    mode.add_argument(
        "--changes",
        action="store_true",
        help="change-driven: read the activity log since the last run and re-read only the "
        "registries that changed; the rest are judged from their stored settings",
    )
    mode.add_argument(
        "--full",
        action="store_true",
        help="read every registry's settings (the default for `audit`)",
    )
    audit.add_argument("--quiet", action="store_true", help="no progress on stderr")
    audit.add_argument(
        "--status",
        action="append",
        choices=[s.value for s in Status],
        default=[],
        help="show only registries with this status in the table (repeatable)",
    )
    audit.add_argument(
        "--reason",
        action="append",
        default=[],
        metavar="CODE",
        help="show only registries with this reason code or code family, e.g. "
        "category_missing (repeatable)",
    )
    trail = sub.add_parser(
        "trail", help="print a registry's activity trail, read live from Log Analytics"
    )
    trail.add_argument(
        "--registry", required=True, metavar="NAME", help="registry name (or its ARM id)"
    )
    trail.add_argument(
        "--since",
        default="24h",
        help="start: a duration back from now (30m, 24h, 7d, 2w) or an ISO 8601 time",
    )
    trail.add_argument("--until", default=None, help="end, as --since; default now")
    trail.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table for people (default) or the JSON document of docs/cli-json.md",
    )
    export = sub.add_parser(
        "export", help="print the stored results of the last run in a standard format"
    )
    export.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="json",
        help="sarif (SARIF 2.1.0), ocsf (OCSF Compliance Findings), csv or json (docs/exports.md)",
    )
    export.add_argument(
        "--at",
        metavar="TIME",
        help="the fleet at this instant, from the stored history (ISO 8601 or a duration "
        "back from now: 24h, 7d); default the last run",
    )
    _add_report(sub)
    remediate_parser(sub, _subscription)
    alerts = sub.add_parser("alerts", help="alert sinks")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    alerts_test = alerts_sub.add_parser("test", help="send a test alert to one configured sink")
    alerts_test.add_argument(
        "--sink",
        required=True,
        choices=("webhook", "teams", "slack", "queue", "log"),
        help="the sink to test",
    )
    serve = sub.add_parser("serve", help="serve the HTTP API and run the timer schedule")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=7071, help="port to listen on (7071)")
    serve.add_argument("--no-schedule", action="store_true", help="serve only, never audit")
    return parser


def _add_report(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="compliance over time, from the stored history (never re-reading Azure)",
        description="The fleet at an instant (--at), or over a period (--from, --to: each "
        "registry's time in compliance, the mean time to fix, the runs), as a table, JSON or "
        "a printable HTML report (--html). Times: ISO 8601 or a duration back from now.",
    )
    report.add_argument("--at", metavar="TIME", help="the fleet at this instant")
    report.add_argument(
        "--from", dest="start", metavar="TIME", help="start of the period; default --to - 30d"
    )
    report.add_argument("--to", dest="end", metavar="TIME", help="end of the period; default now")
    report.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table for people (default) or the API's JSON document",
    )
    report.add_argument(
        "--html", metavar="FILE", type=Path, help="also write the period's printable report"
    )


def _names(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def render_logs(run: AuditRun, out: TextIO) -> None:
    """The "Logs" section under the table: the registries behind each log finding."""
    if not run.evidence:
        return
    by_code: dict[str, list[str]] = {}
    for verdict in run.verdicts:
        for code in {r.code.partition(catalog.SEPARATOR)[0] for r in verdict.reasons}:
            by_code.setdefault(code, []).append(verdict.registry.name)
    alerts = [
        v.registry.name
        for v in run.verdicts
        if (evidence := run.evidence.get(v.registry.key)) is not None
        and {r.code for r in evidence.observations} & LOGIN_OBSERVATIONS
    ]
    checked = log_counts(run)["checked"]
    out.write(f"\nLogs ({checked} registries checked, {run.log_queries} queries):\n")
    for label, names in (
        ("silent", by_code.get(catalog.LOGS_SILENT, [])),
        ("pending", by_code.get(catalog.PENDING, [])),
        ("unreadable", by_code.get(catalog.LOGS_UNREADABLE, [])),
        ("login alerts", alerts),
    ):
        out.write(f"  {label}: {len(names)}" + (f" ({_names(names)})" if names else "") + "\n")


def render_table(
    run: AuditRun,
    out: TextIO,
    *,
    statuses: Sequence[str] = (),
    reasons: Sequence[str] = (),
) -> None:
    """The run for people. `statuses` and `reasons` (codes, or code prefixes such as
    `category_missing`) narrow the rows on a large fleet; the totals stay the fleet's."""
    if run.status is RunStatus.FAILED and not run.verdicts:
        # Nothing was judged: say why, without an empty table.
        out.write(f"audit failed (run {run.run_id}):\n")
        for error in run.errors:
            out.write(f"error: {error}\n")
        return
    rows = [
        (
            v.registry.name,
            v.registry.subscription_id,
            v.status.value,
            ", ".join(r.code for r in v.reasons) or "-",
        )
        for v in run.verdicts
        if _shown_row(v, statuses, reasons)
    ]
    headers = ("REGISTRY", "SUBSCRIPTION", "STATUS", "REASONS")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers[:3])]
    line = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    out.write(line.format(*headers) + "\n")
    for row in rows:
        out.write(line.format(*row) + "\n")
    counts = {s: sum(1 for v in run.verdicts if v.status is s) for s in Status}
    if len(rows) < len(run.verdicts):
        out.write(f"\n{len(rows)} of {len(run.verdicts)} registries shown (--status, --reason)")
    out.write(
        f"\n{len(run.verdicts)} registries: "
        + ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
        + f" (run {run.run_id}, {run.status.value})\n"
    )
    render_logs(run, out)
    for error in run.errors:
        out.write(f"warning: {error}\n")


def _shown_row(verdict: Verdict, statuses: Sequence[str], reasons: Sequence[str]) -> bool:
    if statuses and verdict.status.value not in statuses:
        return False
    codes = [r.code for r in verdict.reasons]
    families = {c.partition(":")[0] for c in codes}
    return not reasons or any(want in codes or want in families for want in reasons)


def _stamp(value: str | None) -> str:
    if value is None:
        return "?"
    moment = datetime.fromisoformat(value).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def render_trail(trail: Trail, out: TextIO) -> None:
    doc = trail.document()
    window = doc["window"]
    workspaces = ", ".join(w["workspaceId"].rsplit("/", 1)[-1] for w in doc["workspaces"])
    out.write(
        f"Activity trail of {trail.registry.name} from {_stamp(window['start'])} "
        f"to {_stamp(window['end'])} (workspaces: {workspaces})\n\n"
    )
    operations = ", ".join(f"{n} {op}" for op, n in doc["operations"].items() if n)
    out.write(f"Operations: {operations or 'none'}\n")
    if doc["trail"]:
        _table(
            out,
            ("OPERATION", "IDENTITY", "REPOSITORY", "COUNT", "FAILED", "CALLER IPS"),
            [
                (
                    _shown(t["operationName"] or t["operation"]),
                    _shown(t["identity"]),
                    _shown(t["repository"]),
                    str(t["count"]),
                    str(t["failures"]),
                    _shown(", ".join(t["callerIps"])),
                )
                for t in doc["trail"]
            ],
        )
    out.write(f"\nDeletes and untags: {len(doc['deletions'])}\n")
    if doc["deletions"]:
        _table(
            out,
            ("TIME", "OPERATION", "IDENTITY", "REPOSITORY", "TAG", "DIGEST", "CALLER IP", "RESULT"),
            [
                (
                    _stamp(d["at"]),
                    _shown(d["operationName"] or d["operation"]),
                    _shown(d["identity"]),
                    _shown(d["repository"]),
                    _shown(d["tag"]),
                    _shown(d["digest"]),
                    _shown(d["callerIp"]),
                    _shown(d["result"]),
                )
                for d in doc["deletions"]
            ],
        )
    out.write(f"\nActivity log: {len(doc['activityLog'])}\n")
    if doc["activityLog"]:
        _table(
            out,
            ("TIME", "OPERATION", "SETTING", "CALLER", "CALLER IP"),
            [
                (
                    _stamp(a["at"]),
                    _shown(a["operation"]),
                    _shown(a["settingName"]),
                    _shown(a["caller"]),
                    _shown(a["callerIp"]),
                )
                for a in doc["activityLog"]
            ],
        )
    # Errors (failed queries) go to stderr with the exit code; a cap is worth a note here.
    for warning in trail.warnings:
        out.write(f"warning: {_shown(warning)}\n")


def exit_code(run: AuditRun) -> int:
    # Results that could not be stored are printed in full, but the run did not do its job.
    if run.status is RunStatus.FAILED or run.storage_error is not None:
        return EXIT_FAILED
    # A partial run may judge nothing (a subscription it could not see): never a clean exit.
    failing = run.status is RunStatus.PARTIAL or any(
        v.status in (Status.NONCOMPLIANT, Status.UNKNOWN) for v in run.verdicts
    )
    return EXIT_FINDINGS if failing else EXIT_OK


def _progress(quiet: bool) -> Any:
    if quiet:
        return None

    def report(message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        print(f"[{stamp}] {message}", file=sys.stderr, flush=True)

    return report


def cmd_audit(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from auditor.run_record import RunMode
    from auditor.runtime import audit_once

    if args.changes and args.no_store:
        raise BadOption("--changes compares with the stored results: not with --no-store")
    settings = Settings.from_env(environ, require_storage=not args.no_store)
    run = audit_once(
        settings,
        trigger="cli",
        mode=RunMode.CHANGES if args.changes else RunMode.FULL,
        subscriptions=args.subscription or None,
        use_store=not args.no_store,
        alerts=not args.no_alerts,
        # Progress is for a person at a terminal, never for a log or a pipe.
        progress=_progress(args.quiet or not sys.stderr.isatty()),
    )
    if args.format == "json":
        write_json(run_document_streamed(run), sys.stdout)
    elif args.format in EXPORT_FORMATS:
        from auditor.exports import ExportFormat, of_run, render

        sys.stdout.write(render(of_run(run, settings.policy), ExportFormat(args.format)))
    else:
        render_table(run, sys.stdout, statuses=args.status, reasons=args.reason)
    return exit_code(run)


def cmd_export(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from auditor.exports import ExportFormat, of_summary, render
    from auditor.history_views import export_at
    from auditor.runtime import build_store

    at = None
    if args.at is not None:
        at = _instant("--at", args.at, datetime.now(UTC))
    settings = Settings.from_env(environ)
    reader = build_store(settings).reader
    if at is not None:
        history = export_at(reader, at, settings.policy)
        if history["run"] is None:
            print(f"error: no run had finished by {at.isoformat()}", file=sys.stderr)
            return EXIT_FAILED
        sys.stdout.write(render(history, ExportFormat(args.format)))
        return EXIT_OK
    summary = reader.get_summary()
    if summary is None or summary.get("lastRun") is None:
        print("error: no finished run is stored yet: run `audit` first", file=sys.stderr)
        return EXIT_FAILED
    document = of_summary(summary, settings.policy, reader.all_registries())
    sys.stdout.write(render(document, ExportFormat(args.format)))
    return EXIT_OK


class BadOption(ValueError):
    """An option's value the command cannot use: `main` prints it and exits 2."""


def _instant(option: str, text: str, now: datetime) -> datetime:
    from auditor.time_bounds import parse_instant

    try:
        return parse_instant(text, now=now)
    except ValueError as exc:
        raise BadOption(f"{option}: {exc}") from None


def _report_times(
    args: argparse.Namespace, now: datetime
) -> tuple[datetime | None, tuple[datetime, datetime] | None]:
    """(--at, None) or (None, (from, to)); BadOption naming the option."""
    if args.at is not None:
        if args.start is not None or args.end is not None or args.html is not None:
            raise BadOption("--at: not with --from, --to or --html (those are for a period)")
        return _instant("--at", args.at, now), None
    end = _instant("--to", args.end, now) if args.end is not None else now
    start = _instant("--from", args.start, now) if args.start is not None else end - REPORT_PERIOD
    if start >= end:
        raise BadOption("--from: must be before --to")
    return None, (start, end)


def cmd_report(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from auditor import history_views
    from auditor.runtime import build_store

    now = datetime.now(UTC)
    at, period = _report_times(args, now)
    settings = Settings.from_env(environ)
    reader = build_store(settings).reader
    if at is not None:
        fleet = history_views.fleet_at(reader, at)
        _print(args.format, fleet, lambda: render_fleet_at(fleet, sys.stdout))
        return EXIT_OK
    assert period is not None
    document = history_views.fleet_period(reader, *period, now=now)
    if args.html is not None:
        html = history_views.period_html(
            reader, *period, now=now, policy=settings.policy, scope=settings.audit.subscriptions
        )
        args.html.write_text(html, encoding="utf-8")
    _print(args.format, document, lambda: render_period(document, sys.stdout))
    return EXIT_OK


def write_json(document: Mapping[str, Any], out: TextIO) -> None:
    """Indented for a person at a terminal. Compact for a pipe or a file, and one list item
    at a time through the JSON encoder's C path: a 10,000-registry run in a tenth of the time
    indenting takes, never held whole as one string. A value that is an iterator is written
    as a list, each item as it comes."""
    if out.isatty():
        json.dump(
            {k: list(v) if isinstance(v, Iterator) else v for k, v in document.items()},
            out,
            indent=2,
        )
        out.write("\n")
        return
    compact = functools.partial(json.dumps, separators=(",", ":"))
    out.write("{")
    for i, (key, value) in enumerate(document.items()):
        out.write(("," if i else "") + compact(key) + ":")
        if isinstance(value, (list, Iterator)):
            out.write("[")
            for j, item in enumerate(value):
                out.write(("," if j else "") + compact(item))
            out.write("]")
        else:
            out.write(compact(value))
    out.write("}\n")


def _print(fmt: str, document: Mapping[str, Any], table: Callable[[], None]) -> None:
    if fmt == "json":
        write_json(document, sys.stdout)
    else:
        table()


def render_fleet_at(document: ComplianceAtDocument, out: TextIO) -> None:
    """The fleet at an instant, for people."""
    run = document["lastRun"]
    source = f"run {run['id']}, finished {_stamp(run['finishedAt'])}" if run else "no run yet"
    out.write(f"Fleet at {_stamp(document['at'])} ({source})\n\n")
    _table(
        out,
        ("SUBSCRIPTION", *(name.upper() for name in _COUNTS), "%"),
        [
            (
                s["subscriptionId"],
                *(str(n) for n in _counts(s)),
                _percent(s["compliancePercent"]),
            )
            for s in document["bySubscription"]
        ],
    )
    totals = document["totals"]
    out.write(
        f"\n{totals['total']} registries: "
        + ", ".join(
            f"{n} {label}" for n, label in zip(_counts(totals)[1:], _COUNTS[1:], strict=True) if n
        )
        + f" ({_percent(document['compliancePercent'])} compliant)\n"
    )
    for reason in document["byReason"]:
        out.write(f"  {reason['count']:>5}  {_shown(reason['code'])}\n")


_COUNTS = ("total", *(status.value for status in Status))


def _counts(totals: Totals) -> tuple[int, ...]:
    """The counts in `_COUNTS` order; a status newer than the stored counts counts none."""
    found: Mapping[str, object] = totals
    return tuple(n if isinstance(n := found.get(name, 0), int) else 0 for name in _COUNTS)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _hours(seconds: int | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.1f}h"


def render_period(document: PeriodDocument, out: TextIO) -> None:
    """A period's statistics, for people."""
    out.write(f"Compliance from {_stamp(document['from'])} to {_stamp(document['to'])}\n\n")
    _table(
        out,
        "REGISTRY SUBSCRIPTION COMPLIANT JUDGED RATIO PENDING EXEMPT CHANGES NEVER".split(),
        [
            (
                _shown(r["name"]),
                r["subscriptionId"],
                _hours(r["compliantSeconds"]),
                _hours(r["knownSeconds"]),
                "-" if r["complianceRatio"] is None else f"{r['complianceRatio']:.1%}",
                _hours(r["pendingSeconds"]) if r["pendingSeconds"] else "-",
                _hours(r["exemptSeconds"]) if r["exemptSeconds"] else "-",
                str(len(r["intervals"]) - 1),
                "yes" if r["neverCompliant"] else "",
            )
            for r in document["registries"]
        ],
    )
    runs = document["runs"]
    out.write(
        f"\n{len(document['registries'])} registries; never compliant: "
        f"{len(document['neverCompliant'])}; mean time to fix: "
        f"{_hours(document['meanTimeToFixSeconds'])} ({document['fixes']} fixes)\n"
        f"runs: {runs['total']} ({runs['succeeded']} succeeded, {runs['partial']} partial, "
        f"{runs['failed']} failed, {runs['unfinished']} unfinished)\n"
    )


def cmd_trail(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from azure.core.exceptions import AzureError

    from auditor.azure.errors import describe_error
    from auditor.azure.inventory import InventoryError
    from auditor.kql import Window
    from auditor.logs_audit import build_logs_reader
    from auditor.runtime import build_arm_clients, build_credential
    from auditor.time_bounds import parse_time_bound
    from auditor.trail import TrailError, read_trail

    now = datetime.now(UTC)
    try:
        since = parse_time_bound(args.since, now=now)
        until = parse_time_bound(args.until, now=now) if args.until else now
        window = Window(since, until)
    except ValueError as exc:
        print(f"error: --since/--until: {exc}", file=sys.stderr)
        return EXIT_FAILED
    settings = Settings.from_env(environ, require_storage=False)
    credential = build_credential()
    clients = build_arm_clients(settings, credential)
    reader = build_logs_reader(settings, credential)
    try:
        registry = _find_registry(clients, settings, args.registry)
        trail = read_trail(clients, reader, registry, window=window)
    except TrailError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (AzureError, InventoryError) as exc:
        print(f"error: reading the registry failed: {describe_error(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        reader.close()
        clients.close()
    if args.format == "json":
        write_json(trail.document(), sys.stdout)
    else:
        render_trail(trail, sys.stdout)
    for error in trail.errors:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_FAILED if trail.errors else EXIT_OK


def _find_registry(clients: ArmClients, settings: Settings, name: str) -> Registry:
    """The registry by ARM id (one ARM read) or by name (the inventory of the configured
    subscriptions); TrailError(exit 2) when it is not there."""
    from auditor.azure.inventory import discover, read_registry
    from auditor.trail import TrailError

    if name.strip().lower().startswith("/subscriptions/"):
        return read_registry(clients, name.strip())
    inventory = discover(clients, settings.audit.subscriptions)
    wanted = name.strip().casefold()
    for registry in inventory.registries:
        if registry.name.casefold() == wanted:
            return registry
    where = (
        "the configured subscriptions"
        if settings.audit.subscriptions
        else "any visible subscription"
    )
    message = f"no registry named {name!r} in {where}"
    if inventory.failed:
        message += f" ({len(inventory.failed)} subscriptions could not be listed)"
    raise TrailError(message, EXIT_FAILED)


def cmd_alerts(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from auditor.alerts import send_test_alert
    from auditor.alerts.sinks.base import DeliveryError

    settings = Settings.from_env(environ)
    try:
        alert = send_test_alert(settings, args.sink)
    except DeliveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"test alert {alert.id} sent to {args.sink}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, environ: dict[str, str]) -> int:
    import uvicorn

    from auditor.api import create_app
    from auditor.runtime import alerts_provider, build_store, remediation_route, timer_audit
    from auditor.schedule import Scheduler

    settings = Settings.from_env(environ)
    store = build_store(settings)
    app = create_app(
        lambda: store,
        alerts_provider=alerts_provider(settings),
        policy=settings.policy,
        scope=settings.audit.subscriptions,
        # Local and without keys: the remediation route is served (409 while switched off).
        remediation=remediation_route(settings, lambda: store),
    )
    scheduler = None
    if not args.no_schedule:
        scheduler = Scheduler(
            settings.audit.schedule,
            lambda: timer_audit(settings, store, progress=_progress(False)),
        )
        scheduler.start()
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        if scheduler is not None:
            scheduler.stop()
    return EXIT_OK


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = os.environ.get("AUDITOR_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level not in ("DEBUG", "INFO"):
        # Its warning lists every credential it tried; the run's error says what to do.
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
    env = dict(os.environ if environ is None else environ)
    from auditor import telemetry
    from auditor.allocator import tune_malloc
    from auditor.gc_tuning import tune_gc

    tune_malloc(env)  # before any thread starts
    tune_gc()

    telemetry.configure(env)
    try:
        if args.command == "audit":
            return cmd_audit(args, env)
        if args.command == "alerts":
            return cmd_alerts(args, env)
        if args.command == "export":
            return cmd_export(args, env)
        if args.command == "trail":
            return cmd_trail(args, env)
        if args.command == "report":
            return cmd_report(args, env)
        if args.command == "remediate":
            return cmd_remediate(args, env)
        return cmd_serve(args, env)
    except (ConfigError, BadOption) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the exit code promises 2 for an audit that could not run
        logging.getLogger(__name__).debug("audit failed", exc_info=True)
        print(f"error: the audit failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
