"""Client CPU per diagnostic-settings read: the auditor's threads and sync clients against
asyncio and the SDK's `aio` clients, reading the same registries from the same emulator.

    python bench/read_cpu.py                     # 3,000 registries, 3 rounds of each
    python bench/read_cpu.py --registries 1000 --rounds 2

With no throttle to wait for, the client's CPU per read sets how fast a fleet is read (issue
#12's 100-subscription case). This measures that CPU four ways, so the choice between threads
and asyncio rests on figures, and the SDK's layers show what they cost:

- `threads`: the product's path: `runtime.build_arm_clients` (urllib3 transport, the pacing
  policy) and `diagnostics.read_settings` on `AUDITOR_MAX_CONCURRENCY` threads;
- `asyncio`: `azure.mgmt.monitor.aio` on azure-core's aiohttp transport, `azure.identity.aio`,
  the same pacer in an async policy and the same conversion of each setting, with as many reads
  in flight on one event loop;
- `pipeline`: the same GET through the product's SDK pipeline (policies, pacing, transport) on
  as many threads, the body decoded with `json.loads`: no SDK models;
- `transport`: the same GET through the product's transport alone, on as many threads, the
  body decoded with `json.loads`: no pipeline policies and no SDK models, a floor for what
  any client must spend on HTTP and TLS.

Each reads every registry once per round, rounds alternating, in one process against one
emulator (its own process, ARM latency lognormal, no throttle: pacing's bookkeeping runs, its
waits never do). CPU is the process's (`time.process_time`, every thread). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import audit_fleet  # noqa: E402  (beside this script)

from auditor.azure.diagnostics import read_settings, setting_from_model  # noqa: E402
from auditor.azure.pipeline import REMAINING_READS, pacing_scope  # noqa: E402
from auditor.pacing import TokenBucketPacer  # noqa: E402
from auditor.runtime import build_arm_clients, build_credential  # noqa: E402
from auditor.settings import MAX_CONCURRENCY, Settings  # noqa: E402
from emulator.testing import sdk_environment  # noqa: E402

# High enough that the pacer never waits: its bookkeeping is part of each read's CPU.
UNPACED_RATE, UNPACED_BURST = "10000", "100000"


def on_threads(read: Callable[[str], object], concurrency: int) -> Callable[[list[str]], int]:
    """A round: `read` every registry, `concurrency` at a time."""

    def run(ids: list[str]) -> int:
        with ThreadPoolExecutor(concurrency) as pool:
            return sum(1 for _ in pool.map(read, ids))

    return run


def transport_reader(settings: Settings, concurrency: int) -> Callable[[list[str]], int]:
    """The same GET through the product's transport alone: no pipeline policies, no model
    deserialization, the body decoded with `json.loads`. What the SDK layers cost is the
    difference from `threads`."""
    from azure.core.rest import HttpRequest

    from auditor.azure.clients import ARM_CONNECTION_TIMEOUT_SECONDS, ARM_READ_TIMEOUT_SECONDS
    from auditor.azure.transport import Urllib3Transport

    credential = build_credential()
    scope = settings.arm.audience.rstrip("/") + "/.default"
    transport = Urllib3Transport(
        settings.arm.endpoint,
        pool_size=concurrency * 2,
        connection_timeout=ARM_CONNECTION_TIMEOUT_SECONDS,
        read_timeout=ARM_READ_TIMEOUT_SECONDS,
    )
    base = settings.arm.endpoint.rstrip("/")

    def read(registry_id: str) -> int:
        token = credential.get_token(scope).token  # cached by the credential, as in a pipeline
        url = f"{base}{registry_id}/providers/Microsoft.Insights/diagnosticSettings"
        request = HttpRequest(
            "GET",
            url,
            params={"api-version": "2021-05-01-preview"},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        response = transport.send(request)
        return len(json.loads(response.body())["value"])

    return on_threads(read, concurrency)


def pipeline_reader(settings: Settings, concurrency: int) -> Callable[[list[str]], int]:
    """The same GET through the product's SDK pipeline (its policies, pacing and transport),
    without the SDK's models: the body decoded with `json.loads`. What the models cost is the
    difference from `threads`, what the pipeline costs the difference to `transport`."""
    from azure.core.rest import HttpRequest

    clients = build_arm_clients(settings, build_credential())
    # Any subscription: the request's URL names the registry's own.
    pipeline = clients.activity_monitor("00000000-0000-0000-0000-000000000000")._client
    base = settings.arm.endpoint.rstrip("/")

    def read(registry_id: str) -> int:
        request = HttpRequest(
            "GET",
            f"{base}{registry_id}/providers/Microsoft.Insights/diagnosticSettings",
            params={"api-version": "2021-05-01-preview"},
        )
        response = pipeline.send_request(request)
        response.raise_for_status()
        return len(json.loads(response.content)["value"])

    return on_threads(read, concurrency)


def threads_reader(settings: Settings, concurrency: int) -> Callable[[list[str]], int]:
    clients = build_arm_clients(settings, build_credential())
    return on_threads(lambda registry_id: read_settings(clients, registry_id), concurrency)


class AsyncPacing:
    """`ArmPacingPolicy` for the async pipeline (the pacer never waits here)."""

    def __init__(self, pacer: TokenBucketPacer) -> None:
        self._pacer = pacer
        self.next: Any = None

    async def send(self, request: Any) -> Any:
        scope = pacing_scope(request.http_request.url)
        self._pacer.acquire(scope)
        response = await self.next.send(request)
        remaining = response.http_response.headers.get(REMAINING_READS)
        if remaining is not None and remaining.strip().isdigit():
            self._pacer.observe_remaining(scope, int(remaining))
        return response


async def asyncio_round(settings: Settings, concurrency: int, ids: list[str], record: Any) -> None:
    import aiohttp
    from azure.core.pipeline.policies import AsyncHTTPPolicy
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.identity.aio import DefaultAzureCredential
    from azure.mgmt.monitor.aio import MonitorManagementClient

    AsyncHTTPPolicy.register(AsyncPacing)
    ca = os.environ.get("REQUESTS_CA_BUNDLE")
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca), limit=0)
    session = aiohttp.ClientSession(connector=connector)
    credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
    pacer = TokenBucketPacer(rate=settings.arm.reads_per_second, burst=settings.arm.burst)
    client = MonitorManagementClient(
        credential,
        "00000000-0000-0000-0000-000000000000",
        base_url=settings.arm.endpoint,
        credential_scopes=[settings.arm.audience.rstrip("/") + "/.default"],
        per_retry_policies=[AsyncPacing(pacer)],
        transport=AioHttpTransport(session=session, session_owner=False),
    )
    slots = asyncio.Semaphore(concurrency)

    async def one(registry_id: str) -> list[Any]:
        async with slots:
            pager = client.diagnostic_settings.list(resource_uri=registry_id)
            return [setting_from_model(v) async for v in pager]

    try:
        await one(ids[0])  # the token and the first connection, outside the measure
        cpu, wall = time.process_time(), time.perf_counter()
        done = len(await asyncio.gather(*(one(i) for i in ids)))
        record("asyncio", done, time.process_time() - cpu, time.perf_counter() - wall)
    finally:
        await client.close()
        await session.close()
        await credential.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registries", type=int, default=3000)
    parser.add_argument("--subscriptions", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=MAX_CONCURRENCY)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    args = parser.parse_args()

    case = audit_fleet.Case("read-cpu", args.registries, args.subscriptions, None, "read CPU")
    scenario = audit_fleet.fleet_scenario(case, 1.0, args.latency_ms, events=False)
    scenario["knobs"]["arm_throttle"]["enabled"] = False
    workdir = Path(tempfile.mkdtemp(prefix="acr-read-cpu-"))
    (workdir / "fleet.json").write_text(json.dumps(scenario))
    emulator = audit_fleet.start_emulator(workdir / "fleet.json", workdir)
    results: list[tuple[str, int, float, float]] = []

    def record(mode: str, reads: int, cpu: float, wall: float) -> None:
        results.append((mode, reads, cpu, wall))
        print(f"{mode:8} {reads} reads: {cpu:.2f} s CPU, {wall:.2f} s wall,"
              f" {cpu / reads * 1000:.3f} ms CPU per read", file=sys.stderr)  # fmt: skip

    env = {
        **audit_fleet.clean_env(),
        **emulator.info["environ"],
        "AUDITOR_ARM_READS_PER_SECOND": UNPACED_RATE,
        "AUDITOR_ARM_BURST": UNPACED_BURST,
    }
    try:
        with sdk_environment(env):
            settings = Settings.from_env(env, require_storage=False)
            ids = [audit_fleet.registry_id(r) for r in scenario["registries"]]
            readers = {
                "threads": threads_reader(settings, args.concurrency),
                "pipeline": pipeline_reader(settings, args.concurrency),
                "transport": transport_reader(settings, args.concurrency),
            }
            for reader in readers.values():
                reader(ids[:1])
            for _ in range(args.rounds):
                for mode, reader in readers.items():
                    cpu, wall = time.process_time(), time.perf_counter()
                    done = reader(ids)
                    record(mode, done, time.process_time() - cpu, time.perf_counter() - wall)
                asyncio.run(asyncio_round(settings, args.concurrency, ids, record))
    finally:
        audit_fleet._stop(emulator.proc)
        shutil.rmtree(workdir, ignore_errors=True)

    print("| reads on | rounds | CPU per read (ms) | reads / s of wall |")
    print("|---|---:|---:|---:|")
    for mode in ("threads", "asyncio", "pipeline", "transport"):
        mine = [r for r in results if r[0] == mode]
        per_read = sorted(f"{cpu / reads * 1000:.3f}" for _, reads, cpu, _ in mine)
        rates = sorted(f"{reads / wall:.0f}" for _, reads, _, wall in mine)
        print(f"| {mode} | {len(mine)} | {', '.join(per_read)} | {', '.join(rates)} |")
    print(f"\n{args.registries} registries in {args.subscriptions} subscriptions,"
          f" {args.concurrency} reads in flight, ARM latency lognormal median"
          f" {args.latency_ms:g} ms, no throttle")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
