"""Tunes glibc's malloc for a run's process (`tune_malloc`): fewer arenas, and a fixed mmap
threshold; and gives the arenas' free pages back while a run lasts (`free_pages_returned`).

Arenas: glibc gives each thread that contends for the allocator an arena of its own, up to 8
per core, and an arena keeps the memory its threads freed for their next allocations. An audit
runs a few dozen threads (settings readers, log queries, table writers, alert delivery), so a
fleet's short-lived data (Log Analytics answers, table transactions) ends up spread over many
arenas that each hold on to their share: the benchmark's 10,000-registry audits peaked at
320-330 MB RSS with the default and 260-280 MB with two arenas.

mmap threshold: glibc serves a large allocation with its own mmap, returned to the system when
freed, but each such free raises the threshold to that size (up to 32 MiB), so the next answers
and transaction bodies of that size come from the arenas instead, where what they leave behind
stays part of the process. A fixed threshold keeps every large buffer in its own mapping: the
benchmark's 10,000-registry change-driven audit peaked at 198 MB instead of 205-223 MB.

Free pages: an arena gives memory back to the system only from its top, so the pages of chunks
freed between live ones (a slice's evidence and rows, an answer's decoded rows, each freed
while the run's results stay) remain part of the process until `malloc_trim(0)` releases
them. A run calls it every `TRIM_PERIOD` seconds: 10,000 registries in 100 subscriptions then
peaked at 190 / 192 MB (empty / warm store) instead of 198 / 200 MB, side by side. Every second
cost CPU (the pages are faulted back in when the arena reuses them); every 5 s did not show.

`MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_` set in the environment win (glibc reads them at
start-up); otherwise each is applied with `mallopt` before the run starts its threads.
Elsewhere (musl, macOS, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

log = logging.getLogger(__name__)

ARENAS = 2
MMAP_THRESHOLD = 256 * 1024  # bytes; glibc's own starting value is 128 KiB
TRIM_PERIOD = 5.0  # seconds between two `malloc_trim(0)` during a run
# glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_malloc(environ: Mapping[str, str]) -> None:
    """Both settings, each unless the operator set its variable."""
    cap_malloc_arenas(environ)
    fix_mmap_threshold(environ)


def cap_malloc_arenas(environ: Mapping[str, str], arenas: int = ARENAS) -> bool:
    """Apply the arena cap; True when this call set it."""
    return _apply(environ, "MALLOC_ARENA_MAX", _M_ARENA_MAX, arenas)


def fix_mmap_threshold(environ: Mapping[str, str], threshold: int = MMAP_THRESHOLD) -> bool:
    """Apply the fixed mmap threshold; True when this call set it."""
    return _apply(environ, "MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, threshold)


def _apply(environ: Mapping[str, str], variable: str, option: int, value: int) -> bool:
    if environ.get(variable, "").strip():
        return False  # the operator's choice, already in force
    mallopt = _mallopt()
    if mallopt is None:
        return False  # not glibc
    applied = bool(mallopt(option, value))
    if not applied:
        log.debug("mallopt(%d, %d) was refused", option, value)
    return applied


@contextmanager
def free_pages_returned(
    period: float = TRIM_PERIOD, trim: Callable[[int], int] | None = None
) -> Iterator[None]:
    """While the block runs, the arenas' free pages go back to the system every `period`
    seconds (`trim`: glibc's `malloc_trim`; without glibc nothing happens)."""
    trim = trim or _libc_function("malloc_trim", [ctypes.c_size_t])
    if trim is None:
        yield
        return
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(period):
            trim(0)

    thread = threading.Thread(target=run, name="malloc-trim", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _mallopt() -> Callable[[int, int], int] | None:
    return _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])


def _libc_function(name: str, argtypes: list[type]) -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = getattr(libc, name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]
