"""Who keeps a VRRP virtual router ID when lvs pools claim the same one (lvs/vrid.py)."""

from __future__ import annotations

import copy

from hakeeper.api.conditions import PoolReason
from hakeeper.loadbalancerpool.lvs.vrid import VrrpClaim, claim_of, conflict, may_share_nodes

KEY = ("eth0", 51)
POOL = {
    "metadata": {"name": "edge", "namespace": "web", "creationTimestamp": "2026-11-30T06:00:00Z"},
    "spec": {"engine": "lvs", "backends": {"selector": {"matchLabels": {"app": "web"}}, "port": 8080},
             "lvs": {"virtualIP": "10.0.0.10", "port": 80, "vrrp": {"virtualRouterID": 51}}},
}


def _claim(name: str, created: str, namespace: str = "web", **selector: str) -> VrrpClaim:
    return VrrpClaim(created=created, namespace=namespace, name=name, node_selector=tuple(sorted(selector.items())))


def test_claim_of_an_lvs_pool_is_its_interface_and_vrid():
    assert claim_of(POOL) == (("eth0", 51), _claim("edge", "2026-11-30T06:00:00Z"))
    haproxy = copy.deepcopy(POOL)
    haproxy["spec"] = {"engine": "haproxy", "backends": POOL["spec"]["backends"]}
    assert claim_of(haproxy) is None
    broken = copy.deepcopy(POOL)
    broken["spec"]["lvs"]["vrrp"]["virtualRouterID"] = 0  # the schema refuses it: no claim
    assert claim_of(broken) is None


def test_the_older_pool_keeps_the_router_and_the_newer_is_refused_naming_it():
    old, new = _claim("edge", "2026-11-30T06:00:00Z"), _claim("edge2", "2026-11-30T06:00:05Z", "shop")
    assert conflict(KEY, old, [old, new]) is None
    verdict = conflict(KEY, new, [old, new])
    assert verdict is not None and not verdict.status and verdict.reason == PoolReason.VIRTUAL_ROUTER_ID_IN_USE
    assert "web/edge" in verdict.message and "virtualRouterID 51" in verdict.message and "eth0" in verdict.message
    # the negative control: alone, the newer pool runs
    assert conflict(KEY, new, [new]) is None
    # same second: namespace, then name decide, the same way in every pass
    twin = _claim("edge", "2026-11-30T06:00:00Z", "alpha")
    assert conflict(KEY, twin, [old, twin]) is None and conflict(KEY, old, [old, twin]) is not None


def test_disjoint_node_selectors_share_the_id():
    a, b = _claim("a", "1", zone="a"), _claim("b", "2", zone="b")
    assert not may_share_nodes(a, b) and conflict(KEY, b, [a, b]) is None
    # one selector on another label: a node could carry both
    c = _claim("c", "3", rack="r1")
    assert may_share_nodes(a, c) and conflict(KEY, c, [a, c]) is not None
    # no selector: every node
    assert may_share_nodes(_claim("d", "4"), a)


def test_a_refused_pool_refuses_nobody():
    # b (every node) loses to a (zone a); c (zone b) overlaps b only, so c runs
    a, b, c = _claim("a", "1", zone="a"), _claim("b", "2"), _claim("c", "3", zone="b")
    claims = [a, b, c]
    assert conflict(KEY, a, claims) is None
    assert conflict(KEY, b, claims) is not None
    assert conflict(KEY, c, claims) is None


def test_the_index_may_hold_the_pools_own_claim_from_before_an_edit():
    older_self = _claim("edge", "1")  # same pool, before its nodeSelector changed
    me = _claim("edge", "1", zone="a")
    assert conflict(KEY, me, [older_self]) is None
