"""DegradationPolicy end to end on a real node: real Deployments, a real Prometheus (a pod of the
image built here, found by the operator through the cluster's DNS) scraping an exporter the test
sets, and the chart's operator pod, which one test crashes mid-degradation (SIGKILL of its
process: the kubelet restarts the container, and the operator resumes from the annotations).
"""

from __future__ import annotations

import http.client
import json
import pathlib
import threading
import time

import pytest

from ..integration.prometheus_support import Exporter
from ..support.kube_objects import backend_deployment
from ..support.polling import poll
from .conftest import OPERATOR_NAMESPACE, create_namespace, operator_pod
from .monitoring_support import ClusterPrometheus

pytestmark = pytest.mark.e2e
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prometheus(operator, exporter):
    namespace = "e2e-monitoring"
    create_namespace(operator, namespace)  # Prometheus's pod passes restricted, as every e2e pod
    try:
        yield ClusterPrometheus(operator, namespace, exporter.target)
    finally:
        operator.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def crash_operator(cluster) -> None:
    """SIGKILL to the operator's process: no cleanup, no goodbye to the peering. The kubelet
    restarts the container; returns once the restarted operator is Ready again."""
    pod = operator_pod(cluster)
    name = pod["metadata"]["name"]
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    cluster.kill_container(OPERATOR_NAMESPACE, name, "operator")

    def restarted_and_ready():
        status = cluster.get("pod", name, "-n", OPERATOR_NAMESPACE)["status"]
        container = status["containerStatuses"][0]
        return container["restartCount"] > restarts and container.get("ready")

    poll(restarted_and_ready, 120, what="the operator container restarted and ready")


@pytest.fixture
def shop(operator, namespace):
    """The test's namespace; its policies are deleted (and so restored) while the operator runs."""
    yield namespace
    operator.kubectl("delete", "dp", "--all", "-n", namespace, "--timeout=60s", check=False)


def _deployment(name: str, replicas: int, labels: dict, priority_class: str | None = None) -> dict:
    """The tests' backend with the labels a tier selects on; a 1 s grace period, so shed pods go at once."""
    return backend_deployment(name, replicas, labels=labels, priority_class=priority_class, grace_seconds=1)


def _policy(name: str, metric: str, url: str, tiers: list, **spec) -> dict:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy", "metadata": {"name": name},
            "spec": {"prometheus": {"url": url, "timeout": "1s"}, "interval": "1s",
                     "triggers": [{"name": "load", "query": f"max({metric})", "threshold": 10,
                                   "recoverThreshold": 6, "for": "2s"}],
                     "tiers": tiers, "restore": {"cooldown": "2s", "interval": "1s"}, "maxShedFraction": 1.0,
                     **spec}}


BY_LABEL = [{"name": "batch", "priority": 10, "selector": {"matchLabels": {"tier": "batch"}}},
            {"name": "reports", "priority": 20, "selector": {"matchLabels": {"tier": "reports"}}}]


def _deploy(cluster, namespace: str) -> dict:
    return {d["metadata"]["name"]: d for d in cluster.get("deploy", "-n", namespace)["items"]}


def _counts(cluster, namespace: str) -> dict[str, tuple[int, int]]:
    """name -> (spec.replicas, ready replicas), what `kubectl get deploy` shows as READY."""
    return {n: (d["spec"]["replicas"], d["status"].get("readyReplicas", 0)) for n, d in _deploy(cluster, namespace).items()}


def _wait_counts(cluster, namespace: str, expected: dict[str, tuple[int, int]], timeout: float, what: str) -> None:
    poll(lambda: {n: c for n, c in _counts(cluster, namespace).items() if n in expected} == expected,
         timeout, what=what, interval=0.3)


def _set(prometheus: ClusterPrometheus, exporter: Exporter, metric: str, value: float) -> None:
    exporter.set(metric, value)
    prometheus.wait_value(f"max({metric})", lambda v: v == value)


def _dp(cluster, namespace: str, name: str) -> dict:
    return cluster.get("dp", name, "-n", namespace)


def _condition(dp: dict, type_: str) -> dict:
    return next((c for c in dp.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def _events(cluster, namespace: str, name: str) -> list[str]:
    items = cluster.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    return [e["reason"] for e in items]


def test_shedding_and_restore_show_in_kubectl_get_deploy(cluster, shop, prometheus, exporter):
    ns = shop
    # pods without a class run at priority 0, which a maxPodPriority tier would select too: the
    # others get a class above the tier's limit
    low_class, standard_class = f"e2e-low-{ns}", f"e2e-standard-{ns}"
    for name, value in ((low_class, 100), (standard_class, 1000)):
        cluster.apply({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                       "value": value, "description": "e2e"})
    try:
        _set(prometheus, exporter, "e2e_shop_load", 1)
        for d in (_deployment("batch", 2, {"tier": "batch"}, standard_class), _deployment("crawler", 1, {}, low_class),
                  _deployment("reports", 1, {"tier": "reports"}, standard_class),
                  _deployment("checkout", 1, {"tier": "core"}, standard_class),
                  _deployment("guarded", 1, {"tier": "batch", "hakeeper.io/protected": "true"}, standard_class)):
            cluster.apply(d, "-n", ns)
        cluster.apply({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                       "metadata": {"name": "batch"},
                       "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "batch"},
                                "minReplicas": 1, "maxReplicas": 4,
                                "metrics": [{"type": "Resource", "resource": {
                                    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}},
                      "-n", ns)
        running = {"batch": (2, 2), "crawler": (1, 1), "reports": (1, 1), "checkout": (1, 1), "guarded": (1, 1)}
        _wait_counts(cluster, ns, running, 90, "every pod ready")
        # the lowest tier by pod PriorityClass (value 100), then the labelled tiers
        tiers = [{"name": "low-priority-pods", "priority": 5, "maxPodPriority": 100}, *BY_LABEL]
        cluster.apply(_policy("peak", "e2e_shop_load", prometheus.url, tiers), "-n", ns)
        cluster.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "-n", ns, "dp/peak")
        poll(lambda: _condition(_dp(cluster, ns, "peak"), "MetricsAvailable").get("status") == "True", 20,
             what="MetricsAvailable")

        _set(prometheus, exporter, "e2e_shop_load", 12)
        _wait_counts(cluster, ns, {"crawler": (0, 0)}, 20, "the PriorityClass tier shed first")
        _wait_counts(cluster, ns, {"batch": (0, 0)}, 20, "the batch tier next")
        _wait_counts(cluster, ns, {"reports": (0, 0)}, 20, "the reports tier last")
        table = cluster.kubectl("get", "deploy", "-n", ns).stdout
        rows = {line.split()[0]: line.split()[1] for line in table.splitlines()[1:]}
        assert rows == {"batch": "0/0", "crawler": "0/0", "reports": "0/0", "checkout": "1/1", "guarded": "1/1"}
        poll(lambda: not cluster.get("pods", "-n", ns, "-l", "app=batch")["items"], 30, what="batch's pods gone")

        dp = _dp(cluster, ns, "peak")
        assert dp["status"]["state"] == "Degraded" and dp["status"]["shedCount"] == 3
        entries = {e["name"]: e for e in dp["status"]["shed"]}
        assert entries["batch"]["originalReplicas"] == 2 and entries["batch"]["hpa"] == "batch"
        assert entries["crawler"]["tier"] == "low-priority-pods"
        batch = _deploy(cluster, ns)["batch"]
        assert batch["metadata"]["annotations"]["hakeeper.io/original-replicas"] == "2"
        fields = cluster.get("deploy", "batch", "-n", ns, "--show-managed-fields")["metadata"]["managedFields"]
        assert any(f["manager"] == "hakeeper" and "f:replicas" in f["fieldsV1"].get("f:spec", {}) for f in fields)
        row = cluster.kubectl("get", "dp", "peak", "-n", ns).stdout.splitlines()[1].split()
        assert row[1:6] == ["staged", "Degraded", "3", "True", "True"]  # MODE STATE SHED METRICS READY
        assert "Shed" in _events(cluster, ns, "batch") and "Shed" in _events(cluster, ns, "peak")

        _set(prometheus, exporter, "e2e_shop_load", 2)
        _wait_counts(cluster, ns, {"reports": (1, 1)}, 30, "reports back first")
        _wait_counts(cluster, ns, running, 60, "every Deployment back at its replicas, pods ready")
        deployments = _deploy(cluster, ns)
        assert "hakeeper.io/original-replicas" not in (deployments["batch"]["metadata"].get("annotations") or {})
        # never touched: no write ever reached them
        assert deployments["checkout"]["metadata"]["generation"] == 1
        assert deployments["guarded"]["metadata"]["generation"] == 1
        poll(lambda: _dp(cluster, ns, "peak")["status"]["state"] == "Normal", 10, what="state Normal")
        assert "Restored" in _events(cluster, ns, "batch")
    finally:
        cluster.kubectl("delete", "priorityclass", low_class, standard_class, "--wait=false", check=False)


def test_a_policy_sheds_in_another_namespace_only_once_that_namespace_opted_in(cluster, shop, prometheus, exporter):
    """Issue 12 item 3, no confused deputy: a tenant's policy lists a namespace not its own. Until
    that namespace carries shed-from.hakeeper.io/<policy namespace>=true nothing there is
    written (status.refusedNamespaces, NamespacesAllowed=False, a NamespaceRefused Warning), while
    the policy's own namespace is shed (the control); with the label it is shed too, and taking
    the label away gives back what was shed there although the trigger still breaches."""
    ns, other = shop, f"{shop}-tenant"
    create_namespace(cluster, other)
    opt_in = f"shed-from.hakeeper.io/{ns}"
    try:
        _set(prometheus, exporter, "e2e_tenant_load", 1)
        for namespace in (ns, other):
            cluster.apply(_deployment("batch", 1, {"tier": "batch"}), "-n", namespace)
        for namespace in (ns, other):
            _wait_counts(cluster, namespace, {"batch": (1, 1)}, 90, f"batch ready in {namespace}")
        cluster.apply(_policy("peak", "e2e_tenant_load", prometheus.url, BY_LABEL, namespaces=[ns, other]), "-n", ns)
        cluster.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "-n", ns, "dp/peak")
        refused = poll(lambda: (lambda dp: dp if _condition(dp, "NamespacesAllowed").get("status") == "False" else None)(
            _dp(cluster, ns, "peak")), 30, what="NamespacesAllowed=False")
        assert _condition(refused, "NamespacesAllowed")["reason"] == "NamespaceRefused"
        [entry] = refused["status"]["refusedNamespaces"]
        assert entry["namespace"] == other and f"{opt_in}=true" in entry["reason"], entry
        assert "NamespaceRefused" in _events(cluster, ns, "peak")

        _set(prometheus, exporter, "e2e_tenant_load", 12)
        _wait_counts(cluster, ns, {"batch": (0, 0)}, 30, "its own namespace shed (the control)")
        assert _counts(cluster, other) == {"batch": (1, 1)}
        assert _deploy(cluster, other)["batch"]["metadata"]["generation"] == 1, "written in a refused namespace"

        cluster.kubectl("label", "namespace", other, f"{opt_in}=true")
        _wait_counts(cluster, other, {"batch": (0, 0)}, 30, "shed once the namespace opted in")
        poll(lambda: _condition(_dp(cluster, ns, "peak"), "NamespacesAllowed").get("status") == "True", 20,
             what="NamespacesAllowed=True")
        assert _dp(cluster, ns, "peak")["status"]["refusedNamespaces"] == []

        cluster.kubectl("label", "namespace", other, f"{opt_in}-")
        _wait_counts(cluster, other, {"batch": (1, 1)}, 60, "given back once the label is gone")
        assert "hakeeper.io/shed-by" not in (_deploy(cluster, other)["batch"]["metadata"].get("annotations") or {})
        assert _counts(cluster, ns) == {"batch": (0, 0)}, "the trigger still breaches: its own stays shed"
    finally:
        cluster.kubectl("delete", "dp", "peak", "-n", ns, "--timeout=60s", check=False)
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_the_operator_restarted_mid_degradation_restores_correctly(cluster, shop, prometheus, exporter):
    ns = shop
    _set(prometheus, exporter, "e2e_restart_load", 1)
    cluster.apply(_deployment("batch", 2, {"tier": "batch"}), "-n", ns)
    cluster.apply(_deployment("reports", 3, {"tier": "reports"}), "-n", ns)
    _wait_counts(cluster, ns, {"batch": (2, 2), "reports": (3, 3)}, 90, "pods ready")
    # a 3 s interval: the kill lands between the first tier and the next
    cluster.apply(_policy("peak", "e2e_restart_load", prometheus.url, BY_LABEL, interval="3s"), "-n", ns)
    cluster.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "-n", ns, "dp/peak")

    _set(prometheus, exporter, "e2e_restart_load", 12)
    poll(lambda: _counts(cluster, ns)["batch"][0] == 0, 20, what="batch shed", interval=0.1)
    # mid-degradation: the reports tier would follow one interval later
    crash_operator(cluster)
    # still firing: the restarted operator carries on from the annotations, never re-recording
    _wait_counts(cluster, ns, {"reports": (0, 0)}, 30, "the next tier after the restart")
    deployments = _deploy(cluster, ns)
    assert deployments["batch"]["metadata"]["annotations"]["hakeeper.io/original-replicas"] == "2"
    assert deployments["reports"]["metadata"]["annotations"]["hakeeper.io/original-replicas"] == "3"
    shed = {e["name"]: e["originalReplicas"] for e in _dp(cluster, ns, "peak")["status"]["shed"]}
    assert shed == {"batch": 2, "reports": 3}

    _set(prometheus, exporter, "e2e_restart_load", 2)
    _wait_counts(cluster, ns, {"batch": (2, 2), "reports": (3, 3)}, 60, "the original counts restored")
    assert "Restored" in _events(cluster, ns, "batch")


def test_dry_run_then_a_conflict_is_reported_and_deleting_the_policy_restores(cluster, shop, prometheus, exporter):
    ns = shop
    _set(prometheus, exporter, "e2e_delete_load", 12)
    cluster.apply(_deployment("batch", 1, {"tier": "batch"}), "-n", ns)
    cluster.apply(_deployment("reports", 2, {"tier": "reports"}), "-n", ns)
    _wait_counts(cluster, ns, {"batch": (1, 1), "reports": (2, 2)}, 90, "pods ready")
    # a trial first: dryRun, and a long interval
    trial = _policy("peak", "e2e_delete_load", prometheus.url, BY_LABEL, mode="all", dryRun=True)
    trial["spec"]["interval"] = "1h"
    cluster.apply(trial, "-n", ns)
    poll(lambda: len(_dp(cluster, ns, "peak").get("status", {}).get("shed", [])) == 2, 20,
         what="the dry run to report both tiers")
    assert all(e["dryRun"] for e in _dp(cluster, ns, "peak")["status"]["shed"])
    assert _counts(cluster, ns) == {"batch": (1, 1), "reports": (2, 2)}
    assert "WouldShed" in _events(cluster, ns, "peak")
    # for real now: the spec change wakes the policy at once, not an hour later
    cluster.kubectl("patch", "dp", "peak", "-n", ns, "--type=merge", "-p",
                    json.dumps({"spec": {"dryRun": False, "interval": "1s"}}))
    _wait_counts(cluster, ns, {"batch": (0, 0), "reports": (0, 0)}, 10, "both tiers shed at once")

    cluster.kubectl("scale", "deploy/batch", "--replicas=3", "-n", ns)  # someone wants it back
    poll(lambda: _condition(_dp(cluster, ns, "peak"), "Conflict").get("status") == "True", 20, what="Conflict=True")
    conflict = _condition(_dp(cluster, ns, "peak"), "Conflict")
    assert "batch scaled back to 3 replicas by kubectl" in conflict["message"]
    assert "Conflict" in _events(cluster, ns, "peak")
    _wait_counts(cluster, ns, {"batch": (3, 3)}, 60, "batch left at the replicas someone else chose")

    cluster.kubectl("delete", "dp", "peak", "-n", ns, "--timeout=60s")
    counts = _counts(cluster, ns)
    assert counts["reports"][0] == 2 and counts["batch"][0] == 3  # restored before the policy went
    annotations = _deploy(cluster, ns)["batch"]["metadata"].get("annotations") or {}
    assert not [a for a in annotations if a.startswith("hakeeper.io/")]
    _wait_counts(cluster, ns, {"reports": (2, 2)}, 60, "reports' pods running again")


def test_an_unreachable_prometheus_leaves_the_policy_ready_with_metrics_unavailable(cluster, shop):
    ns = shop
    cluster.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples/quickstart/degradationpolicy.yaml"))
    cluster.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "-n", ns, "dp/peak-shedding")
    poll(lambda: _condition(_dp(cluster, ns, "peak-shedding"), "MetricsAvailable").get("status") == "False", 30,
         what="MetricsAvailable=False")
    dp = _dp(cluster, ns, "peak-shedding")
    metrics = _condition(dp, "MetricsAvailable")
    assert metrics["reason"] == "Unavailable"
    assert "cannot reach Prometheus at http://prometheus.monitoring.svc:9090" in metrics["message"]
    assert dp["status"]["state"] == "Normal" and dp["status"]["observedGeneration"] == dp["metadata"]["generation"]
    assert "MetricsUnavailable" in _events(cluster, ns, "peak-shedding")


def test_the_bearer_token_comes_from_a_secret(cluster, shop, prometheus, exporter):
    ns = shop
    _set(prometheus, exporter, "e2e_secret_load", 1)
    policy = _policy("auth", "e2e_secret_load", prometheus.url, BY_LABEL)
    policy["spec"]["prometheus"]["bearerTokenSecretRef"] = {"name": "prometheus-reader", "key": "token"}
    cluster.apply(policy, "-n", ns)
    poll(lambda: _condition(_dp(cluster, ns, "auth"), "Ready").get("reason") == "SecretMissing", 20,
         what="Ready=False/SecretMissing")
    ready = _condition(_dp(cluster, ns, "auth"), "Ready")
    assert ready["status"] == "False" and ready["message"] == f"Secret {ns}/prometheus-reader not found"
    cluster.kubectl("create", "secret", "generic", "prometheus-reader", "--from-literal=token=t0ken", "-n", ns)
    cluster.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "-n", ns, "dp/auth")
    poll(lambda: _condition(_dp(cluster, ns, "auth"), "MetricsAvailable").get("status") == "True", 20,
         what="MetricsAvailable once the token is there")


# KEDA itself does not run here: only its ScaledObject kind exists, from a minimal CRD with KEDA's
# group, version and kind (the schema keeps any field), so the API server stores ScaledObjects and
# the operator reads and annotates them as it would with KEDA installed. What KEDA then does with
# the annotation (hold the Deployment at 0, scale again once it goes) is KEDA's documented
# behaviour, played by the unit tests (tests/unit/test_degradation_keda.py).
SCALED_OBJECT_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {"group": "keda.sh", "scope": "Namespaced",
             "names": {"kind": "ScaledObject", "listKind": "ScaledObjectList", "plural": "scaledobjects",
                       "singular": "scaledobject"},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def test_a_keda_scaled_deployment_is_paused_while_shed_and_resumed_on_restore(cluster, shop, prometheus, exporter):
    ns = shop
    _set(prometheus, exporter, "e2e_keda_load", 1)
    # a cluster with KEDA's own CRD (HAKEEPER_E2E_KUBECONFIG) keeps it: only ours is deleted after
    ours = cluster.kubectl("get", "crd", "scaledobjects.keda.sh", check=False).returncode != 0
    if ours:
        cluster.apply(SCALED_OBJECT_CRD)
    try:
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/scaledobjects.keda.sh")
        cluster.apply(_deployment("batch", 2, {"tier": "batch"}), "-n", ns)
        cluster.apply({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "batch"},
                       "spec": {"scaleTargetRef": {"name": "batch"}, "minReplicaCount": 1,
                                "triggers": [{"type": "cpu", "metadata": {"value": "80"}}]}}, "-n", ns)
        _wait_counts(cluster, ns, {"batch": (2, 2)}, 90, "pods ready")
        cluster.apply(_policy("peak", "e2e_keda_load", prometheus.url, BY_LABEL[:1]), "-n", ns)
        cluster.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "-n", ns, "dp/peak")

        def paused() -> dict:
            so = cluster.get("scaledobject.keda.sh", "batch", "-n", ns)
            return {k: v for k, v in (so["metadata"].get("annotations") or {}).items()
                    if k in ("autoscaling.keda.sh/paused-replicas", "hakeeper.io/paused-by")}

        _set(prometheus, exporter, "e2e_keda_load", 12)
        _wait_counts(cluster, ns, {"batch": (0, 0)}, 30, "batch shed")
        poll(lambda: paused() == {"autoscaling.keda.sh/paused-replicas": "0", "hakeeper.io/paused-by": f"{ns}/peak"},
             10, what="the ScaledObject paused at 0 by the policy")
        assert _condition(_dp(cluster, ns, "peak"), "Conflict").get("status") == "False"
        shed = [e["message"] for e in cluster.get("events", "-n", ns, "--field-selector",
                                                  "involvedObject.name=batch,reason=Shed")["items"]]
        assert any(f"KEDA ScaledObject {ns}/batch paused at 0 replicas" in m for m in shed), shed

        _set(prometheus, exporter, "e2e_keda_load", 2)
        _wait_counts(cluster, ns, {"batch": (2, 2)}, 60, "batch restored")
        poll(lambda: paused() == {}, 10, what="the pause removed")
    finally:
        cluster.kubectl("delete", "dp", "--all", "-n", ns, "--timeout=60s", check=False)
        if ours:
            cluster.kubectl("delete", "crd", "scaledobjects.keda.sh", "--timeout=60s", check=False)


def _answer(ip: str, headers: dict[str, str] | None = None, port: int = 80) -> tuple[int, str | None]:
    """(status, Retry-After) of one GET through the pool's Service; status 0 for a connection error."""
    conn = http.client.HTTPConnection(ip, port, timeout=3)
    try:
        conn.request("GET", "/", headers={"Connection": "close", **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After")
    except (OSError, http.client.HTTPException):
        return 0, None
    finally:
        conn.close()


def _balancer_pods(cluster, namespace: str) -> list[str]:
    pods = cluster.get("pods", "-n", namespace, "-l", "app.kubernetes.io/component=balancer")["items"]
    return [p["metadata"]["name"] for p in pods]


class ClassClient(threading.Thread):
    """One request class sent through the Service in a loop: each answer's time and status."""

    def __init__(self, ip: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.ip, self.headers = ip, headers
        self.stop = threading.Event()
        self.answers: list[tuple[float, int, str | None]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            status, retry_after = _answer(self.ip, self.headers)
            self.answers.append((time.monotonic(), status, retry_after))
            self.stop.wait(0.02)

    def since(self, moment: float) -> list[tuple[float, int, str | None]]:
        return [a for a in list(self.answers) if a[0] >= moment]


def test_a_shed_tier_refuses_a_pools_low_request_class_at_its_service(cluster, shop, prometheus, exporter):
    """Issue 14 item 1: a tier naming a pool's low request class. The trigger breaching makes the
    balancers answer the low class 503 + Retry-After through the pool's Service within interval + 1 s,
    while the high class is served throughout; both statuses and Events say so; the recovery lets
    the low class through again. The control: before the breach the low class is served."""
    ns = shop
    _set(prometheus, exporter, "e2e_classes_load", 1)
    cluster.apply(backend_deployment("shopweb", 2), "-n", ns)
    cluster.apply({"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": "web"},
                   "spec": {"backends": {"selector": {"matchLabels": {"app": "shopweb"}}, "port": "http"},
                            "balancer": {"replicas": 1},
                            "requestClasses": [
                                {"name": "high", "priority": 100,
                                 "match": {"headers": [{"name": "X-Class", "values": ["high"]}]}},
                                {"name": "low"}],
                            "defaultRequestClass": "low", "requestRefusal": {"status": 503, "retryAfter": "5s"}}},
                  "-n", ns)
    try:
        cluster.kubectl("wait", "--for=condition=Ready", "--timeout=180s", "-n", ns, "lbp/web")
        ip = cluster.get("service", "web", "-n", ns)["spec"]["clusterIP"]
        poll(lambda: _answer(ip)[0] == 200, 60, what="the low class served through the Service", interval=0.2)
        tiers = [{"name": "bulk", "priority": 5, "requestClasses": [{"pool": "web", "classes": ["low"]}]}]
        policy = _policy("peak", "e2e_classes_load", prometheus.url, tiers)
        policy["spec"]["triggers"][0]["for"] = "0s"  # the budget is measured from the breach itself
        cluster.apply(policy, "-n", ns)
        cluster.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "-n", ns, "dp/peak")

        high, low = ClassClient(ip, {"X-Class": "high"}), ClassClient(ip)
        high.start()
        low.start()
        try:
            poll(lambda: len(low.answers) > 10, 10, what="the low class's first answers")
            assert all(status == 200 for _, status, _ in low.answers), "the control: served before the breach"
            _set(prometheus, exporter, "e2e_classes_load", 12)
            breached = time.monotonic()  # Prometheus answers the breaching value from here on
            poll(lambda: any(s == 503 for _, s, _ in low.since(breached)), 10, what="the low class refused",
                 interval=0.05)
            refused_at = next(t for t, s, _ in low.since(breached) if s == 503)
            dp = poll(lambda: (lambda d: d if d["status"].get("refusedRequestClasses") else None)(
                _dp(cluster, ns, "peak")), 10, what="the policy's status")
            [entry] = dp["status"]["refusedRequestClasses"]
            assert (entry["pool"], entry["classes"], entry["tier"]) == ("web", ["low"], "bulk"), entry
            pool = cluster.get("lbp", "web", "-n", ns)
            assert [(e["name"], e["policies"]) for e in pool["status"]["refusedRequestClasses"]] == [
                ("low", [f"{ns}/peak"])]
            time.sleep(2.0)  # refused for a while: the low class fails fast, the high class is served
            settled = [a for a in low.since(refused_at + 0.5)]
            assert settled and all(s == 503 and r == "5" for _, s, r in settled), settled[:5]

            _set(prometheus, exporter, "e2e_classes_load", 1)
            recovered = time.monotonic()
            try:  # each hop on its own, so that a failure says which one did not happen
                poll(lambda: not _dp(cluster, ns, "peak")["status"].get("refusedRequestClasses"), 20,
                     what="the policy to stop refusing")
                poll(lambda: not cluster.get("lbp", "web", "-n", ns)["status"].get("refusedRequestClasses"), 20,
                     what="the pool to stop refusing")
                poll(lambda: json.loads(cluster.get("configmap", "web-haproxy", "-n", ns)["data"]
                                        ["refused-classes.json"]) == [], 20, what="the ConfigMap to refuse nothing")
                poll(lambda: any(s == 200 for _, s, _ in low.since(recovered)), 20, what="the low class back",
                     interval=0.05)
            except AssertionError:
                print("policy:", json.dumps(_dp(cluster, ns, "peak")["status"], indent=1))
                print("pool:", json.dumps(cluster.get("lbp", "web", "-n", ns)["status"], indent=1))
                for pod in _balancer_pods(cluster, ns):
                    print(cluster.kubectl("logs", "-n", ns, pod, "-c", "agent", "--tail=40", check=False).stdout)
                raise
            back_at = next(t for t, s, _ in low.since(recovered) if s == 200)
        finally:
            high.stop.set()
            low.stop.set()
            high.join(10)
            low.join(10)
        print(f"\nlow class refused {refused_at - breached:.2f} s after Prometheus answered the breach "
              f"(interval 1s: budget 2 s); served again {back_at - recovered:.2f} s after the recovery "
              f"(cooldown 2s); high class: {len(high.answers)} requests, "
              f"{sum(s != 200 for _, s, _ in high.answers)} failed")
        assert refused_at - breached <= 2.0
        assert high.answers and all(s == 200 for _, s, _ in high.answers), [a for a in high.answers if a[1] != 200][:5]
        poll(lambda: not _dp(cluster, ns, "peak")["status"].get("refusedRequestClasses")
             and not cluster.get("lbp", "web", "-n", ns)["status"].get("refusedRequestClasses"), 20,
             what="both statuses cleared")
        assert {"RequestClassesRefused", "RequestClassesRestored"} <= set(_events(cluster, ns, "peak"))
        poll(lambda: {"RequestClassesRefused", "RequestClassesRestored"} <= set(_events(cluster, ns, "web")), 20,
             what="the pool's Events")
    finally:
        cluster.kubectl("delete", "dp", "peak", "-n", ns, "--timeout=60s", check=False)
        cluster.kubectl("delete", "lbp", "web", "-n", ns, "--timeout=60s", check=False)
