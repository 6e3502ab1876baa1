"""Log Analytics query limits per caller (azure-facts §4): a window of N queries per T
seconds, and at most C queries running at once, further ones queued (up to Q) in arrival
order. Both answer 429 when exceeded. They pace on the real clock, like ARM's throttling."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable

from emulator.throttle import Decision, WindowLimiter


class CallerLimits:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._windows = WindowLimiter(clock)
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def admit(self, caller: str, quota: int, window_s: float) -> Decision:
        """Count one query against the caller's window; retry_after_s says when the window
        resets if it is refused."""
        decision, _ = self._windows.take(caller, quota, window_s)
        return decision

    def running(self, caller: str) -> int:
        with self._lock:
            return self._active.get(caller, 0)

    def queued(self, caller: str) -> int:
        with self._lock:
            return len(self._waiters.get(caller, ()))

    async def acquire(self, caller: str, concurrent: int, queue_size: int) -> bool:
        """Wait for one of the caller's `concurrent` slots; False (at once) if `queue_size`
        queries already wait."""
        with self._lock:
            if self._active.get(caller, 0) < concurrent:
                self._active[caller] = self._active.get(caller, 0) + 1
                return True
            waiters = self._waiters.setdefault(caller, deque())
            if len(waiters) >= queue_size:
                return False
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                if fut in self._waiters.get(caller, ()):
                    self._waiters[caller].remove(fut)
                    raise
            if fut.done() and not fut.cancelled():
                # The slot was handed over just as the client went away: pass it on. (A
                # cancelled hand-over is passed on by _hand_over.)
                self.release(caller)
            raise
        return True

    def release(self, caller: str) -> None:
        """Free a slot: the oldest waiter gets it, else the running count drops."""
        with self._lock:
            waiters = self._waiters.get(caller)
            while waiters:
                fut = waiters.popleft()
                if not fut.done():
                    fut.get_loop().call_soon_threadsafe(self._hand_over, caller, fut)
                    return
            self._active[caller] = max(0, self._active.get(caller, 0) - 1)

    def _hand_over(self, caller: str, fut: asyncio.Future[None]) -> None:
        if fut.done():  # cancelled meanwhile
            self.release(caller)
        else:
            fut.set_result(None)

    def reset(self) -> None:
        self._windows.reset()
