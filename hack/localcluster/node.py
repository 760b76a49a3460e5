"""One real Kubernetes node: containerd + runc + CNI (Debian's), kubelet and kube-proxy (built
from the pinned k8s.io/kubernetes module), every file and socket under the cluster's state dir.

Settings this machine needs (../shared/notes/real-node-and-vm.md): containerd's CRI option
`restrict_oom_score_adj` (the sandbox forbids lowering oom_score_adj, so without it every pod
sandbox fails), kubelet `failCgroupV1: false` and the cgroupfs driver (cgroup v1, PID 1 is not
systemd), `localStorageCapacityIsolation: false` (its filesystem stats fail here).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time

import yaml

from .controlplane import ControlPlane, Process, free_port, http_ok, processes_mentioning, spawn, wait_until
from .network import NodeNetwork

CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
CONTAINERD_NAMESPACE = "k8s.io"  # the CRI plugin's namespace


class Node:
    """containerd, kubelet and kube-proxy for `control_plane`, on `network`.

    `sandbox_image` is the pause image's reference; it must be imported before the first pod.
    """

    def __init__(self, control_plane: ControlPlane, network: NodeNetwork, bin_dir: pathlib.Path, *,
                 name: str, sandbox_image: str):
        self.control_plane = control_plane
        self.network = network
        self.bin = pathlib.Path(bin_dir)
        self.name = name
        self.sandbox_image = sandbox_image
        self.dir = control_plane.dir / "node"
        self.logs = control_plane.dir / "logs"
        self.processes: list[Process] = []

    # --- paths ---------------------------------------------------------------------------
    @property
    def containerd_socket(self) -> pathlib.Path:
        return self.dir / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> pathlib.Path:
        return self.dir / "kubelet"

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Runs `ctr` against this node's containerd, in the CRI namespace."""
        result = subprocess.run(["ctr", "--address", str(self.containerd_socket), "-n", CONTAINERD_NAMESPACE,
                                 *args], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    # --- configuration (pure) ------------------------------------------------------------
    def containerd_config(self) -> str:
        base = self.dir / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{base / 'root'}"
state = "{base / 'state'}"
# no NRI, no tracing, no other snapshotters: only what the CRI plugin uses here
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.containerd_socket}"

[{cri}]
  sandbox_image = "{self.sandbox_image}"
  # this sandbox forbids lowering oom_score_adj; without this every sandbox fails to start
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{self.dir / 'cni' / 'net.d'}"
"""

    def kubelet_config(self, port: int, healthz_port: int) -> dict:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": self.network.node_ip, "port": port, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.control_plane.pki["ca"])}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs", "failSwapOn": False, "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "podCIDR": str(self.network.pod_subnet),
            "clusterDNS": [self.network.dns_ip], "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "enforceNodeAllocatable": [], "localStorageCapacityIsolation": False,
            "podLogsDir": str(self.dir / "pod-logs"),
            # a test node never evicts for disk, nor garbage-collects the images built here
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "maxPods": 200,
            # ConfigMap and Secret volumes refresh within seconds, not a minute
            "syncFrequency": "10s",
        }

    def kube_proxy_config(self, kubeconfig: pathlib.Path) -> dict:
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "iptables", "clusterCIDR": "10.244.0.0/16", "hostnameOverride": self.name,
            "bindAddress": self.network.node_ip,
            "healthzBindAddress": f"127.0.0.1:{free_port()}", "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "nodePortAddresses": [f"{self.network.node_ip}/32"],
            # leave the machine's conntrack sysctls alone
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"minSyncPeriod": "0s", "syncPeriod": "30s"},
            "clientConnection": {"kubeconfig": str(kubeconfig)},
        }

    # --- lifecycle -----------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> Process:
        process = spawn(self.logs, name, args)
        self.processes.append(process)
        return process

    def start_runtime(self, timeout: float = 60) -> None:
        """Starts containerd; images can be imported once this returns."""
        (self.dir / "containerd").mkdir(parents=True, exist_ok=True)
        self.network.write_cni_config(self.dir / "cni" / "net.d", self.dir / "cni" / "ipam")
        config = self.dir / "containerd" / "config.toml"
        config.write_text(self.containerd_config())
        self._spawn("containerd", ["containerd", "--config", str(config), "--log-level", "warn"])
        self._wait(lambda: self.ctr("version", check=False).returncode == 0, timeout, "containerd to answer")

    def start_kubelet_and_proxy(self, timeout: float = 60) -> None:
        """Starts kube-proxy and the kubelet; returns once the kubelet answers /healthz."""
        proxy_config = self.dir / "kube-proxy.yaml"
        proxy_config.write_text(yaml.safe_dump(self.kube_proxy_config(
            self.control_plane.component_kubeconfig("kube-proxy"))))
        self._spawn("kube-proxy", [str(self.bin / "kube-proxy"), "--config", str(proxy_config), "-v", "0"])
        healthz = free_port()
        config = self.dir / "kubelet.yaml"
        config.write_text(yaml.safe_dump(self.kubelet_config(free_port(self.network.node_ip), healthz)))
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        self._spawn("kubelet", [
            str(self.bin / "kubelet"), "--config", str(config),
            "--kubeconfig", str(self.control_plane.component_kubeconfig("kubelet")),
            "--root-dir", str(self.kubelet_root), "--hostname-override", self.name,
            "--node-ip", self.network.node_ip, "-v", "0",
        ])
        self._wait(lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"), timeout, "the kubelet's /healthz")

    def _wait(self, predicate, timeout: float, what: str) -> None:
        wait_until(predicate, timeout, what, self.processes)

    def running_tasks(self) -> list[str]:
        """IDs of containers (pod sandboxes included) containerd still runs."""
        if not self.containerd_socket.exists():
            return []
        out = self.ctr("tasks", "ls", "-q", check=False).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def volume_path(self, pod_uid: str, volume: str) -> pathlib.Path:
        """Where the kubelet keeps a pod's emptyDir `volume` on this machine (a tmpfs for medium Memory)."""
        return self.kubelet_root / "pods" / pod_uid / "volumes" / "kubernetes.io~empty-dir" / volume

    def container_pid(self, container_id: str) -> int:
        """The host PID of a container's first process; container_id as in a pod's
        containerStatuses[].containerID (with or without the `containerd://` prefix)."""
        container_id = container_id.removeprefix("containerd://")
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == container_id:
                return int(fields[1])
        raise LookupError(f"container {container_id} has no running task")

    def stop(self) -> None:
        """Stops kubelet, kube-proxy (and removes its chains), every container left, containerd.

        Pods should be deleted through the API first (cluster.py does), so that the kubelet
        tears their networks down through CNI; what is left is killed here.
        """
        by_name = {p.name: p for p in self.processes}
        try:
            for name in ("kubelet", "kube-proxy"):
                if name in by_name:
                    by_name[name].stop()
            if (self.dir / "kube-proxy.yaml").exists():
                subprocess.run([str(self.bin / "kube-proxy"), "--cleanup"], capture_output=True, timeout=60)
            if "containerd" in by_name and by_name["containerd"].alive():
                self._remove_containers()
        finally:
            if "containerd" in by_name:
                by_name["containerd"].stop()
            self.processes.clear()
            self._kill_shims()
            self._unmount_all()

    def _remove_containers(self) -> None:
        for task in self.running_tasks():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 15
        while self.running_tasks() and time.monotonic() < deadline:
            time.sleep(0.2)
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "delete", "-f", task, check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def _kill_shims(self) -> None:
        # a shim outlives containerd by design; ours are those started with our socket
        for pid in processes_mentioning(b"containerd-shim", str(self.containerd_socket).encode()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _unmount_all(self) -> None:
        # deepest first: overlay rootfs, tmpfs of Secret volumes, bind mounts of hostPath volumes
        prefix = str(self.dir) + "/"
        mounts = [line.split()[1] for line in pathlib.Path("/proc/self/mounts").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
