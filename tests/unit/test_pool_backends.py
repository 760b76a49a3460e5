from hakeeper.api.loadbalancerpool import Backends
from hakeeper.loadbalancerpool.backends import Backend, backends_from, count, invalid_weight_annotations, weight_of

SPEC = Backends.model_validate({
    "selector": {"matchLabels": {"app": "web"}}, "port": 8080,
    "weightRules": [{"selector": {"matchLabels": {"zone": "a"}}, "weight": 3},
                    {"selector": {"matchExpressions": [{"key": "canary", "operator": "Exists"}]}, "weight": 0}],
})


def endpoint(ip, pod, ready=True, serving=None, terminating=False):
    cond = {"ready": ready, "terminating": terminating}
    if serving is not None:
        cond["serving"] = serving
    return {"addresses": [ip], "conditions": cond, "targetRef": {"kind": "Pod", "name": pod}}


def pod(name, labels=None, annotations=None):
    return {"metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}}}


def test_states_follow_endpoint_conditions():
    slices = [{"addressType": "IPv4", "ports": [{"name": "backend", "port": 8080}], "endpoints": [
        endpoint("127.0.10.2", "b"),
        endpoint("127.0.10.1", "a", ready=False),
        endpoint("127.0.10.3", "c", ready=False, serving=True, terminating=True),
        endpoint("127.0.10.4", "d", ready=False, serving=False, terminating=True),
    ]}]
    out = backends_from(SPEC, slices, {})
    assert [(b.name, b.state) for b in out] == [("a", "down"), ("b", "ready"), ("c", "draining")]
    assert count(out) == {"total": 3, "ready": 1}


def test_terminating_endpoints_that_still_serve_take_requests_when_nothing_is_ready():
    """Issue 14 field fault a: a pool whose only endpoints were terminating but still serving
    drained them all and answered 503, where kube-proxy keeps sending to them (KEP-1669). They
    are taken as ready then, for both engines (an lvs pool keeps its virtual server's real
    servers at their weight); with a ready endpoint they drain as before."""
    only_terminating = [{"addressType": "IPv4", "ports": [{"name": "backend", "port": 8080}], "endpoints": [
        endpoint("127.0.10.3", "c", ready=False, serving=True, terminating=True),
        endpoint("127.0.10.4", "d", ready=False, serving=False, terminating=True),
        endpoint("127.0.10.1", "a", ready=False),
    ]}]
    out = backends_from(SPEC, only_terminating, {})
    assert [(b.name, b.state) for b in out] == [("a", "down"), ("c", "ready")]
    with_ready = [{**only_terminating[0], "endpoints": [*only_terminating[0]["endpoints"], endpoint("127.0.10.2", "b")]}]
    assert {b.name: b.state for b in backends_from(SPEC, with_ready, {})} == {"a": "down", "b": "ready", "c": "draining"}

    from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
    from hakeeper.loadbalancerpool.lvs.config import render as render_keepalived

    lvs = LoadBalancerPoolSpec.model_validate({
        "engine": "lvs", "backends": {"selector": {"matchLabels": {"app": "web"}}, "port": 8080},
        "lvs": {"virtualIP": "10.0.0.100", "port": 8080, "vrrp": {"virtualRouterID": 51}}})
    conf = render_keepalived("edge", lvs, out).files["keepalived.conf"]
    assert "real_server 127.0.10.3 8080" in conf and "weight 0" not in conf


def test_named_port_is_resolved_from_the_slice():
    spec = SPEC.model_copy(update={"port": "http"})
    slices = [{"ports": [{"name": "http", "port": 9000}], "endpoints": [endpoint("127.0.10.1", "a")]}]
    assert backends_from(spec, slices, {})[0].port == 9000
    assert backends_from(spec, [{"ports": [{"name": "other", "port": 1}], "endpoints": []}], {}) == []


def test_weights_annotation_beats_rules_and_bad_annotation_falls_back():
    assert weight_of(SPEC, pod("a", {"zone": "a"})) == 3
    assert weight_of(SPEC, pod("a", {"zone": "a"}, {"hakeeper.io/weight": "7"})) == 7
    assert weight_of(SPEC, pod("a", {"zone": "a"}, {"hakeeper.io/weight": "lots"})) == 3
    assert weight_of(SPEC, pod("a", {"canary": ""})) == 0
    assert weight_of(SPEC, pod("a")) == 1
    assert weight_of(SPEC, None) == 1
    assert invalid_weight_annotations([pod("x", annotations={"hakeeper.io/weight": "300"}), pod("y")]) == [
        "x: hakeeper.io/weight='300' is not a number from 0 to 256"]


def test_duplicate_endpoint_across_slices_keeps_the_best_state():
    s1 = {"ports": [{"name": "backend", "port": 8080}], "endpoints": [endpoint("127.0.10.1", "a", ready=False)]}
    s2 = {"ports": [{"name": "backend", "port": 8080}], "endpoints": [endpoint("127.0.10.1", "a")]}
    assert backends_from(SPEC, [s1, s2], {}) == [Backend("a", "127.0.10.1", 8080, 1, "ready")]


def test_ipv6_slices_and_podless_endpoints():
    slices = [{"addressType": "IPv6", "endpoints": [endpoint("::1", "v6")]},
              {"ports": [], "endpoints": [{"addresses": ["127.0.10.9"], "conditions": {"ready": True}}]}]
    assert backends_from(SPEC, slices, {}) == [Backend("127.0.10.9-8080", "127.0.10.9", 8080, 1, "ready")]
