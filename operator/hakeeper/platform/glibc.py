"""glibc's malloc tuning for the operator process: fewer arenas, and freed memory given back.

Both are glibc extensions (malloc.h; mallopt(3), malloc_trim(3)); where the C library lacks them
(musl) each call says so by returning False and changes nothing. The library is looked up once.
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

MALLOC_ARENAS = 2
"""glibc malloc arenas for the operator process (mallopt M_ARENA_MAX; its default is 8 per core).
Each thread that allocates may get an arena of its own, and memory freed in one is not given back
while any block in it lives: with 36 threads the operator's RSS at 1,000 pools was about 15 MB
higher (bench/scale). The same as the environment variable MALLOC_ARENA_MAX, set before any thread
starts."""
M_ARENA_MAX = -8
"""mallopt's parameter number for the arena limit (glibc malloc.h)."""


@functools.cache
def _function(name: str) -> Any:
    """The C library's function `name`, or None where it has none."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def limit_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """mallopt(M_ARENA_MAX, arenas) unless MALLOC_ARENA_MAX is set in the environment (then the
    user's value stands); False where it was not set (no mallopt, or it refused). Call it before
    threads start: an arena already given to a thread stays."""
    mallopt = _function("mallopt")
    if os.environ.get("MALLOC_ARENA_MAX") or mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """malloc_trim(0): every whole free page in malloc's arenas given back to the system (glibc
    2.8 and later), so what Python freed leaves the RSS; False where there was none to give back,
    or no malloc_trim."""
    malloc_trim = _function("malloc_trim")
    return malloc_trim is not None and bool(malloc_trim(0))
