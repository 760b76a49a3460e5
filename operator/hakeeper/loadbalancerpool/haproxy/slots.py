"""Which server slot of the balancer each backend occupies (pure).

HAProxy's configuration declares a fixed number of server slots (s1 .. sN); backends are
put into slots at runtime. A backend keeps its slot for as long as it exists, because the
slot *is* its identity inside HAProxy: the persistence cookie names the slot, consistent
hashing places the slot on the ring, stick tables point at the slot. Moving a backend to
another slot would move its clients.

The capacity N is a power of two, at least MIN_SLOTS, so that adding backends changes the
structure of the configuration (and causes a reload) only when the pool doubles. It
shrinks only when three quarters of the slots are unused, so that a pool hovering around
a power of two does not reload back and forth, and never below the highest slot a
remaining backend holds: shrinking never moves a backend (20 backends down to 4 keep their
slots, and the capacity waits until the high slots are free).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from hakeeper.api.configmaps.haproxy import server_name

MIN_SLOTS = 8


class SlotMap(dict[str, int]):
    """Backend name -> slot, remembering the capacity it was made for.

    A plain mapping is a fine `previous` too; this one also lets the capacity shrink with
    hysteresis, which needs to know what the capacity was.
    """

    def __init__(self, slots: Mapping[str, int] | Iterable[tuple[str, int]] = (), capacity: int | None = None) -> None:
        super().__init__(slots)
        self.capacity = capacity


@dataclasses.dataclass(frozen=True)
class Assignment:
    slots: SlotMap
    """Backend name -> slot number (1 .. capacity)."""
    capacity: int

    def slot_name(self, name: str) -> str:
        return server_name(self.slots[name])


def capacity_for(count: int) -> int:
    """The smallest power of two that holds `count` slots, and at least MIN_SLOTS."""
    capacity = MIN_SLOTS
    while capacity < count:
        capacity *= 2
    return capacity


def assign(names: Iterable[str], previous: Mapping[str, int] | None = None) -> Assignment:
    """Put every backend into a slot, keeping the slots of `previous` where possible.

    Deterministic: the same names and previous assignment give the same result. New
    backends take the lowest free slots, in name order.
    """
    wanted = sorted(set(names))
    kept = _kept(wanted, previous or {})
    previous_capacity = getattr(previous, "capacity", None) or 0
    capacity = max(capacity_for(max(len(wanted), max(kept.values(), default=0))), previous_capacity)
    smallest = capacity_for(len(wanted))
    if capacity > smallest and len(wanted) * 4 <= capacity:
        # mostly empty: shrink, but only as far as no backend that stays has to move (its slot
        # is its identity: moving it would move its cookie-sticky clients)
        capacity = max(smallest, capacity_for(max(kept.values(), default=0)))
    free = iter(sorted(set(range(1, capacity + 1)) - set(kept.values())))
    slots = dict(kept)
    for name in wanted:
        if name not in slots:
            slots[name] = next(free)
    return Assignment(slots=SlotMap(sorted(slots.items()), capacity=capacity), capacity=capacity)


def _kept(wanted: list[str], previous: Mapping[str, int]) -> dict[str, int]:
    """The previous slots of backends that still exist; a slot claimed twice goes to the first name."""
    present = set(wanted)
    kept: dict[str, int] = {}
    taken: set[int] = set()
    for name in sorted(previous):
        slot = previous[name]
        if name in present and isinstance(slot, int) and slot >= 1 and slot not in taken:
            kept[name] = slot
            taken.add(slot)
    return kept
