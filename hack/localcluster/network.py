"""The node's network: a bridge for the pods, a fenced service range, and their teardown.

Addresses (one node, one cluster on a machine at a time):
- the pod range (POD_CIDR, /16) is fenced with an unreachable route; the node's pod subnet
  (/24) is the bridge `hakeeper0`, whose first address is the node's own IP: the API server
  and the kubelet listen there, so pods reach them (127.0.0.1 is not theirs);
- the service range is routed onto the bridge, where a packet that kube-proxy did not
  rewrite finds no neighbour and fails. An unreachable route would not do: a local
  process's connect() looks its route up before the nat OUTPUT hook rewrites a ClusterIP,
  so it would fail before kube-proxy's rules ever saw the packet. (This kernel has no dummy
  device type, which would drop such packets sooner.)
Nothing addressed to either range leaves the machine.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import pathlib
import shlex
import subprocess

POD_CIDR = ipaddress.ip_network(os.environ.get("HAKEEPER_POD_CIDR", "10.244.0.0/16"))
BRIDGE = "hakeeper0"
# sysctls kube-proxy and the bridge need: bridged pod traffic must cross iptables (a pod
# reaching a Service that picks a pod on the same bridge), and the node forwards.
SYSCTLS = {"net/bridge/bridge-nf-call-iptables": "1", "net/ipv4/ip_forward": "1"}


class NetworkError(RuntimeError):
    pass


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetworkError(f"{' '.join(args)} failed (the local node needs root): {result.stderr.strip()}")
    return result


def link_exists(name: str) -> bool:
    return run("ip", "link", "show", "dev", name, check=False).returncode == 0


@dataclasses.dataclass(frozen=True)
class NodeNetwork:
    """Shapes: pod_subnet a /24 of POD_CIDR; service_network the API server's service range."""

    service_network: ipaddress.IPv4Network
    pod_subnet: ipaddress.IPv4Network = ipaddress.ip_network("10.244.0.0/24")

    @property
    def node_ip(self) -> str:
        return str(next(self.pod_subnet.hosts()))

    @property
    def api_service_ip(self) -> str:
        return str(next(self.service_network.hosts()))

    @property
    def dns_ip(self) -> str:
        return str(self.service_network.network_address + 10)

    def up(self) -> None:
        """Creates the bridge and fences both ranges. The caller holds the machine's cluster lock
        (cluster.MachineLock), so a bridge found here is an orphan and goes with remove_orphans()."""
        if link_exists(BRIDGE):
            raise NetworkError(f"the bridge {BRIDGE} exists: a local cluster was not torn down "
                               f"(`make cluster-down`, or `ip link del {BRIDGE}`)")
        for key, value in SYSCTLS.items():
            path = pathlib.Path("/proc/sys") / key
            if not path.exists():
                raise NetworkError(f"{path} is missing: the kernel lacks br_netfilter or IPv4 forwarding")
            path.write_text(value)
        mount_netns_dir()
        run("ip", "route", "replace", "unreachable", str(POD_CIDR))
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{self.node_ip}/{self.pod_subnet.prefixlen}", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        run("ip", "route", "replace", str(self.service_network), "dev", BRIDGE, "src", self.node_ip)

    def down(self) -> None:
        """Removes what up() made and the chains the node's programs left; every step runs even
        when another fails."""
        remove_chains()
        for args in (("ip", "link", "del", BRIDGE),
                     ("ip", "route", "del", "unreachable", str(POD_CIDR))):
            run(*args, check=False)

    def cni_config(self, ipam_dir: pathlib.Path) -> dict:
        """The CNI conflist: pods on the bridge, host-local addresses, hairpin (a pod reaching
        itself through its Service), portmap for hostPort. No masquerade: pods have nothing to
        reach outside this machine."""
        return {
            "cniVersion": "1.0.0", "name": "hakeeper",
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(ipam_dir),
                          "ranges": [[{"subnet": str(self.pod_subnet), "gateway": self.node_ip}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    def write_cni_config(self, conf_dir: pathlib.Path, ipam_dir: pathlib.Path) -> None:
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "10-hakeeper.conflist").write_text(json.dumps(self.cni_config(ipam_dir), indent=2))


CHAIN_PREFIXES = ("KUBE-", "CNI-")  # kube-proxy's and the kubelet's chains; the CNI plugins'
TABLES = ("nat", "filter", "mangle")


def _chains(tool: str, table: str) -> tuple[list[str], list[str]]:
    """(our chains, the rules elsewhere that jump to them) of one table, as `iptables -S` prints them."""
    out = run(tool, "-t", table, "-S", check=False).stdout.splitlines()
    chains = [line.split()[1] for line in out if line.startswith("-N ") and line.split()[1].startswith(CHAIN_PREFIXES)]
    jumps = [line for line in out if line.startswith("-A ") and not line.split()[1].startswith(CHAIN_PREFIXES)
             and _target(line) in chains]
    return chains, jumps


def _target(rule: str) -> str | None:
    tokens = rule.split()
    for flag in ("-j", "-g"):
        if flag in tokens[:-1]:
            return tokens[tokens.index(flag) + 1]
    return None


def remove_chains() -> None:
    """Removes the chains kube-proxy --cleanup leaves (the kubelet's KUBE-FIREWALL, the canaries)
    and any of the CNI plugins', with the rules that jump to them (IPv4 and IPv6)."""
    for tool in ("iptables", "ip6tables"):
        for table in TABLES:
            chains, jumps = _chains(tool, table)
            for rule in jumps:
                # the rule as -S printed it ("-A CHAIN ..."), its quoted comments split as a shell would
                run(tool, "-t", table, "-D", *shlex.split(rule)[1:], check=False)
            for chain in chains:
                run(tool, "-t", table, "-F", chain, check=False)
            for chain in chains:
                run(tool, "-t", table, "-X", chain, check=False)


def mount_netns_dir() -> None:
    """Makes /run/netns the shared bind mount of itself that `ip netns add` makes on first use,
    before containerd puts pod namespaces there.

    Otherwise the first `ip netns add` run while pods exist (a test's namespaces, another
    process on the machine) mounts /run/netns over the pods' namespace files: containerd then
    finds no mount to remove at a pod's teardown, and the namespace stays, hidden below,
    unremovable by name (found in CI: `cni-…` left, "Device or resource busy")."""
    probe = f"hk-probe-{os.getpid()}"
    run("ip", "netns", "add", probe)
    run("ip", "netns", "del", probe)


def remove_orphans() -> list[str]:
    """Removes what a killed cluster left (its bridge, pod network namespaces with their veths,
    chains) and returns what leftovers() listed before. Only for a caller holding the machine's
    cluster lock: with it held, nothing of this belongs to a running cluster."""
    found = leftovers()
    netns = pathlib.Path("/var/run/netns")
    if netns.is_dir():
        for path in netns.iterdir():
            if path.name.startswith("cni-"):
                # deleting the namespace deletes the pod's end of each veth, and so the host's end
                run("ip", "netns", "del", path.name, check=False)
    run("ip", "link", "del", BRIDGE, check=False)
    run("ip", "route", "del", "unreachable", str(POD_CIDR), check=False)
    remove_chains()
    return found


def leftovers() -> list[str]:
    """What a torn-down node must not leave: its links, veths on its bridge, CNI network
    namespaces, the CNI and kube-proxy iptables chains. Empty when clean."""
    found = [f"link {BRIDGE}"] if link_exists(BRIDGE) else []
    veths = run("ip", "-o", "link", "show", "type", "veth", check=False).stdout
    # the bridge plugin names a pod's host-side end veth<8 hex digits>
    found += [f"veth {name}" for name in (line.split(":")[1].strip().split("@")[0] for line in veths.splitlines())
              if name.startswith("veth")]
    netns = pathlib.Path("/var/run/netns")
    if netns.is_dir():
        found += [f"network namespace {p.name}" for p in netns.iterdir() if p.name.startswith("cni-")]
    for tool in ("iptables", "ip6tables"):
        for table in TABLES:
            found += [f"{tool} -t {table} chain {chain}" for chain in _chains(tool, table)[0]]
    return found
