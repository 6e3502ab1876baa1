"""The demo: the auditor against an emulated fleet, results in Azurite, the API on localhost.

Started by `bash scripts/demo.sh`, which does the set-up first. Everything runs on loopback and
stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from auditor.cli import render_table  # noqa: E402
from auditor.runtime import alerts_provider, audit_once, build_store  # noqa: E402
from auditor.settings import Settings  # noqa: E402
from emulator import azurite  # noqa: E402
from emulator.testing import sdk_environment, start_emulator  # noqa: E402

DEMO_SCENARIO = REPO / "emulator" / "scenarios" / "demo.yaml"
# The links the demo prints, under /api; a test checks each answers 200 on the demo fleet.
EXAMPLE_PATHS = (
    "/compliance",
    "/compliance?at=1m",
    "/compliance/period?from=7d",
    "/report?from=7d",
    "/registries?status=noncompliant",
    "/registries?status=exempt",
    "/registries?status=pending",
    # Registries of demo.yaml: one whose setting was deleted, and a busy one.
    "/registries/acrreportingprod",
    "/registries/acrreportingprod/intervals?from=7d",
    "/registries/acrpaymentsprod/logins?since=24h",
    "/registries/acrpaymentsprod/activity?since=7d",
    "/alerts",
    "/controls",
    "/export?format=sarif",
    "/runs",
    "/health",
    "/docs",
    "/ui",  # the dashboard
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="print the audit and exit")
    parser.add_argument("--port", type=int, default=7071, help="API port (default 7071)")
    parser.add_argument("--scenario", type=Path, default=DEMO_SCENARIO)
    args = parser.parse_args()

    alert_log = capture_alert_records(REPO / ".local-azure" / "demo-alerts.jsonl")
    print(f"Starting the Azure emulator with {args.scenario} ...", flush=True)
    storage = azurite.start()
    # The estate is lined up with the wall clock the auditor reads (pending, silent, lookback).
    emulator = start_emulator(args.scenario, now=datetime.now(UTC))
    try:
        env = {
            **emulator.environ(),
            "AUDITOR_STORAGE": storage.connection_string,
            "AUDITOR_TABLE_PREFIX": "demo",
        }
        with sdk_environment(env):
            settings = Settings.from_env(env)
            print(f"Emulator: {emulator.base_url}   Azurite tables: {storage.table_endpoint}")
            print("Auditing every registry ...", flush=True)
            run = audit_once(
                settings,
                trigger="demo",
                progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True),
            )
            print()
            render_table(run, sys.stdout)
            alert_log.flush()
            sent = sum(1 for _ in alert_log.path.open()) if alert_log.path.exists() else 0
            print(f"\n{sent} alerts went to the log-record sink: {alert_log.path}")
            summary = build_store(settings).get_summary()
            print("\nStored summary (GET /api/compliance):")
            print(json.dumps(summary and summary.get("totals"), indent=2))
            if args.once:
                return 0
            serve(settings, args.port)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        storage.stop()
        print("Stopped the emulator and Azurite.")
    return 0


class _AlertFile(logging.FileHandler):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        super().__init__(path, encoding="utf-8")
        self.path = path


def capture_alert_records(path: Path) -> _AlertFile:
    """The log-record alert sink writes one JSON line per alert; in the demo they go to a
    file instead of flooding the terminal."""
    from auditor.alerts.sinks.logrecord import LOGGER_NAME

    handler = _AlertFile(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    logger.propagate = False
    return handler


def serve(settings: Settings, port: int) -> None:
    import uvicorn

    from auditor.api import create_app

    base = f"http://127.0.0.1:{port}/api"
    print(f"\nAPI on {base}  (Ctrl-C to stop)")
    for path in EXAMPLE_PATHS:
        print(f"  {base}{path}")
    store = build_store(settings)
    config = uvicorn.Config(
        create_app(
            lambda: store,
            alerts_provider=alerts_provider(settings),
            policy=settings.policy,
            scope=settings.audit.subscriptions,
        ),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    server.run()


if __name__ == "__main__":
    sys.exit(main())
