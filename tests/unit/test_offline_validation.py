"""Offline validation says what the API server says (tests/e2e/invalid_specs.py holds the same cases)."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from hakeeper.api.offline import InvalidManifest, check

from ..e2e.invalid_specs import DP_BASE, INVALID

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


def _doc(kind: str, spec: dict, name: str = "x") -> dict:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c[0])
def test_refused_with_the_api_servers_words(case):
    name, kind, spec, fragment = case  # the name as in the e2e test: a rule may be about it
    with pytest.raises(InvalidManifest) as refused:
        check(_doc(kind, spec, name))
    assert fragment in str(refused.value)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_example_passes_and_gets_defaults(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d["apiVersion"].startswith("hakeeper.io/")]
    assert docs
    for doc in docs:
        kind, spec = check(doc)
        assert spec  # defaults filled in, e.g. the pool's timeouts
        if kind.kind == "LoadBalancerPool":
            assert {"timeouts", "retries", "redispatch", "healthCheck", "balancer"} <= set(spec)


def test_unknown_fields_and_several_errors_are_all_reported():
    with pytest.raises(InvalidManifest) as refused:
        check(_doc("LoadBalancerPool", {"backends": {"selector": {"matchLabels": {"a": "b"}}, "port": 80},
                                        "retries": -1, "colour": "blue"}))
    message = str(refused.value)
    assert 'The LoadBalancerPool "x" is invalid' in message
    assert 'spec: unknown field "colour"' in message
    assert "spec.retries: Invalid value: -1: spec.retries in body should be greater than or equal to 0" in message


def test_a_zero_for_and_cooldown_are_accepted():
    """Unlike the periods and timeouts, these two waits mean something at 0s (see their docstrings)."""
    spec = {**DP_BASE, "triggers": [{"name": "load", "query": "max(up)", "threshold": 1, "for": "0s"}],
            "restore": {"cooldown": "0s"}}
    _, checked = check(_doc("DegradationPolicy", spec))
    assert checked["triggers"][0]["for"] == "0s" and checked["restore"]["cooldown"] == "0s"


def test_yaml_nan_and_inf_are_refused_in_any_field_with_kubectls_words():
    # YAML loads .nan and .inf as floats; kubectl cannot turn them into JSON, whatever the field
    text = ("apiVersion: hakeeper.io/v1alpha1\nkind: ReplicatedDatabase\nmetadata: {name: x}\n"
            "spec: {replicas: .nan, failover: {maxLagSeconds: -.inf}}\n")
    with pytest.raises(InvalidManifest) as refused:
        check(yaml.safe_load(text))
    message = str(refused.value)
    assert "spec.replicas: Invalid value: NaN: json: unsupported value: NaN" in message
    assert "spec.failover.maxLagSeconds: Invalid value: -Inf: json: unsupported value: -Inf" in message


def test_a_pattern_error_does_not_hide_the_rules_but_a_type_error_does():
    """As the API server: the CEL rules run after a pattern or range error, not after a wrong type."""
    with pytest.raises(InvalidManifest) as refused:
        check(_doc("LoadBalancerPool", {"backends": {"selector": {"matchLabels": {"a": "b"}}, "port": 80},
                                        "retries": -1, "timeouts": {"client": "0s"}}))
    assert 'spec.timeouts.client: Invalid value: "string": must be longer than 0s' in str(refused.value)
    with pytest.raises(InvalidManifest) as refused:
        check(_doc("LoadBalancerPool", {"backends": {"selector": {"matchLabels": {"a": "b"}}, "port": 80},
                                        "retries": "3", "timeouts": {"client": "0s"}}))
    assert "must be longer than 0s" not in str(refused.value)
    assert "some validation rules were not checked" in str(refused.value)


@pytest.mark.parametrize(("spec", "words"), [
    # the API server's JSON decoder reads an integer past int64 as a float64; here it made
    # cel-python raise a bare ValueError("overflow") (found by the fuzz tests)
    ({**DP_BASE, "maxShedFraction": 2**63},
     "spec.maxShedFraction: Invalid value: 9.223372036854776e+18: spec.maxShedFraction in body should be less "
     "than or equal to 1"),
    ({**DP_BASE, "maxShedFraction": -(2**63) - 1}, "spec.maxShedFraction in body should be greater than or equal"),
    ({**DP_BASE, "tiers": [{"name": "batch", "priority": 10**30, "selector": {"matchLabels": {"t": "b"}}}]},
     'spec.tiers[0].priority: Invalid value: "number": spec.tiers[0].priority in body must be of type integer: '
     '"number"'),
    ({**DP_BASE, "tiers": [{"name": "batch", "priority": 10**30, "selector": {"matchLabels": {"t": "b"}}}]},
     "spec.tiers[0].priority: Invalid value: 1e+30: spec.tiers[0].priority in body should be less than or equal to "
     "1e+09"),
])
def test_an_integer_past_int64_is_refused_as_the_api_server_reads_it(spec, words):
    with pytest.raises(InvalidManifest) as refused:
        check(_doc("DegradationPolicy", spec))
    assert words in str(refused.value)


def test_an_integer_past_int64_where_any_number_goes_is_taken_as_a_float():
    spec = {**DP_BASE, "triggers": [{"name": "load", "query": "max(up)", "threshold": 2**64}]}
    _, checked = check(_doc("DegradationPolicy", spec))
    assert checked["triggers"][0]["threshold"] == float(2**64)


@pytest.mark.parametrize("name", ["web\n", "web\n\n", "\nweb"])
def test_a_pattern_does_not_take_a_line_break_at_the_end(name):
    """Go's regexp: `$` is the end of the text; Python's re.search let "web\n" pass ^...$."""
    spec = {"backends": {"service": name, "port": 80}}
    with pytest.raises(InvalidManifest) as refused:
        check(_doc("LoadBalancerPool", spec))
    assert "spec.backends.service in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'" in str(refused.value)


def test_a_pool_name_is_refused_where_an_object_it_names_could_not_take_it():
    """An haproxy pool's Service takes the pool's name, and backends by selector get the Service
    <pool>-backends: a Service name is a DNS label starting with a letter (at most 63). An lvs
    pool whose backends are a Service of the user's makes no Service, and takes a dot. Field
    fault: an lvs pool `web.v1` by selector, and haproxy pools `1web` or of 55 to 63
    characters, were accepted and failed every reconcile."""
    lvs = {"virtualIP": "10.0.0.100", "port": 8080, "vrrp": {"virtualRouterID": 51}}
    selector = {"selector": {"matchLabels": {"app": "web"}}, "port": 8080}
    service = {"service": "web", "port": 8080}
    check(_doc("LoadBalancerPool", {"engine": "lvs", "backends": service, "lvs": lvs}, "web.v1"))
    check(_doc("LoadBalancerPool", {"backends": selector}, "w" * 54))
    check(_doc("LoadBalancerPool", {"backends": service}, "w" * 63))
    refusals = [
        ({"backends": selector}, "web.v1", "a LoadBalancerPool of engine haproxy needs a name"),
        ({"backends": service}, "1web", "a LoadBalancerPool of engine haproxy needs a name"),
        ({"backends": selector}, "w" * 55, "a LoadBalancerPool whose backends are chosen by selector needs a name of at most 54"),
        ({"engine": "lvs", "backends": selector, "lvs": lvs}, "web.v1",
         "a LoadBalancerPool whose backends are chosen by selector needs a name"),
        ({"engine": "lvs", "backends": service, "lvs": lvs}, "w" * 64, "a LoadBalancerPool's name is at most 63 characters"),
    ]
    for spec, name, words in refusals:
        with pytest.raises(InvalidManifest) as refused:
            check(_doc("LoadBalancerPool", spec, name))
        assert f'<nil>: Invalid value: "object": {words}' in str(refused.value), name


def test_the_longest_timers_haproxy_and_keepalived_take_are_accepted():
    backends = {"selector": {"matchLabels": {"app": "web"}}, "port": 8080}
    check(_doc("LoadBalancerPool", {
        "backends": backends, "timeouts": {"client": "2147483647ms"}, "server": {"slowstart": "2147483647ms"},
        "healthCheck": {"interval": "2147483647ms", "timeout": "2147483647ms"},
        "sessionAffinity": {"type": "Cookie", "cookie": {"maxIdle": "2147483647s"}}, "retryOn": ["none"]}))
    lvs = {"virtualIP": "10.0.0.100", "port": 8080, "vrrp": {"virtualRouterID": 51}}
    check(_doc("LoadBalancerPool", {"engine": "lvs", "backends": backends, "lvs": lvs,
                                    "healthCheck": {"interval": "2000000h", "timeout": "4294.967295s"}}))
    check(_doc("LoadBalancerPool", {"engine": "lvs", "backends": backends, "lvs": lvs,  # a check type none has no timeout
                                    "healthCheck": {"type": "none", "interval": "3h", "timeout": "2h"}}))


@pytest.mark.parametrize("spec", [
    {"algorithm": "source", "hashType": "consistent"},  # the negative control of lbp-latency-map-based-hash
    {"sessionAffinity": {"type": "SourceIP"}},  # hashing chosen by the affinity is consistent
    {"algorithm": "leastconn", "mode": "tcp"},
    {},
], ids=["consistent-source", "source-affinity", "tcp-leastconn", "roundrobin"])
def test_latency_weighting_is_accepted_where_haproxy_takes_runtime_weights(spec):
    _, checked = check(_doc("LoadBalancerPool", {"backends": {"service": "web", "port": 80}, **spec,
                                                 "weighting": {"mode": "Latency", "interval": "1s"}}))
    assert checked["weighting"] == {"mode": "Latency", "interval": "1s", "halfLife": "10s", "floor": 10, "maxStep": 25}
    # Static, the default, with the algorithms Latency refuses
    _, static = check(_doc("LoadBalancerPool", {"backends": {"service": "web", "port": 80}, "algorithm": "static-rr"}))
    assert static["weighting"]["mode"] == "Static"
