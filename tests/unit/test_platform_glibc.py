"""platform/glibc.py: the arena limit and malloc_trim, against the real C library."""

from __future__ import annotations

import pytest

from hakeeper.platform import glibc


def _rss_mb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def test_memory_python_freed_leaves_the_rss_after_a_trim() -> None:
    """Blocks of 1 kB (beyond pymalloc's 512 B: glibc's heap) freed stay in the RSS until trimmed."""
    blocks = [bytes(1000 + i % 7) for i in range(60_000)]
    after_tail = bytes(2000)  # allocated last: the freed blocks are not at the heap's top
    del blocks
    freed = _rss_mb()
    assert glibc.trim()
    assert _rss_mb() <= freed - 30, "malloc_trim gave nothing back"
    del after_tail


def test_the_arena_limit_is_set_unless_the_user_set_malloc_arena_max(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not glibc.limit_arenas()
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert glibc.limit_arenas()
