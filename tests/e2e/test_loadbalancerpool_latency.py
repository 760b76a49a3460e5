"""LoadBalancerPool weighting mode Latency on the real node: the balancer's agent measures the
backends through HAProxy and the pool's status shows the weights it applies (light: the
distribution itself is measured by tests/integration/test_haproxy_latency_weighting.py)."""

from __future__ import annotations

import collections
import urllib.request

import pytest

from ..support.kube_objects import backend_deployment
from ..support.polling import poll

pytestmark = pytest.mark.e2e


def _pool(weighting: dict) -> dict:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": "lat"},
            "spec": {"backends": {"selector": {"matchLabels": {"app": "lat"}}, "port": "http"},
                     "healthCheck": {"type": "http", "path": "/healthz", "interval": "1s", "timeout": "500ms",
                                     "rise": 1, "fall": 2},
                     "balancer": {"replicas": 1}, "weighting": weighting}}


def _balancer_ip(cluster, namespace: str) -> str | None:
    pods = cluster.get("pods", "-n", namespace, "-l", "hakeeper.io/pool=lat,app.kubernetes.io/component=balancer")
    for pod in pods["items"]:
        if any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])):
            return pod["status"].get("podIP")
    return None


def test_a_latency_pools_status_shows_the_weights_its_balancer_applies(operator, namespace):
    operator.apply(backend_deployment("lat", 2), "-n", namespace)
    operator.apply(_pool({"mode": "Latency", "interval": "1s"}), "-n", namespace)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=120s", "-n", namespace, "lbp/lat")
    ip = poll(lambda: _balancer_ip(operator, namespace), 60, what="a ready balancer pod")
    backends = {p["metadata"]["name"] for p in operator.get("pods", "-n", namespace, "-l", "app=lat")["items"]}
    seen: collections.Counter = collections.Counter()

    def measured():
        for _ in range(20):  # traffic, so that HAProxy has response times to report
            with urllib.request.urlopen(f"http://{ip}:8080/", timeout=3) as answer:
                seen[answer.headers["X-Backend"]] += 1
        weights = operator.get("lbp", "lat", "-n", namespace)["status"].get("effectiveWeights") or []
        return weights if {w["backend"] for w in weights if w.get("latencyMs") is not None} == backends else None

    weights = poll(measured, 60, what="effectiveWeights with a measured latency for every backend")
    assert set(seen) == backends
    # base 1 scaled to 100, times the factor: the fastest at (about) 100, none under the floor (10 %)
    assert all(row["base"] == 1 and 10 <= row["weight"] == row["percent"] <= 100 for row in weights), weights
    assert max(row["weight"] for row in weights) >= 90, weights  # the dead band may hold it a little below
    # negative control: back to Static, the status no longer claims latency weights
    operator.apply(_pool({"mode": "Static"}), "-n", namespace)
    poll(lambda: "effectiveWeights" not in operator.get("lbp", "lat", "-n", namespace)["status"], 30,
         what="effectiveWeights gone with Static weighting")
