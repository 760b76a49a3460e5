"""Which lvs pools may use a VRRP virtual router ID (pure): one owner per network and node.

VRRP (RFC 5798 section 5.2.3) names a virtual router by its VRID on one LAN. Two keepalived
instances that advertise the same VRID on the same interface of the same nodes take each
other's advertisements as their own router's: each sees a peer with another virtual IP (or
password), logs and drops them, or worse elects across pools, and one pool's VIP can end up
on the node of the other. So of the lvs pools that claim one (interface, VRID) on nodes that
may be the same, the oldest keeps it and every newer one is refused (Ready=False,
VirtualRouterIDInUse) and runs nothing until the older one leaves or either changes.

Nodes "may be the same" unless the two `lvs.nodeSelector`s require different values of one
label: selectors are plain label equalities (a DaemonSet's nodeSelector), so that is exact for
"some node could match both".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from hakeeper.api.conditions import PoolReason, Verdict
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec

VrrpKey = tuple[str, int]
"""(interface, virtualRouterID): the index key under which pools claim a virtual router."""


@dataclasses.dataclass(frozen=True, order=True)
class VrrpClaim:
    """One lvs pool's claim on a virtual router; sorts oldest first (ties by namespace, name)."""

    created: str
    """metadata.creationTimestamp (RFC 3339, UTC, whole seconds: sorts as text)."""
    namespace: str
    name: str
    node_selector: tuple[tuple[str, str], ...] = ()

    @property
    def pool(self) -> str:
        return f"{self.namespace}/{self.name}"


def claim_of(body: Mapping[str, Any]) -> tuple[VrrpKey, VrrpClaim] | None:
    """The claim of a LoadBalancerPool object, or None when it is not a valid lvs pool."""
    spec_data = body.get("spec") or {}
    if spec_data.get("engine") != "lvs":
        return None
    try:
        spec = LoadBalancerPoolSpec.model_validate(spec_data)
    except ValueError:
        return None
    if spec.lvs is None:
        return None
    meta = body.get("metadata") or {}
    vrrp = spec.lvs.vrrp
    claim = VrrpClaim(created=str(meta.get("creationTimestamp") or ""), namespace=str(meta.get("namespace") or ""),
                      name=str(meta.get("name") or ""), node_selector=tuple(sorted(spec.lvs.node_selector.items())))
    return (vrrp.interface, vrrp.virtual_router_id), claim


def may_share_nodes(a: VrrpClaim, b: VrrpClaim) -> bool:
    """Whether some node could match both pools' lvs.nodeSelector (no label required with two values)."""
    left = dict(a.node_selector)
    return all(left.get(key, value) == value for key, value in b.node_selector)


def conflict(key: VrrpKey, me: VrrpClaim, claims: Iterable[VrrpClaim]) -> Verdict | None:
    """None when `me` keeps the virtual router of `key` among `claims` (all pools claiming `key`,
    `me` among them or not); else Ready=False, VirtualRouterIDInUse, naming the older pool.

    Claims are granted oldest first, each unless it may share nodes with one already granted, so a
    refused pool never refuses a newer one."""
    # the index may still hold this pool's claim from before its spec changed: `me` replaces it
    others = {c for c in claims if (c.namespace, c.name) != (me.namespace, me.name)}
    granted: list[VrrpClaim] = []
    for claim in sorted({*others, me}):
        holder = next((g for g in granted if may_share_nodes(g, claim)), None)
        if claim == me:
            if holder is None:
                return None
            interface, vrid = key
            return Verdict(False, PoolReason.VIRTUAL_ROUTER_ID_IN_USE,
                           f"virtualRouterID {vrid} on interface {interface} is already used by LoadBalancerPool "
                           f"{holder.pool} (older) on nodes this pool's keepalived may run on too: two virtual "
                           "routers with one ID on one network take each other's VRRP advertisements; choose "
                           "another lvs.vrrp.virtualRouterID, another lvs.vrrp.interface or a disjoint "
                           "lvs.nodeSelector; nothing runs")
        if holder is None:
            granted.append(claim)
    raise AssertionError("unreachable: `me` is among the sorted claims")
