"""A one-node cluster on this machine: what `make cluster-up` and the e2e fixture start.

Order: the network (bridge, fences), the control plane (listening on the bridge), containerd
with the images built from the repository's recipes (hack/imagebuild), kube-proxy and the
kubelet, then the addons (the default StorageClass, CoreDNS). Ready when the node is Ready
and CoreDNS answers. `stop()` deletes every pod through the API first (so the kubelet tears
their networks down through CNI), then stops the node and the control plane, and fails
when anything is left behind (a process, a container, a network namespace, a link, a chain).
"""

from __future__ import annotations

import fcntl
import logging
import os
import pathlib
import signal
import subprocess
import threading
import time

from . import addons
from .api import Api, ApiError
from .controlplane import ControlPlane, StartupError, processes_mentioning, service_network, wait_until
from .network import NodeNetwork, leftovers, remove_orphans
from .node import Node
from .storage import Provisioner

NODE_NAME = "hakeeper-node"
LOCK_PATH = pathlib.Path("/run/lock/hakeeper-localcluster.lock")
PODS_CGROUP = pathlib.Path("/sys/fs/cgroup/pids/kubepods")
log = logging.getLogger(__name__)


class TeardownError(RuntimeError):
    """The cluster stopped but left something behind; the message lists what."""


def images() -> dict[str, str]:
    """name → reference of the images the cluster itself runs (from hack/imagebuild's table)."""
    import imagebuild

    table = imagebuild.by_name()
    return {name: table[name].reference for name in ("pause", "coredns")}


class MachineLock:
    """One local cluster a machine (they share the bridge, the pod range and the chains): an
    exclusive flock(2) on `path`, held from start() to the end of stop() and so let go by the
    kernel when its holder is killed. The file names the holder's state directory, which tells
    the next holder whose processes a killed cluster left running."""

    def __init__(self, path: pathlib.Path = LOCK_PATH):
        self.path = path
        self._fd: int | None = None

    def acquire(self, state_dir: pathlib.Path) -> pathlib.Path | None:
        """Takes the lock for `state_dir`; returns the state directory of a holder that did not
        let go (killed), else None. Raises StartupError when another cluster holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = pathlib.Path(self.path).read_text().strip()
            os.close(fd)
            raise StartupError(f"another local cluster runs on this machine (state {holder or 'unknown'}); "
                               "stop it first (`make cluster-down`)") from None
        previous = os.read(fd, 4096).decode(errors="replace").strip()
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(state_dir).encode(), 0)
        self._fd = fd
        return pathlib.Path(previous) if previous else None

    def release(self) -> None:
        """Lets go, leaving the file empty: the cluster stopped in order."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def stop_orphans(previous: pathlib.Path | None) -> None:
    """Kills what a killed cluster in `previous` left running (its processes name their state
    directory; its pods' are in PODS_CGROUP) and removes its network, so that a session stopped mid-run does not fail the
    next one. Call only holding the MachineLock."""
    pids = set(processes_mentioning(str(previous).encode() + b"/")) if previous is not None else set()
    # the pods' own processes name no state directory; the kubelet (cgroupfs driver) put them here
    for procs in PODS_CGROUP.rglob("cgroup.procs") if PODS_CGROUP.is_dir() else ():
        pids.update(int(pid) for pid in procs.read_text().split())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    removed = remove_orphans()
    if removed:
        log.warning("removed what a killed local cluster left: %s", "; ".join(removed))


class LocalCluster:
    """One node on this machine, its state (PKI, etcd, containerd, kubelet, volumes, logs) in
    `state_dir`; `bin_dir` holds the binaries hack/build-tools.sh built. start() raises
    StartupError (naming the step and the end of the failing program's log); stop() raises
    TeardownError. `load_images=False` skips the image import (the node then pulls nothing)."""

    def __init__(self, state_dir: pathlib.Path, bin_dir: pathlib.Path, *, load_images: bool = True):
        self.state_dir = pathlib.Path(state_dir).resolve()
        self.bin_dir = pathlib.Path(bin_dir)
        self.network = NodeNetwork(service_network())
        self.control_plane = ControlPlane(self.state_dir, bin_dir, address=self.network.node_ip,
                                          service_network=self.network.service_network, node_name=NODE_NAME)
        self.node: Node | None = None
        self.api: Api | None = None
        self.load_images = load_images
        self.startup_seconds = 0.0
        self.timings: dict[str, float] = {}
        self._stop = threading.Event()
        self._lock = MachineLock()
        self._storage_thread: threading.Thread | None = None

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.control_plane.kubeconfig

    def _timed(self, what: str, step) -> None:
        started = time.monotonic()
        step()
        self.timings[what] = time.monotonic() - started

    def start(self, timeout: float = 180) -> None:
        started = time.monotonic()
        stop_orphans(self._lock.acquire(self.state_dir))
        try:
            self._start(timeout)
        except BaseException:
            self.stop(check=False)
            raise
        self.startup_seconds = time.monotonic() - started

    def _start(self, timeout: float) -> None:
        refs = images()
        self.network.up()
        self._timed("control plane", self.control_plane.start)
        pki = self.state_dir / "pki"
        self.api = Api(self.control_plane.server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key")
        self.node = Node(self.control_plane, self.network, self.bin_dir, name=NODE_NAME,
                         sandbox_image=refs["pause"])
        self._timed("containerd", self.node.start_runtime)
        if self.load_images:
            import imagebuild

            self._timed("images", lambda: imagebuild.load(str(self.node.containerd_socket)))
        self._timed("kubelet", self.node.start_kubelet_and_proxy)
        provisioner = Provisioner(self.api, self.state_dir / "volumes")
        provisioner.install()
        self._storage_thread = threading.Thread(target=self._provision, args=(provisioner,), daemon=True,
                                                name="local-volumes")
        self._storage_thread.start()
        self._timed("node Ready", lambda: self._wait(self._node_ready, timeout, f"node {NODE_NAME} Ready"))
        for doc in addons.coredns(refs["coredns"], self.network.dns_ip):
            self._create(doc)
        self._timed("CoreDNS ready", lambda: self._wait(self._dns_ready, timeout, "CoreDNS Ready"))

    def _provision(self, provisioner: Provisioner) -> None:
        while not self._stop.wait(0.5):
            try:
                provisioner.sync()
            except Exception:  # noqa: BLE001 - the API server restarting or stopping: try again at the next tick
                pass

    def _create(self, doc: dict) -> None:
        kind, meta = doc["kind"], doc["metadata"]
        group_version = doc["apiVersion"]
        base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
        plural = {"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
                  "ClusterRoleBinding": "clusterrolebindings", "ConfigMap": "configmaps",
                  "Deployment": "deployments", "Service": "services"}[kind]
        path = f"{base}/namespaces/{meta['namespace']}/{plural}" if "namespace" in meta else f"{base}/{plural}"
        try:
            self.api.post(path, doc)
        except ApiError as error:
            if error.status != 409:
                raise

    def _wait(self, predicate, timeout: float, what: str) -> None:
        wait_until(predicate, timeout, f"{what} (logs in {self.state_dir / 'logs'})",
                   self.control_plane.processes + (self.node.processes if self.node else []))

    def _node_ready(self) -> bool:
        node = self.api.get_or_none(f"/api/v1/nodes/{NODE_NAME}")
        conditions = ((node or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _dns_ready(self) -> bool:
        deployment = self.api.get_or_none("/apis/apps/v1/namespaces/kube-system/deployments/coredns")
        return bool(deployment and (deployment.get("status") or {}).get("readyReplicas"))

    # --- teardown --------------------------------------------------------------------------
    def _delete_pods(self, timeout: float = 90) -> None:
        for namespace in self.api.get("/api/v1/namespaces")["items"]:
            name = namespace["metadata"]["name"]
            self.api.request("DELETE", f"/api/v1/namespaces/{name}/pods",
                             {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 2})
        deadline = time.monotonic() + timeout
        while self.api.get("/api/v1/pods")["items"] and time.monotonic() < deadline:
            time.sleep(0.5)
        if self.node is not None:
            # the kubelet stops sandboxes (CNI DEL) just after the pods leave the API
            while self.node.running_tasks() and time.monotonic() < deadline:
                time.sleep(0.5)

    def stop(self, check: bool = True) -> None:
        """Stops everything; with `check`, raises TeardownError naming whatever was left behind."""
        self._stop.set()
        try:
            if self.api is not None and self.control_plane.processes:
                # no controller may recreate what the teardown deletes
                self.control_plane.stop_controllers()
                try:
                    self._delete_pods()
                except (ApiError, OSError):
                    pass
        finally:
            try:
                if self.node is not None:
                    self.node.stop()
            finally:
                try:
                    self.control_plane.stop()
                    self.network.down()
                finally:
                    self._lock.release()
        if check:
            left = leftovers() + self._own_processes()
            if left:
                raise TeardownError("the local cluster left behind: " + "; ".join(left))

    def _own_processes(self) -> list[str]:
        found = processes_mentioning(str(self.state_dir).encode() + b"/")
        commands = {pid: cmdline.replace(b"\0", b" ")[:120].decode(errors="replace") for pid, cmdline in found.items()}
        return [f"process {pid} {command}" for pid, command in commands.items()]

    def describe(self) -> str:
        """`kubectl get nodes -o wide` and `kubectl get pods -A -o wide`, as a user would look."""
        kubectl = self.bin_dir / "kubectl"
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        out = []
        for args in (["get", "nodes", "-o", "wide"], ["get", "pods", "-A", "-o", "wide"]):
            result = subprocess.run([str(kubectl), *args], capture_output=True, text=True, env=env, timeout=60)
            out.append(f"$ kubectl {' '.join(args)}\n{result.stdout}{result.stderr}")
        return "\n".join(out)


__all__ = ["LocalCluster", "TeardownError", "NODE_NAME"]
