"""The local cluster behaves like a cluster: pods run as processes, Services find them, failures show.

These test the test node agent itself, so they run only against the local control plane
(hack/e2e-kind.sh deselects them with -m "not localcluster").
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.localcluster]
BACKEND_IMAGE = "registry.local/hakeeper/test-http-backend:1"


def _deployment(name: str, replicas: int, image: str = BACKEND_IMAGE) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                "name": "web", "image": image, "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1,
                                   "failureThreshold": 1},
            }]}}},
    }


def _service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]}}


def _pods(cluster, namespace: str, app: str) -> list[dict]:
    return cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _ready_endpoints(cluster, namespace: str, service: str) -> set[str]:
    slices = cluster.get("endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}")
    return {ep["addresses"][0] for s in slices["items"] for ep in s.get("endpoints") or []
            if ep.get("conditions", {}).get("ready")}


def _http(ip: str, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://{ip}:8080{path}", timeout=2) as answer:
        return answer.read().decode().strip()


def test_the_api_server_is_a_real_kube_apiserver(cluster):
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version["gitVersion"].startswith("v1.")
    nodes = cluster.get("nodes")["items"]
    assert nodes and all(any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
                         for n in nodes)


def test_deployment_pods_run_as_processes_and_fill_endpoint_slices(cluster, namespace):
    cluster.apply(_deployment("web", 2), "-n", namespace)
    cluster.apply(_service("web"), "-n", namespace)
    pods = wait_for(lambda: [p for p in _pods(cluster, namespace, "web") if _ready(p)] if len(
        [p for p in _pods(cluster, namespace, "web") if _ready(p)]) == 2 else None, 60, "2 ready pods")
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2 and all(ip.startswith("10.244.") for ip in ips)  # HAKEEPER_POD_CIDR on lo
    for pod in pods:
        assert _http(pod["status"]["podIP"]) == pod["metadata"]["name"]
        assert pod["status"]["phase"] == "Running"
    wait_for(lambda: _ready_endpoints(cluster, namespace, "web") == ips, 30, "both pods in the EndpointSlice")


def test_a_killed_process_makes_its_pod_not_ready_until_restarted(cluster, namespace):
    cluster.apply(_deployment("crash", 1), "-n", namespace)
    cluster.apply(_service("crash"), "-n", namespace)
    pod = wait_for(lambda: next((p for p in _pods(cluster, namespace, "crash") if _ready(p)), None), 60, "a ready pod")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    wait_for(lambda: _ready_endpoints(cluster, namespace, "crash") == {ip}, 30, "the pod's endpoint")
    process = cluster.agent.process(namespace, name, "web")
    process.kill()
    wait_for(lambda: not _ready(cluster.get("pod", name, "-n", namespace)), 20, "the pod to turn NotReady")
    wait_for(lambda: _ready_endpoints(cluster, namespace, "crash") == set(), 20, "the endpoint to turn not ready")
    restarted = wait_for(lambda: (lambda p: p if _ready(p) else None)(cluster.get("pod", name, "-n", namespace)),
                         30, "the restarted container to be ready")
    status = restarted["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 137
    assert _http(ip) == name


def test_a_deleted_pod_stops_its_process_and_is_replaced(cluster, namespace):
    cluster.apply(_deployment("del", 1), "-n", namespace)
    pod = wait_for(lambda: next((p for p in _pods(cluster, namespace, "del") if _ready(p)), None), 60, "a ready pod")
    process = cluster.agent.process(namespace, pod["metadata"]["name"], "web")
    cluster.kubectl("delete", "pod", pod["metadata"]["name"], "-n", namespace, "--wait=true", "--timeout=30s")
    assert process.poll() is not None, "the deleted pod's process still runs"
    wait_for(lambda: [p for p in _pods(cluster, namespace, "del")
                      if _ready(p) and p["metadata"]["name"] != pod["metadata"]["name"]], 60, "a replacement pod")


def test_a_failing_readiness_probe_takes_the_pod_out_of_the_service(cluster, namespace):
    """The backend answers /healthz 503 while a file exists: the pod stays Running but not Ready."""
    deployment = _deployment("probe", 1)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["args"] = ["--address", "$(POD_IP)", "--port", "8080", "--name", "$(POD_NAME)",
                         "--unhealthy-file", "/tmp/hakeeper-e2e-unhealthy-$(POD_NAME)"]
    container["env"] = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    cluster.apply(deployment, "-n", namespace)
    pod = wait_for(lambda: next((p for p in _pods(cluster, namespace, "probe") if _ready(p)), None), 60, "a ready pod")
    name = pod["metadata"]["name"]
    flag = f"/tmp/hakeeper-e2e-unhealthy-{name}"
    try:
        open(flag, "w").close()
        wait_for(lambda: not _ready(cluster.get("pod", name, "-n", namespace)), 20, "NotReady after /healthz fails")
        assert cluster.get("pod", name, "-n", namespace)["status"]["phase"] == "Running"
    finally:
        import os
        os.unlink(flag)
    wait_for(lambda: _ready(cluster.get("pod", name, "-n", namespace)), 20, "Ready again")


def test_a_statefulset_gets_stable_ordered_pods(cluster, namespace):
    sts = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "replicas": 2, "selector": {"matchLabels": {"app": "db"}},
                 "template": _deployment("db", 1)["spec"]["template"]},
    }
    cluster.apply(sts, "-n", namespace)
    wait_for(lambda: sorted(p["metadata"]["name"] for p in _pods(cluster, namespace, "db") if _ready(p)) == [
        "db-0", "db-1"], 90, "db-0 and db-1 ready")
    assert _http(cluster.get("pod", "db-1", "-n", namespace)["status"]["podIP"]) == "db-1"


def test_an_image_with_no_local_program_says_so(cluster, namespace):
    cluster.apply(_deployment("unknown", 1, image="docker.io/library/nginx:1.27"), "-n", namespace)

    def waiting_reason():
        pods = _pods(cluster, namespace, "unknown")
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        return statuses and statuses[0]["state"].get("waiting", {}).get("reason")

    assert wait_for(waiting_reason, 60, "a waiting reason") == "ImageNotRunnableLocally"


def test_statefulset_volume_claims_are_provisioned_and_outlive_the_pod(cluster, namespace):
    template = _deployment("data", 1)["spec"]["template"]
    template["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/var/lib/data"}]
    sts = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "data"},
        "spec": {"serviceName": "data", "replicas": 1, "selector": {"matchLabels": {"app": "data"}},
                 "template": template,
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]},
    }
    cluster.apply(sts, "-n", namespace)
    pod = wait_for(lambda: next((p for p in _pods(cluster, namespace, "data") if _ready(p)), None), 60, "data-0 ready")
    claim = cluster.get("pvc", "data-data-0", "-n", namespace)
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "hakeeper-local"
    (cluster.agent.volume_path(namespace, "data-0", "data") / "marker").write_text("kept")
    cluster.kubectl("delete", "pod", "data-0", "-n", namespace, "--wait=true", "--timeout=30s")
    wait_for(lambda: next((p for p in _pods(cluster, namespace, "data")
                           if _ready(p) and p["metadata"]["uid"] != pod["metadata"]["uid"]), None), 60,
             "data-0 back")
    assert (cluster.agent.volume_path(namespace, "data-0", "data") / "marker").read_text() == "kept"
