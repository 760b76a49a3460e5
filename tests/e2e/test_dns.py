"""LoadBalancerPool engine dns on a real node, published by a real ExternalDNS into a real BIND.

ExternalDNS (images/external-dns: v0.22.0 built from the Go module proxy) runs with
`--source=crd --provider=rfc2136` and a short `--interval`, updating the zone hakeeper.test of
BIND 9.18 (images/bind9) with TSIG-signed RFC 2136 updates; the test asks BIND with `dig` from
this machine, as a client outside the cluster would. What is measured: how long a backend that
stops being ready stays in BIND's answer (printed; a resolver may cache it for the TTL beyond).

The first test runs before ExternalDNS's CRD exists (it removes it if an earlier run left it):
the pool says why it publishes nothing, then recovers when the CRD is installed.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ..support.kube_objects import backend_deployment, restricted
from ..support.polling import poll
from .conftest import ROOT, Cluster, create_namespace

pytestmark = pytest.mark.e2e

CRD = ROOT / "hack/external-dns/dnsendpoints.externaldns.k8s.io.yaml"
CRD_NAME = "dnsendpoints.externaldns.k8s.io"
ZONE = "hakeeper.test"
BIND_PORT = 5353
INTERVAL_SECONDS = 5
"""ExternalDNS's --interval here (its default is one minute)."""
TTL = 5
"""The test pools' record TTL."""
DNS_NAMESPACE = "e2e-externaldns"
EXTERNAL_DNS_ROLE = "hakeeper-e2e-external-dns"
BIND_IMAGE = "ghcr.io/hakeeper/bind9:9.18"
EXTERNAL_DNS_IMAGE = "ghcr.io/hakeeper/external-dns:0.22.0"
VRRP_INTERFACE = os.environ.get("HAKEEPER_E2E_VRRP_INTERFACE", "hakeeper0")
VIRTUAL_IP = os.environ.get("HAKEEPER_E2E_DNS_VIRTUAL_IP", "10.244.255.12")


def dig(server: str, name: str) -> list[str]:
    """The A records BIND answers for `name`, as `dig +short` lists them (repeats kept)."""
    out = subprocess.run(["dig", f"@{server}", "-p", str(BIND_PORT), name, "A", "+short", "+time=2", "+tries=1"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"dig failed: {out.stdout}{out.stderr}"
    found = []
    for line in out.stdout.split():
        try:
            found.append(str(ipaddress.IPv4Address(line)))
        except ValueError:
            continue
    return sorted(found, key=ipaddress.IPv4Address)


def ready(cluster: Cluster, namespace: str, pool: str) -> dict[str, Any]:
    status = cluster.get("lbp", pool, "-n", namespace).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def ready_ips(cluster: Cluster, namespace: str, app: str = "web") -> dict[str, str]:
    """pod name -> IP of the ready pods labelled app=<app>."""
    pods = cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]
    return {p["metadata"]["name"]: p["status"]["podIP"] for p in pods
            if not p["metadata"].get("deletionTimestamp") and any(
                c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))}


def unhealthy_capable(deployment: dict[str, Any]) -> dict[str, Any]:
    """The tests' backend with --unhealthy-file: a pod whose file exists fails its readiness probe."""
    deployment["spec"]["template"]["spec"]["containers"][0]["args"] = ["--unhealthy-file", "/tmp/unhealthy"]
    return deployment


def dns_pool(name: str, hostname: str, **dns: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"engine": "dns", "dns": {"hostname": hostname, "ttl": TTL, **dns}}
    if "pools" not in dns:
        spec["backends"] = {"selector": {"matchLabels": {"app": "web"}}, "port": 8080}
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": name},
            "spec": spec}


def events(cluster: Cluster, namespace: str, pool: str) -> list[dict[str, Any]]:
    return [e for e in cluster.get("events", "-n", namespace)["items"]
            if e["involvedObject"].get("kind") == "LoadBalancerPool" and e["involvedObject"]["name"] == pool]


# -- BIND and ExternalDNS ------------------------------------------------------------------------

def _tsig_secret() -> dict[str, Any]:
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    key = f'key "externaldns" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tsig"},
            "stringData": {"externaldns.key": key, "secret": secret}}


def _bind() -> list[dict[str, Any]]:
    labels = {"app": "bind"}
    deployment = restricted({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bind"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{
                "name": "named", "image": BIND_IMAGE,
                "ports": [{"name": "dns", "containerPort": BIND_PORT, "protocol": "UDP"},
                          {"name": "dns-tcp", "containerPort": BIND_PORT, "protocol": "TCP"}],
                "readinessProbe": {"tcpSocket": {"port": BIND_PORT}, "periodSeconds": 1},
                "volumeMounts": [{"name": "zone", "mountPath": "/var/lib/bind"},
                                 {"name": "tsig", "mountPath": "/etc/bind/tsig", "readOnly": True}]}],
                "volumes": [{"name": "zone", "emptyDir": {}},
                            {"name": "tsig", "secret": {"secretName": "tsig",
                                                        "items": [{"key": "externaldns.key",
                                                                   "path": "externaldns.key"}]}}]}}}})
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bind"},
               "spec": {"selector": labels, "ports": [
                   {"name": "dns", "port": BIND_PORT, "targetPort": BIND_PORT, "protocol": "UDP"},
                   {"name": "dns-tcp", "port": BIND_PORT, "targetPort": BIND_PORT, "protocol": "TCP"}]}}
    return [deployment, service]


def _external_dns(bind_address: str) -> list[dict[str, Any]]:
    """ExternalDNS as its chart would run it for the crd source alone: a ServiceAccount allowed to
    read DNSEndpoints in every namespace and write their status (its chart's rules for `crd`)."""
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "external-dns"}}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": EXTERNAL_DNS_ROLE},
            "rules": [{"apiGroups": ["externaldns.k8s.io"], "resources": ["dnsendpoints"],
                       "verbs": ["get", "watch", "list"]},
                      {"apiGroups": ["externaldns.k8s.io"], "resources": ["dnsendpoints/status"],
                       "verbs": ["update"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": EXTERNAL_DNS_ROLE},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": EXTERNAL_DNS_ROLE},
               "subjects": [{"kind": "ServiceAccount", "name": "external-dns", "namespace": DNS_NAMESPACE}]}
    labels = {"app": "external-dns"}
    args = ["--source=crd", "--crd-source-apiversion=externaldns.k8s.io/v1alpha1", "--crd-source-kind=DNSEndpoint",
            "--provider=rfc2136", f"--rfc2136-host={bind_address}", f"--rfc2136-port={BIND_PORT}",
            f"--rfc2136-zone={ZONE}", "--rfc2136-tsig-keyname=externaldns", "--rfc2136-tsig-secret-alg=hmac-sha256",
            "--rfc2136-axfr", f"--domain-filter={ZONE}", "--registry=txt", "--txt-owner-id=hakeeper-e2e",
            "--policy=sync", f"--interval={INTERVAL_SECONDS}s", "--events", "--log-level=debug"]
    deployment = restricted({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "external-dns"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"serviceAccountName": "external-dns", "containers": [{
                "name": "external-dns", "image": EXTERNAL_DNS_IMAGE, "args": args,
                # the TSIG secret from the Secret, not on the command line (every flag has its
                # EXTERNAL_DNS_<FLAG> variable)
                "env": [{"name": "EXTERNAL_DNS_RFC2136_TSIG_SECRET",
                         "valueFrom": {"secretKeyRef": {"name": "tsig", "key": "secret"}}}]}]}}}})
    return [account, role, binding, deployment]


def install_crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")


@pytest.fixture(scope="module")
def bind(operator: Cluster) -> Iterator[str]:
    """BIND with the zone hakeeper.test and ExternalDNS publishing every namespace's DNSEndpoints
    into it; the address (pod IP) `dig` asks. ExternalDNS and its CRD come with the first test, or
    the `external_dns` fixture."""
    create_namespace(operator, DNS_NAMESPACE)
    operator.apply(_tsig_secret(), "-n", DNS_NAMESPACE)
    for obj in _bind():
        operator.apply(obj, "-n", DNS_NAMESPACE)
    operator.kubectl("rollout", "status", "deployment/bind", "-n", DNS_NAMESPACE, "--timeout=120s")
    pod_ip = next(iter(ready_ips(operator, DNS_NAMESPACE, "bind").values()))
    yield pod_ip
    logs = operator.kubectl("logs", "-n", DNS_NAMESPACE, "deployment/external-dns", "--tail=60", check=False).stdout
    print(f"\n--- external-dns log (last 60 lines) ---\n{logs}")
    operator.kubectl("delete", "namespace", DNS_NAMESPACE, "--wait=false", check=False)
    operator.kubectl("delete", "clusterrolebinding,clusterrole", EXTERNAL_DNS_ROLE, "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def external_dns(bind: str, operator: Cluster) -> str:
    """ExternalDNS's CRD installed and ExternalDNS running (what the first test ends with; a test
    run alone gets it here); BIND's address."""
    install_crd(operator)
    start_external_dns(operator)
    return bind


def start_external_dns(cluster: Cluster) -> None:
    service_ip = cluster.get("service", "bind", "-n", DNS_NAMESPACE)["spec"]["clusterIP"]
    for obj in _external_dns(service_ip):
        cluster.apply(obj, "-n", DNS_NAMESPACE)
    cluster.kubectl("rollout", "status", "deployment/external-dns", "-n", DNS_NAMESPACE, "--timeout=120s")


# -- the tests ---------------------------------------------------------------------------------

def test_without_externaldns_crd_the_pool_says_so_then_publishes_once_installed(operator, bind, namespace):
    operator.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--wait=true", "--timeout=60s")
    operator.apply(unhealthy_capable(backend_deployment("web", 2)), "-n", namespace)
    hostname = f"{namespace}.{ZONE}"
    operator.apply(dns_pool("www", hostname), "-n", namespace)
    refused = poll(lambda: (lambda r: r if r.get("reason") == "DNSEndpointCRDMissing" else None)(
        ready(operator, namespace, "www")), 90, what="Ready=False, reason DNSEndpointCRDMissing")
    assert refused["status"] == "False" and CRD_NAME in refused["message"]
    poll(lambda: any(e["reason"] == "DNSEndpointCRDMissing" and e["type"] == "Warning"
                     for e in events(operator, namespace, "www")), 30, what="a Warning Event naming the CRD")

    install_crd(operator)
    start_external_dns(operator)
    ips = poll(lambda: (lambda i: i if len(i) == 2 else None)(ready_ips(operator, namespace)), 90, what="2 backends")
    published = poll(lambda: (lambda d: d if d == sorted(ips.values(), key=ipaddress.IPv4Address) else None)(
        dig(bind, hostname)), 120, what=f"BIND answering {hostname} with both backends", interval=0.5)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", namespace, "lbp/www")
    status = operator.get("lbp", "www", "-n", namespace)["status"]
    assert status["publishedAddresses"] == published
    assert next(c for c in status["conditions"] if c["type"] == "Published")["reason"] == "RecordsPublished"


def test_an_unready_backend_leaves_the_answer_and_no_backend_removes_the_name(operator, external_dns, namespace):
    operator.apply(unhealthy_capable(backend_deployment("web", 3)), "-n", namespace)
    hostname = f"{namespace}.{ZONE}"
    operator.apply(dns_pool("www", hostname), "-n", namespace)
    ips = poll(lambda: (lambda i: i if len(i) == 3 else None)(ready_ips(operator, namespace)), 90, what="3 backends")
    everyone = sorted(ips.values(), key=ipaddress.IPv4Address)
    poll(lambda: dig(external_dns, hostname) == everyone, 120, what=f"{hostname} -> the 3 backends", interval=0.5)
    # Ready once the operator saw ExternalDNS read the DNSEndpoint (it may answer before that pass)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", namespace, "lbp/www")
    words = operator.kubectl("get", "lbp", "www", "-n", namespace, "--no-headers").stdout.split()
    assert words[:2] == ["www", "dns"] and "True" in words, words  # kubectl get: engine dns, Ready

    # the readiness probe of one backend fails: the kubelet marks it unready, its EndpointSlice
    # says so, the operator drops it from the DNSEndpoint, ExternalDNS from BIND
    victim, victim_ip = sorted(ips.items())[0]
    started = time.monotonic()
    operator.kubectl("exec", "-n", namespace, victim, "--", "touch", "/tmp/unhealthy")
    rest = [ip for ip in everyone if ip != victim_ip]
    poll(lambda: dig(external_dns, hostname) == rest, 120, what=f"{victim_ip} ({victim}) leaving BIND's answer",
         interval=0.2)
    took = time.monotonic() - started
    print(f"\nengine dns: an unready backend left BIND's answer {took:.1f}s after its probe began failing "
          f"(readiness probe period 1s; ExternalDNS --interval {INTERVAL_SECONDS}s with --events; record TTL "
          f"{TTL}s, which a caching resolver may add)")
    changed = poll(lambda: [e for e in events(operator, namespace, "www") if e["reason"] == "RecordsChanged"
                            and ", ".join(rest) in e["message"]], 30, what="a RecordsChanged Event")
    assert changed[0]["type"] == "Normal"
    status = operator.get("lbp", "www", "-n", namespace)["status"]
    assert status["backends"] == {"total": 3, "ready": 2} and status["publishedAddresses"] == rest
    assert {t["name"]: t["published"] for t in status["dnsTargets"]}[victim] is False

    # it recovers: back in the answer
    operator.kubectl("exec", "-n", namespace, victim, "--", "rm", "/tmp/unhealthy")
    poll(lambda: dig(external_dns, hostname) == everyone, 120, what=f"{victim_ip} back in the answer", interval=0.5)

    # no backend at all: the pool deletes its DNSEndpoint and ExternalDNS the records
    operator.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=0")
    poll(lambda: dig(external_dns, hostname) == [], 120, what=f"{hostname} gone from BIND", interval=0.5)
    gone = poll(lambda: (lambda r: r if r.get("reason") == "NoBackends" else None)(ready(operator, namespace, "www")),
                60, what="Ready=False, reason NoBackends")
    assert gone["status"] == "False"
    assert operator.kubectl("get", "dnsendpoint", "www", "-n", namespace, check=False).returncode != 0


def test_repeated_targets_do_not_survive_externaldns_and_bind(operator, external_dns, namespace):
    """Why engine dns does not express weights by repeating an address: ExternalDNS's crd source
    compacts repeated targets, and an RRset holds each record once (RFC 2181 section 5)."""
    hostname = f"repeat-{namespace}.{ZONE}"
    endpoint = {"apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint", "metadata": {"name": "repeat"},
                "spec": {"endpoints": [{"dnsName": hostname, "recordType": "A", "recordTTL": TTL,
                                        "targets": ["192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2"]}]}}
    operator.apply(endpoint, "-n", namespace)
    answer = poll(lambda: dig(external_dns, hostname), 120, what=f"BIND answering {hostname}", interval=0.5)
    assert answer == ["192.0.2.1", "192.0.2.2"], answer  # three to one: not a 3:1 weight


@pytest.mark.pod_security("privileged")
@pytest.mark.lvs_allowed
def test_a_pool_of_pools_publishes_an_lvs_virtual_ip_and_a_haproxy_service(operator, external_dns, namespace):
    """The seed's layering as three resources: DNS -> (LVS, HAProxy) -> pods. The dns pool
    publishes the addresses of the pools it names while they are Ready; when none is, every one
    (fail open); a pool of weight 0 never; a pool that does not exist is named in the status."""
    operator.apply(unhealthy_capable(backend_deployment("web", 2)), "-n", namespace)
    web = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": "web"},
           "spec": {"backends": {"selector": {"matchLabels": {"app": "web"}}, "port": 8080},
                    "balancer": {"replicas": 1}}}
    edge = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": "edge"},
            "spec": {"engine": "lvs", "backends": {"selector": {"matchLabels": {"app": "web"}}, "port": 8080},
                     "lvs": {"virtualIP": VIRTUAL_IP, "port": 80,
                             "vrrp": {"virtualRouterID": 62, "interface": VRRP_INTERFACE}}}}
    hostname = f"{namespace}.{ZONE}"
    for obj in (web, edge, dns_pool("www", hostname, pools=[{"name": "edge"}, {"name": "web"}])):
        operator.apply(obj, "-n", namespace)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=180s", "-n", namespace, "lbp/web")
    cluster_ip = operator.get("service", "web", "-n", namespace)["spec"]["clusterIP"]
    # engine lvs is Ready where the kernel has IPVS (kind); this machine's has none, so the lvs
    # pool is Ready=False (IPVSUnavailable) and its address is not published while web's is
    lvs_ready = ready(operator, namespace, "edge").get("status") == "True"
    expected = sorted([cluster_ip, *([VIRTUAL_IP] if lvs_ready else [])], key=ipaddress.IPv4Address)
    poll(lambda: dig(external_dns, hostname) == expected, 120, what=f"{hostname} -> {expected}", interval=0.5)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", namespace, "lbp/www")

    # no pool healthy (no backend ready): every address is published, fail open, and said so
    operator.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=0")
    both = sorted([cluster_ip, VIRTUAL_IP], key=ipaddress.IPv4Address)
    poll(lambda: dig(external_dns, hostname) == both, 180, what=f"{hostname} -> both pools' addresses (fail open)",
         interval=0.5)
    failing = poll(lambda: (lambda r: r if r.get("reason") == "NoHealthyTargets" else None)(
        ready(operator, namespace, "www")), 60, what="Ready=False, reason NoHealthyTargets")
    assert "fail open" in failing["message"]
    assert any(e["reason"] == "NoHealthyTargets" and e["type"] == "Warning" for e in events(operator, namespace, "www"))

    # weight 0 drains a pool; a named pool that does not exist is reported, the others published
    operator.apply(dns_pool("www", hostname, pools=[{"name": "edge"}, {"name": "web", "weight": 0},
                                                    {"name": "gone"}]), "-n", namespace)
    poll(lambda: dig(external_dns, hostname) == [VIRTUAL_IP], 120, what=f"{hostname} -> the VIP alone", interval=0.5)
    missing = poll(lambda: (lambda r: r if r.get("reason") == "TargetPoolMissing" else None)(
        ready(operator, namespace, "www")), 60, what="Ready=False, reason TargetPoolMissing")
    assert "gone" in missing["message"] and VIRTUAL_IP in missing["message"]
    poll(lambda: any(e["reason"] == "TargetPoolMissing" for e in events(operator, namespace, "www")), 30,
         what="a TargetPoolMissing Warning")
