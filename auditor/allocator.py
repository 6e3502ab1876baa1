"""Tunes glibc's malloc for a run's process (`tune_malloc`): fewer arenas, and a fixed mmap
threshold.

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

`MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_` set in the environment win (glibc reads them at
start-up); otherwise each is applied with `mallopt` before the run starts its threads.
Elsewhere (musl, macOS, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

ARENAS = 2
MMAP_THRESHOLD = 256 * 1024  # bytes; glibc's own starting value is 128 KiB
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


def _mallopt() -> Callable[[int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt  # type: ignore[no-any-return]
