"""``python -m emulator --scenario FILE [--port P] [--state-dir DIR]``

Serves the scenario over HTTPS on 127.0.0.1 until SIGINT/SIGTERM. Writes DIR/emulator.json
(base URL, CA path, identity endpoint and header, PID, and the environment variables an SDK
process needs) once it accepts connections, and prints one ready line. Exit codes: 0 after a
clean stop, 2 for a bad scenario, 1 if the server cannot start (e.g. the port is taken).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from emulator import scenario as scenario_mod
from emulator.app import serve_in_thread
from emulator.scenario import ScenarioError
from emulator.state import World


def _write_atomically(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulator", description="Local Azure emulator for acr-auditor."
    )
    parser.add_argument("--scenario", required=True, help="scenario file (YAML or JSON)")
    parser.add_argument("--port", type=int, default=0, help="HTTPS port (default: a free one)")
    parser.add_argument(
        "--state-dir", default=".local-azure", help="where emulator.json and the CA go"
    )
    parser.add_argument(
        "--now",
        default="real",
        help="the emulated clock's start: 'real' (the wall clock, so the auditor's own clock "
        "matches the scenario's relative times), 'scenario' (the file's fixed now) or ISO 8601",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if args.now == "scenario":
        now = None
    elif args.now == "real":
        now = datetime.now(UTC)
    else:
        try:
            now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
        except ValueError:
            parser.error("--now must be 'real', 'scenario' or an ISO 8601 time")
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
    try:
        world = World(scenario_mod.load(args.scenario, now=now))
    except ScenarioError as exc:
        print(f"emulator: invalid scenario: {exc}", file=sys.stderr)
        return 2
    state_dir = Path(args.state_dir).resolve()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        running = serve_in_thread(world, args.port, state_dir=state_dir)
    except (OSError, RuntimeError) as exc:
        print(f"emulator: cannot start on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    info_path = state_dir / "emulator.json"
    _write_atomically(info_path, running.info())
    print(
        f"emulator ready: {running.base_url} ({len(world.registries())} registries, "
        f"{len(world.subscriptions())} subscriptions); CA {running.ca_path}; details {info_path}",
        flush=True,
    )
    # Wake up now and then: a signal handler only runs between bytecodes of the main thread.
    while not stop.wait(0.5):
        if not running.running:
            print("emulator: the server stopped unexpectedly", file=sys.stderr)
            return 1
    running.stop()
    info_path.unlink(missing_ok=True)
    print("emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
