"""Caps glibc's malloc arenas for a run's process.

glibc gives each thread that contends for the allocator an arena of its own, up to 8 per core,
and an arena keeps the memory its threads freed for their next allocations. An audit runs a few
dozen threads (settings readers, log queries, table writers, alert delivery), so a fleet's
short-lived data (Log Analytics answers, table transactions) ends up spread over many arenas
that each hold on to their share: the benchmark's 10,000-registry audits peaked at 320-330 MB
RSS with the default and 260-280 MB with two arenas.

`MALLOC_ARENA_MAX` set in the environment wins (glibc reads it at start-up); otherwise the cap
is applied with `mallopt` before the run starts its threads. Elsewhere (musl, macOS, Windows)
this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's <malloc.h>


def cap_malloc_arenas(environ: Mapping[str, str], arenas: int = ARENAS) -> bool:
    """Apply the cap; True when this call set it."""
    if environ.get("MALLOC_ARENA_MAX", "").strip():
        return False  # the operator's choice, already in force
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_ARENA_MAX, arenas))
    if not applied:
        log.debug("mallopt(M_ARENA_MAX, %d) was refused", arenas)
    return applied
