"""Every pod template the operator and the chart create, judged by the Pod Security Standards
(tests/support/pod_security.py): HAProxy pools, databases (both flavors) and the operator pass
`restricted`; keepalived's (engine lvs) needs `privileged`, for the reasons it states. The e2e
tier proves the same with the API server's Pod Security Admission (its namespaces enforce
these levels); the tests' own workloads are checked here too, so that a refusal shows up here
first rather than as a time-out there."""

from __future__ import annotations

from typing import Any

import pytest

from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec
from hakeeper.loadbalancerpool import objects as pool_objects
from hakeeper.loadbalancerpool.lvs import objects as lvs_objects
from hakeeper.replicateddatabase import objects as db_objects

from ..support.kube_objects import backend_deployment, restricted
from ..support.pod_security import pod_spec, strictest, violations
from .test_chart import one, render

BACKENDS = {"selector": {"matchLabels": {"app": "web"}}, "port": 8080}


def _pool(**spec: Any) -> dict[str, Any]:
    return pool_objects.deployment("web", "ns", LoadBalancerPoolSpec.model_validate({"backends": BACKENDS, **spec}),
                                   "ghcr.io/hakeeper/hakeeper:test", "hash")


def _lvs(auth: bool) -> dict[str, Any]:
    vrrp: dict[str, Any] = {"virtualRouterID": 51, "interface": "eth0"}
    if auth:
        vrrp["authSecretRef"] = {"name": "vrrp", "key": "password"}
    spec = LoadBalancerPoolSpec.model_validate({"engine": "lvs", "backends": BACKENDS,
                                                "lvs": {"virtualIP": "10.0.0.100", "port": 80, "vrrp": vrrp}})
    return lvs_objects.daemonset("edge", "ns", spec)


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.mark.parametrize("spec", [{}, {"balancer": {"replicas": 3, "metricsPort": 9100}},
                                  {"balancer": {"metricsPort": 80}}], ids=["default", "metrics-9100", "metrics-80"])
def test_haproxy_balancer_pods_pass_restricted_with_no_capability(spec):
    deployment = _pool(**spec)
    assert violations(deployment, "restricted") == []
    for container in _containers(deployment):  # the agent sidecar and haproxy
        security = container["securityContext"]
        assert security["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert security["readOnlyRootFilesystem"] is True and security["runAsUser"] != 0


def test_a_low_metrics_port_is_opened_by_the_namespaced_sysctl_not_a_capability():
    assert "sysctls" not in pod_spec(_pool())["securityContext"]
    assert pod_spec(_pool(balancer={"metricsPort": 443}))["securityContext"]["sysctls"] == [
        {"name": "net.ipv4.ip_unprivileged_port_start", "value": "443"}]


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
@pytest.mark.parametrize("resources", [{}, {"resources": {"requests": {"cpu": "1"}}}], ids=["plain", "resources"])
def test_database_pods_pass_restricted_every_container_read_only(flavor, resources):
    sts = db_objects.statefulset("db", "ns", ReplicatedDatabaseSpec.model_validate({"flavor": flavor, **resources}))
    assert violations(sts, "restricted") == []
    names = {c["name"] for c in _containers(sts)}
    assert names == ({"init", "mariadb", "backup"} if flavor == "mariadb" else {"init", "mysql"})
    for container in _containers(sts):  # init, server, and MariaDB's backup sidecar
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["name"]
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, container["name"]


@pytest.mark.parametrize("values", [(), ("replicaCount=1",), ("metrics.port=0",)], ids=["default", "one", "no-metrics"])
def test_the_charts_operator_pod_passes_restricted(values):
    deployment = one(render(*values), "Deployment")
    assert violations(deployment, "restricted") == []
    assert strictest(deployment) == "restricted"


def test_the_charts_uninstall_hook_pod_passes_restricted():
    job = one(render(), "Job")  # the operator's namespace enforces restricted when helm uninstalls
    assert violations(job, "restricted") == []
    assert strictest(job) == "restricted"


@pytest.mark.parametrize("auth", [True, False], ids=["vrrp-auth", "no-auth"])
def test_keepalived_pods_need_privileged_for_the_host_network_root_and_net_admin_only(auth):
    ds = _lvs(auth)
    assert strictest(ds) == "privileged"
    # baseline refuses exactly what IPVS and VRRP on the node need: its network namespace and
    # NET_ADMIN/NET_RAW (Kubernetes gives a non-root process no added capability, hence root)
    assert violations(ds, "baseline") == ["host namespaces: spec.hostNetwork true",
                                          "capabilities: containers[keepalived] adds ['NET_ADMIN', 'NET_RAW']"]
    assert violations(ds, "restricted") == [
        "host namespaces: spec.hostNetwork true",
        "capabilities: containers[keepalived] adds ['NET_ADMIN', 'NET_RAW']",
        "running as non-root user: spec.securityContext.runAsUser 0",
        "running as non-root: initContainers[agent] runAsNonRoot not true (nor the pod's)",
        "running as non-root: containers[keepalived] runAsNonRoot not true (nor the pod's)",
    ]
    # and otherwise the least: no escalation, every other capability dropped, the runtime's
    # seccomp filter, read-only root filesystems
    assert pod_spec(ds)["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in _containers(ds):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]


def test_the_checker_refuses_what_pod_security_admission_refuses():
    """The checker itself, on pods the Pod Security Standards page names as refused."""
    good = restricted({"spec": {"containers": [{"name": "c", "image": "x"}]}})
    assert violations(good, "restricted") == []

    def changed(pod: dict[str, Any], container: dict[str, Any] | None = None) -> dict[str, Any]:
        spec = restricted({"spec": {"containers": [{"name": "c", "image": "x"}]}})["spec"]
        spec.update(pod)
        spec["containers"][0]["securityContext"].update(container or {})
        return spec

    assert strictest({"spec": {"containers": [{"name": "c", "image": "x"}]}}) == "baseline"  # the default pod
    assert strictest(changed({"hostPID": True})) == "privileged"
    assert strictest(changed({"volumes": [{"name": "v", "hostPath": {"path": "/"}}]})) == "privileged"
    assert strictest(changed({}, {"privileged": True})) == "privileged"
    assert strictest(changed({}, {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}})) == "privileged"
    assert strictest(changed({}, {"seccompProfile": {"type": "Unconfined"}})) == "privileged"
    assert strictest(changed({"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}})) \
        == "privileged"
    assert strictest(changed({}, {"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}})) == "baseline"
    assert strictest(changed({}, {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}})) == "restricted"
    assert strictest(changed({}, {"capabilities": {}})) == "baseline"
    assert strictest(changed({}, {"allowPrivilegeEscalation": True})) == "baseline"
    assert strictest(changed({}, {"runAsNonRoot": False})) == "baseline"
    assert strictest(changed({}, {"runAsUser": 0})) == "baseline"
    assert strictest(changed({"securityContext": {"runAsNonRoot": True}})) == "baseline"  # no seccomp
    assert strictest(changed({"volumes": [{"name": "v", "nfs": {"server": "s", "path": "/"}}]})) == "baseline"
    assert strictest(changed({"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
                                                  "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start",
                                                               "value": "80"}]}})) == "restricted"


def test_the_e2e_tiers_own_workloads_pass_restricted():
    """What the e2e tests apply in their restricted namespaces: backends, and Prometheus and
    Alertmanager through restricted() (tests/e2e/monitoring_support.py)."""
    assert violations(backend_deployment("web", 2, priority_class="low"), "restricted") == []
    from localcluster import monitoring

    docs = [*monitoring.prometheus({"scrape_configs": []}), *monitoring.alertmanager("http://receiver")]
    workloads = [restricted(doc) for doc in docs if doc["kind"] == "Deployment"]
    assert len(workloads) == 2 and all(violations(w, "restricted") == [] for w in workloads)


def test_every_example_workload_passes_restricted():
    """A user applies examples/ into a namespace that may enforce restricted (the e2e ones do:
    the quickstart's Deployment, refused there without its securityContext, kept the pool from
    ever getting a backend)."""
    import pathlib

    import yaml

    root = pathlib.Path(__file__).resolve().parents[2] / "examples"
    workloads = [doc for path in sorted(root.rglob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
                 if doc and doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Pod")]
    assert workloads
    assert {w["metadata"]["name"]: violations(w, "restricted") for w in workloads} == \
        {w["metadata"]["name"]: [] for w in workloads}
