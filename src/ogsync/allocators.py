"""How an ogsync process allocates memory: flat over a long run rather than fast to reuse.

Arrow's default allocators keep freed memory for reuse; batches come and go, so the system
allocator keeps the footprint flat instead. glibc's, in turn, gives each thread that
allocates at the same time as another an arena of its own (up to eight per core), and memory
freed in one arena serves no other: the loader's threads (a worker per endpoint, their
prefetchers, the writer, a table format's own threads) each kept one, holding freed memory
(`bench/sync.py --destination delta` shows the peak). Two arenas serve two cores' worth of
threads.
"""

from __future__ import annotations

import ctypes
import os
import sys

import pyarrow

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process, unless `MALLOC_ARENA_MAX` already says
    how many; whether the cap was set (never on another C library or system)."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, arenas) == 1


def use_lean_allocators() -> None:
    """For a process of ogsync's own (the CLI): call before any thread starts."""
    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    limit_malloc_arenas()
