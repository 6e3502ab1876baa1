"""Runs `python -m auditor ...` under tracemalloc and writes where the memory was at its peak.

    python bench/memory_profile.py OUT.txt audit --format json ...

A sampler thread looks at the traced size every second and takes a snapshot each time it is 10%
above the largest seen, so the snapshot kept is from near the peak. At exit the top allocation
sites of that snapshot (by line, and by file) go to OUT.txt. tracemalloc slows the audit about
2x and counts Python allocations only (not the interpreter's own, nor freed-but-kept arenas), so
its peak is below the process's peak RSS; what it shows is which objects make up the peak.
Used by `audit_fleet.py --memory`.
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRAMES = int(os.environ.get("MEMORY_PROFILE_FRAMES", "3"))  # deeper stacks cost more time
TOP = 40


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    tracemalloc.start(FRAMES)
    best: dict[str, object] = {"size": 0, "snapshot": None, "at": 0.0}
    started = time.monotonic()

    def sample() -> None:
        while True:
            current, _ = tracemalloc.get_traced_memory()
            if current > 1.1 * int(best["size"]):  # type: ignore[call-overload]
                best.update(size=current, snapshot=tracemalloc.take_snapshot(), at=time.monotonic())
            time.sleep(1.0)

    threading.Thread(target=sample, daemon=True, name="memory-sampler").start()

    def report() -> None:
        snapshot = best["snapshot"]
        _, peak = tracemalloc.get_traced_memory()
        with open(out, "w", encoding="utf-8") as f:
            f.write(f"traced peak {peak / 2**20:.1f} MB\n")
            if not isinstance(snapshot, tracemalloc.Snapshot):
                return
            at = float(best["at"]) - started  # type: ignore[arg-type]
            f.write(f"snapshot: {int(best['size']) / 2**20:.1f} MB at {at:.0f} s\n\n")  # type: ignore[call-overload]
            for kind in ("filename", "traceback"):
                f.write(f"## top by {kind}\n")
                for stat in snapshot.statistics(kind)[:TOP]:
                    f.write(f"{stat.size / 2**20:8.1f} MB {stat.count:9d} blocks\n")
                    for line in stat.traceback.format()[-2 * FRAMES :]:
                        f.write(f"    {line}\n")
                f.write("\n")

    atexit.register(report)
    sys.argv = ["auditor", *args]
    sys.path.insert(0, str(REPO))  # as `python -m` from the repository would have it
    runpy.run_module("auditor", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
