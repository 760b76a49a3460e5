"""Service ClusterIPs that lead somewhere: a kube-proxy stand-in for the local cluster.

Without kube-proxy a Service's ClusterIP routes nowhere. This does what kube-proxy's old
userspace mode did: for each TCP port of each Service that has a ClusterIP, it puts the
ClusterIP on `lo`, listens on ClusterIP:port, and copies the bytes of every accepted
connection to and from one of the Service's endpoints, picked round robin (or, with
`sessionAffinity: ClientIP`, the one the client IP used last, until it has been idle for
`sessionAffinityConfig.clientIP.timeoutSeconds`, default 10800 s). A half-close is passed on
(EOF from one side becomes shutdown(SHUT_WR) towards the other); a reset is passed on as a reset.

Which endpoints: those of the Service's EndpointSlices (label kubernetes.io/service-name) whose
port has the Service port's name, when ready (a missing `ready` counts as ready, as the API
advises), or serving with `publishNotReadyAddresses`; when none is, the serving terminating
ones (KEP-1669, as kube-proxy does). Changes apply to new connections; open ones keep running,
except when their Service is deleted: its address leaves `lo`, so they are reset.

A Service with no usable endpoint is not listened on while its address stays on `lo`: a connect
is refused at once by the kernel, like kube-proxy's REJECT rule, and a TCP health check through
the ClusterIP sees the Service down. When every listed endpoint refuses, the client is reset.

Not done, as nothing here needs them: UDP and SCTP ports (UDP would need per-client sessions),
NodePorts, externalIPs, LoadBalancer ingress addresses, traffic policies and topology (every
endpoint is on this one machine), IPv6. The API server's own default/kubernetes Service is left
alone: its endpoint is the API server's loopback address, and pods here reach the API directly.
As in userspace mode, backends see the proxy as their client, not the original client address.

Services and EndpointSlices are polled, as the node agent polls pods. The data path is one
asyncio loop in one thread, with protocols (no stream objects) and the transports' own flow
control, which keeps the per-request cost to a few system calls.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import ipaddress
import logging
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .addresses import listened_on
from .api import Api

log = logging.getLogger("localcluster.serviceproxy")

POLL_SECONDS = 0.3
DEFAULT_AFFINITY_SECONDS = 10800
CONNECT_TIMEOUT_SECONDS = 3.5
"""Per endpoint. A refused endpoint fails at once; this bounds one that drops SYNs, which on
loopback means its accept queue is full (the test backend's holds 5): the kernel sends the SYN
again after 1 s and 3 s, and giving up before that would turn a burst of connects into errors."""
PROXIED_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
SKIPPED_SERVICES = {("default", "kubernetes")}
BACKLOG = 1024
"""Load tests open many connections at once; the default of 100 would drop SYNs."""

Endpoint = tuple[str, int]
RouteKey = tuple[str, int]


# --- deciding (pure) ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Route:
    """What one ClusterIP:port forwards to."""

    service: str
    """"namespace/name:port", for logs."""
    ip: str
    port: int
    endpoints: tuple[Endpoint, ...]
    affinity_seconds: int | None = None
    """Set with sessionAffinity ClientIP."""

    @property
    def key(self) -> RouteKey:
        return (self.ip, self.port)


def _is_ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


def usable_endpoints(slices: Iterable[Mapping[str, Any]], port_name: str, *,
                     publish_not_ready: bool = False) -> tuple[Endpoint, ...]:
    """The endpoints a new connection may go to, in a stable order (the API's order is not)."""
    ready: set[Endpoint] = set()
    terminating: set[Endpoint] = set()
    for piece in slices:
        if piece.get("addressType") != "IPv4":
            continue
        number = next((p.get("port") for p in piece.get("ports") or []
                       if (p.get("name") or "") == port_name and p.get("protocol", "TCP") == "TCP"), None)
        if number is None:
            continue
        for endpoint in piece.get("endpoints") or []:
            if not endpoint.get("addresses"):
                continue
            conditions = endpoint.get("conditions") or {}
            is_ready = conditions.get("ready") is not False
            is_serving = is_ready if conditions.get("serving") is None else conditions["serving"]
            address = (endpoint["addresses"][0], int(number))
            if is_ready or (publish_not_ready and is_serving):
                ready.add(address)
            elif is_serving and conditions.get("terminating"):
                terminating.add(address)
    return tuple(sorted(ready or terminating, key=lambda e: (ipaddress.ip_address(e[0]), e[1])))


def routes(services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]) -> dict[RouteKey, Route]:
    """Every ClusterIP:port to proxy, from the Service and EndpointSlice lists of all namespaces."""
    by_service: dict[tuple[str, str], list[Mapping[str, Any]]] = collections.defaultdict(list)
    for piece in slices:
        meta = piece["metadata"]
        owner = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if owner:
            by_service[(meta["namespace"], owner)].append(piece)
    result: dict[RouteKey, Route] = {}
    for service in services:
        meta, spec = service["metadata"], service.get("spec") or {}
        ident = (meta["namespace"], meta["name"])
        ip = spec.get("clusterIP") or ""
        if ident in SKIPPED_SERVICES or spec.get("type", "ClusterIP") not in PROXIED_TYPES or not _is_ipv4(ip):
            continue  # also headless ("None") and ExternalName Services
        affinity = None
        if spec.get("sessionAffinity") == "ClientIP":
            config = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
            affinity = int(config.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
        for port in spec.get("ports") or []:
            if port.get("protocol", "TCP") != "TCP":
                continue
            name = port.get("name") or ""
            endpoints = usable_endpoints(by_service[ident], name,
                                         publish_not_ready=bool(spec.get("publishNotReadyAddresses")))
            route = Route(f"{ident[0]}/{ident[1]}:{name or port['port']}", ip, int(port["port"]), endpoints, affinity)
            result[route.key] = route
    return result


class Balancer:
    """Which endpoint a new connection of one route goes to. The caller tells the time."""

    def __init__(self, route: Route):
        self.route = route
        self._next = 0
        self._sticky: dict[str, tuple[Endpoint, float]] = {}
        """client IP → (endpoint, last used), with session affinity."""

    def update(self, route: Route) -> None:
        self.route = route
        if route.affinity_seconds is None:
            self._sticky.clear()

    def choose(self, client: str, now: float, exclude: frozenset[Endpoint] | set[Endpoint] = frozenset()
               ) -> Endpoint | None:
        """The endpoint for a new connection from `client`, skipping those in `exclude` (which refused)."""
        endpoints, timeout = self.route.endpoints, self.route.affinity_seconds
        if timeout is not None:
            held = self._sticky.get(client)
            # idle time counts from the last connection, as kube-proxy's affinity does
            if held and held[0] in endpoints and held[0] not in exclude and now - held[1] <= timeout:
                self._sticky[client] = (held[0], now)
                return held[0]
        for _ in range(len(endpoints)):
            endpoint = endpoints[self._next % len(endpoints)]
            self._next = (self._next + 1) % len(endpoints)
            if endpoint not in exclude:
                if timeout is not None:
                    self._sticky[client] = (endpoint, now)
                return endpoint
        return None

    def forget_idle(self, now: float) -> None:
        timeout = self.route.affinity_seconds
        if timeout is not None:
            self._sticky = {c: held for c, held in self._sticky.items() if now - held[1] <= timeout}


# --- addresses on lo ----------------------------------------------------------------------------

def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def add_address(ip: str) -> None:
    result = _ip("addr", "add", f"{ip}/32", "dev", "lo")
    if result.returncode != 0 and "File exists" not in result.stderr:
        raise OSError(f"cannot add service address {ip} to lo (the proxy needs root): {result.stderr.strip()}")


def remove_address(ip: str) -> None:
    """Takes ip off lo unless something still listens on it.

    Every local cluster allocates ClusterIPs from the same range, so two clusters on one
    machine can share an address; the one still listening on it keeps it.
    """
    if not listened_on(ip):
        _ip("addr", "del", f"{ip}/32", "dev", "lo")


# --- moving bytes -------------------------------------------------------------------------------

def _reset(transport: asyncio.BaseTransport | None) -> None:
    """Closes with RST rather than FIN, so the other end sees the failure as a failure."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class _Side(asyncio.Protocol):
    """One socket of a proxied connection: what it reads is written to its peer's socket."""

    def __init__(self, peer: _Side | None = None):
        self.transport: asyncio.Transport | None = None
        self.peer = peer
        self.read_eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and not self.peer.lost:
            self.peer.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.read_eof = True
        peer = self.peer
        if peer is None or peer.lost:
            return False  # nothing to pass it on to: close
        if peer.read_eof:
            peer.transport.close()  # type: ignore[union-attr]  # both ways done; close() sends what is buffered first
            return False
        peer.transport.write_eof()  # type: ignore[union-attr]  # half-close: after the buffered bytes
        return True  # keep our sending direction open

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        peer = self.peer
        if peer is not None and not peer.lost:
            if exc is None:
                peer.transport.close()  # type: ignore[union-attr]
            else:
                _reset(peer.transport)

    # flow control: while what waits to be sent on our socket is over the transport's high-water
    # mark, read nothing more from the peer, so a slow reader holds back a fast writer
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.lost:
            self.peer.transport.resume_reading()


class _Client(_Side):
    """The accepted side: reads nothing until a backend connection is open."""

    def __init__(self, proxy: ServiceProxy, key: RouteKey):
        super().__init__()
        self.proxy = proxy
        self.key = key
        self.opening: asyncio.Task | None = None
        """Held here: the loop keeps only a weak reference to a task."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]
        self.proxy._connections[self.key].add(self)
        self.opening = self.proxy._loop.create_task(self.proxy._open_backend(self))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        open_ones = self.proxy._connections.get(self.key)  # gone when the Service was
        if open_ones is not None:
            open_ones.discard(self)


# --- the proxy ----------------------------------------------------------------------------------

class ServiceProxy:
    """Keeps lo's ClusterIPs, the listeners and the balancers in step with the API; start() and stop()."""

    def __init__(self, api: Api, *, poll_seconds: float = POLL_SECONDS):
        self.api = api
        self.poll_seconds = poll_seconds
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="service-proxy", daemon=True)
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        # one worker: the API client keeps one session per thread, and the `ip` calls are serial anyway
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="service-proxy-io")
        self._routes: dict[RouteKey, Route] = {}
        self._balancers: dict[RouteKey, Balancer] = {}
        self._servers: dict[RouteKey, asyncio.AbstractServer] = {}
        self._connections: dict[RouteKey, set[_Client]] = collections.defaultdict(set)
        self._addresses: set[str] = set()
        self._complaints: dict[str, str] = {}
        """What was last logged per subject, so a lasting failure is logged once, not every poll."""

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        if self._thread.is_alive() and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(30)
        self._worker.shutdown(wait=False)

    # --- the loop thread -------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._started.set()
        try:
            while not self._stopping.is_set():
                await self._poll()
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.poll_seconds)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self._apply({})  # closes every listener and connection, takes the addresses off lo

    def _fetch(self) -> tuple[list[dict], list[dict]]:
        services = self.api.get("/api/v1/services")["items"]
        slices = self.api.get("/apis/discovery.k8s.io/v1/endpointslices")["items"]
        return services, slices

    async def _poll(self) -> None:
        try:
            services, slices = await self._loop.run_in_executor(self._worker, self._fetch)
            desired = routes(services, slices)
        except Exception as error:  # the API server may be briefly away (or restarting); keep going
            self.errors += 1
            self._complain("reading Services and EndpointSlices", str(error))
            return
        self._complain("reading Services and EndpointSlices", None)
        try:
            await self._apply(desired)
        except Exception:  # a bug in applying must not stop the proxy for good
            self.errors += 1
            log.exception("applying service routes")

    def _complain(self, subject: str, problem: str | None) -> None:
        """Logs a problem with subject once while it lasts (not every poll), and when it is over."""
        previous = self._complaints.pop(subject, None)
        if problem is None:
            if previous is not None:
                log.info("service proxy: %s works again", subject)
            return
        self._complaints[subject] = problem
        if problem != previous:
            log.warning("service proxy: %s: %s", subject, problem)

    async def _apply(self, desired: dict[RouteKey, Route]) -> None:
        now = time.monotonic()
        for key in [k for k in self._routes if k not in desired]:
            self._drop(key)
        self._routes = {k: r for k, r in self._routes.items() if k in desired}
        wanted = {r.ip for r in desired.values()}
        for ip in sorted(wanted - self._addresses):
            try:
                await self._loop.run_in_executor(self._worker, add_address, ip)
            except OSError as error:
                self.errors += 1
                self._complain(f"adding {ip}", str(error))
                continue
            self._complain(f"adding {ip}", None)
            self._addresses.add(ip)
        for key, route in desired.items():
            balancer = self._balancers.get(key)
            if balancer is None:
                balancer = self._balancers[key] = Balancer(route)
            elif balancer.route != route:
                balancer.update(route)
            balancer.forget_idle(now)
            if self._routes.get(key) != route:
                log.info("service proxy: %s on %s:%s → %s", route.service, route.ip, route.port,
                         ", ".join(f"{ip}:{port}" for ip, port in route.endpoints) or "nothing (refused)")
            self._routes[key] = route
            if route.endpoints and key not in self._servers and route.ip in self._addresses:
                await self._listen(route)
            elif not route.endpoints and key in self._servers:
                self._servers.pop(key).close()  # connects are refused now; open connections go on
        for ip in sorted(self._addresses - wanted):
            await self._loop.run_in_executor(self._worker, remove_address, ip)
            self._addresses.discard(ip)
            self._complaints.pop(f"adding {ip}", None)

    async def _listen(self, route: Route) -> None:
        key = route.key
        try:
            self._servers[key] = await self._loop.create_server(
                lambda: _Client(self, key), route.ip, route.port, reuse_address=True, backlog=BACKLOG)
        except OSError as error:  # e.g. another local cluster got the same ClusterIP and port
            self.errors += 1
            self._complain(f"listening on {route.ip}:{route.port}", f"{error} (for {route.service})")
            return
        self._complain(f"listening on {route.ip}:{route.port}", None)

    def _drop(self, key: RouteKey) -> None:
        server = self._servers.pop(key, None)
        if server is not None:
            server.close()
        self._balancers.pop(key, None)
        self._complaints.pop(f"listening on {key[0]}:{key[1]}", None)
        for client in list(self._connections.pop(key, ())):
            _reset(client.transport)
            if client.peer is not None:
                _reset(client.peer.transport)

    async def _open_backend(self, client: _Client) -> None:
        peer = client.transport.get_extra_info("peername")  # type: ignore[union-attr]
        client_ip = peer[0] if peer else ""
        tried: set[Endpoint] = set()
        while not client.lost:
            balancer = self._balancers.get(client.key)  # looked up again: the Service may have gone meanwhile
            endpoint = balancer.choose(client_ip, time.monotonic(), tried) if balancer else None
            if balancer is None or endpoint is None:
                break
            backend = _Side(peer=client)  # linked first: a server that speaks first must reach the client
            subject = f"connecting to {endpoint[0]}:{endpoint[1]}"
            try:
                await asyncio.wait_for(self._loop.create_connection(lambda: backend, *endpoint),
                                       CONNECT_TIMEOUT_SECONDS)
            except (OSError, asyncio.TimeoutError) as error:
                self._complain(subject, f"{error!r} (for {balancer.route.service}; trying another endpoint)")
                tried.add(endpoint)
                continue
            self._complain(subject, None)
            if client.lost:
                backend.transport.close()  # type: ignore[union-attr]
                return
            client.peer = backend
            client.transport.resume_reading()  # type: ignore[union-attr]
            return
        _reset(client.transport)  # no endpoint took it: the client sees a reset, not a hang
