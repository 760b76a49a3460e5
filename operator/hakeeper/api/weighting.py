"""LoadBalancerPool spec.weighting (static or latency-aware weights) and the status it reports.

With mode Latency the balancer's agent reads each server's response time from HAProxy's
statistics, keeps a moving average, and lowers the weight of slower servers through the
runtime API (agents/haproxy_weighting.py). The weights from annotations and weightRules stay
the base; the agent multiplies them by a factor between `floor` percent and 1.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from hakeeper.api.common import DURATION_PATTERN, Model, StatusModel, cel, cel_string, duration_rules

SHORTEST_INTERVAL = "1s"
LONGEST_INTERVAL = "1h"


def _interval_rules() -> dict[str, Any]:
    """Longer than 0s and at most LONGEST_INTERVAL (duration_rules), and at least SHORTEST_INTERVAL:
    HAProxy's averages cover the last 1024 requests, so reading them more often learns nothing."""
    rules = duration_rules(LONGEST_INTERVAL, ": how often the agent moves the weights")
    rules["x-kubernetes-validations"].append(cel(
        f"!self.matches({cel_string(DURATION_PATTERN)}) || duration(self) >= duration('{SHORTEST_INTERVAL}')",
        f"must be at least {SHORTEST_INTERVAL}: how often the agent reads the response times and moves the weights"))
    return rules


class Weighting(Model):
    """How the balancers weigh the backends: Static (the base weights as they are) or Latency
    (engine haproxy: the base weights scaled down for servers slower than the fastest one)."""

    mode: Literal["Static", "Latency"] = "Static"
    """Static: the weights of weightRules and the hakeeper.io/weight annotation. Latency: those
    weights scaled by each server's speed relative to the fastest (HTTP: response time; mode tcp:
    the whole connection's time, so for short connections only)."""
    interval: str = Field(default="5s", pattern=DURATION_PATTERN, max_length=32, json_schema_extra=_interval_rules())
    """How often the agent reads the servers' response times and moves the weights (1s to 1h)."""
    half_life: str = Field(default="10s", pattern=DURATION_PATTERN, max_length=32,
                           json_schema_extra=duration_rules("24h", ": the moving average's longest half-life"))
    """Half-life of the moving average of each server's response time: a sample this old counts
    half as much as a new one (longer than 0s, at most 24h)."""
    floor: int = Field(default=10, ge=1, le=100)
    """The lowest weight a slow server gets, in percent of its base weight (1 to 100): it keeps
    some traffic, so its response time keeps being measured."""
    max_step: int = Field(default=25, ge=1, le=100)
    """The largest change of a server's weight per interval, in percent of its current weight
    (1 to 100)."""


LATENCY_RULES = (
    # A pool-level rule (it reads engine, mode, algorithm and hashType next to weighting).
    cel("self.weighting.mode != 'Latency' || self.engine == 'haproxy'",
        "weighting mode Latency needs engine haproxy: keepalived's weights are not moved by response times"),
    cel("self.weighting.mode != 'Latency' || !has(self.mode) || self.mode != 'redirect'",
        "weighting mode Latency does not apply to mode redirect: the balancer answers the redirects itself "
        "and sees no response time of the servers"),
    # HAProxy refuses runtime weights other than 0% and 100% under static-rr and map-based hashing
    # (management guide, "set weight"); a hash algorithm chosen in the spec is map-based unless
    # hashType says consistent (loadbalancerpool/haproxy/config.py _hash_type).
    cel("self.weighting.mode != 'Latency' || !has(self.algorithm) || !(self.algorithm == 'static-rr' || "
        "(self.algorithm in ['source', 'uri', 'hdr'] && (!has(self.hashType) || self.hashType == 'map-based')))",
        "weighting mode Latency needs weights HAProxy can change while running: not algorithm static-rr, and "
        "hash algorithms (source, uri, hdr) only with hashType consistent"),
)
"""CEL rules of LoadBalancerPoolSpec about weighting."""


class EffectiveWeight(StatusModel):
    """One backend's weight as a balancer applies it (weighting mode Latency)."""

    backend: str
    """The backend (pod name, or the endpoint's name)."""
    base: int
    """Its base weight (weightRules, hakeeper.io/weight)."""
    weight: int
    """The weight HAProxy uses now (the base scaled up for resolution, times the factor)."""
    percent: int
    """The factor the agent applies, in percent of the base (floor to 100)."""
    latency_ms: float | None = None
    """The moving average of its response time, in milliseconds (None: no sample yet)."""
