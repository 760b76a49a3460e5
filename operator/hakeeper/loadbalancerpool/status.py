"""A pool's status from what the operator observed (pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from hakeeper.api.conditions import set_condition
from hakeeper.loadbalancerpool.backends import Backend, count


@dataclasses.dataclass(frozen=True)
class BalancerPod:
    name: str
    ready: bool
    applied_hash: str | None
    vrrp_state: str | None = None
    node: str | None = None
    ipvs: str | None = None
    """lvs: "available" or "missing", as the agent on the node reports it."""


def conditions_for(
    previous: Iterable[Mapping[str, Any]] | None,
    generation: int | None,
    backends: list[Backend],
    config_hash: str,
    balancers: list[BalancerPod],
    now: str | None = None,
) -> list[dict[str, Any]]:
    counts = count(backends)
    if counts["total"] == 0:
        available = (False, "NoBackends", "no backend endpoints match the pool's backends")
    elif counts["ready"] == 0:
        available = (False, "NoReadyBackends", f"0/{counts['total']} backends ready")
    else:
        available = (True, "BackendsReady", f"{counts['ready']}/{counts['total']} backends ready")

    running = [b for b in balancers if b.ready]
    applied = [b for b in running if b.applied_hash == config_hash]
    no_ipvs = sorted(b.node or b.name for b in balancers if b.ipvs == "missing")
    if no_ipvs:
        config = (False, "IPVSUnavailable", f"no IPVS on {', '.join(no_ipvs)}: keepalived cannot run there; "
                                            "load the ip_vs kernel module on the balancer nodes (modprobe ip_vs)")
    elif not running:
        config = (False, "NoBalancerReady", "no balancer pod is ready yet")
    elif len(applied) < len(running):
        stale = ", ".join(sorted(b.name for b in running if b.applied_hash != config_hash))
        config = (False, "Applying", f"{len(applied)}/{len(running)} balancer pods run config {config_hash}; "
                                     f"waiting for {stale}")
    else:
        config = (True, "Applied", f"{len(applied)} balancer pods run config {config_hash}")

    if not config[0]:
        ready = (False, config[1], config[2])
    elif not available[0]:
        ready = (False, available[1], available[2])
    else:
        ready = (True, "Serving", f"{len(applied)} balancers serving {counts['ready']} backends")

    out: list[dict[str, Any]] = [dict(c) for c in previous or ()]
    for type_, (status, reason, message) in (("BackendsAvailable", available), ("ConfigApplied", config),
                                             ("Ready", ready)):
        out = set_condition(out, type_, status, reason, message, generation, now)
    return out


def pool_status(
    previous: Mapping[str, Any] | None,
    generation: int | None,
    algorithm: str,
    backends: list[Backend],
    config_hash: str,
    balancers: list[BalancerPod],
    now: str | None = None,
) -> dict[str, Any]:
    previous = previous or {}
    return {
        "observedGeneration": generation,
        "algorithm": algorithm,
        "configHash": config_hash,
        "backends": count(backends),
        "balancers": [{"pod": b.name, "appliedHash": b.applied_hash, **({"vrrpState": b.vrrp_state}
                                                                        if b.vrrp_state else {})}
                      for b in sorted(balancers, key=lambda b: b.name)],
        "conditions": conditions_for(previous.get("conditions"), generation, backends, config_hash, balancers, now),
    }
