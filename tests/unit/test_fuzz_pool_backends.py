"""Fuzzing what the cluster feeds a pool: EndpointSlices and pods (their weight annotation)
through backends_from into the renderers.

The slices are what the API server would store (its validation: IPv4 addresses in an IPv4
slice, 1 to 100 of them per endpoint, ports 1..65535 or none, any mix of conditions,
endpoints with or without a pod); the annotations are any string, since the API server
checks nothing about them. Whatever the cluster holds, a pool with a valid spec must render
a configuration the real haproxy or keepalived accepts: a refusal here would stop the pool
from following its backends, so unlike a bad spec it is a fault too.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hakeeper.api.configmaps import haproxy as haproxy_cm
from hakeeper.api.configmaps import keepalived as keepalived_cm
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.api.meta import WEIGHT_ANNOTATION
from hakeeper.loadbalancerpool.backends import backends_from, invalid_weight_annotations, weight_of
from hakeeper.loadbalancerpool.haproxy import config as haproxy_config
from hakeeper.loadbalancerpool.lvs import config as lvs_config

from .fuzz_strategies import fuzz, hostile_text
from .test_fuzz_pool_render import haproxy_accepts, host_interface, keepalived_accepts

POD_NAMES = ["web-0", "web-1", "web-2", "web-3", "a.b", "x" * 63]
weights = st.one_of(st.integers(0, 256).map(str), st.sampled_from(["257", "-1", "1.5", "0x10", " 3", "3 ", "+3",
                                                                  "1_0", "²", "٣", "", "9" * 5000, "0" * 5000 + "7"]),
                    hostile_text)
ipv4 = st.ip_addresses(v=4).map(str)


@st.composite
def pods(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    out = {}
    for name in draw(st.lists(st.sampled_from(POD_NAMES), unique=True, max_size=len(POD_NAMES))):
        annotations = {WEIGHT_ANNOTATION: draw(weights)} if draw(st.booleans()) else {}
        labels = draw(st.sampled_from([{"app": "web"}, {"app": "web", "tier": "heavy"}, {}]))
        out[name] = {"metadata": {"name": name, "labels": labels, "annotations": annotations}}
    return out


conditions = st.fixed_dictionaries({}, optional={k: st.sampled_from([True, False, None])
                                                 for k in ("ready", "serving", "terminating")})
endpoints = st.fixed_dictionaries(
    {"addresses": st.lists(ipv4, min_size=1, max_size=3)},
    optional={"conditions": conditions,
              "targetRef": st.one_of(st.builds(lambda n: {"kind": "Pod", "name": n}, st.sampled_from(POD_NAMES)),
                                     st.just({"kind": "Node", "name": "node-a"})),
              "nodeName": st.just("node-a")})
slice_ports = st.lists(st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["", "http", "backend", "metrics"]), "port": st.one_of(st.none(), st.integers(1, 65535)),
    "protocol": st.sampled_from(["TCP", "UDP"])}), max_size=3)
slices = st.lists(st.fixed_dictionaries(
    {"addressType": st.sampled_from(["IPv4", "IPv4", "IPv4", "IPv6", "FQDN"]), "endpoints": st.lists(endpoints,
                                                                                                 max_size=6)},
    optional={"ports": slice_ports}), max_size=3).map(
    # an IPv6 or FQDN slice holds addresses of its type; backends_from skips them anyway
    lambda ss: [s if s["addressType"] == "IPv4" else {**s, "endpoints": []} for s in ss])

WEIGHT_RULES = [{"selector": {"matchLabels": {"tier": "heavy"}}, "weight": 5}]
HAPROXY_SPECS = [
    {},
    {"algorithm": "static-rr"},
    {"algorithm": "source", "hashType": "map-based"},
    {"mode": "redirect"},
    {"mode": "tcp", "algorithm": "leastconn", "healthCheck": {"type": "tcp"}},
    {"sessionAffinity": {"type": "Cookie", "cookie": {"name": "SRV", "maxIdle": "30m"}}},
]


def pool_spec(extra: dict[str, Any], port: int | str) -> LoadBalancerPoolSpec:
    return LoadBalancerPoolSpec.model_validate({
        "backends": {"selector": {"matchLabels": {"app": "web"}}, "port": port, "weightRules": WEIGHT_RULES},
        **extra})


@fuzz(120)
@given(slices=slices, pods=pods(), extra=st.sampled_from(HAPROXY_SPECS),
       port=st.sampled_from([8080, "http", "backend"]), previous=st.booleans())
def test_fuzz_any_cluster_state_renders_a_config_haproxy_accepts(slices, pods, extra, port, previous, tmp_path):
    spec = pool_spec(extra, port)
    backends = backends_from(spec.backends, slices, pods)
    invalid_weight_annotations(pods.values())  # reported as Events: must not raise either
    first = haproxy_config.render("web", spec, backends[::2], run_dir=str(tmp_path)) if previous else None
    rendered = haproxy_config.render("web", spec, backends, first.slots if first else None, run_dir=str(tmp_path))
    haproxy_accepts(haproxy_cm.on_disk(rendered.files[haproxy_cm.CONFIG_FILE],
                                       haproxy_cm.parse_servers(rendered.files[haproxy_cm.SERVERS_FILE])), tmp_path)


@fuzz(80)
@given(slices=slices, pods=pods(), forwarding=st.sampled_from(["NAT", "DR"]))
def test_fuzz_any_cluster_state_renders_a_config_keepalived_accepts(slices, pods, forwarding, tmp_path):
    port = 8080 if forwarding == "NAT" else 80
    spec = LoadBalancerPoolSpec.model_validate({
        "engine": "lvs", "backends": {"selector": {"matchLabels": {"app": "web"}}, "port": port,
                                      "weightRules": WEIGHT_RULES},
        "lvs": {"virtualIP": "10.0.0.100", "port": 80, "forwarding": forwarding,
                "vrrp": {"virtualRouterID": 51, "interface": host_interface()}}})
    backends = backends_from(spec.backends, slices, pods)
    rendered = lvs_config.render("web", spec, backends, nodes=["node-a"])
    keepalived_accepts(keepalived_cm.for_node(rendered.files[keepalived_cm.CONFIG_FILE], 100), tmp_path)


@fuzz(300)
@given(pods=pods())
def test_fuzz_a_weight_annotation_is_applied_exactly_when_it_is_not_reported(pods):
    """The InvalidWeight Event says the annotation is not applied: it must be true, both ways."""
    spec = pool_spec({}, 8080).backends
    reported = {line.split(":")[0] for line in invalid_weight_annotations(pods.values())}
    for name, pod in pods.items():
        raw = pod["metadata"]["annotations"].get(WEIGHT_ANNOTATION)
        if raw is None:
            continue
        without = weight_of(spec, {"metadata": {**pod["metadata"], "annotations": {}}})
        applied = weight_of(spec, pod)
        if name in reported:
            assert applied == without, (raw, applied)
        else:
            assert raw.isascii() and raw.isdigit() and applied == int(raw), (raw, applied)



# -- what the fuzzer found, one case each ----------------------------------------------------

def test_an_endpoint_with_several_addresses_is_one_backend_at_the_first():
    # the API allows up to 100 "fungible" addresses; each made a backend named after the pod,
    # and the renderer refused the pool: "backend names must be unique: web-0"
    slices = [{"addressType": "IPv4", "ports": [{"name": "http", "port": 8080}], "endpoints": [
        {"addresses": ["10.0.0.7", "10.0.0.8"], "targetRef": {"kind": "Pod", "name": "web-0"}}]}]
    backends = backends_from(pool_spec({}, 8080).backends, slices, {})
    assert [(b.name, b.address) for b in backends] == [("web-0", "10.0.0.7")]


def test_a_pod_seen_at_two_addresses_is_one_backend_the_ready_one():
    # slices catching up with a pod recreated under its name (a StatefulSet's web-0)
    old = {"addresses": ["10.0.0.7"], "conditions": {"ready": False, "serving": True, "terminating": True},
           "targetRef": {"kind": "Pod", "name": "web-0"}}
    new = {"addresses": ["10.0.0.9"], "conditions": {"ready": True}, "targetRef": {"kind": "Pod", "name": "web-0"}}
    slices = [{"addressType": "IPv4", "endpoints": [old]}, {"addressType": "IPv4", "endpoints": [new]}]
    backends = backends_from(pool_spec({}, 8080).backends, slices, {})
    assert [(b.name, b.address, b.state) for b in backends] == [("web-0", "10.0.0.9", "ready")]
    haproxy_config.render("web", pool_spec({}, 8080), backends)


def _pod(weight: str) -> dict[str, Any]:
    return {"metadata": {"name": "web-0", "labels": {"tier": "heavy"}, "annotations": {WEIGHT_ANNOTATION: weight}}}


def test_weight_annotations_are_ascii_numbers_from_0_to_256_for_applying_and_reporting_alike():
    spec = pool_spec({}, 8080).backends
    for raw in ("0", "7", "007", "256"):
        assert weight_of(spec, _pod(raw)) == int(raw) and invalid_weight_annotations([_pod(raw)]) == []
    # "²" is a digit to str.isdigit but not to int(); past 4300 digits int() raises: both escaped
    # the report. " 3", "+3", "1_0" and "٣" were applied by int() yet reported as not applied.
    for raw in ("²", "9" * 5000, " 3", "3 ", "+3", "1_0", "٣", "257", "-1", ""):
        assert weight_of(spec, _pod(raw)) == 5, raw  # the weight rule's, as if not annotated
        assert len(invalid_weight_annotations([_pod(raw)])) == 1, raw


# -- the last render, read back from a ConfigMap anyone with edit rights can change ----------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**40), st.floats(), hostile_text,
                         st.sampled_from(["web-0", "web-1", "10.0.0.1"]))
slot_entries = st.lists(st.fixed_dictionaries({
    "slot": st.one_of(st.integers(-1, 40), json_scalars), "name": st.one_of(st.sampled_from(POD_NAMES), json_scalars),
    "address": st.one_of(ipv4, json_scalars), "port": st.one_of(st.integers(1, 65535), json_scalars),
    "weight": st.one_of(st.integers(0, 256), json_scalars), "state": st.sampled_from(["ready", "down", "x"])}),
    max_size=6)
configmap_data = st.one_of(st.none(), st.fixed_dictionaries({}, optional={
    haproxy_cm.SERVERS_FILE: st.one_of(slot_entries.map(json.dumps), hostile_text, st.just("[1, NaN]")),
    haproxy_cm.CONFIG_FILE: st.one_of(hostile_text, st.integers(0, 300).map(
        lambda n: "".join(f"    server s{i} 0.0.0.0:0 disabled weight 1\n" for i in range(1, n + 1))))}))


@fuzz(100)
@given(data=configmap_data, slices=slices, pods=pods())
def test_fuzz_a_hand_edited_configmap_only_guides_the_slots(data, slices, pods, tmp_path):
    """The operator keeps every backend in its slot by reading its last render back from the
    ConfigMap; whatever that holds, the render must go on and HAProxy accept it."""
    spec = pool_spec({}, 8080)
    backends = backends_from(spec.backends, slices, pods)
    rendered = haproxy_config.render("web", spec, backends, haproxy_config.previous_slots(data),
                                     run_dir=str(tmp_path))
    haproxy_accepts(haproxy_cm.on_disk(rendered.files[haproxy_cm.CONFIG_FILE],
                                       haproxy_cm.parse_servers(rendered.files[haproxy_cm.SERVERS_FILE])), tmp_path)
