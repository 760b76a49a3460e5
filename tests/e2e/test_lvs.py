"""LoadBalancerPool with engine lvs on a real node: keepalived runs in a hostNetwork pod.

The operator writes a keepalived.conf that keepalived accepts and that follows the backends,
and a DaemonSet with host networking and only NET_ADMIN/NET_RAW. On nodes with IPVS (kind),
keepalived wins the VRRP election, holds the VIP, and the pool's status names its node. This
machine's kernel has no ip_vs: there keepalived exits at start, the agent beside it reports the
missing module, and the pool says Ready=False, reason IPVSUnavailable, naming the node. The VRRP
interface here is the node's bridge and the VIP lies in the fenced pod range.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from ..support.kube_objects import backend_deployment
from ..support.polling import poll
from .conftest import create_namespace

# keepalived's pods need the node's network namespace, root and NET_ADMIN/NET_RAW (IPVS and
# VRRP): Pod Security Standards `privileged`, which the namespace must allow
pytestmark = [pytest.mark.e2e, pytest.mark.pod_security("privileged"), pytest.mark.lvs_allowed]
# the local node's bridge (hack/localcluster/network.py); on kind the node's eth0
VRRP_INTERFACE = os.environ.get("HAKEEPER_E2E_VRRP_INTERFACE", "hakeeper0")
VIRTUAL_IP = os.environ.get("HAKEEPER_E2E_VIRTUAL_IP", "10.244.255.10")


POOL = {
    "apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": "edge"},
    "spec": {"engine": "lvs", "backends": {"selector": {"matchLabels": {"app": "web"}}, "port": 8080},
             "healthCheck": {"type": "http", "path": "/healthz"},
             "lvs": {"virtualIP": VIRTUAL_IP, "port": 80, "forwarding": "NAT",
                     "vrrp": {"virtualRouterID": 51, "interface": VRRP_INTERFACE, "advertInterval": 1,
                              "authSecretRef": {"name": "edge-vrrp", "key": "password"}}}},
}


def _conf(cluster, namespace: str) -> str | None:
    result = cluster.kubectl("get", "configmap", "edge-keepalived", "-n", namespace, "-o",
                             "jsonpath={.data.keepalived\\.conf}", check=False)
    return result.stdout if result.returncode == 0 else None


def _ready_ips(cluster, namespace: str) -> set[str]:
    pods = cluster.get("pods", "-n", namespace, "-l", "app=web")["items"]
    return {p["status"]["podIP"] for p in pods if any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))}


def _has_ipvs(cluster) -> bool:
    """Whether the nodes' kernel has IPVS loaded: on the local node that is this machine's."""
    if cluster.node is not None:
        return pathlib.Path("/proc/net/ip_vs").exists()
    return os.environ.get("HAKEEPER_E2E_IPVS", "1") == "1"


def test_lvs_pool_writes_keepalived_config_daemonset_and_status(operator, namespace, tmp_path):
    operator.kubectl("create", "secret", "generic", "edge-vrrp", "-n", namespace, "--from-literal=password=s3cret")
    operator.apply(backend_deployment("web", 2), "-n", namespace)
    operator.apply(POOL, "-n", namespace)
    ips = poll(lambda: (lambda i: i if len(i) == 2 else None)(_ready_ips(operator, namespace)), 60, what="2 backends")
    conf = poll(lambda: (lambda c: c if c and all(f"real_server {ip} 8080" in c for ip in ips) else None)(
        _conf(operator, namespace)), 60, what="keepalived.conf with both backends")
    assert f"virtual_server {VIRTUAL_IP} 80" in conf and "lb_algo wlc" in conf and "lb_kind NAT" in conf
    assert "nopreempt" in conf and "s3cret" not in conf  # the password stays in its Secret
    (tmp_path / "keepalived.conf").write_text(conf)
    check = subprocess.run(["keepalived", "-t", "-f", str(tmp_path / "keepalived.conf")], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    ds = operator.get("daemonset", "edge-keepalived", "-n", namespace)
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["shareProcessNamespace"] is True  # the agent signals keepalived
    keepalived = next(c for c in pod["containers"] if c["name"] == "keepalived")
    assert keepalived["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert any(v.get("secret", {}).get("secretName") == "edge-vrrp" for v in pod["volumes"])

    def status():
        s = operator.get("lbp", "edge", "-n", namespace).get("status") or {}
        return s if s.get("backends") == {"total": 2, "ready": 2} else None

    s = poll(status, 60, what="the pool's status counting 2 backends")
    assert s["algorithm"] == "wlc" and s["configHash"]
    # keepalived runs for real on the node. Where the kernel has IPVS (kind on a usual Linux host)
    # it wins the election, holds the VIP and the status names its node; this machine's kernel
    # has no ip_vs, keepalived exits at once, and the pool says so instead of waiting forever.
    nodes = {n["metadata"]["name"] for n in operator.get("nodes")["items"]}
    if _has_ipvs(operator):
        holder = poll(lambda: (lambda h: h if h in nodes else None)(
            (operator.get("lbp", "edge", "-n", namespace).get("status") or {}).get("virtualIPHolder")),
            90, what="the pool's status naming the node that holds the VIP")
        operator.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", namespace, "lbp/edge")
        balancers = operator.get("pods", "-n", namespace, "-l", "hakeeper.io/pool=edge")["items"]
        states = {b["spec"]["nodeName"]: b["metadata"]["annotations"].get("hakeeper.io/vrrp-state")
                  for b in balancers}
        assert states[holder] == "MASTER" and list(states.values()).count("MASTER") == 1, states
    else:
        def refused():
            s = operator.get("lbp", "edge", "-n", namespace).get("status") or {}
            ready = next((c for c in s.get("conditions") or [] if c["type"] == "Ready"), {})
            return ready if ready.get("reason") == "IPVSUnavailable" else None

        ready = poll(refused, 90, what="Ready=False, reason IPVSUnavailable")
        assert ready["status"] == "False" and "modprobe ip_vs" in ready["message"]
        assert any(node in ready["message"] for node in nodes)
        balancer = operator.get("pods", "-n", namespace, "-l", "hakeeper.io/pool=edge")["items"][0]
        assert balancer["metadata"]["annotations"]["hakeeper.io/ipvs"] == "missing"

        def keepalived_said_why() -> bool:  # the real keepalived ran (it restarts, so either run's log)
            name = balancer["metadata"]["name"]
            return any("Can't initialize ipvs" in operator.kubectl(
                "logs", "-n", namespace, name, "-c", "keepalived", *previous, check=False).stdout
                for previous in ((), ("--previous",)))

        poll(keepalived_said_why, 60, what="keepalived's own words on the missing IPVS", interval=1)

    operator.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=3")
    ips = poll(lambda: (lambda i: i if len(i) == 3 else None)(_ready_ips(operator, namespace)), 60, what="3 backends")
    poll(lambda: (lambda c: c and all(f"real_server {ip} 8080" in c for ip in ips))(_conf(operator, namespace)),
         60, what="keepalived.conf following the third backend")
    operator.kubectl("delete", "lbp", "edge", "-n", namespace, "--wait=true", "--timeout=60s")


def _ready(cluster, namespace: str, pool: str = "edge") -> dict:
    status = cluster.get("lbp", pool, "-n", namespace).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def _daemonset(cluster, namespace: str, pool: str = "edge") -> bool:
    return cluster.kubectl("get", "daemonset", f"{pool}-keepalived", "-n", namespace, check=False).returncode == 0


def test_engine_lvs_runs_only_where_and_with_the_images_the_cluster_admin_allows(operator, namespace):
    """Issue 12 item 3, no confused deputy: engine lvs starts privileged host-network pods, so
    the operator starts them only in namespaces of the chart's lvs.allowedNamespaces (here
    e2e-lvs-*) and with images of lvs.allowedImages (or the keepalived image it ships).
    Elsewhere the pool is Ready=False, EngineNotAllowed, with a Warning Event, and no DaemonSet
    exists, although that namespace would admit privileged pods; an allowed pool whose image
    becomes one not allowed is refused with ImageNotAllowed and its DaemonSet removed."""
    elsewhere = f"e2e-nolvs-{namespace.rsplit('-', 1)[1]}"
    create_namespace(operator, elsewhere, "privileged")
    try:
        operator.apply(POOL, "-n", elsewhere)
        ready = poll(lambda: (lambda c: c if c.get("reason") == "EngineNotAllowed" else None)(
            _ready(operator, elsewhere)), 60, what="Ready=False EngineNotAllowed")
        assert ready["status"] == "False" and "lvs.allowedNamespaces" in ready["message"], ready
        poll(lambda: [(e["type"], e["reason"]) for e in operator.get(
            "events", "-n", elsewhere, "--field-selector", "involvedObject.name=edge")["items"]]
            == [("Warning", "EngineNotAllowed")], 30, what="one Warning EngineNotAllowed")
        assert not _daemonset(operator, elsewhere)
    finally:
        operator.kubectl("delete", "namespace", elsewhere, "--wait=false", check=False)

    # the control: in an allowed namespace the pool runs its DaemonSet ...
    operator.kubectl("create", "secret", "generic", "edge-vrrp", "-n", namespace, "--from-literal=password=s3cret")
    operator.apply(POOL, "-n", namespace)
    poll(lambda: _daemonset(operator, namespace), 60, what="the keepalived DaemonSet")
    # ... until it names an image the cluster admin does not allow
    evil = {**POOL, "spec": {**POOL["spec"], "balancer": {"image": "registry.invalid/keepalived:evil"}}}
    operator.apply(evil, "-n", namespace)
    ready = poll(lambda: (lambda c: c if c.get("reason") == "ImageNotAllowed" else None)(
        _ready(operator, namespace)), 60, what="Ready=False ImageNotAllowed")
    assert "registry.invalid/keepalived:evil" in ready["message"] and "lvs.allowedImages" in ready["message"]
    poll(lambda: not _daemonset(operator, namespace), 60, what="the DaemonSet removed")
    operator.kubectl("delete", "lbp", "edge", "-n", namespace, "--wait=true", "--timeout=60s")


def test_a_second_pool_with_the_same_virtual_router_id_is_refused_until_the_first_leaves(operator, namespace):
    """Issue 14, field fault f (first half): two lvs pools whose keepalived would advertise one
    VRRP virtual router ID on one interface of the same node. The newer one runs nothing and says
    why (Ready=False VirtualRouterIDInUse naming the older, one Warning Event); the older keeps
    running; once the older is deleted the newer starts its DaemonSet."""
    operator.kubectl("create", "secret", "generic", "edge-vrrp", "-n", namespace, "--from-literal=password=s3cret")
    operator.apply(POOL, "-n", namespace)
    poll(lambda: _daemonset(operator, namespace), 60, what="the first pool's keepalived DaemonSet")
    second = {**POOL, "metadata": {"name": "edge2"},
              "spec": {**POOL["spec"], "lvs": {**POOL["spec"]["lvs"], "virtualIP": "10.244.255.11"}}}
    # the control: the same pool with another router ID runs beside the first
    other_id = {**second, "spec": {**second["spec"], "lvs": {
        **second["spec"]["lvs"], "vrrp": {**POOL["spec"]["lvs"]["vrrp"], "virtualRouterID": 52}}}}
    operator.apply(other_id, "-n", namespace)
    poll(lambda: _daemonset(operator, namespace, "edge2"), 60, what="the second pool's DaemonSet (router ID 52)")
    # the fault: the second pool takes the first pool's router ID
    operator.apply(second, "-n", namespace)
    ready = poll(lambda: (lambda c: c if c.get("reason") == "VirtualRouterIDInUse" else None)(
        _ready(operator, namespace, "edge2")), 60, what="edge2 Ready=False VirtualRouterIDInUse")
    assert ready["status"] == "False" and f"{namespace}/edge" in ready["message"], ready
    assert "virtualRouterID 51" in ready["message"] and VRRP_INTERFACE in ready["message"]
    poll(lambda: not _daemonset(operator, namespace, "edge2"), 60, what="edge2's DaemonSet removed")
    poll(lambda: [(e["type"], e["reason"]) for e in operator.get(
        "events", "-n", namespace, "--field-selector", "involvedObject.name=edge2")["items"]
        if e["reason"] == "VirtualRouterIDInUse"] == [("Warning", "VirtualRouterIDInUse")], 30,
        what="one Warning VirtualRouterIDInUse")
    assert _daemonset(operator, namespace) and _ready(operator, namespace).get("reason") != "VirtualRouterIDInUse"
    # the older pool leaves: the newer one may run
    operator.kubectl("delete", "lbp", "edge", "-n", namespace, "--wait=true", "--timeout=60s")
    poll(lambda: _daemonset(operator, namespace, "edge2"), 60, what="edge2's DaemonSet once edge is gone")
    poll(lambda: _ready(operator, namespace, "edge2").get("reason") != "VirtualRouterIDInUse", 60,
         what="edge2 no longer refused")
    operator.kubectl("delete", "lbp", "edge2", "-n", namespace, "--wait=true", "--timeout=60s")
