"""A LoadBalancerPool's own metrics after each pass, from its status and the pass's Events
(platform/metrics.py defines the families), and the propagation latency: from an
EndpointSlice change seen by the operator to every ready balancer running the configuration
made from it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from hakeeper.api.conditions import ConditionType, condition_status
from hakeeper.api.events import PoolEvent
from hakeeper.platform import metrics
from hakeeper.platform.loop import Outcome


class PoolTelemetry:
    """One pool's metrics; `slices_changed()` when the watch sees its backends' slices change.

    Clock: time.monotonic (seconds). Not thread-safe: the pool's loop calls it between passes,
    the watch handler in the same event loop.
    """

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.changed_at: float | None = None
        """The first slice change not yet rendered into a configuration."""
        self.waiting: tuple[str, float] | None = None
        """(config hash, when its slice change was seen): rendered, not yet applied everywhere."""
        self.last_hash: str | None = None
        """The config hash of the last pass: a new one is a config change."""

    def slices_changed(self) -> None:
        if self.changed_at is None:
            self.changed_at = self.clock()

    def __call__(self, series: metrics.Series, status: Mapping[str, Any], outcome: Outcome) -> None:
        series.inc(metrics.POOL_CONFIG_CHANGES, amount=0)  # from 0: the first change is an increase
        backends = status.get("backends") or {}
        series.set(metrics.POOL_BACKENDS, float(backends.get("total") or 0))
        series.set(metrics.POOL_BACKENDS_READY, float(backends.get("ready") or 0))
        applied = condition_status(status, ConditionType.CONFIG_APPLIED) is True
        series.set(metrics.POOL_CONFIG_APPLIED, float(applied))
        balancers = status.get("balancers") or []
        series.set(metrics.POOL_BALANCERS, float(len(balancers)))
        series.set(metrics.POOL_RELOADS, {(b["pod"],): float(b["reloads"]) for b in balancers
                                          if b.get("reloads") is not None})
        holder = status.get("virtualIPHolder")
        series.set(metrics.POOL_VRRP_MASTER, {(node,): 1.0 for node in (holder or "").split(",") if node})
        config_hash = status.get("configHash")
        # a change is a new config hash, not a ConfigChanged Event: those are folded, one a minute
        # per pool (notices.py), and a change in between posts none. The first hash this process
        # sees counts only when its pass made it (the Event), not when a restarted operator reads it.
        posted = any(e.reason == PoolEvent.CONFIG_CHANGED for e in outcome.events)
        new_config = bool(config_hash) and config_hash != self.last_hash and (self.last_hash is not None or posted)
        if config_hash:
            self.last_hash = config_hash
        if new_config:
            series.inc(metrics.POOL_CONFIG_CHANGES)
            if self.changed_at is not None and config_hash:
                self.waiting = (config_hash, self.changed_at)
        self.changed_at = None  # this pass saw the slices as they are now
        if self.waiting is not None and applied and self.waiting[0] == config_hash:
            series.observe(metrics.POOL_PROPAGATION, self.clock() - self.waiting[1])
            self.waiting = None
