"""The balancer's HAProxy configuration, rendered from a pool's spec and its backends (pure).

The ConfigMap the agent reads holds two files:

- ``haproxy.cfg``: the *structure* — everything HAProxy can only learn by (re)loading its
  configuration. Backends are not in it: the backend section declares a fixed number of
  server slots (``s1`` .. ``sN``, see slots.py) as placeholders in maintenance.
- ``servers.json``: which backend sits in which slot, with its address, weight and state.
  The agent applies it through the runtime API, without a reload.

Two kinds of per-server values cannot be changed at runtime by HAProxy 2.6, so they are
rendered into the structure (a change of them means a reload):

- the ``redir`` prefix of mode redirect (the runtime API has no command to change it), so
  in mode redirect the backends' addresses are part of the structure;
- weights under a static algorithm (static-rr, or a hash with map-based hash-type):
  HAProxy refuses runtime weights other than 0% and 100% of the configured one there.

The slots are written as one ``server sK`` line each, not as one ``server-template`` line:
to HAProxy they are the same servers, but each line can carry its own ``cookie sK`` (the
persistence cookie names the slot) and, in the two cases above, its own redir prefix or
weight, where server-template gives every server the same parameters.

``fill`` writes servers.json into the slot lines of haproxy.cfg. The agent puts the filled
text on disk, so that a starting (or restarting) HAProxy serves the right backends from
its first request, before any runtime command arrives.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import urllib.parse
from collections.abc import Mapping, Sequence

from hakeeper.api.common import parse_duration
from hakeeper.api.configmaps.haproxy import (
    BACKEND,
    CONFIG_FILE,
    REFUSED_FILE,
    SERVERS_FILE,
    ConfigError,
    SlotEntry,
    check_entry,
    config_hash,
    host_port,
    parse_servers,
    refused_json,
    server_line,
    server_name,
    servers_json,
    slot_count,
    structure_hash,
)
from hakeeper.api.loadbalancerpool import (
    HAPROXY_ALGORITHMS,
    HASH_ALGORITHMS,
    PEERS_PORT,
    TLS_FRONTEND_PORT,
    CookieAffinity,
    LoadBalancerPoolSpec,
)
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.haproxy import request_classes, tls, weighting
from hakeeper.loadbalancerpool.haproxy import slots as slotting
from hakeeper.loadbalancerpool.objects import FRONTEND_PORT, RUN_DIR

ADMIN_SOCKET = "admin.sock"
STATE_FILE = "servers.state"
FRONTEND = "clients"
METRICS_FRONTEND = "metrics"
DEFAULT_LISTEN_ADDRESS = "${POD_IP}"
"""HAProxy expands environment variables inside double quotes; the pod gets POD_IP from the
downward API. Binding the pod IP (not 0.0.0.0) lets local tests give every balancer its own
loopback address."""

PLACEHOLDER_ADDRESS = "0.0.0.0"
PLACEHOLDER_PORT = 0
STICK_TABLE = "stick-table type ipv6 size 1m expire 30m"
PEERS = "hakeeper"
"""The peers section the balancer replicas share their stick table through."""
MAX_TIMER = 2**31 - 1
"""HAProxy's timers are signed 32-bit counts of their unit (milliseconds; seconds for maxidle)."""

_SAFE_PATH = "/?&=:,;+@!*%-._~"  # besides letters and digits: no space, quote, '#', '$', '\'
_TOKEN = re.compile(r"^[A-Za-z0-9_.-]+$")
_HEADER = re.compile(r"^[A-Za-z0-9-]+$")
_LISTEN = re.compile(r"^[A-Za-z0-9_.:\[\]${}-]+$")
_RUN_DIR = re.compile(r"^/[A-Za-z0-9_./-]*$")


@dataclasses.dataclass(frozen=True)
class Rendered:
    files: dict[str, str]
    """The ConfigMap's data: haproxy.cfg (structure) and servers.json (slot assignment)."""
    structure_hash: str
    """Hash of haproxy.cfg: it changes exactly when the balancers must reload."""
    config_hash: str
    """Hash of both files: what a balancer reports once it has applied everything."""
    slots: slotting.SlotMap
    """Backend name -> slot number (and the capacity); pass it as `previous` to the next render."""


def render(
    pool: str,
    spec: LoadBalancerPoolSpec,
    backends: Sequence[Backend],
    previous: Mapping[str, int] | None = None,
    *,
    run_dir: str = RUN_DIR,
    listen_address: str = DEFAULT_LISTEN_ADDRESS,
    frontend_port: int = FRONTEND_PORT,
    tls_frontend_port: int = TLS_FRONTEND_PORT,
    peers: Sequence[tuple[str, str]] = (),
    refused: Sequence[str] = (),
) -> Rendered:
    """The ConfigMap data for a pool.

    `previous` is the last render's `slots`, or `previous_slots(configmap.data)`: it keeps
    every backend in its slot. A plain name -> slot mapping works too, but only the ones
    from here remember the slot capacity, which keeps a pool that shrinks a little from
    reloading to fewer slots and back.

    `peers` are the balancer replicas as (pod name, pod IP). They are rendered only when the pool
    keeps a stick table (`uses_stick_table`), as a `peers` section the table syncs over: every
    replica learns every client's backend, and a reloading HAProxy hands its table to its new
    worker (HAProxy 2.6 configuration manual, section 3.5 "Peers"). A replica finds itself by its
    hostname, the pod's name; one missing from the list runs with a table of its own (HAProxy drops
    a peers section without the local peer) until the next render names it.
    Raises ConfigError for a peer name or address haproxy.cfg cannot carry.

    `refused`: request classes the balancers refuse (from DegradationPolicies); names the pool
    does not define are left out.
    """
    _check_spec(pool, spec)
    if spec.balancer.metrics_port == frontend_port:
        # haproxy -c accepts two frontends bound to one port, and HAProxy starts with both
        # (SO_REUSEPORT): the kernel then hands half the clients to the metrics frontend's 404
        raise ConfigError(f"balancer.metricsPort {frontend_port} is the port the balancer serves clients on")
    if spec.balancer.metrics_port == PEERS_PORT:
        raise ConfigError(f"balancer.metricsPort {PEERS_PORT} is the port the balancers share their stick table on")
    tls.check_ports(spec, frontend_port, tls_frontend_port)
    _check_token(listen_address, _LISTEN, "listen address")
    _check_token(run_dir, _RUN_DIR, "run directory")
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError("backend names must be unique: " + ", ".join(repeated))
    assignment = slotting.assign(names, previous)
    entries = sorted((_entry(b, assignment.slots[b.name]) for b in backends), key=lambda e: e.slot)
    for name, address in peers:
        _check_token(name, _TOKEN, "peer name")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"peer {name}'s address {address!r} is not an IP address") from None
    cfg = _haproxy_cfg(pool, spec, entries, assignment.capacity, run_dir=run_dir,
                       listen_address=listen_address, frontend_port=frontend_port,
                       tls_frontend_port=tls_frontend_port, peers=sorted(set(peers)) if uses_stick_table(spec) else [])
    files = {CONFIG_FILE: cfg, SERVERS_FILE: servers_json(entries), **weighting.files(spec)}
    if spec.request_classes:
        files[REFUSED_FILE] = refused_json(request_classes.refused_for_pool(spec.request_classes, refused))
    return Rendered(files=files, structure_hash=structure_hash(cfg), config_hash=config_hash(files),
                    slots=assignment.slots)


# -- hashes and the servers.json format (shared with the agent) ---------------------------


def previous_slots(data: Mapping[str, str] | None) -> slotting.SlotMap:
    """The slots of an existing ConfigMap's data (for `render(previous=...)`); empty if unreadable."""
    data = data or {}
    try:
        entries = parse_servers(data.get(SERVERS_FILE, "[]"))
    except ConfigError:
        return slotting.SlotMap()
    return slotting.SlotMap({e.name: e.slot for e in entries}, capacity=slot_count(data.get(CONFIG_FILE, "")) or None)


# -- filling the structure with the servers (used by the agent for the file on disk) ----


# -- rendering ----------------------------------------------------------------------------

def _check_spec(pool: str, spec: LoadBalancerPoolSpec) -> None:
    """The cross-field rules the API server enforces with CEL (pydantic does not run them)."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", pool):
        raise ConfigError(f"pool name {pool!r} is not a DNS label")
    if spec.engine != "haproxy":
        raise ConfigError(f"engine {spec.engine} is not rendered as HAProxy")
    algorithm = spec.algorithm or "roundrobin"
    mode = spec.mode or "http"
    if algorithm not in HAPROXY_ALGORITHMS:
        raise ConfigError(f"algorithm must be one of {', '.join(HAPROXY_ALGORITHMS)} for engine haproxy")
    if (algorithm == "hdr") != (spec.hash_header is not None):
        raise ConfigError("hashHeader is required with algorithm hdr and valid with it only")
    if spec.hash_type is not None and algorithm not in HASH_ALGORITHMS:
        raise ConfigError("hashType applies to the hash algorithms source, uri and hdr only")
    if mode == "tcp" and algorithm in ("uri", "hdr"):
        raise ConfigError("algorithms uri and hdr read HTTP requests: use mode http or redirect")
    if spec.session_affinity.type == "Cookie" and mode != "http":
        raise ConfigError("Cookie session affinity needs engine haproxy with mode http")
    check = spec.health_check
    if check.type != "http" and (check.path is not None or check.expect_status is not None):
        raise ConfigError("path and expectStatus apply to http health checks only")
    if check.type != "mysql" and check.mysql_user is not None:
        raise ConfigError("mysqlUser applies to mysql health checks only")
    if spec.hash_header is not None:
        _check_token(spec.hash_header, _HEADER, "hashHeader")
    if spec.session_affinity.cookie is not None:
        _check_token(spec.session_affinity.cookie.name, _TOKEN, "cookie name")
    if check.mysql_user is not None:
        _check_token(check.mysql_user, _TOKEN, "mysqlUser")
    for what, duration, unit in _timers(spec):
        if round(parse_duration(duration) / unit) > MAX_TIMER:
            # HAProxy refuses the file: "timer overflow ... (maximum value is 2147483647 ms or ~24.8 days)"
            longest = "2147483647ms, about 24.8 days" if unit < 1 else "2147483647s"
            raise ConfigError(f"{what} {duration} is longer than HAProxy's longest timer ({longest})")
    if "none" in spec.retry_on and set(spec.retry_on) != {"none"}:
        # HAProxy: "'retry-on' 'none' keyword only usable alone" (found by the fuzz tests)
        raise ConfigError("retryOn: none (retry on no condition) cannot be combined with other conditions")
    if spec.tls is not None and mode != "http":
        raise ConfigError("tls (TLS termination) needs engine haproxy with mode http")
    weighting.check(spec, weights_are_static(spec))
    request_classes.check(spec.request_classes, spec.default_request_class, mode)


def _timers(spec: LoadBalancerPoolSpec) -> list[tuple[str, str, float]]:
    """(field, duration, the unit HAProxy reads it in) of every duration rendered."""
    t, check, cookie = spec.timeouts, spec.health_check, spec.session_affinity.cookie
    timers = [("timeouts.connect", t.connect, 0.001), ("timeouts.client", t.client, 0.001),
              ("timeouts.server", t.server, 0.001), ("timeouts.queue", t.queue, 0.001),
              ("timeouts.hardStopAfter", t.hard_stop_after, 0.001),
              ("healthCheck.interval", check.interval, 0.001), ("healthCheck.timeout", check.timeout, 0.001)]
    if spec.server.slowstart is not None:
        timers.append(("server.slowstart", spec.server.slowstart, 0.001))
    if t.tunnel is not None:
        timers.append(("timeouts.tunnel", t.tunnel, 0.001))
    if cookie is not None and cookie.max_idle is not None:
        timers.append(("sessionAffinity.cookie.maxIdle", cookie.max_idle, 1.0))  # rendered in seconds
    return timers


def _check_token(value: str, pattern: re.Pattern[str], what: str) -> None:
    # everything that ends up in haproxy.cfg passed the schema already; this is the last
    # line of defence against a value that would break a line or start a comment
    if not pattern.fullmatch(value):
        raise ConfigError(f"{what} {value!r} has characters HAProxy's configuration cannot carry")


def _entry(backend: Backend, slot: int) -> SlotEntry:
    entry = SlotEntry(slot=slot, name=backend.name, address=backend.address, port=backend.port,
                      weight=backend.weight, state=backend.state)
    check_entry(entry)
    return entry


def _ms(duration: str) -> str:
    # whole milliseconds, at least 1: HAProxy reads 0 as "no timeout" for some keywords
    return f"{max(1, round(parse_duration(duration) * 1000))}ms"


def weights_are_static(spec: LoadBalancerPoolSpec) -> bool:
    algorithm = _balance(spec)[0]
    return algorithm == "static-rr" or (algorithm in HASH_ALGORITHMS and _hash_type(spec) == "map-based")


def _balance(spec: LoadBalancerPoolSpec) -> tuple[str, str]:
    """(algorithm, the `balance` argument)."""
    algorithm = spec.algorithm
    if algorithm is None:
        # SourceIP affinity without an algorithm of its own: hash the client address. Unlike a
        # stick table this needs no state, so it holds across reloads and is the same in every
        # balancer replica (a client that reaches another replica lands on the same backend).
        algorithm = "source" if spec.session_affinity.type == "SourceIP" else "roundrobin"
    if algorithm == "hdr":
        return algorithm, f"hdr({spec.hash_header})"
    return algorithm, algorithm


def _hash_type(spec: LoadBalancerPoolSpec) -> str | None:
    algorithm = _balance(spec)[0]
    if algorithm not in HASH_ALGORITHMS:
        return None
    if spec.hash_type is not None:
        return spec.hash_type
    # hashing chosen for SourceIP affinity: consistent, so a new backend moves few clients
    return "consistent" if spec.algorithm is None else "map-based"


def _health_lines(spec: LoadBalancerPoolSpec) -> list[str]:
    check = spec.health_check
    if check.type == "http":
        path = urllib.parse.quote(check.path or "/", safe=_SAFE_PATH)
        return ["option httpchk",
                f"http-check send meth GET uri {path}",
                f"http-check expect status {check.expect_status or 200}"]
    if check.type == "mysql":
        # post-41: the handshake of MySQL >= 4.1 (every MySQL and MariaDB in use today)
        return [f"option mysql-check user {check.mysql_user} post-41" if check.mysql_user else "option mysql-check"]
    return []  # tcp: a connect check, HAProxy's default for `check`


def uses_stick_table(spec: LoadBalancerPoolSpec) -> bool:
    """SourceIP affinity with an algorithm of the pool's own (not `source`): a stick table keeps each
    client on the backend that algorithm first gave it, shared by the replicas through peers."""
    return spec.session_affinity.type == "SourceIP" and _balance(spec)[0] != "source"


def _peers_lines(peers: Sequence[tuple[str, str]]) -> list[str]:
    if not peers:
        return []
    lines = [f"peers {PEERS}"]
    for name, address in peers:
        host = f"[{address}]" if ":" in address else address
        lines.append(f"    peer {name} {host}:{PEERS_PORT}")
    return [*lines, ""]


def _affinity_lines(spec: LoadBalancerPoolSpec, algorithm: str, peers: bool) -> list[str]:
    affinity = spec.session_affinity
    if affinity.type == "Cookie":
        cookie = affinity.cookie or CookieAffinity()
        if cookie.mode == "insert":
            line = f"cookie {cookie.name} insert indirect nocache"
            if cookie.max_idle:
                line += f" maxidle {max(1, round(parse_duration(cookie.max_idle)))}s"
            return [line]
        # maxidle works with inserted cookies only (HAProxy keeps the date in its own cookie)
        return [f"cookie {cookie.name} prefix"] + (
            ["# maxIdle is not applied: HAProxy supports it for insert mode only"] if cookie.max_idle else [])
    if affinity.type == "SourceIP" and algorithm != "source":
        # the pool's own algorithm picks a client's first backend; the table keeps it there
        return [STICK_TABLE + (f" peers {PEERS}" if peers else ""), "stick on src"]
    return []


def _server_options(spec: LoadBalancerPoolSpec) -> str:
    check = spec.health_check
    options = []
    if check.type != "none":
        options.append(f"check inter {_ms(check.interval)} fall {check.fall} rise {check.rise}")
    if spec.server.maxconn is not None:
        options.append(f"maxconn {spec.server.maxconn}")
    if spec.server.slowstart is not None:
        options.append(f"slowstart {_ms(spec.server.slowstart)}")
    return " ".join(options)


def _haproxy_cfg(pool: str, spec: LoadBalancerPoolSpec, entries: Sequence[SlotEntry], capacity: int, *,
                 run_dir: str, listen_address: str, frontend_port: int, peers: Sequence[tuple[str, str]],
                 tls_frontend_port: int = TLS_FRONTEND_PORT) -> str:
    mode = spec.mode or "http"
    proxy_mode = "tcp" if mode == "tcp" else "http"
    algorithm, balance = _balance(spec)
    hash_type = _hash_type(spec)
    static_weights = weights_are_static(spec)
    cookie = spec.session_affinity.type == "Cookie"
    run = run_dir.rstrip("/") or "/"
    t = spec.timeouts

    lines = [
        f"# LoadBalancerPool {pool}: rendered by hakeeper, applied by the hakeeper agent.",
        "# Structure only: backends live in server slots filled from servers.json at runtime.",
        "global",
        "    master-worker",
        f"    stats socket {run}/{ADMIN_SOCKET} mode 600 level admin expose-fd listeners",
        f"    server-state-file {run}/{STATE_FILE}",
        f"    hard-stop-after {_ms(t.hard_stop_after)}",
        # notice: server state changes and alerts, not one line per request
        "    log stdout format raw local0 notice",
        *["    " + line for line in tls.global_lines(spec)],
        "",
        "defaults",
        "    log global",
        f"    mode {proxy_mode}",
        f"    timeout connect {_ms(t.connect)}",
        f"    timeout client {_ms(t.client)}",
        f"    timeout server {_ms(t.server)}",
        f"    timeout queue {_ms(t.queue)}",
        *([f"    timeout tunnel {_ms(t.tunnel)}"] if t.tunnel is not None else []),
        "    load-server-state-from-file global",
        "",
        *_peers_lines(peers),
        f"frontend {FRONTEND}",
        f'    bind "{listen_address}:{frontend_port}"',
        # no traffic log: its lines are info level, which the global log's notice drops, but only
        # after HAProxy has formatted one per request: 6 % of requests/s (bench/lb/peers.py). The
        # backend keeps `log global`, so server state changes are still logged.
        "    no log",
        *["    " + line for line in tls.frontend_lines(spec, listen_address, run, tls_frontend_port)],
    ]
    if proxy_mode == "http":
        lines.append("    option forwardfor")
    lines += ["    " + line for line in request_classes.frontend_lines(
        spec.request_classes, spec.default_request_class, spec.request_refusal, run)]
    lines += [f"    default_backend {BACKEND}", "", f"backend {BACKEND}", f"    balance {balance}"]
    if hash_type:
        lines.append(f"    hash-type {hash_type}")
    lines.append(f"    retries {spec.retries}")
    lines.append("    option redispatch" if spec.redispatch else "    no option redispatch")
    if spec.retry_on:
        if proxy_mode == "http":
            # each condition once: HAProxy refuses `none` twice as it refuses it with others
            lines.append("    retry-on " + " ".join(dict.fromkeys(spec.retry_on)))
        else:
            lines.append("    # retryOn is for HTTP; in mode tcp failed connections are retried (retries)")
    lines += ["    " + line for line in _health_lines(spec)]
    if spec.health_check.type != "none":
        lines.append(f"    timeout check {_ms(spec.health_check.timeout)}")
    lines += ["    " + line for line in _affinity_lines(spec, algorithm, bool(peers))]
    options = _server_options(spec)
    if options:
        lines.append(f"    default-server {options}")
    by_slot = {e.slot: e for e in entries}
    for slot in range(1, capacity + 1):
        entry = by_slot.get(slot)
        if mode == "redirect" and entry is not None:
            # the redir prefix cannot change at runtime: the backend is part of the structure
            line = server_line("    ", slot, entry.address, entry.port, entry.weight, enabled=False)
            line += f" redir http://{host_port(entry.address, entry.port)}"
        elif static_weights and entry is not None:
            line = server_line("    ", slot, PLACEHOLDER_ADDRESS, PLACEHOLDER_PORT, entry.weight, enabled=False)
        else:
            line = server_line("    ", slot, PLACEHOLDER_ADDRESS, PLACEHOLDER_PORT, 1, enabled=False)
        if cookie:
            line += f" cookie {server_name(slot)}"
        lines.append(line)
    lines += [
        "",
        f"frontend {METRICS_FRONTEND}",
        "    mode http",
        f'    bind "{listen_address}:{spec.balancer.metrics_port}"',
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    http-request return status 404",
        "    no log",
    ]
    return "\n".join(lines) + "\n"
