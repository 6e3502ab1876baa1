"""Tunes Python's cyclic garbage collector for a run's process (`tune_gc`).

CPython collects its youngest generation every 700 net allocations and the whole heap when
enough survivors have piled up. A run allocates millions of short-lived objects (log rows,
evidence, table rows) while the fleet's state it keeps grows to a large heap, so the default
collects the young ones thousands of times and walks the whole heap a dozen times or more:
in the benchmark's 10,000-registry change-driven audit, 1.9 s of its 10 s of CPU (15 full
collections of about 85 ms each). The run's data holds no reference cycles worth collecting
early, so the thresholds are raised: the same audit spent 0.3 s in the collector and its
peak memory did not move.
"""

from __future__ import annotations

import gc

# Net allocations between collections of the youngest generation, and how many collections
# of each generation before the next older one is collected (CPython: 700, 10, 10).
THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Raise the collector's thresholds for this process (idempotent)."""
    gc.set_threshold(*THRESHOLDS)
