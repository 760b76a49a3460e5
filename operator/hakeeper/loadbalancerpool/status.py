"""A pool's status from what the operator observed (pure), built as LoadBalancerPoolStatus.

Conditions: BackendsAvailable (some backend is ready), ConfigApplied (every ready balancer
pod runs the current config), and Ready, derived from the two by ready(). The one Ready
not derived here is InvalidSpec, set by platform.spec.parse_spec before any of this runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from hakeeper.api.common import Condition
from hakeeper.api.conditions import ConditionType, PoolReason, Verdict, get_condition, with_verdicts
from hakeeper.api.loadbalancerpool import BackendCount, BalancerPodStatus, LoadBalancerPoolStatus
from hakeeper.loadbalancerpool.backends import Backend, count
from hakeeper.loadbalancerpool.haproxy import weighting

MASTER = "MASTER"
"""The VRRP state of the node holding the virtual IP, as keepalived names it."""


@dataclasses.dataclass(frozen=True)
class BalancerPod:
    name: str
    ready: bool
    applied_hash: str | None
    vrrp_state: str | None = None
    node: str | None = None
    ipvs: str | None = None
    """lvs: "available" or "missing", as the agent on the node reports it."""
    reloads: int | None = None
    """haproxy: the hitless reloads the pod's agent has done since it started."""
    ip: str | None = None
    """The pod's IP (haproxy: where its peers reach it), None before it has one."""
    effective_weights: str | None = None
    """haproxy, weighting Latency: the agent's report of the weights it applies (JSON)."""


def backends_available(counts: Mapping[str, int]) -> Verdict:
    """BackendsAvailable from the backend counts (backends.count: total, ready)."""
    if counts["total"] == 0:
        return Verdict(False, PoolReason.NO_BACKENDS, "no backend endpoints match the pool's backends")
    if counts["ready"] == 0:
        return Verdict(False, PoolReason.NO_READY_BACKENDS, f"0/{counts['total']} backends ready")
    return Verdict(True, PoolReason.BACKENDS_READY, f"{counts['ready']}/{counts['total']} backends ready")


def config_applied(config_hash: str, balancers: list[BalancerPod]) -> Verdict:
    """ConfigApplied: every ready balancer pod's agent reported `config_hash`, and (lvs) every
    balancer node has IPVS."""
    running = [b for b in balancers if b.ready]
    applied = [b for b in running if b.applied_hash == config_hash]
    no_ipvs = sorted(b.node or b.name for b in balancers if b.ipvs == "missing")
    if no_ipvs:
        return Verdict(False, PoolReason.IPVS_UNAVAILABLE,
                       f"no IPVS on {', '.join(no_ipvs)}: keepalived cannot run there; "
                       "load the ip_vs kernel module on the balancer nodes (modprobe ip_vs)")
    if not running:
        return Verdict(False, PoolReason.NO_BALANCER_READY, "no balancer pod is ready yet")
    if len(applied) < len(running):
        stale = ", ".join(sorted(b.name for b in running if b.applied_hash != config_hash))
        return Verdict(False, PoolReason.APPLYING, f"{len(applied)}/{len(running)} balancer pods run config "
                                                   f"{config_hash}; waiting for {stale}")
    return Verdict(True, PoolReason.APPLIED, f"{len(applied)} balancer pods run config {config_hash}")


def _masters(balancers: Iterable[BalancerPod]) -> list[str]:
    """The nodes (pods, where the node is not known) whose keepalived is VRRP master, sorted."""
    return sorted(b.node or b.name for b in balancers if (b.vrrp_state or "").upper() == MASTER)


def virtual_ip_unique(balancers: Iterable[BalancerPod]) -> Verdict:
    """VirtualIPUnique (engine lvs): at most one node is VRRP master. Two at once is a split
    brain: each answers ARP for the address and clients reach one or the other at random
    (RFC 5798 section 6.4.3: a master that hears no higher-priority advert stays master)."""
    masters = _masters(balancers)
    if len(masters) > 1:
        return Verdict(False, PoolReason.MULTIPLE_MASTERS,
                       f"the virtual IP is held by {', '.join(masters)} at once (VRRP split brain): they do not hear "
                       "each other's adverts; let IP protocol 112 (VRRP) pass between the balancer nodes")
    if masters:
        return Verdict(True, PoolReason.HELD_ONCE, f"the virtual IP is held by {masters[0]}")
    return Verdict(True, PoolReason.NOT_HELD, "no node holds the virtual IP")


def ready(available: Verdict, applied: Verdict, serving: int, ready_backends: int,
          unique: Verdict | None = None) -> Verdict:
    """Ready: the config is applied, a backend is up, and (lvs) no split brain. Otherwise not,
    with the failing condition's reason and message (a split brain first, then ConfigApplied's:
    without balancers nothing serves)."""
    for condition in (unique, applied, available):
        if condition is None:
            continue
        if not condition.status:
            return Verdict(False, condition.reason, condition.message)
    return Verdict(True, PoolReason.SERVING, f"{serving} balancers serving {ready_backends} backends")


def conditions_for(
    previous: Iterable[Condition | Mapping[str, Any]] | None,
    generation: int | None,
    backends: list[Backend],
    config_hash: str,
    balancers: list[BalancerPod],
    now: str | None = None,
    lvs: bool = False,
) -> list[Condition]:
    """The previous conditions with BackendsAvailable, ConfigApplied, (lvs) VirtualIPUnique and
    Ready set."""
    counts = count(backends)
    available = backends_available(counts)
    applied = config_applied(config_hash, balancers)
    unique = virtual_ip_unique(balancers) if lvs else None
    serving = sum(1 for b in balancers if b.ready and b.applied_hash == config_hash)
    verdicts = [(ConditionType.BACKENDS_AVAILABLE, available), (ConditionType.CONFIG_APPLIED, applied)]
    if unique is not None:
        verdicts.append((ConditionType.VIRTUAL_IP_UNIQUE, unique))
    verdicts.append((ConditionType.READY, ready(available, applied, serving, counts["ready"], unique)))
    return with_verdicts(previous, verdicts, generation, now)


def virtual_ip_holder(balancers: Iterable[BalancerPod]) -> str | None:
    """The nodes (pods, where the node is not known) whose keepalived is VRRP master, comma-separated;
    None when none is."""
    masters = _masters(balancers)
    return ",".join(masters) if masters else None


def pool_status(
    previous: Mapping[str, Any] | None,
    generation: int | None,
    algorithm: str,
    backends: list[Backend],
    config_hash: str,
    balancers: list[BalancerPod],
    now: str | None = None,
    lvs: bool = False,
    latency: bool | None = None,
) -> dict[str, Any]:
    """The pool's status (LoadBalancerPoolStatus), as the merge patch of the status subresource
    (StatusModel.patch). `previous` is the status as read from the API (its conditions keep their
    transition times); `lvs` adds virtualIPHolder, cleared when no node holds the address;
    `latency` (haproxy: weighting mode Latency) adds effectiveWeights, and False clears them."""
    status = LoadBalancerPoolStatus(
        observed_generation=generation,
        algorithm=algorithm,
        config_hash=config_hash,
        backends=BackendCount.model_validate(count(backends)),
        balancers=[BalancerPodStatus(pod=b.name, applied_hash=b.applied_hash, vrrp_state=b.vrrp_state or None,
                                     reloads=b.reloads)
                   for b in sorted(balancers, key=lambda b: b.name)],
        conditions=conditions_for((previous or {}).get("conditions"), generation, backends, config_hash, balancers,
                                  now, lvs),
    )
    if lvs:
        status.virtual_ip_holder = virtual_ip_holder(balancers)
    if latency is not None:
        status.effective_weights = weighting.effective_weights(
            [(b.name, b.ready, b.effective_weights) for b in balancers]) if latency else None
    return status.patch()


def refused_status(previous: Mapping[str, Any] | None, generation: int | None, refused: Verdict,
                   now: str | None = None) -> dict[str, Any]:
    """The status of a pool the operator runs nothing for (lvs/admission.py): ConfigApplied and
    Ready False with the refusal's reason and message; no balancers, no config."""
    status = LoadBalancerPoolStatus(
        observed_generation=generation,
        config_hash=None,
        balancers=[],
        conditions=with_verdicts((previous or {}).get("conditions"), [
            (ConditionType.CONFIG_APPLIED, refused), (ConditionType.READY, refused)], generation, now),
    )
    return status.patch()


def split_brain_began(previous: Mapping[str, Any] | None, status: Mapping[str, Any]) -> str | None:
    """The message of a VirtualIPUnique=False that `status` (a pool_status patch) sets and
    `previous` (the status before) did not have: what a Warning Event says once; else None."""
    now = get_condition(status.get("conditions"), ConditionType.VIRTUAL_IP_UNIQUE) or {}
    before = get_condition((previous or {}).get("conditions"), ConditionType.VIRTUAL_IP_UNIQUE) or {}
    if now.get("status") == "False" and before.get("status") != "False":
        return str(now.get("message") or "")
    return None
