"""A DegradationPolicy's own metrics after each evaluation, from its status and the Events
it posted (platform/metrics.py defines the families)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from hakeeper.api.conditions import ConditionType, condition_status
from hakeeper.api.events import PolicyEvent
from hakeeper.platform import metrics
from hakeeper.platform.loop import Outcome


class PolicyTelemetry:
    """One policy's metrics; counts the time its Prometheus was unavailable between passes
    (time.monotonic seconds)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.last: float | None = None
        self.unavailable = False

    def __call__(self, series: metrics.Series, status: Mapping[str, Any], outcome: Outcome) -> None:
        for counter in (metrics.POLICY_SHEDS, metrics.POLICY_RESTORES, metrics.POLICY_METRICS_UNAVAILABLE):
            series.inc(counter, amount=0)  # from 0: the first shed is an increase Prometheus sees
        now = self.clock()
        if self.unavailable and self.last is not None:
            series.inc(metrics.POLICY_METRICS_UNAVAILABLE, amount=now - self.last)
        self.last = now
        self.unavailable = condition_status(status, ConditionType.METRICS_AVAILABLE) is False
        triggers = status.get("triggers") or []
        series.set(metrics.POLICY_TRIGGER_VALUE, {(t["name"],): float(t["value"]) for t in triggers
                                                  if t.get("value") is not None})
        series.set(metrics.POLICY_TRIGGER_FIRING, {(t["name"],): float(bool(t.get("firing"))) for t in triggers})
        series.set(metrics.POLICY_DEGRADED, float(status.get("state") not in (None, "Normal")))
        shed = [s for s in status.get("shed") or [] if not s.get("dryRun")]
        series.set(metrics.POLICY_SHED_DEPLOYMENTS, float(len(shed)))
        series.set(metrics.POLICY_SHED_TIERS, float(len({s.get("tier") for s in shed})))
        for event in outcome.events:
            if event.reason == PolicyEvent.SHED:
                series.inc(metrics.POLICY_SHEDS)
            elif event.reason == PolicyEvent.RESTORED:
                series.inc(metrics.POLICY_RESTORES)
