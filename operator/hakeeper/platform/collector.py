"""Python's cyclic garbage collector, kept from pausing the operator for half a second at a time.

A full collection (generation 2) walks every object the collector tracks, with the GIL held: at a
thousand pools it took 400-600 ms, every 7-30 s (bench/scale, timed with a gc callback), and every
watch event, pass and HTTP answer waited behind it; it was most of the p99 of an endpoint change.

So every FREEZE_SECONDS the young generations are collected and what is alive then is moved to the
permanent generation (gc.freeze), which collections do not walk: a full collection then walks only
what was allocated since. An object frozen is still freed when its last reference goes (reference
counting); only a reference cycle among frozen objects waits: once every THAW_SECONDS everything is
moved back and collected (gc.unfreeze, gc.collect), one full pause an hour instead of one every few
seconds, and what a deleted object's loop left in cycles is freed then. The technique is
gc.freeze's (Python documentation, "gc — Garbage Collector interface"), as Instagram's servers use it.

After each, glibc is asked to give its heaps' free pages back to the system (glibc.trim:
malloc_trim(0), which since glibc 2.8 releases every whole free page of every arena, not only the
top of the heap; malloc_trim(3)): the memory Python frees stays in malloc's heaps otherwise, and
counts in the operator's RSS.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import kopf

from hakeeper.platform import glibc

FREEZE_SECONDS = 60.0
THAW_SECONDS = 3600.0


class Collector:
    """When to freeze and when to thaw; `tick()` once in a while (every FREEZE_SECONDS) does it.

    `clock`: monotonic seconds. The gc calls are attributes so a test can watch them.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.thawed = clock()
        self.freeze, self.unfreeze, self.collect = gc.freeze, gc.unfreeze, gc.collect
        self.trim = glibc.trim

    def tick(self) -> str:
        """Freezes what is alive ("freeze"), or first thaws and collects everything when
        THAW_SECONDS have passed since the last time ("thaw"); what it did."""
        now = self.clock()
        done = "freeze"
        if now - self.thawed >= THAW_SECONDS:
            self.unfreeze()
            self.collect()
            self.thawed, done = now, "thaw"
        else:
            self.collect(1)  # the young generations' garbage is not frozen with the rest
        self.freeze()
        self.trim()
        return done


async def _run(collector: Collector) -> None:
    while True:
        await asyncio.sleep(FREEZE_SECONDS)
        collector.tick()


@kopf.on.startup()
async def start_collector(memo: kopf.Memo, **_: Any) -> None:
    memo["collector"] = asyncio.get_running_loop().create_task(_run(Collector()), name="gc-freeze")


@kopf.on.cleanup()
async def stop_collector(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("collector")
    if task is not None:
        task.cancel()
