"""One ConfigChanged Event per burst of config changes, not one per change (pure).

Each endpoint change makes a new balancer config; under a churn of changes an Event per change
is an Event write per change (bench/scale: 11 Events/s for 50 slice writes/s), and a reader of
`kubectl describe` learns nothing from the hundredth. `ConfigNotices` lets the first change of a
quiet spell through at once and folds the ones that follow within `every` seconds into one
Event at the end of the window, which says how many it stands for.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CONFIG_EVENT_SECONDS = 60.0
"""At most one ConfigChanged Event per pool this often. With 10 s, a thousand pools under bench/scale's
churn (50 changes/s, each pool changed every 20 s) still posted 40 Events/s: a change a pool
gets less often than the window is a burst of its own."""


class ConfigNotices:
    """The ConfigChanged Events of one pool. Not thread-safe: one pool's passes run one at a time."""

    def __init__(self, every: float = CONFIG_EVENT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.clock = every, clock
        self._posted_at: float | None = None
        self._pending: str | None = None
        self._folded = 0

    def changed(self, message: str) -> None:
        """A pass made a new config; `message` describes it."""
        self._pending = message
        self._folded += 1

    def take(self) -> tuple[str | None, float | None]:
        """(the Event's message to post now or None, seconds until a held one is due or None)."""
        if self._pending is None:
            return None, None
        now = self.clock()
        if self._posted_at is not None and now - self._posted_at < self.every:
            return None, self._posted_at + self.every - now
        message = self._pending if self._folded == 1 else f"{self._pending} (the last of {self._folded} changes)"
        self._posted_at, self._pending, self._folded = now, None, 0
        return message, None
