"""The lvs tier's scenarios, as the host prepares them for the VM (guest.py runs them).

Each scenario is a LoadBalancerPool spec of engine lvs rendered by hakeeper
(loadbalancerpool/lvs/config.py `render`, the file `hakeeper render` prints) for the backends
of topology.py, then turned into each director's own file the way the agent does it
(api/configmaps/keepalived.py: the node's priority from priorities.json). `job()` writes the
files, job.json and run.sh into a directory the VM mounts read-only.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Any

from hakeeper.api.configmaps import keepalived as configmap
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.lvs import config

from . import topology as topo
from . import vm

POOL = "web"
VRID = 51
MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_sh", "ip_vs_mh", "ipip", "bridge", "veth")
"""Loaded before the network is built (the guest's /lib/modules is the host's, which has none:
the kernel's own request_module cannot find them)."""
GUEST = pathlib.Path(__file__).resolve().parent / "guest.py"


def pool_spec(forwarding: str, *, protocol: str = "TCP", algorithm: str = "rr", persistence: int | None = None,
              check: str = "tcp", interval: str = "2s", fall: int = 3, preempt: bool = False,
              sync: bool = False) -> LoadBalancerPoolSpec:
    """The pool as a user would write it (camelCase, through the model's validation)."""
    port = topo.SERVICE_PORT if protocol == "TCP" else topo.UDP_PORT
    backend_port = topo.NAT_PORT if forwarding == "NAT" and protocol == "TCP" else port
    lvs: dict[str, Any] = {"virtualIP": topo.VIP, "port": port, "protocol": protocol, "forwarding": forwarding,
                           "vrrp": {"virtualRouterID": VRID, "interface": topo.INTERFACE, "preempt": preempt}}
    if persistence is not None:
        lvs["persistenceTimeout"] = persistence
    if sync:
        lvs["connectionSync"] = True
    health: dict[str, Any] = {"type": check, "interval": interval, "timeout": "1s", "fall": fall}
    if check == "http":
        health["path"] = "/healthz"
    return LoadBalancerPoolSpec.model_validate({
        "engine": "lvs", "algorithm": algorithm,
        "backends": {"selector": {"matchLabels": {"app": POOL}}, "port": backend_port},
        "healthCheck": health, "lvs": lvs})


def backends(spec: LoadBalancerPoolSpec, weights: tuple[int, ...] = (1, 1, 1),
             draining: str | None = None) -> list[Backend]:
    """The real servers of the spec's forwarding (NAT: n1..n3 behind the directors; DR and TUN:
    r1..r3 beside them), with these weights; `draining` names one set to draining."""
    assert spec.lvs is not None
    servers = topo.NAT_SERVERS if spec.lvs.forwarding == "NAT" else topo.REAL_SERVERS
    port = spec.backends.port
    assert isinstance(port, int)
    return [Backend(name, address, port, weight, "draining" if name == draining else "ready")
            for (name, address), weight in zip(servers.items(), weights, strict=True)]


def node_files(spec: LoadBalancerPoolSpec, servers: list[Backend]) -> dict[str, str]:
    """Director namespace -> the keepalived.conf its agent would write."""
    rendered = config.render(POOL, spec, servers, nodes=list(topo.DIRECTORS))
    text = rendered.files[configmap.CONFIG_FILE]
    base = configmap.base_priority(text)
    return {ns: configmap.for_node(text, configmap.node_priority(rendered.files, ns, base))
            for ns in topo.DIRECTORS}


@dataclasses.dataclass
class Scenario:
    name: str
    kind: str
    """A function of guest.py's KINDS."""
    spec: LoadBalancerPoolSpec
    weights: tuple[int, ...] = (1, 1, 1)
    directors: tuple[str, ...] = ("dA",)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    variants: dict[str, list[Backend]] = dataclasses.field(default_factory=dict)
    """Further files by name (the agent's next ConfigMap), beside "main"."""

    def servers(self) -> list[Backend]:
        return backends(self.spec, self.weights)


def _write(directory: pathlib.Path, scenario: Scenario) -> dict[str, Any]:
    configs: dict[str, dict[str, str]] = {}
    for variant, servers in {"main": scenario.servers(), **scenario.variants}.items():
        configs[variant] = {}
        for ns, text in node_files(scenario.spec, servers).items():
            name = f"{scenario.name}.{variant}.{ns}.conf"
            (directory / name).write_text(text)
            configs[variant][ns] = name
    assert scenario.spec.lvs is not None
    return {"name": scenario.name, "kind": scenario.kind, "protocol": scenario.spec.lvs.protocol,
            "directors": list(scenario.directors), "servers": [b.name for b in scenario.servers()],
            "configs": configs, "params": scenario.params}


def job(directory: pathlib.Path, image: vm.Image, scenarios: list[Scenario]) -> pathlib.Path:
    """Writes the job the VM runs: every scenario's files, job.json, run.sh. Returns `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    body = {"image": str(image.directory), "modules": list(MODULES),
            "scenarios": [_write(directory, s) for s in scenarios]}
    (directory / "job.json").write_text(json.dumps(body, indent=1))
    # the checkout (guest.py, the venv) and the interpreter, where the guest's tmpfs would hide them
    (directory / "keep").write_text("".join(f"{p}\n" for p in vm.kept(
        [GUEST.parents[2], pathlib.Path(sys.executable).parent.parent, pathlib.Path(sys.prefix)])))
    (directory / "run.sh").write_text(
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1\n"
        f"exec {sys.executable} {GUEST} {vm.JOB_DIR_IN_GUEST}\n")
    return directory


def results(run: vm.Run) -> dict[str, dict[str, Any]]:
    """Scenario name -> what the guest measured (its `result` lines)."""
    found = {}
    for line in run.lines:
        kind, _, payload = line.partition(" ")
        if kind == "result":
            data = json.loads(payload)
            found[data["name"]] = data
    return found


def catalog() -> dict[str, Scenario]:
    """Every scenario of the tier by name (tests name theirs with @pytest.mark.lvs(name))."""
    found: list[Scenario] = []
    for forwarding in ("NAT", "DR", "TUN"):
        for protocol in ("TCP", "UDP"):
            found.append(Scenario(f"{forwarding.lower()}-{protocol.lower()}-rr", "count",
                                  pool_spec(forwarding, protocol=protocol), params={"per_source": 30}))
    spread = {"sources": len(topo.CLIENT_ADDRESSES), "per_source": 4}
    found += [
        Scenario("nat-tcp-wrr", "count", pool_spec("NAT", algorithm="wrr"), weights=(3, 2, 1),
                 params={"per_source": 36}),
        Scenario("nat-tcp-lc", "least_connection", pool_spec("NAT", algorithm="lc")),
        Scenario("dr-tcp-sh", "count", pool_spec("DR", algorithm="sh"), params=spread),
        Scenario("dr-tcp-mh", "count", pool_spec("DR", algorithm="mh"), weights=(3, 2, 1), params=spread),
        Scenario("nat-tcp-rr-persistent", "count", pool_spec("NAT", persistence=60), params=spread),
    ]
    for check in ("tcp", "http"):
        found.append(Scenario(f"nat-health-{check}", "health", pool_spec("NAT", check=check, interval="1s", fall=1),
                              params={"check": check, "victim": "n2", "victim_address": topo.NAT_SERVERS["n2"]}))
    nat = pool_spec("NAT")
    found.append(Scenario("nat-drain", "drain", nat,
                          variants={f"drain-{name}": backends(nat, draining=name) for name in topo.NAT_SERVERS}))
    both = ("dA", "dB")
    found += [
        Scenario("dr-failover", "failover", pool_spec("DR"), directors=both, params={"hold": 8}),
        Scenario("dr-sync", "sync", pool_spec("DR", sync=True), directors=both,
                 params={"timeout": 20, "expect_synced": True, "connections": 3}),
        Scenario("dr-no-sync", "sync", pool_spec("DR"), directors=both,
                 params={"timeout": 20, "expect_synced": False, "connections": 3}),
    ]
    return {s.name: s for s in found}
