"""Two commits side by side: `audit_fleet.py` on each, alternating, so both meet the same machine.

    python bench/ab.py 8e1e08b                       # that commit against HEAD, 10k-changes
    python bench/ab.py 8e1e08b 5c4431e --cases 1k --pairs 3

The machines this project is measured on vary by a quarter or more in speed from one run to
the next: the same code's change-driven run took 13.6-21.5 s within an hour. A change worth
less than that shows only in runs of both commits, one right after the other. Each pair runs
the two in turn (ABBA: the first of each pair alternates, so a machine slowing down or
speeding up does not favour one), each in a git worktree of its commit, against its own
emulator and Azurite, with this checkout's interpreter and node modules. Arguments after the
commits go to `audit_fleet.py` (`--cases`, `--runs`, `--quick`, ...).

It prints every run's wall time, client CPU and CPU floor (`audit_fleet.py`'s "all CPU /
cores"), and the median over the pairs of B / A for each. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIGURES = ("wall_s", "audit_cpu_s", "cpu_floor_s")


def worktree(commit: str, root: Path) -> Path:
    path = root / commit
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(path), commit],
        cwd=REPO,
        check=True,
    )
    return path


def measured(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs that count: each case's last (a change-driven case's second is its measured
    one; with `--runs 2`, the warm store)."""
    last: dict[str, dict[str, Any]] = {}
    for result in document["results"]:
        last[result["case"]] = result
    return list(last.values())


def run_bench(tree: Path, extra: list[str]) -> list[dict[str, Any]]:
    env = {**os.environ, "ACR_AUDITOR_NODE_MODULES": str(REPO / "node_modules")}
    done = subprocess.run(
        [sys.executable, "bench/audit_fleet.py", *extra],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"JSON: (\S+\.json)", done.stdout)
    if found is None:
        raise SystemExit(f"audit_fleet.py in {tree} wrote no results:\n{done.stderr[-2000:]}")
    return measured(json.loads((tree / found.group(1)).read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("a", help="the commit to compare with (A)")
    parser.add_argument("b", nargs="?", default="HEAD", help="the commit compared (B)")
    parser.add_argument("--pairs", type=int, default=2, help="runs of each commit")
    args, extra = parser.parse_known_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    if not any(e == "--cases" or e.startswith("--cases=") for e in extra):
        extra = ["--cases", "10k-changes", *extra]
    root = Path(tempfile.mkdtemp(prefix="acr-ab-"))
    trees: dict[str, Path] = {}
    runs: dict[str, list[list[dict[str, Any]]]] = {"A": [], "B": []}
    try:
        trees = {"A": worktree(args.a, root), "B": worktree(args.b, root)}
        for pair in range(args.pairs):
            order = ("A", "B") if pair % 2 == 0 else ("B", "A")
            for side in order:
                results = run_bench(trees[side], extra)
                runs[side].append(results)
                for r in results:
                    print(
                        f"pair {pair + 1} {side} {r['case']}: "
                        + ", ".join(f"{f} {r.get(f, 'n/a')}" for f in FIGURES),
                        flush=True,
                    )
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO)
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nB ({args.b}) / A ({args.a}), median over {args.pairs} pairs:")
    for i, case in enumerate(r["case"] for r in runs["A"][0]):
        ratios = {}
        for f in FIGURES:
            # A commit older than the bench's figure has none: `cpu_floor_s` came later.
            pairs = [(a[i].get(f), b[i].get(f)) for a, b in zip(runs["A"], runs["B"], strict=True)]
            values = [y / x for x, y in pairs if x and y is not None]
            if values:
                ratios[f] = statistics.median(values)
        print(f"  {case}: " + ", ".join(f"{f} {v:.3f}" for f, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
