"""Real keepalived (Debian's) doing VRRP between network namespaces: a small test network.

    bridge namespace  <hk-XXXX-br>:  br0 ── v0 ═╗ ... v1 ═╗
    node namespaces   <hk-XXXX-n0>:  eth0 (10.R.S.1/24) ═╝   <hk-XXXX-n1>: eth0 (10.R.S.2/24)

Each node runs `keepalived -n -l -D -P` (no fork, log to the console, VRRP only) with the file
the agent would write for that node. -P matters on this machine: the kernel has no IPVS, so
keepalived's checker process, which programs the virtual servers, could not start; the
VRRP process does not need IPVS and ignores the virtual_server sections. So the test runs the
full rendered configuration; what it cannot show is IPVS forwarding itself.

Used by tests/integration/test_lvs_vrrp.py and bench/vrrp/run.py. Needs root (namespaces).
"""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence

from hakeeper.api.configmaps import keepalived as configmap
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.lvs import config

from ..support.netns import add_namespace, delete_namespace, ip, ipv4_addresses
from ..support.polling import poll

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
PASSWORD = "vrrp-pw"
INTERFACE = "eth0"


def takeover_bound(advert: int, priority: int) -> float:
    """RFC 5798's Master_Down_Interval: 3 advertisements plus the skew (256 - priority)/256 of one."""
    return 3 * advert + (256 - priority) / 256 * advert


class _Opened:
    """A context manager over _open() and close(): close() runs on exit, and also when _open()
    fails half-way (close() must undo whatever part of _open() was done)."""

    def _open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Network(_Opened):
    """A bridge namespace and `size` node namespaces, each with eth0 on the bridge."""

    def __init__(self, size: int) -> None:
        suffix = secrets.token_hex(3)
        self.prefix = f"hk-{suffix}"
        self.bridge = f"{self.prefix}-br"
        self.nodes = [f"{self.prefix}-n{i}" for i in range(size)]
        # a /24 of 10.0.0.0/8 picked from the suffix, so that parallel runs do not meet
        net = int(suffix[:4], 16) % 250 + 1, int(suffix[4:], 16) % 250 + 1
        self.addresses = [f"10.{net[0]}.{net[1]}.{i + 1}" for i in range(size)]
        self.vip = f"10.{net[0]}.{net[1]}.200"
        self.created: list[str] = []

    def _open(self) -> None:
        add_namespace(self.bridge)
        self.created.append(self.bridge)
        ip("link", "add", "br0", "type", "bridge", netns=self.bridge)
        ip("link", "set", "br0", "up", netns=self.bridge)
        for i, (node, address) in enumerate(zip(self.nodes, self.addresses)):
            add_namespace(node)
            self.created.append(node)
            ip("link", "add", f"v{i}", "type", "veth", "peer", "name", INTERFACE, "netns", node, netns=self.bridge)
            ip("link", "set", f"v{i}", "master", "br0", netns=self.bridge)
            ip("link", "set", f"v{i}", "up", netns=self.bridge)
            ip("link", "set", "lo", "up", netns=node)
            ip("addr", "add", f"{address}/24", "dev", INTERFACE, netns=node)
            ip("link", "set", INTERFACE, "up", netns=node)

    def close(self) -> None:
        # deleting a namespace deletes its end of each veth, and with it the other end
        for name in reversed(self.created):
            delete_namespace(name)
        self.created.clear()

    def addresses_on(self, node: str) -> list[str]:
        return ipv4_addresses(INTERFACE, node)

    def has_vip(self, node: str) -> bool:
        return self.vip in self.addresses_on(node)

    def vip_holders(self) -> list[str]:
        return [node for node in self.nodes if self.has_vip(node)]


def pool_spec(net: Network, *, preempt: bool, advert: int = 1, priority: int = 100) -> LoadBalancerPoolSpec:
    return LoadBalancerPoolSpec.model_validate({
        "engine": "lvs",
        "backends": {"selector": {"matchLabels": {"app": "web"}}, "port": 8080},
        "healthCheck": {"type": "tcp"},
        "lvs": {"virtualIP": net.vip, "port": 80, "vrrp": {
            "virtualRouterID": 42, "priority": priority, "advertInterval": advert, "interface": INTERFACE,
            "unicastPeers": net.addresses, "authSecretRef": {"name": "vrrp", "key": "password"},
            "preempt": preempt}},
    })


def rendered_for(net: Network, spec: LoadBalancerPoolSpec) -> config.Rendered:
    backends = [Backend("web-0", "10.250.0.10", 8080, 2), Backend("web-1", "10.250.0.11", 8080, 1, "draining")]
    return config.render("web", spec, backends, nodes=net.nodes)


class Keepalived:
    """One keepalived (VRRP only) in a node's namespace; killed with its whole process group."""

    def __init__(self, net: Network, node: str, directory: pathlib.Path) -> None:
        self.net = net
        self.node = node
        self.directory = directory
        self.conf = directory / f"{node}.conf"
        self.pid_file = directory / f"{node}.pid"
        self.log = directory / f"{node}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def write(self, rendered: config.Rendered, password: str = PASSWORD) -> str:
        """The file as the agent writes it on this node: its priority, the Secret's password."""
        text = rendered.files[configmap.CONFIG_FILE]
        priority = configmap.node_priority(rendered.files, self.node, configmap.base_priority(text))
        self.conf.write_text(configmap.for_node(text, priority, password))
        return self.conf.read_text()

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"=== start {self.starts}\n".encode())
            log.flush()
            # `ip netns exec` execs keepalived: the Popen pid is keepalived's parent process
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.node, KEEPALIVED, "-n", "-l", "-D", "-P", "-f", str(self.conf),
                 "-p", str(self.pid_file), "-r", str(self.directory / f"{self.node}.vrrp.pid")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_since_start(self) -> str:
        text = self.log.read_text(errors="replace")
        return text.rsplit(f"=== start {self.starts}\n", 1)[-1]

    def wait_state(self, state: str, timeout: float) -> None:
        """Until keepalived logs that it entered `state` (BACKUP, MASTER) since its last start."""
        poll(lambda: f"Entering {state} STATE" in self.log_since_start() or not self.running, timeout,
             what=f"{self.node} entering {state}")
        assert self.running, f"keepalived on {self.node} exited:\n{self.log_since_start()}"

    def kill(self) -> None:
        """kill -9 of the parent and its VRRP child at once: what a crashed node looks like to
        its peers (no priority-0 advertisement, no VIP removal)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        # the VRRP child is in the same group; wait until it is gone too
        poll(lambda: not _group_alive(self.proc.pid), 10, what=f"keepalived group of {self.node} to exit")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None and _group_alive(self.proc.pid):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if _group_alive(self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Cluster(_Opened):
    """A network plus one keepalived per node; everything goes on close."""

    def __init__(self, directory: pathlib.Path, size: int = 2, *, preempt: bool, advert: int = 1) -> None:
        self.net = Network(size)
        self.directory = directory
        self.spec = pool_spec(self.net, preempt=preempt, advert=advert)
        self.rendered = rendered_for(self.net, self.spec)
        self.advert = advert
        self.members: list[Keepalived] = []

    def _open(self) -> None:
        self.net.__enter__()
        self.members = [Keepalived(self.net, node, self.directory) for node in self.net.nodes]
        for member in self.members:
            member.write(self.rendered)

    def close(self) -> None:
        for member in self.members:
            member.stop()
        self.net.close()

    def priority(self, index: int) -> int:
        return configmap.node_priority(self.rendered.files, self.net.nodes[index], self.spec.lvs.vrrp.priority)

    def bound(self, index: int) -> float:
        """How long member `index` may take to become master once the master is silent."""
        return takeover_bound(self.advert, self.priority(index))

    def start_in_order(self, order: Sequence[int]) -> None:
        """Start the first as master (it wins the first election alone), then the others as backups."""
        first, *rest = order
        self.members[first].start()
        self.members[first].wait_state("MASTER", self.bound(first) + 5)
        poll(lambda: self.net.vip_holders() == [self.net.nodes[first]], 5, what="VIP on the first node")
        for index in rest:
            self.members[index].start()
            self.members[index].wait_state("BACKUP", 5)

    def takeover(self, killed: int, heir: int, timeout: float) -> float:
        """kill -9 the master `killed`; seconds until the VIP is on `heir`."""
        start = time.monotonic()
        self.members[killed].kill()
        poll(lambda: self.net.has_vip(self.net.nodes[heir]), timeout, interval=0.01,
             what=f"VIP on {self.net.nodes[heir]}")
        return time.monotonic() - start

    def restart(self, index: int) -> None:
        """Start a killed member again. A real crashed node comes back without the VIP; here
        the dead keepalived left it on eth0, and the new one removes it as it starts."""
        self.members[index].start()
