"""ARM's token buckets and Resource Graph's per-user quota window, on the real (monotonic)
clock: they pace requests, so the emulated scenario clock does not move them."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Decision:
    allowed: bool
    remaining: int
    retry_after_s: float = 0.0  # seconds until the request would be allowed


class TokenBuckets:
    """One bucket per key (e.g. ("reads", subscription, caller)), created full.

    Parameters are read on every call, so knob changes apply immediately."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, ...], tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: tuple[str, ...], burst: int, refill_per_s: float) -> Decision:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * refill_per_s)
            if tokens >= 1.0:
                tokens -= 1.0
                self._buckets[key] = (tokens, now)
                return Decision(True, int(tokens))
            self._buckets[key] = (tokens, now)
            return Decision(False, 0, (1.0 - tokens) / refill_per_s)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


class WindowLimiter:
    """Resource Graph's quota: `quota` requests per `window` seconds per user; the window
    starts with the first request after the previous one expired."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window start, used)

    def take(self, key: str, quota: int, window_s: float) -> tuple[Decision, float]:
        """(decision, seconds until the window resets)."""
        now = self._clock()
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now - start >= window_s:
                start, used = now, 0
            resets_after = max(window_s - (now - start), 0.0)
            if used >= quota:
                self._windows[key] = (start, used)
                return Decision(False, 0, resets_after), resets_after
            used += 1
            self._windows[key] = (start, used)
            return Decision(True, quota - used), resets_after

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


def retry_after_header(seconds: float) -> str:
    """Azure sends whole seconds, never 0 for a refused request."""
    return str(max(1, math.ceil(seconds)))


def hhmmss(seconds: float) -> str:
    """Resource Graph's x-ms-user-quota-resets-after format."""
    total = max(0, math.ceil(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
