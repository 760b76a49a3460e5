"""The e2e tier runs against any kubeconfig.

- Here: a real local control plane (etcd, kube-apiserver, kube-controller-manager built
  from the Go module proxy) plus the test node agent, started for the session.
- On a laptop: kind, with HAKEEPER_E2E_KUBECONFIG pointing at it and, when the operator
  was installed in the cluster by helm, HAKEEPER_E2E_OPERATOR=external.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "hakeeper-system"
AGENT_IMAGE = os.environ.get("HAKEEPER_E2E_AGENT_IMAGE", "registry.local/hakeeper/hakeeper:e2e")
pytestmark = pytest.mark.e2e


def tools_bin() -> pathlib.Path:
    if os.environ.get("HAKEEPER_TOOLS_BIN"):
        return pathlib.Path(os.environ["HAKEEPER_TOOLS_BIN"])
    out = subprocess.run(["bash", str(ROOT / "hack/build-tools.sh")], check=True, capture_output=True, text=True)
    return pathlib.Path(out.stdout.strip().splitlines()[-1])


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Polls until predicate() returns something truthy; fails with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Cluster:
    def __init__(self, kubeconfig: pathlib.Path, bin_dir: pathlib.Path, agent=None):
        self.kubeconfig = pathlib.Path(kubeconfig)
        self.bin_dir = bin_dir
        self.agent = agent
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
                    "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.bin_dir / "kubectl"), *args], input=input, capture_output=True,
                                text=True, env=self.env, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.bin_dir / "helm"), *args], capture_output=True, text=True,
                                env=self.env, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
        return result

    def apply(self, doc: dict | str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        text = doc if isinstance(doc, str) else json.dumps(doc)
        return self.kubectl("apply", "-f", "-", *extra, input=text, check=check)

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    bin_dir = tools_bin()
    external = os.environ.get("HAKEEPER_E2E_KUBECONFIG")
    if external:
        yield Cluster(pathlib.Path(external), bin_dir)
        return
    from localcluster.pytest_support import cluster_session

    with cluster_session(bin_dir) as local:
        yield Cluster(local.kubeconfig, bin_dir, local.agent)


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
    return cluster


@pytest.fixture(scope="session")
def installed(crds: Cluster) -> Iterator[Cluster]:
    """The chart installed for real, as a user would: its ServiceAccount, RBAC, Deployment."""
    if os.environ.get("HAKEEPER_E2E_OPERATOR") == "external":
        yield crds
        return
    # The operator under test is the `operator` fixture's process, running as this release's
    # ServiceAccount. The chart's own pod must not run beside it: the local node agent runs any
    # image named "hakeeper", and a second operator in the same peering would take over (its
    # pod-name priority beats the process's) or, crash-looping, pause the process.
    crds.helm("upgrade", "--install", "hakeeper", str(ROOT / "charts/hakeeper"), "--namespace",
              OPERATOR_NAMESPACE, "--create-namespace", "--set", "replicaCount=1",
              "--set", "image.repository=registry.local/hakeeper/chart-pod-not-run-locally")
    yield crds
    crds.helm("uninstall", "hakeeper", "--namespace", OPERATOR_NAMESPACE, check=False)


def _service_account_kubeconfig(cluster: Cluster, path: pathlib.Path) -> pathlib.Path:
    """A kubeconfig that acts as the chart's ServiceAccount, so the operator runs with exactly its RBAC."""
    token = cluster.kubectl("create", "token", "hakeeper", "-n", OPERATOR_NAMESPACE, "--duration=2h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [server],
        "users": [{"name": "hakeeper", "user": {"token": token}}],
        "contexts": [{"name": "hakeeper", "context": {"cluster": server["name"], "user": "hakeeper"}}],
        "current-context": "hakeeper",
    }))
    return path


@pytest.fixture(scope="session")
def operator(installed: Cluster, tmp_path_factory) -> Iterator[Cluster]:
    """`hakeeper run` as a process, authenticated as the chart's ServiceAccount."""
    if os.environ.get("HAKEEPER_E2E_OPERATOR") == "external":
        yield installed
        return
    workdir = tmp_path_factory.mktemp("operator")
    kubeconfig = _service_account_kubeconfig(installed, workdir / "kubeconfig")
    installed.apply({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "hakeeper"}})
    port = 18080 + secrets.randbelow(1000)
    log = open(workdir / "operator.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hakeeper", "run", "--all-namespaces", "--peering", "hakeeper",
         "--liveness", f"http://127.0.0.1:{port}/healthz"],
        # the balancer pods' agent sidecar runs this package: the local node agent knows the image by its name
        env={**installed.env, "KUBECONFIG": str(kubeconfig), "HAKEEPER_AGENT_IMAGE": AGENT_IMAGE},
        stdout=log, stderr=subprocess.STDOUT)
    try:
        import urllib.request

        def alive():
            if proc.poll() is not None:
                raise AssertionError(f"operator exited: {(workdir / 'operator.log').read_text()[-3000:]}")
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
            except OSError:
                return False

        wait_for(alive, 60, "the operator's liveness endpoint")
        installed.operator_log = workdir / "operator.log"
        yield installed
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        # leave the operator's log where a failing run can be read
        sys.stderr.write(f"\noperator log: {workdir / 'operator.log'}\n")


@pytest.fixture
def namespace(crds: Cluster) -> Iterator[str]:
    name = f"e2e-{secrets.token_hex(3)}"
    crds.kubectl("create", "namespace", name)
    wait_for(lambda: crds.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
             60, f"the default ServiceAccount in {name}")
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)
