"""Benchmark: the audit against the emulator with generated fleets, ARM latency and throttling on.

    python bench/audit_fleet.py                       # every case at ARM's own rate (~25 min)
    python bench/audit_fleet.py --cases 1k,5k-one-sub --scale 10   # a 10x faster world
    python bench/audit_fleet.py --quick               # a tenth of each fleet, to try the script

Each case runs three processes, so none shares a GIL with another: the emulator
(`python -m emulator`, latency and throttling from the scenario's knobs), Azurite's Table service
(its access log counts table transactions), and the audit (`python -m auditor audit`). Measured:

- wall time of the audit process, start to exit;
- ARM reads per registry and 429s, from the emulator's request log (`GET /_emulator/requests`);
- peak RSS of the audit process, from `wait4` (the kernel's high-water mark for that child);
- table transactions, one per HTTP request in Azurite's access log (a batch is one);
- the throttle bound: the least time the emulator's token buckets allow for the reads each
  subscription received (`auditor.pacing.throttle_bound_seconds`), and wall / bound.

The emulator's `clock_scale` multiplies ARM's refill rate (25/s) and the auditor paces at the same
scaled rate. The burst stays 250: it is a number of requests, not a time, so a world running
`scale` times faster still starts each subscription with 250. Every token-bucket time shrinks by
`scale`; the rest of the run (start-up, latency, log queries, storage, alerts) does not, so
wall / bound is pessimistic at scale 10 and the bench also projects it to ARM's real rate.
Per-phase times come from the request log's timestamps and when Azurite's lines appeared.

Not a test: CI does not run it. Results: a markdown table on stdout, JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cpu_stages as cpu_stages_module  # noqa: E402  (beside this script)

from auditor.azure.pipeline import pacing_scope  # noqa: E402
from auditor.pacing import throttle_bound_seconds  # noqa: E402
from auditor.settings import MAX_CONCURRENCY  # noqa: E402
from emulator import fleet  # noqa: E402
from emulator.azurite import DEV_ACCOUNT, DEV_KEY  # noqa: E402

RESULTS = REPO / "bench" / "results"
ARM_REFILL = 25.0  # ARM's read refill per subscription and principal (azure-facts §5)
ARM_BURST = 250
MB = 1024 * 1024
TABLE_PREFIX = "bench"

# Targets from issue #12 (tightening #3 §8's 1.05, 1.25 and 300 MB).
MAX_READS_PER_REGISTRY = 1.01
MAX_WALL_OVER_BOUND = 1.10
MAX_RSS_MB_AT_10K = 200
# 10,000 registries with no throttle bound (every subscription within its burst).
MAX_WALL_S_WITHOUT_BOUND_AT_10K = 20.0
# A change-driven run (issue #15): ARM reads <= changes + 2 per subscription + 10, in 10 s.
CHANGES_READS_PER_SUBSCRIPTION = 2
CHANGES_READS_SLACK = 10
MAX_CHANGES_WALL_S = 10.0
# Below this the bound says little: start-up alone takes about a second.
MEANINGFUL_BOUND_S = 5.0


@dataclass(frozen=True)
class Case:
    name: str
    registries: int
    subscriptions: int
    # Share of the registries put in the first subscription (emulator.fleet spreads the rest
    # at random over all of them): real tenants have one or two big subscriptions.
    one_subscription_share: float | None
    description: str
    # A change-driven case: a full sweep, then this many diagnostic settings deleted, then the
    # run measured: `audit --changes` (issue #15's figures).
    changes: int = 0


CASES = {
    c.name: c
    for c in (
        Case("1k", 1_000, 10, 0.5, "1,000 registries, 10 subscriptions, half in one"),
        Case("10k", 10_000, 20, 0.5, "10,000 registries, 20 subscriptions, half in one"),
        Case("5k-one-sub", 5_000, 1, None, "one subscription holding 5,000"),
        Case("10k-100-subs", 10_000, 100, None, "100 subscriptions sharing 10,000"),
        Case(
            "10k-changes",
            10_000,
            20,
            None,
            "10,000 in 20 subscriptions, 25 settings changed since a full sweep",
            changes=25,
        ),
    )
}


def knobs(scale: float, latency_ms: float) -> dict[str, Any]:
    return {
        "latency": {
            "arm": {"distribution": "lognormal", "median_ms": latency_ms, "sigma": 0.5,
                    "max_ms": 2000, "seed": 1},
            "resourcegraph": {"distribution": "lognormal", "median_ms": 4 * latency_ms,
                              "sigma": 0.5, "max_ms": 5000, "seed": 2},
            "identity": {"distribution": "fixed", "ms": 5},
        },
        "arm_throttle": {"enabled": True, "burst": ARM_BURST, "refill_per_second": ARM_REFILL,
                         "clock_scale": scale},
        "request_log_limit": 1_000_000,
    }  # fmt: skip


def fleet_scenario(case: Case, scale: float, latency_ms: float, events: bool) -> dict[str, Any]:
    """The case's fleet from the shared generator, with the bench's latency and throttling."""
    data = fleet.generate(
        case.registries,
        case.subscriptions,
        seed=1,
        one_subscription_share=case.one_subscription_share,
        # Without log traffic every registry would be "logs silent", alerting on all of them.
        events=events,
    )
    data["knobs"] = knobs(scale, latency_ms)
    return data


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def clean_env() -> dict[str, str]:
    """The bench's environment without anything that would steer the auditor or the Azure
    credential elsewhere (a developer's AZURE_* login, a local.settings AUDITOR_*)."""
    drop = ("AUDITOR_", "AZURE_", "IDENTITY_", "MSI_", "IMDS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@dataclass
class Emulator:
    proc: subprocess.Popen[bytes]
    info: dict[str, Any]

    def request_log(self) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.info['base_url']}/_emulator/requests",
            params={"limit": 10_000_000},
            verify=self.info["ca_path"],
            timeout=120,
        )
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries

    def warm_logs(self) -> None:
        """Generates the fleet's log rows now: the emulator does it on a workspace's first
        query, which would put its world's set-up on the 2 cores a measured run shares."""
        response = requests.post(
            f"{self.info['base_url']}/_emulator/logs/warm",
            verify=self.info["ca_path"],
            timeout=600,
        )
        response.raise_for_status()


def start_emulator(scenario: Path, workdir: Path, timeout: float = 180.0) -> Emulator:
    state = workdir / "emulator"
    log = open(workdir / "emulator.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--scenario", str(scenario), "--state-dir", str(state)],
        cwd=REPO,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    info_path = state / "emulator.json"
    deadline = time.monotonic() + timeout
    while not info_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            tail = (workdir / "emulator.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the emulator did not start:\n{tail}")
        time.sleep(0.1)
    return Emulator(proc, json.loads(info_path.read_text()))


@dataclass
class TableRequest:
    seen: float  # epoch seconds when the bench read the line (within one poll interval)
    method: str
    table: str  # "$batch" for a transaction, "Tables" for table creation


_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" \d{3}')
_TABLE = re.compile(r"^/[^/]+/(?P<table>[^/(?]+)")


@dataclass
class TableService:
    proc: subprocess.Popen[bytes]
    port: int
    access_log: Path
    requests: list[TableRequest] = field(default_factory=list)
    _offset: int = 0

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/{DEV_ACCOUNT};"
        )

    def poll(self) -> None:
        """Read the access log's new lines. Azurite stamps them to the second only, so the
        bench notes when it saw each one: polled every 20 ms, that times the storage phases."""
        with self.access_log.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        now = time.time()
        for line in complete.decode(errors="replace").splitlines():
            m = _ACCESS.search(line)
            if m is not None:
                t = _TABLE.match(m["path"])
                self.requests.append(TableRequest(now, m["method"], t["table"] if t else "?"))


def start_table_service(workdir: Path, timeout: float = 30.0) -> TableService:
    """Azurite's Table service alone and not --silent: its access log has one line per request,
    the count of table transactions (emulator.azurite starts all three services silent)."""
    modules = Path(os.environ.get("ACR_AUDITOR_NODE_MODULES", REPO / "node_modules"))
    binary = modules / ".bin" / "azurite-table"
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: run `npm ci` in {REPO}")
    port = _free_port()
    access_log = workdir / "azurite-table.log"
    log = open(access_log, "wb")
    cmd = [
        str(binary), "--tableHost", "127.0.0.1", "--tablePort", str(port),
        "--inMemoryPersistence", "--disableTelemetry",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                service = TableService(proc, port, access_log)
                service.poll()  # skip the start-up banner
                service.requests.clear()
                return service
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                raise RuntimeError("Azurite's Table service did not start") from None
            time.sleep(0.1)


@dataclass
class AuditProcess:
    wall_s: float
    exit_code: int
    peak_rss_mb: float
    cpu_s: float
    started_epoch: float
    ended_epoch: float
    document: dict[str, Any] | None
    stderr_tail: str
    rss_samples: list[tuple[float, float]]  # (epoch s, MB), every 100 ms: which phase peaks
    cpu_stages: dict[str, float] = field(default_factory=dict)  # share of GIL samples


def _spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the audit's GIL holder (see `cpu_stages.py`)."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(binary).exists():
        raise SystemExit("--cpu-stages needs py-spy (pip install -r requirements-dev.txt)")
    cmd = [binary, "record", "--pid", str(pid), "--gil", "--threads", "--rate", "100",
           "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_audit(
    env: dict[str, str],
    workdir: Path,
    *,
    tag: str,
    timeout: float,
    profile: bool,
    cli_args: list[str],
    tick: Callable[[], None],
    memory: bool = False,
    cpu_stages: bool = False,
) -> AuditProcess:
    out_path, err_path = workdir / f"audit-{tag}.json", workdir / f"audit-{tag}.stderr"
    # cProfile sees the main thread only: inventory, waiting on the pool, judgement, storage.
    prof = ["-m", "cProfile", "-o", str(workdir / f"audit-{tag}.prof")] if profile else []
    cmd = [sys.executable, *prof, "-m", "auditor", "audit", "--format", "json", "--quiet"]
    if memory:
        traced = str(workdir / f"audit-{tag}.memory.txt")
        cmd = [sys.executable, str(REPO / "bench" / "memory_profile.py"), traced, *cmd[3:]]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started_epoch = time.time()
        started = time.perf_counter()
        proc = subprocess.Popen([*cmd, *cli_args], cwd=REPO, env=env, stdout=out, stderr=err)
        spy = _spy(proc.pid, workdir / f"audit-{tag}.gil.txt") if cpu_stages else None
        child = psutil.Process(proc.pid)
        samples: list[tuple[float, float]] = []
        # wait4 reports this child's own rusage: ru_maxrss is its peak RSS, exact, whatever
        # the polling interval; the samples only say when it happened.
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            tick()
            if not samples or time.time() - samples[-1][0] >= 0.1:
                try:
                    samples.append((time.time(), child.memory_info().rss / MB))
                except psutil.Error:
                    pass  # exiting
            time.sleep(0.02)
        wall = time.perf_counter() - started
        ended_epoch = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
    stages: dict[str, float] = {}
    if spy is not None:
        spy.wait(timeout=60)  # it stops when the audit exits
        with open(workdir / f"audit-{tag}.gil.txt", encoding="utf-8", errors="replace") as f:
            stages = cpu_stages_module.shares(f)
    tick()
    text = out_path.read_text(errors="replace")
    try:
        document = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        document = None
    return AuditProcess(
        wall_s=wall,
        exit_code=proc.returncode,
        peak_rss_mb=usage.ru_maxrss * 1024 / MB,  # Linux reports KiB
        cpu_s=usage.ru_utime + usage.ru_stime,
        started_epoch=started_epoch,
        ended_epoch=ended_epoch,
        document=document,
        stderr_tail=err_path.read_text(errors="replace")[-3000:],
        cpu_stages=stages,
        rss_samples=samples,
    )


# --------------------------------------------------------------------------- analysis

# Tables of the alert engine (state, history, outbox); every other table is the audit store's.
ALERT_TABLE_MARKERS = ("alert", "outbox")


def analyse(
    entries: list[dict[str, Any]],
    table_requests: list[TableRequest],
    audit: AuditProcess,
    *,
    rate: float,
    burst: int,
) -> dict[str, Any]:
    """Counts, the throttle bound and the phases of one run, from the emulator's request log
    and the table requests seen during it."""
    started, ended = audit.started_epoch, audit.ended_epoch
    mine = [e for e in entries if started <= e["time"] <= ended]
    reads = [e for e in mine if e["api"] in ("arm", "resourcegraph")]
    arm = [e for e in reads if e["api"] == "arm"]
    logs = [e["time"] for e in mine if e["api"] == "logs"]
    # The buckets meter what they let through (a refused request took no token); Resource
    # Graph has its own quota, not the ARM bucket.
    per_scope = Counter(pacing_scope(e["path"]) for e in arm if e["status"] != 429)
    settings = [e for e in arm if e["path"].lower().endswith("/diagnosticsettings")]
    # An entry is logged when its response goes out: the first settings read was sent about
    # one latency earlier, so the phase starts at the last request before it.
    before = [e["time"] for e in reads if settings and e["time"] < settings[0]["time"]]
    first = min((e["time"] for e in mine), default=started)
    settings_start = max(before, default=first)
    settings_end = max((e["time"] for e in settings), default=settings_start)
    emulator_end = max((e["time"] for e in mine), default=settings_end)

    groups: Counter[str] = Counter()
    alerts_first: float | None = None
    table_last = emulator_end
    for t in table_requests:
        if not started <= t.seen <= ended + 0.1:
            continue
        if t.table == "Tables":
            group = "create_table"
        elif t.table == "$batch":
            # A transaction does not name its table, and the store and the alerts both write
            # while the settings are read: counted together.
            group = "transactions"
        elif any(m in t.table.lower() for m in ALERT_TABLE_MARKERS):
            group = "alerts"
        else:
            group = "store"
        groups[group] += 1
        if t.seen >= emulator_end:
            table_last = max(table_last, t.seen)
            if group == "alerts" and alerts_first is None:
                alerts_first = t.seen
    # Phase -> (start, end) in epoch seconds.
    spans = {
        "start-up": (started, first),
        "inventory": (first, settings_start),
        "settings reads": (settings_start, settings_end),
        "log queries": (min(logs), max(logs)) if logs else (settings_end, settings_end),
        "store": (emulator_end, alerts_first or table_last),
        "alerts": (alerts_first, table_last) if alerts_first else (table_last, table_last),
        "exit": (table_last, ended),
        # The audit overlaps log queries and storage with the paced reads: what is left after
        # the last read is what the throttle does not hide.
        "after last read": (settings_end, ended),
    }
    rss_peaks = {
        name: round(max((mb for t, mb in audit.rss_samples if a <= t <= b), default=0.0), 1)
        for name, (a, b) in spans.items()
    }
    return {
        "arm_reads": len(reads),
        "graph_queries": sum(1 for e in reads if e["api"] == "resourcegraph"),
        "log_queries": len(logs),
        "throttled": sum(1 for e in reads if e["status"] == 429),
        "throttled_logs": sum(1 for e in mine if e["api"] == "logs" and e["status"] == 429),
        "reads_per_scope": dict(per_scope),
        "bound_s": throttle_bound_seconds(dict(per_scope), rate=rate, burst=burst),
        "settings_phase_s": settings_end - settings_start,
        # The other floor: `concurrency` requests in flight wait sum(latency) / concurrency.
        "latency_sum_s": sum(e["latency_ms"] for e in reads) / 1000.0,
        "table_groups": dict(groups),
        "phases_s": {k: round(max(0.0, b - a), 2) for k, (a, b) in spans.items()},
        "rss_peak_mb_by_phase": rss_peaks,
    }


@dataclass
class Result:
    case: str
    run: int
    commit: str  # what the audit ran: the tree may change between a bench's cases
    description: str
    registries: int
    subscriptions: int
    largest_subscription: int
    scale: float
    rate_per_s: float
    burst: int
    latency_median_ms: float
    concurrency: int
    alerts: bool
    wall_s: float
    exit_code: int
    run_status: str | None
    totals: dict[str, int]
    arm_reads: int
    graph_queries: int
    log_queries: int
    reads_per_registry: float
    throttled_429: int  # ARM and Resource Graph: the target
    throttled_logs_429: int  # Log Analytics (its own limits)
    peak_rss_mb: float
    audit_cpu_s: float
    emulator_cpu_s: float
    table_service_cpu_s: float  # Azurite's
    # The audit's, the emulator's and Azurite's CPU over the machine's cores: the least wall
    # time this run's work could take here, however well the three overlapped.
    cpu_floor_s: float
    table_transactions: int
    table_groups: dict[str, int]
    bound_s: float
    concurrency_bound_s: float
    wall_over_bound: float | None
    settings_over_bound: float | None
    # What wall / bound would be at ARM's real rate: the paced reads stretch by `scale`, the
    # rest of the run (start-up, inventory, storage, alerts) does not.
    projected_wall_over_bound_at_scale_1: float | None
    registries_per_s: float
    phases_s: dict[str, float]
    rss_peak_mb_by_phase: dict[str, float]
    reads_per_scope: dict[str, int]
    cpu_stages: dict[str, float] = field(default_factory=dict)  # share of the audit's CPU
    targets: dict[str, bool | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def build_result(
    case: Case,
    run: int,
    args: argparse.Namespace,
    scenario: dict[str, Any],
    audit: AuditProcess,
    req: dict[str, Any],
    cpu: tuple[float, float],
    commit: str,
) -> Result:
    """`cpu`: the emulator's and Azurite's CPU seconds during the run."""
    n = len(scenario["registries"])
    counts = Counter(r["subscription"] for r in scenario["registries"])
    totals = {k: int(v) for k, v in (audit.document or {}).get("totals", {}).items()}
    bound = req["bound_s"]
    meaningful = bound >= MEANINGFUL_BOUND_S
    concurrency = args.concurrency or MAX_CONCURRENCY
    emulator_cpu_s, table_cpu_s = cpu
    cores = os.cpu_count() or 1
    r = Result(
        case=case.name,
        run=run,
        commit=commit,
        description=case.description,
        registries=n,
        subscriptions=len(counts),
        largest_subscription=max(counts.values()),
        scale=args.scale,
        rate_per_s=ARM_REFILL * args.scale,
        burst=ARM_BURST,
        latency_median_ms=args.latency_ms,
        concurrency=concurrency,
        alerts=not args.no_alerts,
        wall_s=round(audit.wall_s, 2),
        exit_code=audit.exit_code,
        run_status=(audit.document or {}).get("run", {}).get("status"),
        totals=totals,
        arm_reads=req["arm_reads"],
        graph_queries=req["graph_queries"],
        log_queries=req["log_queries"],
        reads_per_registry=round(req["arm_reads"] / n, 4) if n else 0.0,
        throttled_429=req["throttled"],
        throttled_logs_429=req["throttled_logs"],
        peak_rss_mb=round(audit.peak_rss_mb, 1),
        audit_cpu_s=round(audit.cpu_s, 2),
        emulator_cpu_s=round(emulator_cpu_s, 2),
        table_service_cpu_s=round(table_cpu_s, 2),
        cpu_floor_s=round((audit.cpu_s + emulator_cpu_s + table_cpu_s) / cores, 2),
        table_transactions=sum(req["table_groups"].values()),
        table_groups=req["table_groups"],
        bound_s=round(bound, 2),
        concurrency_bound_s=round(req["latency_sum_s"] / concurrency, 2),
        wall_over_bound=round(audit.wall_s / bound, 3) if meaningful else None,
        settings_over_bound=round(req["settings_phase_s"] / bound, 3) if meaningful else None,
        projected_wall_over_bound_at_scale_1=(
            round((audit.wall_s + bound * (args.scale - 1)) / (bound * args.scale), 3)
            if meaningful
            else None
        ),
        registries_per_s=round(n / audit.wall_s, 1),
        phases_s=req["phases_s"],
        rss_peak_mb_by_phase=req["rss_peak_mb_by_phase"],
        reads_per_scope=req["reads_per_scope"],
        cpu_stages=audit.cpu_stages,
    )
    r.targets = {
        "reads_per_registry": r.reads_per_registry <= MAX_READS_PER_REGISTRY,
        "wall_over_bound": (
            r.wall_over_bound <= MAX_WALL_OVER_BOUND if r.wall_over_bound is not None else None
        ),
        "wall_without_bound": (
            r.wall_s <= MAX_WALL_S_WITHOUT_BOUND_AT_10K
            if n >= 10_000 and r.wall_over_bound is None and not (case.changes and run > 1)
            else None
        ),
        "changes_reads": (
            r.arm_reads  # Resource Graph's included, as the issue counts them
            <= case.changes + CHANGES_READS_PER_SUBSCRIPTION * r.subscriptions + CHANGES_READS_SLACK
            if case.changes and run > 1
            else None
        ),
        "changes_wall": r.wall_s <= MAX_CHANGES_WALL_S if case.changes and run > 1 else None,
        "no_429": r.throttled_429 == 0,
        "peak_rss": r.peak_rss_mb <= MAX_RSS_MB_AT_10K if n >= 10_000 else None,
        "all_judged": totals.get("total") == n and audit.exit_code in (0, 1),
    }
    if not meaningful:
        r.notes.append(
            f"throttle bound {bound:.2f} s: every subscription stays (nearly) within its burst;"
            f" the floor is concurrency x latency, {r.concurrency_bound_s:.1f} s"
        )
    if not r.targets["all_judged"]:
        r.notes.append(f"audit exit {audit.exit_code}, judged {totals.get('total')}/{n}")
        r.notes.append(audit.stderr_tail)
    return r


# --------------------------------------------------------------------------- one case


def run_case(case: Case, args: argparse.Namespace, root: Path) -> list[Result]:
    workdir = root / case.name
    workdir.mkdir(parents=True)
    rate = ARM_REFILL * args.scale
    scenario = fleet_scenario(case, args.scale, args.latency_ms, not args.no_events)
    scenario_path = workdir / "fleet.json"
    scenario_path.write_text(json.dumps(scenario))
    counts = Counter(r["subscription"] for r in scenario["registries"])
    _say(case.name, f"{len(scenario['registries'])} registries in {len(counts)} subscriptions"
         f" (largest {max(counts.values())}); starting the emulator and Azurite")  # fmt: skip
    emulator = start_emulator(scenario_path, workdir)
    tables = None
    results = []
    try:
        emulator.warm_logs()
        tables = start_table_service(workdir)
        env = {
            **clean_env(),
            **emulator.info["environ"],
            "AUDITOR_STORAGE": tables.connection_string,
            "AUDITOR_TABLE_PREFIX": TABLE_PREFIX,
            "AUDITOR_ARM_READS_PER_SECOND": str(rate),
            "AUDITOR_ARM_BURST": str(ARM_BURST),
        }
        if args.concurrency:
            env["AUDITOR_MAX_CONCURRENCY"] = str(args.concurrency)
        emulator_process = psutil.Process(emulator.proc.pid)
        table_process = psutil.Process(tables.proc.pid)
        audits = []
        # A change-driven case measures its second run: a full sweep first, then the changes.
        runs = max(args.runs, 2) if case.changes else args.runs
        for run in range(1, runs + 1):
            if run > 1:
                # Scheduled runs are hours apart: let the emulator's buckets fill up again.
                time.sleep(ARM_BURST / rate + 1.0)
            extra = []
            if case.changes and run > 1:
                _say(case.name, f"deleting {case.changes} diagnostic settings")
                change_settings(env, scenario, case.changes)
                time.sleep(ARM_BURST / rate + 1.0)  # and the writes' tokens come back
                extra = ["--changes"]
            _say(case.name, f"audit run {run}")
            cpu_before = sum(emulator_process.cpu_times()[:2])
            table_cpu_before = sum(table_process.cpu_times()[:2])
            commit = _commit()
            audit = run_audit(
                env,
                workdir,
                tag=str(run),
                timeout=args.timeout,
                profile=args.profile,
                memory=args.memory,
                cpu_stages=args.cpu_stages,
                cli_args=(["--no-alerts"] if args.no_alerts else []) + extra,
                tick=tables.poll,
            )
            emulator_cpu = sum(emulator_process.cpu_times()[:2]) - cpu_before
            table_cpu = sum(table_process.cpu_times()[:2]) - table_cpu_before
            audits.append((audit, emulator_cpu, table_cpu, commit))
        entries = emulator.request_log()
        if args.keep:
            (workdir / "requests.json").write_text(json.dumps(entries))
    finally:
        _stop(emulator.proc)
        if tables is not None:
            _stop(tables.proc)
    for run, (audit, emulator_cpu, table_cpu, commit) in enumerate(audits, start=1):
        req = analyse(entries, tables.requests, audit, rate=rate, burst=ARM_BURST)
        cpu = (emulator_cpu, table_cpu)
        result = build_result(case, run, args, scenario, audit, req, cpu, commit)
        _say(case.name, json.dumps(asdict(result)))
        results.append(result)
    return results


def change_settings(env: dict[str, str], scenario: dict[str, Any], count: int) -> None:
    """Deletes the first diagnostic setting of `count` registries (every n-th with one),
    through ARM as an operator would: the emulator's activity log records each."""
    from auditor.runtime import build_arm_clients, build_credential
    from auditor.settings import Settings
    from emulator.testing import sdk_environment

    with_settings = [r for r in scenario["registries"] if r.get("settings")]
    step = max(1, len(with_settings) // count)
    chosen = with_settings[::step][:count]
    with sdk_environment(env):
        clients = build_arm_clients(Settings.from_env(env), build_credential())
        try:
            for r in chosen:
                clients.monitor().diagnostic_settings.delete(
                    registry_id(r), r["settings"][0]["name"]
                )
        finally:
            clients.close()


def registry_id(registry: dict[str, Any]) -> str:
    """The ARM id of one of a scenario's registries."""
    return (
        f"/subscriptions/{registry['subscription']}/resourceGroups/{registry['resourceGroup']}"
        f"/providers/Microsoft.ContainerRegistry/registries/{registry['name']}"
    )


def _say(case: str, message: str) -> None:
    print(f"[{case}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- report


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def _label(r: Result, runs: int) -> str:
    return r.description + (f", run {r.run}" if runs > 1 else "")


def markdown(results: list[Result], runs: int) -> str:
    lines = [
        "| case | registries | subscriptions (largest) | wall s | throttle bound s | wall / bound"
        " | settings reads / bound | ARM reads / registry | 429s | peak RSS MB"
        " | table transactions |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        t = r.targets
        ratio = f"{r.wall_over_bound:.2f}" if r.wall_over_bound is not None else "n/a ¹"
        logs_429 = f" (+{r.throttled_logs_429} logs)" if r.throttled_logs_429 else ""
        # A change-driven run's own targets: its wall time and its ARM reads in all.
        wall_target = t.get("changes_wall", t.get("wall_without_bound"))
        if wall_target is None:
            wall_target = t.get("wall_without_bound")
        changes_reads = t.get("changes_reads")
        in_all = (
            f" ({r.arm_reads} in all{_mark(changes_reads)})" if changes_reads is not None else ""
        )
        lines.append(
            f"| {_label(r, runs)} | {r.registries:,}"
            f" | {r.subscriptions} ({r.largest_subscription:,})"
            f" | {r.wall_s:.1f}{_mark(wall_target)}"
            f" | {r.bound_s:.1f} | {ratio}{_mark(t['wall_over_bound'])}"
            f" | {f'{r.settings_over_bound:.2f}' if r.settings_over_bound else 'n/a ¹'}"
            f" | {r.reads_per_registry:.3f}{_mark(t['reads_per_registry'])}{in_all}"
            f" | {r.throttled_429}{_mark(t['no_429'])}{logs_429}"
            f" | {r.peak_rss_mb:.0f}{_mark(t['peak_rss'])}"
            f" | {r.table_transactions:,} ({r.table_groups.get('transactions', 0):,} batches) |"
        )
    names = list(results[0].phases_s) if results else []
    lines += [
        "",
        "| case | " + " | ".join(names) + " | audit CPU s | emulator CPU s | Azurite CPU s"
        f" | all CPU / {os.cpu_count() or 1} cores s | wall / bound at 25/s (projected) |",
        "|---|" + "---:|" * (len(names) + 5),
    ]
    for r in results:
        projected = r.projected_wall_over_bound_at_scale_1
        lines.append(
            f"| {_label(r, runs)} | "
            + " | ".join(f"{r.phases_s[k]:.1f}" for k in names)
            + f" | {r.audit_cpu_s:.1f} | {r.emulator_cpu_s:.1f} | {r.table_service_cpu_s:.1f}"
            + f" | {r.cpu_floor_s:.1f} | {f'{projected:.2f}' if projected else 'n/a'} |"
        )
    staged = [r for r in results if r.cpu_stages]
    if staged:
        lines += ["", "| case | audit CPU by stage (s, share of GIL samples) |", "|---|---|"]
        for r in staged:
            parts = (f"{k} {r.audit_cpu_s * v:.1f} ({v:.0%})" for k, v in r.cpu_stages.items())
            lines.append(f"| {_label(r, runs)} | {'; '.join(parts)} |")
    return "\n".join(lines) + "\n"


def _commit() -> str:
    """HEAD, marked dirty when auditor/ or emulator/ differ from it: the numbers belong to it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "auditor", "emulator")
    return git("rev-parse", "--short", "HEAD") + ("-dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--cases", default=",".join(CASES), help=f"of {', '.join(CASES)}")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="token-bucket clock scale (1: ARM's own rate)"
    )
    parser.add_argument("--latency-ms", type=float, default=40.0, help="median ARM latency")
    parser.add_argument("--concurrency", type=int, default=0, help="AUDITOR_MAX_CONCURRENCY")
    parser.add_argument("--runs", type=int, default=1, help="audits per case (2: warm store)")
    parser.add_argument("--no-alerts", action="store_true", help="pass --no-alerts to the audit")
    parser.add_argument(
        "--no-events", action="store_true", help="fleet without log traffic (all silent)"
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of each fleet")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per audit, seconds")
    parser.add_argument("--keep", action="store_true", help="keep logs, scenario, request log")
    parser.add_argument("--profile", action="store_true", help="cProfile the audit (+ --keep)")
    parser.add_argument(
        "--memory",
        action="store_true",
        help="tracemalloc the audit: top allocation sites near its peak (+ --keep; ~2x slower)",
    )
    parser.add_argument(
        "--cpu-stages",
        action="store_true",
        help="sample the audit with py-spy: its CPU by stage (storage, log queries, ...)",
    )
    args = parser.parse_args(argv)
    args.keep = args.keep or args.profile or args.memory
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    if args.scale <= 0 or args.runs < 1:
        parser.error("--scale must be above 0 and --runs at least 1")
    cases = [CASES[c] for c in names]
    if args.quick:
        # replace: a change-driven case stays one (its changes and second run too).
        cases = [
            replace(c, registries=max(c.subscriptions, c.registries // 10),
                    description=c.description + " ÷10")
            for c in cases
        ]  # fmt: skip

    root = Path(tempfile.mkdtemp(prefix="acr-bench-"))
    results: list[Result] = []
    try:
        for case in cases:
            results.extend(run_case(case, args, root))
    finally:
        if args.keep:
            print(f"logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"audit_fleet-{stamp}.json"
    machine = {
        "commit": _commit(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "platform": platform.platform(),
    }
    settings = {k: v for k, v in vars(args).items() if k not in ("keep", "profile", "memory")}
    document = {"machine": machine, "settings": settings, "results": [asdict(r) for r in results]}
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(markdown(results, args.runs))
    if any(r.wall_over_bound is None for r in results):
        print("¹ every subscription stays within its burst, so there is no throttle bound.")
    print(
        f"\ncommit {machine['commit']}; scale {args.scale:g} (ARM refill"
        f" {ARM_REFILL * args.scale:g}/s, burst {ARM_BURST}),"
        f" ARM latency lognormal median {args.latency_ms:g} ms; JSON: {out.relative_to(REPO)}"
    )
    failed = sorted({r.case for r in results if any(v is False for v in r.targets.values())})
    if failed:
        print(f"targets missed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
