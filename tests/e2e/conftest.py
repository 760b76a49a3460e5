"""The e2e tier runs against any kubeconfig.

- Here: a real one-node cluster (hack/localcluster: etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler, kubelet, kube-proxy built from the pinned module;
  Debian's containerd, runc and CNI plugins; CoreDNS), every pod a container from an image
  built from the repository's recipes (hack/imagebuild), started for the session.
- On a laptop: kind (`make e2e-kind`), with HAKEEPER_E2E_KUBECONFIG pointing at it.

Either way the chart is installed with helm and the operator under test is the chart's pod.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from ..conftest import CLUSTER_REPORT
from ..support.polling import poll
from ..support.tools import tools_bin

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "hakeeper-system"

pytestmark = pytest.mark.e2e
POD_SECURITY = "restricted"
"""The Pod Security Standards level every e2e namespace enforces unless its test is marked
`pod_security(level)` (engine lvs: privileged), the operator's included: whatever a test or
the operator creates there must pass it, and Pod Security Admission refuses what does not."""


LVS_NAMESPACES = "e2e-lvs-*"
"""The chart's lvs.allowedNamespaces here: a test marked `lvs_allowed` gets a namespace named so."""


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "pod_security(level): the Pod Security Standards level the test's "
                                       "namespace enforces, not restricted (privileged for engine lvs)")
    config.addinivalue_line("markers", "lvs_allowed: the test's namespace is one the chart's "
                                       "lvs.allowedNamespaces lets engine lvs run in")


def create_namespace(cluster: Cluster, name: str, level: str = POD_SECURITY) -> None:
    """Namespace `name` (or the one already there) enforcing Pod Security Standards `level`,
    in the version of the cluster's own API server."""
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
        "pod-security.kubernetes.io/enforce": level, "pod-security.kubernetes.io/enforce-version": "latest"}}})


class Cluster:
    """kubectl and helm against one cluster, and the node-level acts a test needs.

    `node` is the local node (hack/localcluster.node.Node) or None on another cluster, where
    HAKEEPER_E2E_NODE_EXEC (e.g. `docker exec {node}` on kind) reaches the node's shell.
    """

    def __init__(self, kubeconfig: pathlib.Path, bin_dir: pathlib.Path, node=None):
        self.kubeconfig = pathlib.Path(kubeconfig)
        self.bin_dir = bin_dir
        self.node = node
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
                    "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.bin_dir / "kubectl"), *args], input=input, capture_output=True,
                                text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.bin_dir / "helm"), *args], capture_output=True, text=True,
                                env=self.env, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
        return result

    def apply(self, doc: dict | str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        text = doc if isinstance(doc, str) else json.dumps(doc)
        return self.kubectl("apply", "-f", "-", *extra, input=text, check=check)

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def exec(self, namespace: str, pod: str, container: str, *command: str,
             check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        """`kubectl exec` of command in one container; `input` goes to its stdin."""
        stdin = ["-i"] if input is not None else []
        return self.kubectl("exec", "-n", namespace, pod, "-c", container, *stdin, "--", *command,
                            input=input, check=check)

    def container_id(self, namespace: str, pod: str, container: str) -> str:
        status = self.get("pod", pod, "-n", namespace)["status"]
        for entry in status.get("containerStatuses", []) + status.get("initContainerStatuses", []):
            if entry["name"] == container and entry.get("containerID") and "running" in entry.get("state", {}):
                return entry["containerID"].removeprefix("containerd://")
        raise AssertionError(f"container {container} of pod {namespace}/{pod} is not running: {status}")

    def crash_loop(self, namespace: str, pod: str, container: str, done: Callable[[], bool], seconds: float) -> bool:
        """SIGKILL the container each time the kubelet has (re)started it (its back-off grows from
        10 s), until `done()` or `seconds` have passed; whether `done()` came true."""
        deadline = time.monotonic() + seconds
        restarts = -1
        while time.monotonic() < deadline:
            if done():
                return True
            status = self.get("pod", pod, "-n", namespace)["status"]
            running = next((c for c in status.get("containerStatuses", []) if c["name"] == container), {})
            if "running" in running.get("state", {}) and running.get("restartCount", 0) > restarts:
                restarts = running.get("restartCount", 0)
                try:
                    self.kill_container(namespace, pod, container)
                except (AssertionError, LookupError):
                    pass  # it stopped between the look and the kill
            time.sleep(0.2)
        return False

    def node_shell(self, script: str, node: str, check: bool = True) -> subprocess.CompletedProcess:
        """sh -c script on the node (this machine for the local node)."""
        if self.node is not None:
            return subprocess.run(["sh", "-c", script], check=check, capture_output=True, text=True, timeout=60)
        node_exec = os.environ.get("HAKEEPER_E2E_NODE_EXEC")
        if not node_exec:
            raise AssertionError("set HAKEEPER_E2E_NODE_EXEC (e.g. 'docker exec {node}') to reach a node's shell")
        return subprocess.run([*shlex.split(node_exec.format(node=node)), "sh", "-c", script], check=check,
                              capture_output=True, text=True, timeout=60)

    @contextlib.contextmanager
    def dropped(self, node: str, sources: list[str], destination: str, port: int) -> Iterator[None]:
        """Packets from the pod IPs `sources` to destination:port dropped on `node` while the
        block runs (iptables FORWARD, which bridged pod traffic crosses with br_netfilter, as
        kube-proxy needs): a one-way cut, like a replica whose acknowledgements never arrive."""
        rules = [shlex.join(["FORWARD", "-s", source, "-d", destination, "-p", "tcp", "--dport", str(port),
                             "-j", "DROP"]) for source in sources]
        for rule in rules:
            self.node_shell(f"iptables -I {rule}", node)
        try:
            yield
        finally:
            for rule in rules:
                self.node_shell(f"iptables -D {rule}", node, check=False)

    def kill_container(self, namespace: str, pod: str, container: str) -> None:
        """SIGKILL to the container's main process, from the node (a process cannot SIGKILL its
        own namespace's PID 1): what an OOM kill or a crash does."""
        container_id = self.container_id(namespace, pod, container)
        if self.node is not None:
            os.kill(self.node.container_pid(container_id), 9)
            return
        node_exec = os.environ.get("HAKEEPER_E2E_NODE_EXEC")
        if not node_exec:
            raise AssertionError("set HAKEEPER_E2E_NODE_EXEC (e.g. 'docker exec {node}') to reach a node's shell")
        node = self.get("pod", pod, "-n", namespace)["spec"]["nodeName"]
        script = (f"kill -9 $(crictl inspect --output go-template --template '{{{{.info.pid}}}}' {container_id})")
        subprocess.run([*shlex.split(node_exec.format(node=node)), "sh", "-c", script], check=True, timeout=60)


def pytest_collection_modifyitems(session, config, items) -> None:
    # a test that judges the whole e2e run (the audit log's least-privilege table) runs after
    # its last test, not after the other tiers: the cluster would idle on through them; a test
    # that uninstalls the operator every e2e test shares runs after that one, last of all
    uninstall = [item for item in items if item.get_closest_marker("uninstalls_the_operator")]
    last = [item for item in items if item.get_closest_marker("after_everything") and item not in uninstall]
    rest = [item for item in items if item not in last and item not in uninstall]
    here = pathlib.Path(__file__).parent
    after = max((i + 1 for i, item in enumerate(rest) if here in pathlib.Path(item.path).parents), default=len(rest))
    items[:] = rest[:after] + last + uninstall + rest[after:]


@pytest.fixture(scope="session")
def cluster(pytestconfig) -> Iterator[Cluster]:
    bin_dir = tools_bin()
    external = os.environ.get("HAKEEPER_E2E_KUBECONFIG")
    if external:
        yield Cluster(pathlib.Path(external), bin_dir)
        return
    from localcluster.pytest_support import cluster_session

    with cluster_session(bin_dir) as local:
        timings = ", ".join(f"{what} {seconds:.1f}s" for what, seconds in local.timings.items())
        pytestconfig.stash[CLUSTER_REPORT] = f"local cluster up in {local.startup_seconds:.1f}s ({timings})"
        cluster = Cluster(local.kubeconfig, bin_dir, local.node)
        cluster.local = local
        yield cluster


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
    return cluster


@pytest.fixture(scope="session")
def installed(crds: Cluster, pytestconfig) -> Iterator[Cluster]:
    """The chart installed as a user installs it; its operator pod is the operator under test.

    HAKEEPER_E2E_OPERATOR=external: the chart is already installed (hack/e2e-kind.sh does it)."""
    if os.environ.get("HAKEEPER_E2E_OPERATOR") == "external":
        yield crds
        return
    # the chart's operator pod passes `restricted`: its namespace enforces it from the start
    create_namespace(crds, OPERATOR_NAMESPACE)
    # one replica: with two on one node the standby only waits (peering is tested on its own)
    crds.helm("upgrade", "--install", "hakeeper", str(ROOT / "charts/hakeeper"), "--namespace",
              OPERATOR_NAMESPACE, "--create-namespace", "--set", "replicaCount=1",
              "--set", f"lvs.allowedNamespaces={{{LVS_NAMESPACES}}}", "--wait", "--timeout", "5m")
    local = getattr(crds, "local", None)
    if local is not None:
        pytestconfig.stash[CLUSTER_REPORT] = pytestconfig.stash.get(CLUSTER_REPORT, "") + "\n" + local.describe()
    yield crds
    crds.helm("uninstall", "hakeeper", "--namespace", OPERATOR_NAMESPACE, "--wait", check=False)


def operator_pod(cluster: Cluster) -> dict:
    """The running operator pod of the chart (the one peering lets act when there are several)."""
    pods = cluster.get("pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=hakeeper")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
    assert running, f"no running operator pod: {[p['status'] for p in pods]}"
    return running[0]


def operator_metrics(cluster: Cluster) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples every running operator pod serves on /metrics, through the API server's pod
    proxy (no route to the pod network needed): sample name -> [(labels, value)]."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    pods = cluster.get("pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=hakeeper")["items"]
    for pod in pods:
        if pod["status"].get("phase") != "Running":
            continue
        text = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/"
                               f"{pod['metadata']['name']}:8081/proxy/metrics").stdout
        for family in text_string_to_metric_families(text):
            samples.setdefault(family.name, [])
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def metric(samples: dict[str, list[tuple[dict[str, str], float]]], sample: str, /, **labels: str) -> float | None:
    """The value of the one sample with these labels (among others), or None when there is none."""
    found = [v for sample_labels, v in samples.get(sample, []) if labels.items() <= sample_labels.items()]
    assert len(found) <= 1, f"{sample}{labels}: {len(found)} samples"
    return found[0] if found else None


@pytest.fixture(scope="session")
def operator(installed: Cluster) -> Iterator[Cluster]:
    """The chart's operator pod, Running and Ready; its log is printed when the session ends."""
    poll(lambda: installed.kubectl("rollout", "status", "deployment/hakeeper", "-n", OPERATOR_NAMESPACE,
                                   "--timeout=10s", check=False).returncode == 0,
         300, what="the operator Deployment to roll out")
    yield installed
    log = installed.kubectl("logs", "-n", OPERATOR_NAMESPACE, "deployment/hakeeper", "--all-containers",
                            "--tail=200", check=False).stdout
    import sys

    sys.stderr.write(f"\n--- operator log (last 200 lines) ---\n{log}\n")


@pytest.fixture
def namespace(crds: Cluster, request) -> Iterator[str]:
    """A new namespace e2e-<6 hex digits> (e2e-lvs-<6 hex digits> for a test marked
    `lvs_allowed`) enforcing POD_SECURITY, or the level of the test's `pod_security(level)`
    marker; deleted after the test."""
    allowed = request.node.get_closest_marker("lvs_allowed") is not None
    name = f"{LVS_NAMESPACES[:-1] if allowed else 'e2e-'}{secrets.token_hex(3)}"
    marker = request.node.get_closest_marker("pod_security")
    create_namespace(crds, name, marker.args[0] if marker else POD_SECURITY)
    poll(lambda: crds.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
         60, what=f"the default ServiceAccount in {name}")
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def exporter(cluster):
    """A metrics exporter on this machine whose values a test sets, for Prometheus in the cluster
    to scrape (DegradationPolicy triggers); one per test module."""
    from ..integration.prometheus_support import Exporter
    from .monitoring_support import host_ip

    exp = Exporter(host_ip(cluster))
    yield exp
    exp.close()


FLAVORS = ["mariadb", "mysql"]
"""The ReplicatedDatabase flavors every database test runs with."""


def database_manifest(name: str, flavor: str) -> dict:
    """A 3-member ReplicatedDatabase; a short anti-flap window: tests fail over twice in a row on purpose."""
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "ReplicatedDatabase", "metadata": {"name": name},
            "spec": {"flavor": flavor, "replicas": 3, "storage": {"size": "1Gi"},
                     "failover": {"probeInterval": "1s", "failureThreshold": 3, "antiFlapWindow": "5s"}}}


@pytest.fixture(params=FLAVORS)
def database(request, operator, namespace):
    """A Ready database `db` of each flavor in the test's namespace (operator.flavor says which)."""
    operator.apply(database_manifest("db", request.param), "-n", namespace)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=300s", "-n", namespace, "rdb/db", timeout=320)
    operator.flavor = request.param
    return operator
