"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler as local processes.

Started as kubeadm would configure them, minus the static pods: one CA, a client certificate
per component, Node and RBAC authorization with the NodeRestriction admission plugin, the API
server listening on the node's bridge address so that pods reach it through the `kubernetes`
Service. The node itself (containerd, kubelet, kube-proxy) is node.py.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import yaml

from . import certs


def service_network() -> ipaddress.IPv4Network:
    """A /24 of its own for each cluster, so a ClusterIP of an earlier cluster never meets a new one."""
    return ipaddress.ip_network(f"10.96.{secrets.randbelow(256)}.0/24")


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def kubeconfig(server: str, ca: pathlib.Path, *, user: str, cert: pathlib.Path | None = None,
               key: pathlib.Path | None = None, token: str | None = None) -> str:
    credentials: dict = {"token": token} if token else {
        "client-certificate": str(cert), "client-key": str(key)}
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "hakeeper-local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "hakeeper-local", "context": {"cluster": "hakeeper-local", "user": user}}],
        "current-context": "hakeeper-local",
    })


@dataclasses.dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: pathlib.Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


class StartupError(RuntimeError):
    pass


def wait_until(predicate, timeout: float, what: str, processes: list[Process]) -> None:
    """Polls predicate() until it is truthy; raises StartupError at the deadline (seconds) or as
    soon as one of `processes` has exited, with the end of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if not process.alive():
                raise StartupError(f"{process.name} exited while waiting for {what}:\n{process.tail()}")
        if predicate():
            return
        time.sleep(0.2)
    raise StartupError(f"timed out after {timeout}s waiting for {what}")


def processes_mentioning(*needles: bytes) -> dict[int, bytes]:
    """{pid: command line (NUL-separated)} of this machine's processes whose command line holds
    every one of `needles`, this process excepted."""
    found = {}
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:  # it exited meanwhile
            continue
        if all(needle in cmdline for needle in needles):
            found[int(proc.name)] = cmdline
    return found


def spawn(log_dir: pathlib.Path, name: str, args: list[str], env: dict | None = None) -> Process:
    """Starts `args` in a session of its own (so a stop reaches its children), logging to log_dir/name.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env=env)
    return Process(name, popen, log)


class ControlPlane:
    """Starts in a state directory; everything it writes (PKI, etcd data, logs) stays there.

    `address` is where the API server listens and what it advertises (the node's bridge IP);
    `service_network` is the Service range whose first address is the `kubernetes` Service.
    """

    def __init__(self, state_dir: pathlib.Path, bin_dir: pathlib.Path, *, address: str,
                 service_network: ipaddress.IPv4Network, node_name: str):
        self.dir = pathlib.Path(state_dir).resolve()
        self.bin = pathlib.Path(bin_dir)
        self.processes: list[Process] = []
        self.address = address
        self.node_name = node_name
        self.service_network = service_network
        self.api_port = 0
        self.server = ""
        self.pki: dict[str, pathlib.Path] = {}

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.dir / "kubeconfig"

    @property
    def ca_file(self) -> pathlib.Path:
        return self.dir / "pki" / "ca.crt"

    @property
    def audit_log(self) -> pathlib.Path:
        """The API server's audit log (JSON lines, audit.k8s.io/v1 Events at Metadata level) of
        every request a ServiceAccount outside kube-system made: what the e2e suite's
        least-privilege test reads."""
        return self.dir / "logs" / "audit.log"

    def _audit_policy(self) -> pathlib.Path:
        path = self.dir / "audit-policy.yaml"
        # kube-system's controllers act as ServiceAccounts too (--use-service-account-credentials);
        # they are Kubernetes' own and would only fill the log
        path.write_text(yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
            "rules": [{"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
                      {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
                      {"level": "None"}]}))
        return path

    def _spawn(self, name: str, args: list[str]) -> Process:
        process = spawn(self.dir / "logs", name, args)
        self.processes.append(process)
        return process

    def _pki(self) -> dict[str, pathlib.Path]:
        pki = self.dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca = certs.Authority.create()
        files = {"ca": certs.write(pki / "ca.crt", ca.cert_pem()),
                 "ca_key": certs.write(pki / "ca.key", certs.pem_key(ca.key))}
        names = ("127.0.0.1", "localhost", self.address, str(next(self.service_network.hosts())), "kubernetes",
                 "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
        for name, cn, org, server in (
            ("apiserver", "kube-apiserver", None, names),
            ("admin", "hakeeper-admin", "system:masters", ()),
            ("controller-manager", "system:kube-controller-manager", None, ()),
            ("scheduler", "system:kube-scheduler", None, ()),
            # the API server's client identity towards kubelets (logs, exec, port-forward)
            ("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", ()),
            # the Node authorizer knows a kubelet by this name and group
            ("kubelet", f"system:node:{self.node_name}", "system:nodes", ()),
            ("kube-proxy", "system:kube-proxy", None, ()),
        ):
            cert, key = ca.issue(cn, org, server_names=server, client=not server)
            files[name] = certs.write(pki / f"{name}.crt", cert)
            files[f"{name}_key"] = certs.write(pki / f"{name}.key", key)
        private, public = certs.service_account_keys()
        files["sa_key"] = certs.write(pki / "sa.key", private)
        files["sa_pub"] = certs.write(pki / "sa.pub", public)
        return files

    def component_kubeconfig(self, component: str) -> pathlib.Path:
        """A kubeconfig file for one of the PKI's client identities (e.g. "kubelet", "kube-proxy")."""
        path = self.dir / f"{component}.kubeconfig"
        path.write_text(kubeconfig(self.server, self.pki["ca"], user=component, cert=self.pki[component],
                                   key=self.pki[f"{component}_key"]))
        path.chmod(0o600)
        return path

    def start(self, timeout: float = 90) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        pki = self.pki = self._pki()
        self.api_port = free_port(self.address)
        self.server = f"https://{self.address}:{self.api_port}"
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [
            str(self.bin / "etcd"), "--name", "local", "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"local=http://127.0.0.1:{peer_port}",
            # a test cluster's data is thrown away: durability costs time and buys nothing
            "--unsafe-no-fsync=true", "--quota-backend-bytes", str(2 * 1024**3),
            "--log-level", "warn",
        ])
        self._wait(lambda: http_ok(f"{etcd_url}/health"), timeout, "etcd /health")
        self._spawn("kube-apiserver", [
            str(self.bin / "kube-apiserver"),
            "--etcd-servers", etcd_url, "--bind-address", self.address, "--advertise-address", self.address,
            "--secure-port", str(self.api_port),
            "--tls-cert-file", str(pki["apiserver"]), "--tls-private-key-file", str(pki["apiserver_key"]),
            "--client-ca-file", str(pki["ca"]),
            "--kubelet-client-certificate", str(pki["apiserver-kubelet-client"]),
            "--kubelet-client-key", str(pki["apiserver-kubelet-client_key"]),
            "--kubelet-preferred-address-types", "InternalIP",
            "--authorization-mode", "Node,RBAC",
            # OwnerReferencesPermissionEnforcement: an owner reference that blocks the owner's
            # deletion needs the right to update the owner's finalizers, as on clusters that
            # enable it (OpenShift does); the chart's finalizers rule is there for it
            "--enable-admission-plugins", "NodeRestriction,OwnerReferencesPermissionEnforcement",
            "--audit-policy-file", str(self._audit_policy()), "--audit-log-path", str(self.audit_log),
            "--audit-log-format", "json", "--audit-log-maxsize", "0",
            "--allow-privileged=true",
            "--service-cluster-ip-range", str(self.service_network),
            "--service-account-issuer", f"{self.server}/",
            "--service-account-key-file", str(pki["sa_pub"]),
            "--service-account-signing-key-file", str(pki["sa_key"]),
            "--profiling=false", "-v", "0",
        ])
        self.kubeconfig.write_text(kubeconfig(self.server, pki["ca"], user="admin", cert=pki["admin"],
                                              key=pki["admin_key"]))
        self.kubeconfig.chmod(0o600)
        self._wait(self._ready, timeout, "kube-apiserver /readyz")
        self._spawn("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"), *self._controller_args("controller-manager"),
            "--use-service-account-credentials=true",
            "--service-account-private-key-file", str(pki["sa_key"]), "--root-ca-file", str(pki["ca"]),
            "--service-cluster-ip-range", str(self.service_network),
            # no cloud, no node IPAM (the node's pod range is in its kubelet configuration)
            "--controllers", "*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            "--concurrent-deployment-syncs", "5", "-v", "0",
        ])
        self._spawn("kube-scheduler", [
            str(self.bin / "kube-scheduler"), *self._controller_args("scheduler"), "-v", "0",
        ])
        self._wait(lambda: self._has_default_service_account(), timeout,
                   "kube-controller-manager to create the default ServiceAccount")

    def _controller_args(self, component: str) -> list[str]:
        """What kube-controller-manager and kube-scheduler share here: their PKI identity for
        the API server and for delegated authn/authz, a local serving port, no leader election
        (one of each)."""
        config = str(self.component_kubeconfig(component))
        return ["--kubeconfig", config, "--authentication-kubeconfig", config, "--authorization-kubeconfig", config,
                "--bind-address", "127.0.0.1", "--secure-port", str(free_port()), "--leader-elect=false"]

    def _wait(self, predicate, timeout: float, what: str) -> None:
        wait_until(predicate, timeout, what, self.processes)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        pki = self.dir / "pki"
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def _ready(self) -> bool:
        return http_ok(f"{self.server}/readyz", self.ssl_context())

    def _has_default_service_account(self) -> bool:
        return http_ok(f"{self.server}/api/v1/namespaces/default/serviceaccounts/default", self.ssl_context())

    def stop_controllers(self) -> None:
        """Stops the controller manager and the scheduler: nothing recreates or places pods after."""
        for process in self.processes:
            if process.name in ("kube-controller-manager", "kube-scheduler"):
                process.stop()

    def stop(self) -> None:
        # reverse order: the scheduler and controller manager first, etcd last
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    """Whether GET url answers 200 within 2 s (any error: False)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
