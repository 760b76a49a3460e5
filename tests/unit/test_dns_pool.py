"""Engine dns, the pure steps: which targets are published, the DNSEndpoint that carries them,
the status and Events, and `hakeeper render` of a dns pool (the API server's refusals are in
tests/e2e/invalid_specs.py, checked offline by test_offline_validation.py)."""

from __future__ import annotations

import pathlib
import re
import subprocess
from typing import Any

import pytest
import yaml

from hakeeper.api import offline
from hakeeper.api.conditions import get_condition
from hakeeper.api.loadbalancerpool import Dns, LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.dns import records
from hakeeper.loadbalancerpool.dns import status as dns_status
from hakeeper.loadbalancerpool.dns.targets import (
    Target,
    TargetPool,
    availability,
    backend_targets,
    pool_target,
    published,
    service_address,
)
from hakeeper.loadbalancerpool.render import render_documents

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXTERNAL_DNS_CRD = yaml.safe_load(
    (ROOT / "hack/external-dns/dnsendpoints.externaldns.k8s.io.yaml").read_text())
DNS = Dns(hostname="www.example.com", ttl=20)


def ready_pool(engine: str, ready: bool = True, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"engine": engine, **spec},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def service(cluster_ip: str = "10.96.0.20", external: list[str] | None = None,
            ingress: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"spec": {"clusterIP": cluster_ip, "externalIPs": external or []},
            "status": {"loadBalancer": {"ingress": ingress or []}}}


def crd_errors(obj: dict[str, Any]) -> list[str]:
    """What ExternalDNS's own CRD schema (v0.22.0) says of a DNSEndpoint."""
    errors: list[str] = []
    schema = EXTERNAL_DNS_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    offline._structural(schema, obj, "", errors)
    return errors


# -- targets ---------------------------------------------------------------------------------

def test_an_lvs_pool_contributes_its_virtual_ip_while_ready():
    pool = ready_pool("lvs", lvs={"virtualIP": "192.0.2.10"})
    assert pool_target(TargetPool("edge", 2, pool)) == Target("edge", "192.0.2.10", 2, True)
    down = pool_target(TargetPool("edge", 1, ready_pool("lvs", ready=False, lvs={"virtualIP": "192.0.2.10"})))
    assert down.address == "192.0.2.10" and not down.healthy and down.problem is None


def test_a_haproxy_pool_contributes_its_services_address_the_outside_one_first():
    assert pool_target(TargetPool("web", 1, ready_pool("haproxy"), service())).address == "10.96.0.20"
    assert service_address(service(external=["198.51.100.7"])) == "198.51.100.7"
    assert service_address(service(external=["198.51.100.7"], ingress=[{"hostname": "lb.example.net"},
                                                                        {"ip": "203.0.113.5"}])) == "203.0.113.5"
    assert service_address(service(cluster_ip="None")) is None
    assert service_address(None) is None


def test_a_missing_or_addressless_pool_is_a_problem_not_a_target():
    missing = pool_target(TargetPool("gone", 1, None))
    assert missing.address is None and missing.problem is not None and missing.problem[0] == "TargetPoolMissing"
    no_address = pool_target(TargetPool("web", 1, ready_pool("haproxy"), None))
    assert no_address.problem is not None and no_address.problem[0] == "TargetPoolUnaddressable"
    dns = pool_target(TargetPool("names", 1, ready_pool("dns")))
    assert dns.problem is not None and dns.problem[0] == "TargetPoolUnaddressable" and "engine dns" in dns.problem[1]


def test_ready_backends_are_published_unready_and_drained_ones_are_not():
    targets = backend_targets([Backend("a", "10.0.0.9", 80), Backend("b", "10.0.0.10", 80, state="down"),
                               Backend("c", "10.0.0.1", 80, weight=0), Backend("d", "10.0.0.2", 80, weight=3)])
    assert [t.name for t in published(targets)] == ["d", "a"]  # by address: 10.0.0.2 < 10.0.0.9
    assert availability(targets).status and availability(targets).message == "2/3 targets healthy"


def test_no_healthy_target_publishes_every_candidate_fail_open():
    targets = [Target("a", "10.0.0.1", 1, False), Target("b", "10.0.0.2", 1, False), Target("c", "10.0.0.3", 0, False)]
    assert [t.name for t in published(targets)] == ["a", "b"]  # still not the drained one
    verdict = availability(targets)
    assert not verdict.status and verdict.reason == "NoHealthyTargets" and "fail open" in verdict.message


def test_no_candidate_at_all_publishes_nothing():
    assert published([Target("a", "10.0.0.1", 0, True), Target("gone", None, 1, False)]) == []
    assert availability([]).reason == "NoBackends"


# -- the DNSEndpoint -------------------------------------------------------------------------

def test_one_record_set_sorted_each_address_once_with_the_ttl():
    chosen = [Target("b", "10.0.0.10", 1, True), Target("a", "10.0.0.9", 5, True), Target("c", "10.0.0.9", 1, True)]
    endpoint = records.dns_endpoint("www", "shop", DNS, chosen)
    assert endpoint is not None
    assert endpoint["apiVersion"] == "externaldns.k8s.io/v1alpha1" and endpoint["kind"] == "DNSEndpoint"
    assert endpoint["metadata"]["namespace"] == "shop" and endpoint["metadata"]["labels"]["hakeeper.io/pool"] == "www"
    # numerically sorted (10.0.0.9 before 10.0.0.10), a weight does not repeat an address
    assert endpoint["spec"]["endpoints"] == [{"dnsName": "www.example.com", "recordType": "A", "recordTTL": 20,
                                              "targets": ["10.0.0.9", "10.0.0.10"]}]
    assert crd_errors(endpoint) == []


def test_a_weight_property_makes_one_weighted_record_per_target():
    dns = Dns(hostname="www.example.com", weight_property="aws/weight")
    chosen = [Target("edge-b", "192.0.2.11", 3, True), Target("edge-a", "192.0.2.10", 256, True)]
    endpoint = records.dns_endpoint("www", "shop", dns, chosen)
    assert endpoint is not None
    assert endpoint["spec"]["endpoints"] == [
        {"dnsName": "www.example.com", "recordType": "A", "recordTTL": 30, "setIdentifier": "edge-a",
         "targets": ["192.0.2.10"], "providerSpecific": [{"name": "aws/weight", "value": "255"}]},
        {"dnsName": "www.example.com", "recordType": "A", "recordTTL": 30, "setIdentifier": "edge-b",
         "targets": ["192.0.2.11"], "providerSpecific": [{"name": "aws/weight", "value": "3"}]},
    ]
    assert crd_errors(endpoint) == []


def test_nothing_to_publish_is_no_dnsendpoint():
    assert records.dns_endpoint("www", "shop", DNS, []) is None


def test_the_crd_check_itself_refuses_what_externaldns_would():
    """Negative control of crd_errors: a field ExternalDNS's schema lacks, a TTL of the wrong type."""
    bad = {"apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint", "metadata": {},
           "spec": {"endpoints": [{"dnsName": "a.example.com", "recordTTL": "30", "weight": 2}]}}
    errors = crd_errors(bad)
    assert any("recordTTL" in e for e in errors) and any('unknown field "weight"' in e for e in errors)


# -- status and Events -----------------------------------------------------------------------

def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def run(targets: list[Target], endpoint: dns_status.Endpoint, previous: dict[str, Any] | None = None):
    chosen = published(targets)
    return dns_status.dns_status(previous, 3, "www.example.com", targets, chosen, endpoint, "h", now="t")


def test_ready_once_externaldns_read_the_records():
    targets = [Target("a", "10.0.0.1", 1, True), Target("b", "10.0.0.2", 1, False)]
    status = run(targets, dns_status.Endpoint(generation=4, observed_generation=4))
    assert conditions(status) == {"BackendsAvailable": ("True", "BackendsReady"),
                                  "Published": ("True", "RecordsPublished"), "Ready": ("True", "Serving")}
    assert status["publishedAddresses"] == ["10.0.0.1"] and status["backends"] == {"total": 2, "ready": 1}
    assert [(t["name"], t["healthy"], t["published"]) for t in status["dnsTargets"]] == [
        ("a", True, True), ("b", False, False)]
    assert status["observedGeneration"] == 3 and status["algorithm"] is None
    assert "www.example.com -> 10.0.0.1" in get_condition(status["conditions"], "Ready")["message"]


def test_waiting_for_externaldns_is_not_ready():
    status = run([Target("a", "10.0.0.1", 1, True)], dns_status.Endpoint(generation=5, observed_generation=4))
    assert conditions(status)["Ready"] == ("False", "AwaitingExternalDNS")


def test_a_missing_crd_says_so_first():
    status = run([Target("gone", None, 1, False, ("TargetPoolMissing", "x"))], dns_status.Endpoint(crd_missing=True))
    assert conditions(status)["Ready"] == ("False", "DNSEndpointCRDMissing")
    assert "dnsendpoints.externaldns.k8s.io" in get_condition(status["conditions"], "Ready")["message"]
    chosen = run([Target("a", "10.0.0.1", 1, True)], dns_status.Endpoint(crd_missing=True))
    assert chosen["publishedAddresses"] == [] and not chosen["dnsTargets"][0]["published"]  # not written


def test_a_missing_pool_is_not_ready_and_the_others_are_published():
    targets = [Target("gone", None, 1, False, ("TargetPoolMissing", "dns.pools names gone, which is not a pool")),
               Target("edge", "192.0.2.10", 1, True)]
    status = run(targets, dns_status.Endpoint(generation=1, observed_generation=1))
    assert conditions(status)["Ready"] == ("False", "TargetPoolMissing")
    assert status["publishedAddresses"] == ["192.0.2.10"]
    assert "publishing the others (192.0.2.10)" in get_condition(status["conditions"], "Ready")["message"]


def test_no_records_when_nothing_is_published():
    status = run([], dns_status.Endpoint())
    assert conditions(status)["Published"] == ("False", "NoRecords")
    assert conditions(status)["Ready"] == ("False", "NoBackends") and status["publishedAddresses"] == []


def test_events_say_what_changed_and_warn_once():
    first = run([Target("a", "10.0.0.1", 1, False)], dns_status.Endpoint(generation=1, observed_generation=1))
    events = dns_status.events(None, first)
    assert events == [("RecordsChanged", "publishing 10.0.0.1 (was nothing)"),
                      ("NoHealthyTargets", get_condition(first["conditions"], "Ready")["message"])]
    again = run([Target("a", "10.0.0.1", 1, False)], dns_status.Endpoint(generation=1, observed_generation=1), first)
    assert dns_status.events(first, again) == []  # the same state: no Event at every pass
    healthy = run([Target("a", "10.0.0.1", 1, True), Target("b", "10.0.0.2", 1, True)],
                  dns_status.Endpoint(generation=2, observed_generation=2), again)
    assert dns_status.events(again, healthy) == [("RecordsChanged", "publishing 10.0.0.1, 10.0.0.2 (was 10.0.0.1)")]


# -- the spec and `hakeeper render` ------------------------------------------------------------

def pool_doc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": name},
            "spec": spec}


@pytest.mark.parametrize("spec", [
    {"engine": "dns", "backends": {"selector": {"matchLabels": {"app": "web"}}, "port": 8080},
     "dns": {"hostname": "www.example.com"}},
    {"engine": "dns", "dns": {"hostname": "www.shop.example", "ttl": 5, "pools": [{"name": "a"}, {"name": "b",
                                                                                                  "weight": 0}]}},
    {"engine": "dns", "dns": {"hostname": "1st.example.com", "weightProperty": "aws/weight", "pools": [{"name": "a"}]}},
], ids=["backends", "pools", "weighted"])
def test_valid_dns_pools_are_accepted_with_a_short_default_ttl(spec):
    kind, checked = offline.check(pool_doc("www", spec))
    model = LoadBalancerPoolSpec.model_validate(checked)
    assert model.engine == "dns" and model.dns is not None and 1 <= model.dns.ttl <= 30


def test_render_prints_the_dnsendpoint_over_the_given_backends():
    manifest = yaml.safe_dump(pool_doc("www", {"engine": "dns", "dns": {"hostname": "www.example.com"},
                                               "backends": {"service": "web", "port": 80}}))
    out = render_documents(manifest, [Backend("a", "10.0.0.9", 80), Backend("b", "10.0.0.10", 80, weight=0)])
    assert out.startswith("# LoadBalancerPool default/www (engine dns): www.example.com\n")
    endpoint = yaml.safe_load(out)
    assert endpoint["spec"]["endpoints"][0]["targets"] == ["10.0.0.9"] and crd_errors(endpoint) == []


def test_render_of_a_pool_of_pools_uses_the_lvs_addresses_it_holds_and_says_what_it_cannot_know():
    lvs = {"engine": "lvs", "backends": {"service": "web", "port": 80},
           "lvs": {"virtualIP": "192.0.2.10", "port": 80, "vrrp": {"virtualRouterID": 7}}}
    manifest = yaml.safe_dump_all([
        pool_doc("edge", lvs), pool_doc("web", {"backends": {"service": "web", "port": 80}}),
        pool_doc("www", {"engine": "dns", "dns": {"hostname": "www.example.com",
                                                  "pools": [{"name": "edge"}, {"name": "web"}, {"name": "gone"}]}})])
    out = render_documents(manifest, [])
    dns_part = out[out.index("# LoadBalancerPool default/www"):]
    assert "# dns.pools web (engine haproxy: its address is known in the cluster only) is left out here" in dns_part
    assert "# dns.pools gone (not in the input) is left out here" in dns_part
    assert yaml.safe_load(dns_part)["spec"]["endpoints"][0]["targets"] == ["192.0.2.10"]


def test_the_layering_example_renders_every_tier_and_publishes_both_virtual_ips(tmp_path):
    """examples/layering: DNS -> two LVS pools -> two HAProxy pools -> Deployments, one manifest.
    Each tier's configuration is what its program accepts, and the name carries both VIPs."""
    text = (ROOT / "examples/layering/dns-lvs-haproxy.yaml").read_text()
    pools = {d["metadata"]["name"]: d for d in yaml.safe_load_all(text) if d["kind"] == "LoadBalancerPool"}
    assert {p["spec"].get("engine", "haproxy") for p in pools.values()} == {"haproxy", "lvs", "dns"}
    assert {t["name"] for t in pools["www"]["spec"]["dns"]["pools"]} == {"edge-a", "edge-b"}
    assert {pools[e]["spec"]["backends"]["service"] for e in ("edge-a", "edge-b")} == {"web-a", "web-b"}
    backends = [Backend("a", "10.244.0.5", 8080), Backend("b", "10.244.0.6", 8080)]
    out = render_documents(text, backends)
    heads = list(re.finditer(r"^# LoadBalancerPool (default/[a-z-]+)[: ].*$", out, re.MULTILINE))
    by_pool = {m[1]: out[m.start():heads[i + 1].start() if i + 1 < len(heads) else len(out)]
               for i, m in enumerate(heads)}
    assert set(by_pool) == {f"default/{name}" for name in pools}
    for name in ("default/edge-a", "default/edge-b"):
        conf = tmp_path / f"{name.split('/')[1]}.conf"
        conf.write_text(by_pool[name].split("\n", 1)[1])
        check = subprocess.run(["keepalived", "-t", "-f", str(conf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    for name in ("default/web-a", "default/web-b"):
        cfg = tmp_path / f"{name.split('/')[1]}.cfg"
        cfg.write_text(by_pool[name].split("\n", 1)[1].replace(" /var/run/hakeeper/", f" {tmp_path}/"))
        check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True,
                               env={"POD_IP": "127.0.0.1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        assert check.returncode == 0, check.stdout + check.stderr
    endpoint = yaml.safe_load(by_pool["default/www"].split("\n", 1)[1])
    assert endpoint["spec"]["endpoints"] == [{"dnsName": "www.example.com", "recordType": "A", "recordTTL": 30,
                                              "targets": ["192.0.2.10", "192.0.2.11"]}]
    assert crd_errors(endpoint) == []


def test_the_dns_example_renders_a_dnsendpoint_over_its_backends():
    text = (ROOT / "examples/loadbalancerpool/dns-backends.yaml").read_text()
    out = render_documents(text, [Backend("a", "10.244.0.5", 8080), Backend("b", "10.244.0.6", 8080)])
    endpoint = yaml.safe_load(out)
    assert endpoint["spec"]["endpoints"][0]["targets"] == ["10.244.0.5", "10.244.0.6"] and crd_errors(endpoint) == []
