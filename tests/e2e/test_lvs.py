"""LoadBalancerPool with engine lvs, against the real API server.

keepalived cannot run here (no IPVS in this kernel, and VRRP on the host network is not
ours to use), so this tier checks what the operator writes: the ConfigMap with a
keepalived.conf that keepalived accepts and that follows the backends, the DaemonSet with host
networking and only NET_ADMIN/NET_RAW, and a status that says no balancer runs yet. VRRP
failover itself is tested for real in network namespaces (tests/integration/test_lvs_vrrp.py).
"""

from __future__ import annotations

import subprocess

import pytest

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.localcluster]  # on kind keepalived really runs
BACKEND_IMAGE = "registry.local/hakeeper/test-http-backend:1"


def _backends(replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": BACKEND_IMAGE,
                                     "ports": [{"name": "http", "containerPort": 8080}],
                                     "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                                        "periodSeconds": 1}}]}}},
    }


POOL = {
    "apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": "edge"},
    "spec": {"engine": "lvs", "backends": {"selector": {"matchLabels": {"app": "web"}}, "port": 8080},
             "healthCheck": {"type": "http", "path": "/healthz"},
             "lvs": {"virtualIP": "192.168.100.10", "port": 80, "forwarding": "NAT",
                     "vrrp": {"virtualRouterID": 51, "authSecretRef": {"name": "edge-vrrp", "key": "password"}}}},
}


def _conf(cluster, namespace: str) -> str | None:
    result = cluster.kubectl("get", "configmap", "edge-keepalived", "-n", namespace, "-o",
                             "jsonpath={.data.keepalived\\.conf}", check=False)
    return result.stdout if result.returncode == 0 else None


def _ready_ips(cluster, namespace: str) -> set[str]:
    pods = cluster.get("pods", "-n", namespace, "-l", "app=web")["items"]
    return {p["status"]["podIP"] for p in pods if any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))}


def test_lvs_pool_writes_keepalived_config_daemonset_and_status(operator, namespace, tmp_path):
    operator.kubectl("create", "secret", "generic", "edge-vrrp", "-n", namespace, "--from-literal=password=s3cret")
    operator.apply(_backends(2), "-n", namespace)
    operator.apply(POOL, "-n", namespace)
    ips = wait_for(lambda: (lambda i: i if len(i) == 2 else None)(_ready_ips(operator, namespace)), 60, "2 backends")
    conf = wait_for(lambda: (lambda c: c if c and all(f"real_server {ip} 8080" in c for ip in ips) else None)(
        _conf(operator, namespace)), 60, "keepalived.conf with both backends")
    assert "virtual_server 192.168.100.10 80" in conf and "lb_algo wlc" in conf and "lb_kind NAT" in conf
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

    s = wait_for(status, 60, "the pool's status counting 2 backends")
    assert s["algorithm"] == "wlc" and s["configHash"]
    ready = next(c for c in s["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "NoBalancerReady"  # keepalived cannot run here

    operator.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=3")
    ips = wait_for(lambda: (lambda i: i if len(i) == 3 else None)(_ready_ips(operator, namespace)), 60, "3 backends")
    wait_for(lambda: (lambda c: c and all(f"real_server {ip} 8080" in c for ip in ips))(_conf(operator, namespace)),
             60, "keepalived.conf following the third backend")
