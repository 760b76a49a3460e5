"""spec.weighting into the pool's ConfigMap (pure): weighting.json for mode Latency, nothing for
Static; and the agents' reports of the weights they apply into the status. The agent does the
rest (agents/haproxy_weighting.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import ValidationError

from hakeeper.api.common import parse_duration
from hakeeper.api.configmaps.haproxy import WEIGHTING_FILE, ConfigError
from hakeeper.api.configmaps.weighting import WeightingParams, weighting_json
from hakeeper.api.loadbalancerpool import HASH_ALGORITHMS, LoadBalancerPoolSpec
from hakeeper.api.weighting import EffectiveWeight


def latency_weighted(spec: LoadBalancerPoolSpec) -> bool:
    return spec.weighting.mode == "Latency"


def check(spec: LoadBalancerPoolSpec, static_weights: bool) -> None:
    """The CEL rules of api/weighting.py LATENCY_RULES, for what reaches the renderer without the
    API server (pydantic does not run CEL). `static_weights`: config.weights_are_static(spec).

    Raises ConfigError with the rule's words.
    """
    if not latency_weighted(spec):
        return
    if spec.engine != "haproxy":
        raise ConfigError("weighting mode Latency needs engine haproxy")
    if spec.mode == "redirect":
        raise ConfigError("weighting mode Latency does not apply to mode redirect: the balancer answers the "
                          "redirects itself and sees no response time of the servers")
    if static_weights:
        hashed = spec.algorithm in HASH_ALGORITHMS
        raise ConfigError("weighting mode Latency needs weights HAProxy can change while running: not "
                          + ("a map-based hash (set hashType consistent)" if hashed else "algorithm static-rr"))
    interval = parse_duration(spec.weighting.interval)
    if not 1.0 <= interval <= 3600.0:
        raise ConfigError(f"weighting.interval {spec.weighting.interval} must be from 1s to 1h")
    if not 0 < parse_duration(spec.weighting.half_life) <= 86400.0:
        raise ConfigError(f"weighting.halfLife {spec.weighting.half_life} must be longer than 0s and at most 24h")


def params(spec: LoadBalancerPoolSpec) -> WeightingParams:
    """The agent's parameters: in mode tcp the latency is the session time (rtime is 0 there)."""
    w = spec.weighting
    return WeightingParams(interval=parse_duration(w.interval), half_life=parse_duration(w.half_life),
                           floor=w.floor / 100, max_step=w.max_step / 100,
                           measure="ttime" if spec.mode == "tcp" else "rtime")


def files(spec: LoadBalancerPoolSpec) -> dict[str, str]:
    """The ConfigMap files weighting adds: {weighting.json: ...} for Latency, none for Static."""
    return {WEIGHTING_FILE: weighting_json(params(spec))} if latency_weighted(spec) else {}


def effective_weights(reports: Sequence[tuple[str, bool, str | None]]) -> list[EffectiveWeight] | None:
    """The status's effectiveWeights: the report (hakeeper.io/effective-weights, JSON) of the first
    ready balancer, by pod name, that has a readable one; `reports` are (pod, ready, annotation).
    None when no ready balancer reported yet. Each balancer measures its own traffic, so two
    balancers' weights can differ; the status shows one of them, always the same while it runs."""
    for _, ready, text in sorted(reports):
        if not ready or not text:
            continue
        try:
            rows = json.loads(text)
            return [EffectiveWeight.model_validate(row) for row in rows]
        except (ValueError, TypeError, ValidationError):
            continue  # not the agent's format (an older agent, a hand edit): try the next balancer
    return None
