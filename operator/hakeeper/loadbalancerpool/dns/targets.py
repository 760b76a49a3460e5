"""What an engine dns pool publishes: its targets, and which of them the record carries (pure).

A target is a backend (an endpoint of the pool's backends: its pod's address, healthy while the
endpoint is ready, so while the pod's readiness probe passes) or a pool named in dns.pools (its
address, healthy while its Ready condition is True). Which addresses are published:

- a target of weight 0 never is (drained, as a backend of weight 0 gets no new connections);
- otherwise every healthy one;
- when none is healthy, every candidate: fail open, as Route 53 answers with all the records of
  a set whose health checks all fail ("If all records are unhealthy, Route 53 responds to queries
  as if they were all healthy", Route 53 developer guide, "How Amazon Route 53 chooses records
  when health checking is configured"). A name that vanishes turns a health-signal fault (every
  probe failing on a shared dependency) into a certain outage, and a negative answer is cached by
  resolvers for the zone's SOA minimum (RFC 2308), longer than the record's TTL. Ready=False says so.
- with no candidate at all, nothing: the pool deletes its DNSEndpoint and the name goes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from hakeeper.api.conditions import ConditionType, PoolReason, Verdict, condition_status
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.objects import names

Problem = tuple[str, str]
"""(reason, message) of a target the pool cannot publish: PoolReason.TARGET_POOL_MISSING or
TARGET_POOL_UNADDRESSABLE."""


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    """The backend's pod name (or address-port), or the pool's name."""
    address: str | None
    """IPv4, or None for a pool with no address."""
    weight: int
    healthy: bool
    problem: Problem | None = None


@dataclasses.dataclass(frozen=True)
class TargetPool:
    """A pool named in dns.pools as the pass found it: the pool object, and (engine haproxy) its
    client Service; None for either that does not exist."""

    name: str
    weight: int
    pool: Mapping[str, Any] | None
    service: Mapping[str, Any] | None = None


def _ipv4(text: Any) -> str | None:
    try:
        return str(ipaddress.IPv4Address(text)) if isinstance(text, str) else None
    except ValueError:
        return None


def service_address(service: Mapping[str, Any] | None) -> str | None:
    """The IPv4 address of a haproxy pool's Service that clients of a published name reach: the
    first load-balancer ingress IP, else the first external IP, else the cluster IP.

    A name published through ExternalDNS is mostly for clients outside the cluster, who reach a
    LoadBalancer's ingress or an external IP and not a cluster IP; the cluster IP serves names
    resolved inside the cluster (and a node, as the e2e's). Hostname-only ingresses (some cloud
    load balancers) are not addresses for an A record and are skipped. None: no IPv4 address yet.
    """
    if service is None:
        return None
    spec, status = service.get("spec") or {}, service.get("status") or {}
    ingress = [_ipv4(i.get("ip")) for i in (status.get("loadBalancer") or {}).get("ingress") or []]
    external = [_ipv4(ip) for ip in spec.get("externalIPs") or []]
    for address in (*ingress, *external, _ipv4(spec.get("clusterIP"))):
        if address is not None:
            return address
    return None


def service_name(pool: str) -> str:
    """The name of a haproxy pool's client Service (objects.names)."""
    return names(pool)["service"]


def pool_target(target: TargetPool) -> Target:
    """One pool of dns.pools as a target: an lvs pool's lvs.virtualIP, a haproxy pool's Service
    address (service_address); healthy while the pool is Ready=True."""
    if target.pool is None:
        return Target(target.name, None, target.weight, False, (
            PoolReason.TARGET_POOL_MISSING, f"dns.pools names {target.name}, which is not a LoadBalancerPool of "
                                            "this namespace"))
    spec = target.pool.get("spec") or {}
    healthy = condition_status(target.pool.get("status") or {}, ConditionType.READY) is True
    engine = spec.get("engine", "haproxy")
    if engine == "lvs":
        address = _ipv4((spec.get("lvs") or {}).get("virtualIP"))
    elif engine == "haproxy":
        address = service_address(target.service)
    else:
        return Target(target.name, None, target.weight, healthy, (
            PoolReason.TARGET_POOL_UNADDRESSABLE, f"dns.pools names {target.name}, a pool of engine {engine}: it has "
                                                  "no address of its own (name its targets instead)"))
    if address is None:
        return Target(target.name, None, target.weight, healthy, (
            PoolReason.TARGET_POOL_UNADDRESSABLE, f"dns.pools names {target.name}, whose Service "
                                                  f"{service_name(target.name)} has no IPv4 address yet"))
    return Target(target.name, address, target.weight, healthy)


def backend_targets(backends: Iterable[Backend]) -> list[Target]:
    """The pool's own backends as targets: healthy while ready (backends.py's states)."""
    return [Target(b.name, b.address, b.weight, b.state == "ready") for b in backends]


def candidates(targets: Iterable[Target]) -> list[Target]:
    """The targets that may be published: with an address, and a weight above 0."""
    return [t for t in targets if t.address is not None and t.weight > 0]


def published(targets: Iterable[Target]) -> list[Target]:
    """The targets the record carries: the healthy candidates, or every candidate when none is
    healthy (fail open, see the module's doc), sorted by address then name."""
    found = candidates(targets)
    healthy = [t for t in found if t.healthy]
    return sorted(healthy or found, key=lambda t: (ipaddress.IPv4Address(t.address or "0.0.0.0"), t.name))


def availability(targets: list[Target]) -> Verdict:
    """BackendsAvailable of an engine dns pool: some candidate target is healthy."""
    found = candidates(targets)
    healthy = [t for t in found if t.healthy]
    if not found:
        return Verdict(False, PoolReason.NO_BACKENDS, "no target with an address and a weight above 0: nothing to "
                                                      "publish, the name is not published")
    if not healthy:
        return Verdict(False, PoolReason.NO_HEALTHY_TARGETS, f"0/{len(found)} targets healthy: publishing all "
                                                             f"{len(found)} (fail open) rather than none")
    return Verdict(True, PoolReason.BACKENDS_READY, f"{len(healthy)}/{len(found)} targets healthy")
