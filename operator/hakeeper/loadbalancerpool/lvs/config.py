"""keepalived.conf for a pool of engine lvs, rendered from its spec and backends (pure).

One file, ``keepalived.conf``, holding:

- ``global_defs`` with a ``router_id`` naming the pool, and with ``lvs.connectionSync`` the
  ``lvs_sync_daemon`` that shares IPVS's connection table between the directors;
- one ``vrrp_instance`` owning the virtual IP. Every node starts in state BACKUP: keepalived
  accepts ``nopreempt`` only with BACKUP, and with it the node with the highest priority
  wins the first election anyway;
- one ``virtual_server`` (the IPVS service) with a ``real_server`` per backend: ready ones
  with their weight, draining ones with weight 0 (IPVS keeps their open connections but
  sends no new ones), down ones left out. When no backend can take a new connection (none,
  or all of weight 0) the section is left out: keepalived refuses a virtual server without
  real servers, and one whose weights add up to 0 (a warning, which fails keepalived -t).

Two values differ per node and are filled in by the agent on that node (``for_node``):

- the priority. The rendered file carries the *base* priority, so it is a valid
  configuration as it stands (``keepalived -t`` accepts it); the agent replaces the
  number on the instance's ``priority`` line with ``priority_for(base, node, nodes)``.
  The node list comes from the operator in ``priorities.json`` (``nodes=`` below): the
  agent needs no permission to list Nodes.
- the VRRP password, when it should not sit in a ConfigMap: with ``authSecretRef`` set
  and no ``auth_password``, the file carries ``auth_pass`` followed by PASSWORD_PLACEHOLDER,
  and the agent puts in the password it reads from the mounted Secret.

Health checks map to keepalived checkers: tcp -> TCP_CHECK (UDP_CHECK for a UDP virtual
server: a TCP connect to a UDP service proves nothing), http -> HTTP_GET. keepalived
retries a failed check ``retry`` times before it takes a server out, so ``retry`` is
``fall - 1``; keepalived has no equivalent of ``rise`` (one success brings a server back).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Sequence

from hakeeper.api.common import parse_duration
from hakeeper.api.configmaps.keepalived import (
    CONFIG_FILE,
    MAX_PASSWORD,
    PASSWORD_PATTERN,
    PASSWORD_PLACEHOLDER,
    PRIORITIES_FILE,
    ConfigError,
    config_hash,
)
from hakeeper.api.loadbalancerpool import DEFAULT_ALGORITHM, LVS_ALGORITHMS, LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.backends import Backend

# Used with fullmatch: with match, "$" also matches before a final newline, and a pool named
# "x\n" broke the file (found by the fuzz tests).
_POOL = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_INTERFACE = re.compile(r"[a-zA-Z0-9_.:-]{1,15}")
_PATH = re.compile(r"/[A-Za-z0-9/?&=:,;+@*%._~-]*")
"""No space, quote, '#', '!' (keepalived comments), '$' (its variables), braces or backslash."""
_LONGEST = {"interval": (18446744073709.551615, "delay_loop"), "timeout": (4294.967295, "connect_timeout")}
"""keepalived keeps these timers in microseconds: delay_loop and delay_before_retry in 64 bits,
connect_timeout in 32 (71.5 minutes)."""
_AUTH_LINE = re.compile(r"^(?P<indent>\s+)auth_pass \S+$", re.M)
INDENT = "    "


@dataclasses.dataclass(frozen=True)
class Rendered:
    files: dict[str, str]
    """The ConfigMap's data: keepalived.conf (and priorities.json when nodes were given)."""
    config_hash: str
    """Hash of the files: what a balancer reports once it has applied them."""


def priority_for(base: int, node: str, nodes: Sequence[str]) -> int:
    """The base priority for the first node in name order, one less for each next one;
    never below 1 (VRRP's lowest priority for a backup). A node missing from the list
    (joined after the operator last wrote it) ranks after all listed ones."""
    ordered = sorted(set(nodes))
    rank = ordered.index(node) if node in ordered else len(ordered)
    return max(1, base - rank)


def instance_name(pool: str) -> str:
    return f"hk_{pool}"


# -- checks -------------------------------------------------------------------------------

def _check(spec: LoadBalancerPoolSpec, backends: Sequence[Backend], auth_password: str | None) -> None:
    if spec.engine != "lvs" or spec.lvs is None:
        raise ConfigError("engine lvs needs spec.lvs (virtualIP, port, vrrp)")
    lvs = spec.lvs
    algorithm = spec.algorithm or DEFAULT_ALGORITHM["lvs"]
    if algorithm not in LVS_ALGORITHMS:
        raise ConfigError(f"algorithm {algorithm!r} is not an IPVS scheduler ({', '.join(LVS_ALGORITHMS)})")
    if spec.health_check.type == "mysql":
        raise ConfigError("mysql health checks need engine haproxy; use tcp with engine lvs")
    if lvs.protocol == "UDP" and spec.health_check.type == "http":
        raise ConfigError("a UDP virtual server cannot use an http health check")
    if not _INTERFACE.fullmatch(lvs.vrrp.interface):
        raise ConfigError(f"interface {lvs.vrrp.interface!r} is not an interface name")
    _address(lvs.virtual_ip, "virtualIP")
    for peer in lvs.vrrp.unicast_peers:
        _address(peer, "unicast peer")
    if spec.health_check.path is not None and not _PATH.fullmatch(spec.health_check.path):
        raise ConfigError(f"health check path {spec.health_check.path!r} has characters keepalived cannot read "
                          "(space, quote, '#', '!', '$', braces, backslash)")
    for duration, what in ((spec.health_check.interval, "interval"), (spec.health_check.timeout, "timeout")):
        try:
            if parse_duration(duration) <= 0:
                raise ConfigError(f"health check {what} must be longer than 0")
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"health check {what}: {exc}") from None
        longest, keyword = _LONGEST[what]
        if (what == "interval" or spec.health_check.type != "none") and parse_duration(duration) > longest:
            # keepalived -t: "number '4500' outside range [0.000001, 4294.967295]" (found by the fuzz tests)
            raise ConfigError(f"health check {what} {duration} is longer than keepalived's {keyword} takes "
                              f"({longest:.6f}s)")
    if auth_password is not None and not PASSWORD_PATTERN.fullmatch(auth_password):
        raise ConfigError(f"the VRRP password must be 1 to {MAX_PASSWORD} characters: letters, digits or "
                          "_.,:;+=*%^&()[]<>|/?~@- (VRRP PASS authentication carries 8 bytes)")
    for backend in backends:
        _address(backend.address, f"backend {backend.name}")
        if not 1 <= backend.port <= 65535:
            raise ConfigError(f"backend {backend.name}: port {backend.port} is not 1..65535")
        if not 0 <= backend.weight <= 256:
            raise ConfigError(f"backend {backend.name}: weight {backend.weight} is not 0..256")
        if backend.state not in ("ready", "draining", "down"):
            raise ConfigError(f"backend {backend.name}: unknown state {backend.state!r}")
        if lvs.forwarding != "NAT" and backend.state != "down" and backend.port != lvs.port:
            raise ConfigError(f"{lvs.forwarding} forwarding cannot map ports: backend {backend.name} listens on "
                              f"{backend.port}, the virtual server on {lvs.port}")


def _address(text: str, what: str) -> None:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not an IPv4 address") from None


def _seconds(duration: str) -> str:
    """keepalived reads timers as decimal seconds (microsecond resolution)."""
    return f"{parse_duration(duration):.6f}".rstrip("0").rstrip(".")


# -- sections -----------------------------------------------------------------------------

def _vrrp_lines(pool: str, spec: LoadBalancerPoolSpec, password: str | None) -> list[str]:
    assert spec.lvs is not None
    vrrp = spec.lvs.vrrp
    out = [f"vrrp_instance {instance_name(pool)} {{"]
    body = [
        "state BACKUP",
        f"interface {vrrp.interface}",
        f"virtual_router_id {vrrp.virtual_router_id}",
        f"priority {vrrp.priority}",
        f"advert_int {vrrp.advert_interval}",
    ]
    if not vrrp.preempt:
        body.append("nopreempt")
    out += [INDENT + line for line in body]
    if password is not None:
        out += [INDENT + "authentication {", INDENT * 2 + "auth_type PASS", INDENT * 2 + f"auth_pass {password}",
                INDENT + "}"]
    if vrrp.unicast_peers:
        out += [INDENT + "unicast_peer {", *(INDENT * 2 + peer for peer in sorted(set(vrrp.unicast_peers),
                key=ipaddress.IPv4Address)), INDENT + "}"]
    out += [INDENT + "virtual_ipaddress {", INDENT * 2 + spec.lvs.virtual_ip, INDENT + "}", "}"]
    return out


def _sync_lines(pool: str, spec: LoadBalancerPoolSpec) -> list[str]:
    """IPVS connection synchronization (keepalived.conf(5), global_defs `lvs_sync_daemon
    <INTERFACE> <VRRP_INSTANCE>`): keepalived runs the kernel's sync daemon as master on the
    VRRP master and as backup on the others, and switches it with the VRRP state."""
    assert spec.lvs is not None
    if not spec.lvs.connection_sync:
        return []
    return [f"{INDENT}lvs_sync_daemon {spec.lvs.vrrp.interface} {instance_name(pool)}"]


def _checker_lines(spec: LoadBalancerPoolSpec) -> list[str]:
    assert spec.lvs is not None
    check = spec.health_check
    timing = [f"connect_timeout {_seconds(check.timeout)}", f"retry {check.fall - 1}",
              f"delay_before_retry {_seconds(check.interval)}"]
    if check.type == "none":
        return []
    if check.type == "http":
        url = [f"path {check.path or '/'}", f"status_code {check.expect_status or 200}"]
        return ["HTTP_GET {", INDENT + "url {", *(INDENT * 2 + line for line in url), INDENT + "}",
                *(INDENT + line for line in timing), "}"]
    kind = "UDP_CHECK" if spec.lvs.protocol == "UDP" else "TCP_CHECK"
    return [f"{kind} {{", *(INDENT + line for line in timing), "}"]


def _virtual_server_lines(spec: LoadBalancerPoolSpec, backends: Sequence[Backend]) -> list[str]:
    assert spec.lvs is not None
    lvs = spec.lvs
    serving = sorted((b for b in backends if b.state != "down"), key=lambda b: (ipaddress.IPv4Address(b.address),
                                                                               b.port, b.name))
    # the same address:port twice (two names) would be two real servers for IPVS: keep the first
    seen: set[tuple[str, int]] = set()
    unique = []
    for backend in serving:
        if (backend.address, backend.port) not in seen:
            seen.add((backend.address, backend.port))
            unique.append(backend)
    if sum(b.weight for b in unique if b.state == "ready") == 0:
        # keepalived refuses a virtual server without real servers, and warns (keepalived -t
        # fails) when their weights add up to 0; no new connection could be placed anyway.
        # The cost: connections still open to draining servers end with the service.
        return []
    body = [
        f"delay_loop {_seconds(spec.health_check.interval)}",
        f"lb_algo {spec.algorithm or DEFAULT_ALGORITHM['lvs']}",
        f"lb_kind {lvs.forwarding}",
        f"protocol {lvs.protocol}",
    ]
    if lvs.persistence_timeout is not None:
        body.append(f"persistence_timeout {lvs.persistence_timeout}")
    out = [f"virtual_server {lvs.virtual_ip} {lvs.port} {{", *(INDENT + line for line in body)]
    checker = _checker_lines(spec)
    for backend in unique:
        weight = backend.weight if backend.state == "ready" else 0
        out += [f"{INDENT}real_server {backend.address} {backend.port} {{",
                f"{INDENT * 2}weight {weight}",
                *(INDENT * 2 + line for line in checker),
                f"{INDENT}}}"]
    out.append("}")
    return out


def render(
    pool: str,
    spec: LoadBalancerPoolSpec,
    backends: Sequence[Backend],
    *,
    auth_password: str | None = None,
    nodes: Sequence[str] = (),
) -> Rendered:
    """The ConfigMap data for a pool of engine lvs.

    `auth_password`: the VRRP password read from `authSecretRef`. Leave it None to keep the
    password out of the ConfigMap: the file then carries PASSWORD_PLACEHOLDER, and the agent
    fills in the Secret mounted into its pod (`--auth-password-file`).
    `nodes`: the balancer nodes' names; written to priorities.json with each node's priority.
    """
    if not _POOL.fullmatch(pool) or len(pool) > 63:
        raise ConfigError(f"pool name {pool!r} is not a Kubernetes object name")
    _check(spec, backends, auth_password)
    assert spec.lvs is not None
    password = auth_password
    if password is None and spec.lvs.vrrp.auth_secret_ref is not None:
        password = PASSWORD_PLACEHOLDER
    lines = [
        f"# hakeeper: LoadBalancerPool {pool} (engine lvs); generated, do not edit",
        "global_defs {",
        f"{INDENT}router_id hakeeper_{pool}",
        *_sync_lines(pool, spec),
        "}",
        *_vrrp_lines(pool, spec, password),
        *_virtual_server_lines(spec, backends),
    ]
    files = {CONFIG_FILE: "\n".join(lines) + "\n"}
    if nodes:
        base = spec.lvs.vrrp.priority
        priorities = {node: priority_for(base, node, nodes) for node in sorted(set(nodes))}
        files[PRIORITIES_FILE] = json.dumps(priorities, indent=1, sort_keys=True) + "\n"
    return Rendered(files=files, config_hash=config_hash(files))



