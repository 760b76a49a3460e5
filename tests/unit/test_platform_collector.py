"""platform/collector.py: the garbage collector frozen every minute, thawed and run whole once an hour."""

from __future__ import annotations

import gc

from hakeeper.platform import collector


def test_what_is_alive_is_frozen_each_tick_and_thawed_and_collected_once_an_hour() -> None:
    clock = [0.0]
    c = collector.Collector(lambda: clock[0])
    calls: list[str] = []
    c.freeze = lambda: calls.append("freeze")  # type: ignore[method-assign]
    c.unfreeze = lambda: calls.append("unfreeze")  # type: ignore[method-assign]
    c.collect = lambda generation=2: calls.append(f"collect {generation}") or 0  # type: ignore[method-assign]
    c.trim = lambda: calls.append("trim") or True  # type: ignore[method-assign]
    for _ in range(3):
        clock[0] += collector.FREEZE_SECONDS
        assert c.tick() == "freeze"
    assert calls == ["collect 1", "freeze", "trim"] * 3
    calls.clear()
    clock[0] = collector.THAW_SECONDS
    assert c.tick() == "thaw" and calls == ["unfreeze", "collect 2", "freeze", "trim"]
    clock[0] += collector.FREEZE_SECONDS
    assert c.tick() == "freeze"


def test_a_frozen_object_is_not_walked_by_a_full_collection_and_is_after_a_thaw() -> None:
    """The real gc: what a full collection walks shrinks by what was frozen."""
    c = collector.Collector()
    kept = [[i] for i in range(20_000)]
    try:
        c.tick()
        assert gc.get_freeze_count() >= len(kept)
        walked = {id(o) for o in gc.get_objects(2)}
        assert not any(id(x) in walked for x in kept)
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
    walked = {id(o) for g in range(3) for o in gc.get_objects(g)}
    assert all(id(x) in walked for x in kept)
