"""The cluster under the e2e tier is a real one: what a user checks first on a new cluster.

A Ready node on containerd, pods with addresses on the node's bridge, a ClusterIP balanced by
kube-proxy, Service names resolved by the cluster DNS, a claim's data kept across pods, the
chart's operator running as the chart says (non-root, read-only root filesystem), and Pod
Security Admission enforcing `restricted` where the tests run.
"""

from __future__ import annotations

import collections
import urllib.request

import pytest

from ..support.kube_objects import BACKEND_IMAGE, backend_deployment, restricted
from ..support.polling import poll
from .conftest import OPERATOR_NAMESPACE, operator_pod

pytestmark = pytest.mark.e2e


def _service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]}}


def _ready_pods(cluster, namespace: str, app: str) -> list[dict]:
    pods = cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]
    return [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in p["status"].get("conditions", []))]


def _backend(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as answer:
        return answer.headers["X-Backend"]


def test_the_node_runs_containerd_and_is_ready(cluster):
    node = cluster.get("nodes")["items"][0]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    wide = cluster.kubectl("get", "nodes", "-o", "wide").stdout
    assert "containerd://" in wide and " Ready " in wide


def test_a_cluster_ip_spreads_over_the_pods_and_dns_names_it(cluster, namespace):
    cluster.apply(backend_deployment("web", 2), "-n", namespace)
    cluster.apply(_service("web"), "-n", namespace)
    pods = poll(lambda: (lambda p: p if len(p) == 2 else None)(_ready_pods(cluster, namespace, "web")), 120,
                what="two ready backend pods")
    names = {p["metadata"]["name"] for p in pods}
    for pod in pods:  # each pod answers on its own address, with its own name
        assert _backend(f"http://{pod['status']['podIP']}:8080/") == pod["metadata"]["name"]
    ip = cluster.get("service", "web", "-n", namespace)["spec"]["clusterIP"]

    def spread() -> set[str] | None:
        try:
            return set(collections.Counter(_backend(f"http://{ip}/") for _ in range(40)))
        except OSError:  # kube-proxy rejects a Service until its rules have the endpoints
            return None

    poll(lambda: spread() == names, 30, what="kube-proxy to spread the ClusterIP over both pods")
    # from inside a pod, by name, through CoreDNS and kube-proxy
    pod = pods[0]["metadata"]["name"]
    fetch = (f"import urllib.request; r = urllib.request.urlopen('http://web.{namespace}.svc.cluster.local/', "
             "timeout=5); print(r.headers['X-Backend'])")
    answer = cluster.exec(namespace, pod, "web", "python3", "-c", fetch).stdout.strip()
    assert answer in names


def test_a_claim_keeps_its_data_across_pods(cluster, namespace):
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    cluster.apply(claim, "-n", namespace)

    def pod(name: str, script: str) -> dict:
        return restricted({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"restartPolicy": "Never", "securityContext": {"runAsUser": 65532},
                                    "containers": [{"name": "c", "image": BACKEND_IMAGE, "command": ["sh", "-c", script],
                                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}})

    cluster.apply(pod("writer", "echo kept > /data/marker"), "-n", namespace)
    poll(lambda: cluster.get("pod", "writer", "-n", namespace)["status"].get("phase") == "Succeeded", 120,
         what="the writer pod to finish")
    cluster.apply(pod("reader", "cat /data/marker"), "-n", namespace)
    poll(lambda: cluster.get("pod", "reader", "-n", namespace)["status"].get("phase") == "Succeeded", 120,
         what="the reader pod to finish")
    assert cluster.kubectl("logs", "reader", "-n", namespace).stdout.strip() == "kept"


def test_the_operator_runs_as_the_chart_says(operator):
    pod = operator_pod(operator)
    assert pod["status"]["phase"] == "Running"
    name = pod["metadata"]["name"]
    uid = operator.exec(OPERATOR_NAMESPACE, name, "operator", "id", "-u").stdout.strip()
    assert uid != "0" and uid == "65532"
    denied = operator.exec(OPERATOR_NAMESPACE, name, "operator", "touch", "/opt/written", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    listing = operator.kubectl("get", "pods", "-A").stdout
    assert any(line.startswith(OPERATOR_NAMESPACE) and "Running" in line for line in listing.splitlines())


def test_pod_security_admission_refuses_what_restricted_forbids(operator, namespace):
    """The test namespaces and the operator's enforce `restricted` (conftest.create_namespace):
    a pod of the default shape (may run as root, escalate, keep capabilities) is refused, and
    the same pod made restricted is admitted; so every pod the other tests see running passed."""
    for ns in (namespace, OPERATOR_NAMESPACE):
        labels = operator.get("namespace", ns)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", ns

    def pod(name: str) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": BACKEND_IMAGE}]}}

    refused = operator.apply(pod("default-shape"), "-n", namespace, check=False)
    assert refused.returncode != 0 and 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr
    operator.apply(restricted(pod("restricted-shape")), "-n", namespace)
