"""No confused deputy: engine lvs starts privileged host-network pods, so only in namespaces and
with images the cluster admin allows (chart values lvs.allowedNamespaces, lvs.allowedImages)."""

from __future__ import annotations

from typing import Any

from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.lvs.admission import images_of, refusal
from hakeeper.loadbalancerpool.lvs.objects import DEFAULT_KEEPALIVED_IMAGE
from hakeeper.loadbalancerpool.status import refused_status


def lvs(**balancer: Any) -> LoadBalancerPoolSpec:
    return LoadBalancerPoolSpec.model_validate({
        "engine": "lvs", "backends": {"service": "web", "port": 8080}, "balancer": balancer,
        "lvs": {"virtualIP": "10.0.0.100", "port": 80, "vrrp": {"virtualRouterID": 51}}})


def test_nowhere_by_default_and_where_a_name_or_pattern_allows():
    for allowed in (frozenset(), frozenset({"edge"}), frozenset({"team-*"})):
        refused = refusal("shop", lvs(), allowed, frozenset())
        assert refused is not None and refused.reason == "EngineNotAllowed"
        assert "lvs.allowedNamespaces" in refused.message and "shop" in refused.message
    for namespace, allowed in (("edge", {"edge"}), ("team-a", {"team-*"}), ("shop", {"*"})):
        assert refusal(namespace, lvs(), frozenset(allowed), frozenset()) is None


def test_an_image_needs_allowing_except_the_one_hakeeper_ships():
    everywhere = frozenset({"*"})
    assert images_of(lvs()) == [DEFAULT_KEEPALIVED_IMAGE]
    assert refusal("edge", lvs(image=DEFAULT_KEEPALIVED_IMAGE), everywhere, frozenset()) is None
    refused = refusal("edge", lvs(image="evil.example/keepalived:1"), everywhere, frozenset())
    assert refused is not None and refused.reason == "ImageNotAllowed" and "evil.example/keepalived:1" in refused.message
    agent = refusal("edge", lvs(agentImage="evil.example/agent:1"), everywhere, frozenset())
    assert agent is not None and "evil.example/agent:1" in agent.message  # the agent's container too
    allowed = frozenset({"registry.example/keepalived:*"})
    assert refusal("edge", lvs(image="registry.example/keepalived:2.3"), everywhere, allowed) is None
    assert refusal("edge", lvs(image="registry.example/keepalived-evil:1"), everywhere, allowed) is not None


def test_a_refused_pool_reports_ready_false_with_the_reason():
    refused = refusal("shop", lvs(), frozenset(), frozenset())
    assert refused is not None
    status = refused_status({"conditions": []}, 3, refused, now="2026-01-01T00:00:00Z")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == "EngineNotAllowed"
    assert conditions["ConfigApplied"]["reason"] == "EngineNotAllowed"
    assert status["observedGeneration"] == 3 and status["balancers"] == []
