"""The lvs tier's program inside the VM (tests/lvs/vm.py boots it): python guest.py JOB_DIR.

Builds the network of topology.py in namespaces, starts the real servers, then runs each
scenario of JOB_DIR/job.json: starts the host's keepalived in the director namespaces with the
files the host rendered (`hakeeper render` + the agent's per-node priority), waits until the VIP
is up and IPVS holds the virtual server, drives traffic from the client namespace, and prints
one line `@@hk result {json}` per scenario (what it measured; the host's tests judge it).

Standard library only, one process: the real servers and the client are threads whose sockets
were opened inside their namespace (setns(2) on the opening thread; a socket keeps the
namespace it was created in). Every wait polls with a deadline.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the guest runs this file as a script
from tests.lvs import topology as topo
from tests.lvs.vm import MARK
from tests.support.polling import poll

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000
_ns_lock = threading.Lock()
KEEPALIVED = "/usr/sbin/keepalived"
LOGS = pathlib.Path("/tmp/hk-logs")


def report(kind: str, payload: Any) -> None:
    sys.stdout.write(f"{MARK}{kind} {json.dumps(payload, sort_keys=True)}\n")
    sys.stdout.flush()


def sh(*args: str, check: bool = True, timeout: float = 30) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def in_ns(ns: str, *args: str, check: bool = True) -> str:
    return sh("ip", "netns", "exec", ns, *args, check=check)


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """This thread in namespace `name` for the block (sockets opened in it stay there)."""
    with _ns_lock:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {name}")
            try:
                yield
            finally:
                if _libc.setns(home, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(home)
            os.close(target)


def sock(ns: str, kind: int, bind: tuple[str, int] | None = None) -> socket.socket:
    with netns(ns):
        s = socket.socket(socket.AF_INET, kind)
    if bind is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(bind)
    return s


# -- network --------------------------------------------------------------------------------

def sysctl(ns: str, values: dict[str, int]) -> None:
    in_ns(ns, "sysctl", "-q", "-w", *(f"{key}={value}" for key, value in values.items()))


def _leg(ns: str, dev: str, bridge: str, address: str, mac: str | None = None) -> None:
    peer = f"{ns}-{dev}"
    sh("ip", "link", "add", peer, "type", "veth", "peer", "name", dev, "netns", ns,
       *(("address", mac) if mac else ()))
    sh("ip", "link", "set", peer, "master", bridge, "up")
    sh("ip", "-n", ns, "addr", "add", address, "dev", dev)
    sh("ip", "-n", ns, "link", "set", dev, "up")


def add_directors() -> None:
    """Fresh director namespaces. IPVS state is per namespace, and a scenario must not inherit
    the last one's: its connection entries (TIME_WAIT, UDP) point at real servers that left with
    the last virtual server, and IPVS silently drops a packet of such an entry (expire_nodest_conn
    0, the default), so a client reusing a port saw a timeout. The MAC addresses stay the same
    across recreations, so the neighbours' caches stay right."""
    for i, (ns, (front, back)) in enumerate(topo.DIRECTORS.items()):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        _leg(ns, "eth0", "front", f"{front}/24", f"02:00:00:00:01:{i + 2:02x}")
        _leg(ns, "eth1", "back", f"{back}/24", f"02:00:00:00:02:{i + 2:02x}")
        sysctl(ns, {"net.ipv4.ip_forward": 1})
    sh("ip", "-n", "dA", "addr", "add", f"{topo.NAT_GATEWAY}/24", "dev", "eth1")


def remove_directors() -> None:
    for ns in topo.DIRECTORS:
        # the veths first, synchronously: a deleted namespace takes its links with it only
        # when the kernel gets round to freeing it, and add_directors() reuses the names at once
        for dev in ("eth0", "eth1"):
            sh("ip", "link", "del", f"{ns}-{dev}")
        sh("ip", "netns", "del", ns)


def build_network() -> None:
    for bridge in ("front", "back"):
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "link", "set", bridge, "up")
    for ns in [topo.CLIENT, *topo.REAL_SERVERS, *topo.NAT_SERVERS]:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    _leg(topo.CLIENT, "eth0", "front", f"{topo.CLIENT_ADDRESSES[0]}/24")
    for address in topo.CLIENT_ADDRESSES[1:]:
        sh("ip", "-n", topo.CLIENT, "addr", "add", f"{address}/24", "dev", "eth0")
    add_directors()
    for ns, address in topo.REAL_SERVERS.items():
        _leg(ns, "eth0", "front", f"{address}/24")
        # DR: the VIP is local so the real server accepts packets sent to it, and it never
        # answers ARP for it (LVS-HOWTO "the ARP problem"); TUN: ipip decapsulation on tunl0
        # with reverse-path filtering off (the inner source is the client, not the tunnel's)
        sh("ip", "-n", ns, "addr", "add", f"{topo.VIP}/32", "dev", "lo")
        sysctl(ns, {"net.ipv4.conf.all.arp_ignore": 1, "net.ipv4.conf.all.arp_announce": 2,
                    "net.ipv4.conf.eth0.arp_ignore": 1, "net.ipv4.conf.eth0.arp_announce": 2,
                    "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0})
        sh("ip", "-n", ns, "link", "set", "tunl0", "up")
        sysctl(ns, {"net.ipv4.conf.tunl0.rp_filter": 0})
    for ns, address in topo.NAT_SERVERS.items():
        _leg(ns, "eth0", "back", f"{address}/24")
        sh("ip", "-n", ns, "route", "add", "default", "via", topo.NAT_GATEWAY)


# -- real servers ---------------------------------------------------------------------------

class RealServer:
    """TCP on SERVICE_PORT and NAT_PORT, UDP on UDP_PORT, in namespace `name`.

    TCP: a line "GET ..." is an HTTP request (keepalived's HTTP_GET): answered with
    `http_status` and the server's name, then closed. Any other line is echoed back as
    "<name> <line>", line after line, until the client closes. UDP: each datagram is answered
    with the name. `tcp_up(False)` closes the TCP listeners (connections are refused)."""

    def __init__(self, name: str, udp_addresses: list[str]) -> None:
        self.name = name
        self.http_status = 200
        self.listeners: list[socket.socket] = []
        self.tcp_up(True)
        # one socket per address: a reply leaves from the address the datagram came to (DR and
        # TUN: the VIP; a socket bound to 0.0.0.0 would answer from eth0's address)
        for address in udp_addresses:
            udp = sock(name, socket.SOCK_DGRAM, (address, topo.UDP_PORT))
            threading.Thread(target=self._udp, args=(udp,), daemon=True).start()

    def tcp_up(self, up: bool) -> None:
        if up and not self.listeners:
            for port in (topo.SERVICE_PORT, topo.NAT_PORT):
                listener = sock(self.name, socket.SOCK_STREAM, ("0.0.0.0", port))
                listener.listen(128)
                self.listeners.append(listener)
                threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        elif not up:
            for listener in self.listeners:
                with contextlib.suppress(OSError):
                    listener.shutdown(socket.SHUT_RDWR)
                listener.close()
            self.listeners = []

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            try:
                for raw in stream:
                    line = raw.decode(errors="replace").rstrip("\r\n")
                    if line.startswith(("GET ", "HEAD ")):
                        while stream.readline().strip():
                            pass
                        body = f"{self.name}\n".encode()
                        stream.write(f"HTTP/1.0 {self.http_status} X\r\nContent-Length: {len(body)}\r\n"
                                     f"Connection: close\r\n\r\n".encode() + body)
                        stream.flush()
                        return
                    stream.write(f"{self.name} {line}\n".encode())
                    stream.flush()
            except OSError:
                return

    def _udp(self, udp: socket.socket) -> None:
        while True:
            data, peer = udp.recvfrom(2048)
            udp.sendto(self.name.encode(), peer)


# -- client ---------------------------------------------------------------------------------

def tcp_ask(target: str, port: int, source: str = topo.CLIENT_ADDRESSES[0], timeout: float = 2.0) -> str:
    """One short TCP connection from `source`: the real server's name that answered."""
    with sock(topo.CLIENT, socket.SOCK_STREAM, (source, 0)) as s:
        s.settimeout(timeout)
        s.connect((target, port))
        s.sendall(b"hi\n")
        line = s.makefile("rb").readline().decode()
    name, _, echoed = line.strip().partition(" ")
    if echoed != "hi":
        raise OSError(f"unexpected answer {line!r}")
    return name


def udp_ask(target: str, port: int, source: str = topo.CLIENT_ADDRESSES[0], timeout: float = 2.0) -> str:
    """One datagram from a new socket (a new source port: a new IPVS connection). The socket is
    connected: the kernel drops an answer from any other address than `target`."""
    with sock(topo.CLIENT, socket.SOCK_DGRAM, (source, 0)) as s:
        s.settimeout(timeout)
        s.connect((target, port))
        s.send(b"hi")
        return s.recv(2048).decode()


class LongConnection:
    """A long-lived TCP connection from the client: one line every `period` seconds, each echo
    read back; records (seconds since start, name or error) per line."""

    def __init__(self, target: str, port: int, period: float = 0.1, timeout: float = 20.0) -> None:
        self.s = sock(topo.CLIENT, socket.SOCK_STREAM, (topo.CLIENT_ADDRESSES[0], 0))
        self.s.settimeout(timeout)
        self.s.connect((target, port))
        self.stream = self.s.makefile("rb")
        self.period = period
        self.start = time.monotonic()
        self.echoes: list[tuple[float, str]] = []
        self.error: str | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            try:
                self.s.sendall(f"line{n}\n".encode())
                line = self.stream.readline().decode()
                if not line:
                    raise OSError("closed by the peer")
                name, _, echoed = line.strip().partition(" ")
                if echoed != f"line{n}":
                    raise OSError(f"unexpected answer {line!r}")
            except OSError as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                self.echoes.append((time.monotonic() - self.start, "error"))
                return
            self.echoes.append((time.monotonic() - self.start, name))
            self.stopping.wait(self.period)

    def names(self) -> list[str]:
        return [name for _, name in self.echoes]

    def close(self) -> None:
        """Stops the loop and closes the connection (a FIN: the file object from makefile()
        holds the socket open until it is closed too)."""
        self.stopping.set()
        self.thread.join(30)
        with contextlib.suppress(OSError):
            self.stream.close()
            self.s.close()


# -- directors ------------------------------------------------------------------------------

def ipvs(ns: str) -> list[dict[str, Any]]:
    """`ipvsadm -Ln` in `ns`: [{proto, vip, scheduler, flags, dests: [{address, forward, weight,
    active, inactive}]}]."""
    services: list[dict[str, Any]] = []
    for line in in_ns(ns, "ipvsadm", "-Ln").splitlines():
        service = re.match(r"(TCP|UDP)\s+(\S+)\s+(\S+)(.*)$", line)
        dest = re.match(r"\s+->\s+(\d+\.\d+\.\d+\.\d+:\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)", line)
        if service:
            services.append({"proto": service[1], "vip": service[2], "scheduler": service[3],
                             "flags": service[4].strip(), "dests": []})
        elif dest and services:
            services[-1]["dests"].append({"address": dest[1], "forward": dest[2], "weight": int(dest[3]),
                                          "active": int(dest[4]), "inactive": int(dest[5])})
    return services


def ipvs_connections(ns: str) -> list[str]:
    return [line for line in in_ns(ns, "ipvsadm", "-Lnc").splitlines()[2:] if line.strip()]


def has_vip(ns: str) -> bool:
    return f" {topo.VIP}/" in sh("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", topo.INTERFACE)


class Keepalived:
    """keepalived (the host's) in a director namespace, with checkers: it programs IPVS."""

    starts = 0

    def __init__(self, ns: str, source: pathlib.Path, tag: str) -> None:
        self.ns = ns
        Keepalived.starts += 1
        run = LOGS / f"{tag}-{ns}-{Keepalived.starts}"  # a log per start: a restart's own lines
        self.conf = run.with_suffix(".conf")
        self.conf.write_text(source.read_text())
        self.log = run.with_suffix(".log")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, KEEPALIVED, "-n", "-l", "-D", "-f", str(self.conf),
                 "-p", f"{run}.pid", "-r", f"{run}.vrrp.pid", "-c", f"{run}.check.pid"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def reload(self, source: pathlib.Path) -> None:
        """What the agent does on a ConfigMap change: write the file, SIGHUP keepalived."""
        self.conf.write_text(source.read_text())
        os.kill(self.proc.pid, signal.SIGHUP)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9 of keepalived and its children (a crashed node: nothing cleaned up)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


# -- scenarios ------------------------------------------------------------------------------

class Scenario:
    def __init__(self, job: pathlib.Path, spec: dict[str, Any], servers: dict[str, RealServer]) -> None:
        self.job = job
        self.spec = spec
        self.params: dict[str, Any] = spec.get("params", {})
        self.servers = servers
        self.directors: dict[str, Keepalived] = {}
        self.protocol = spec["protocol"]

    def config(self, ns: str, variant: str = "main") -> pathlib.Path:
        return self.job / self.spec["configs"][variant][ns]

    def start(self, ns: str, role: str) -> Keepalived:
        keepalived = Keepalived(ns, self.config(ns), self.spec["name"])
        self.directors[ns] = keepalived
        state = "MASTER" if role == "master" else "BACKUP"
        poll(lambda: f"Entering {state} STATE" in keepalived.text() or keepalived.proc.poll() is not None, 30, what=f"keepalived in {ns} entering {state}")
        if keepalived.proc.poll() is not None:
            raise RuntimeError(f"keepalived in {ns} exited:\n{keepalived.text()[-3000:]}")
        return keepalived

    def wait_programmed(self, ns: str, servers: int) -> list[dict[str, Any]]:
        """Until IPVS in `ns` holds the virtual server with `servers` real servers."""
        return poll(lambda: (t := ipvs(ns)) and len(t[0]["dests"]) == servers and t, 30, what=f"IPVS in {ns} with {servers} real servers")

    def up(self) -> list[dict[str, Any]]:
        """Every director of the scenario started (the first becomes master), IPVS programmed."""
        order = self.spec["directors"]
        self.start(order[0], "master")
        poll(lambda: has_vip(order[0]), 10, what=f"VIP on {order[0]}")
        for ns in order[1:]:
            self.start(ns, "backup")
        table = self.wait_programmed(order[0], len(self.spec["servers"]))
        return table

    def ask(self, source: str = topo.CLIENT_ADDRESSES[0]) -> str:
        if self.protocol == "UDP":
            return udp_ask(topo.VIP, topo.UDP_PORT, source)
        return tcp_ask(topo.VIP, topo.SERVICE_PORT, source)

    def down(self) -> None:
        for keepalived in self.directors.values():
            keepalived.stop()
        remove_directors()
        add_directors()
        for server in self.servers.values():
            server.http_status = 200
            server.tcp_up(True)

    def logs(self) -> dict[str, str]:
        return {ns: k.text()[-4000:] for ns, k in self.directors.items()}


def count(sc: Scenario) -> dict[str, Any]:
    """`per_source` requests from each of `sources` client addresses: names per source."""
    table = sc.up()
    by_source: dict[str, dict[str, int]] = {}
    for source in topo.CLIENT_ADDRESSES[: sc.params.get("sources", 1)]:
        seen: dict[str, int] = {}
        for _ in range(sc.params["per_source"]):
            name = sc.ask(source)
            seen[name] = seen.get(name, 0) + 1
        by_source[source] = seen
    totals: dict[str, int] = {}
    for seen in by_source.values():
        for name, n in seen.items():
            totals[name] = totals.get(name, 0) + n
    return {"ipvs": table, "by_source": by_source, "totals": totals}


def least_connection(sc: Scenario) -> dict[str, Any]:
    """Open 6 long connections (2 per server), close all but those of one server, open 2 more:
    where the 2 land. (IPVS's lc counts an open connection as 256 closing ones: the closed
    connections of earlier scenarios, still in TIME_WAIT, weigh little beside the 2 open ones.)"""
    sc.up()
    first = [LongConnection(topo.VIP, topo.SERVICE_PORT) for _ in range(6)]
    poll(lambda: all(c.echoes for c in first), 10, what="an echo on each first connection")
    placed = [c.names()[0] for c in first]
    kept = placed[0]
    for c in first:
        if c.names()[0] != kept:
            c.close()
    table = ipvs(sc.spec["directors"][0])
    later = [LongConnection(topo.VIP, topo.SERVICE_PORT) for _ in range(2)]
    poll(lambda: all(c.echoes for c in later), 10, what="an echo on each later connection")
    result = {"first": placed, "kept": kept, "ipvs_before": table, "later": [c.names()[0] for c in later]}
    for c in first + later:
        c.close()
    return result


def health(sc: Scenario) -> dict[str, Any]:
    """A real server fails its check (TCP: listeners closed; HTTP: 500 to GET), leaves IPVS,
    then passes again and returns; traffic counted in each phase."""
    director = sc.spec["directors"][0]
    before = sc.up()
    victim = sc.params["victim"]
    address = sc.params["victim_address"]
    server = sc.servers[victim]
    if sc.params["check"] == "http":
        server.http_status = 500
    else:
        server.tcp_up(False)
    start = time.monotonic()
    removed = poll(lambda: (t := ipvs(director)) and all(not d["address"].startswith(address + ":")
                                                          for d in t[0]["dests"]) and t, 30, what=f"{victim} out of IPVS")
    took_out = time.monotonic() - start
    during = [sc.ask() for _ in range(12)]
    server.http_status = 200
    server.tcp_up(True)
    start = time.monotonic()
    back = poll(lambda: (t := ipvs(director)) and any(d["address"].startswith(address + ":")
                                                       for d in t[0]["dests"]) and t, 30, what=f"{victim} back in IPVS")
    took_back = time.monotonic() - start
    after = [sc.ask() for _ in range(12)]
    return {"before": before, "removed": removed, "back": back, "during": during, "after": after,
            "seconds_out": took_out, "seconds_back": took_back}


def drain(sc: Scenario) -> dict[str, Any]:
    """An established connection to a server; that server is set to weight 0 (the agent's reload
    with the backend draining): the connection keeps its echoes, new connections avoid it."""
    director = sc.spec["directors"][0]
    sc.up()
    long = LongConnection(topo.VIP, topo.SERVICE_PORT)
    poll(lambda: long.echoes, 10, what="the first echo")
    target = long.names()[0]
    sc.directors[director].reload(sc.config(director, f"drain-{target}"))
    drained = poll(lambda: (t := ipvs(director)) and any(d["weight"] == 0 for d in t[0]["dests"]) and t, 30, what="weight 0 in IPVS")
    mark = len(long.echoes)
    new = [sc.ask() for _ in range(12)]
    poll(lambda: len(long.echoes) >= mark + 10, 20, what="10 more echoes on the drained connection")
    long.close()
    return {"target": target, "drained": drained, "new": new, "long": long.names(), "error": long.error}


def fail_director(ns: str, keepalived: Keepalived) -> None:
    """The node fails: its front link goes down and keepalived dies without cleaning up."""
    sh("ip", "-n", ns, "link", "set", topo.INTERFACE, "down")
    keepalived.kill()


def failover(sc: Scenario) -> dict[str, Any]:
    """A client loops on short connections while the master fails; then the failed director
    comes back (preempt false: the VIP must stay where it went)."""
    a, b = sc.spec["directors"]
    sc.up()
    sc.wait_programmed(b, len(sc.spec["servers"]))
    attempts: list[tuple[float, str]] = []
    stop = threading.Event()
    start = time.monotonic()

    def loop() -> None:
        while not stop.is_set():
            try:
                name = tcp_ask(topo.VIP, topo.SERVICE_PORT, timeout=0.5)
            except OSError as exc:
                name = f"error {type(exc).__name__}"
            attempts.append((time.monotonic() - start, name))
            stop.wait(0.05)

    client = threading.Thread(target=loop, daemon=True)
    client.start()
    poll(lambda: sum(1 for _, n in attempts if not n.startswith("error")) >= 10, 20, what="10 answers before the failure")
    failed_at = time.monotonic() - start
    fail_director(a, sc.directors[a])
    poll(lambda: has_vip(b), 20, what=f"VIP on {b}")
    vip_moved = time.monotonic() - start - failed_at
    poll(lambda: len([n for t, n in attempts if t > failed_at + vip_moved and not n.startswith("error")]) >= 10, 20, what="10 answers after the takeover")
    # the failed director returns (a rebooted node: no VIP, no virtual server)
    sh("ip", "-n", a, "link", "set", topo.INTERFACE, "up")
    sh("ip", "-n", a, "addr", "del", f"{topo.VIP}/32", "dev", topo.INTERFACE, check=False)
    in_ns(a, "ipvsadm", "-C")
    returned = sc.start(a, "backup")
    returned_at = time.monotonic() - start
    held: list[bool] = []
    deadline = time.monotonic() + sc.params["hold"]
    while time.monotonic() < deadline:
        held.append(has_vip(b) and not has_vip(a))
        time.sleep(0.2)
    stop.set()
    client.join(5)
    return {"attempts": attempts, "failed_at": failed_at, "vip_moved_after": vip_moved, "returned_at": returned_at,
            "held": held, "returned_log": returned.text()[-2000:]}


def sync(sc: Scenario) -> dict[str, Any]:
    """`connections` long-lived connections through the master (a line every 100 ms each); the
    master fails: which go on through the new master?"""
    a, b = sc.spec["directors"]
    sc.up()
    sc.wait_programmed(b, len(sc.spec["servers"]))
    longs = [LongConnection(topo.VIP, topo.SERVICE_PORT, timeout=sc.params["timeout"])
             for _ in range(sc.params["connections"])]
    poll(lambda: all(len(c.echoes) >= 10 for c in longs), 30, what="10 echoes on each connection before the failure")
    synced = None
    if sc.params["expect_synced"]:
        synced = poll(lambda: (found := [c for c in ipvs_connections(b) if "ESTABLISHED" in c])
                      and len(found) >= len(longs) and found, 20, what=f"the connections in {b}'s table (sync daemon)")
    backup_table = ipvs_connections(b)
    failed_at = time.monotonic()
    fail_director(a, sc.directors[a])
    poll(lambda: has_vip(b), 20, what=f"VIP on {b}")
    moved_at = time.monotonic()

    def settled(c: LongConnection) -> bool:
        return bool(c.error) or sum(1 for t, _ in c.echoes if c.start + t > moved_at) >= 20

    poll(lambda: all(settled(c) for c in longs), sc.params["timeout"] + 10, what="20 echoes after the takeover, or the end, on each connection")
    for c in longs:
        c.close()
    return {"connections": [{"echoes": c.echoes, "error": c.error, "failed_at": failed_at - c.start,
                             "moved_at": moved_at - c.start} for c in longs],
            "takeover": moved_at - failed_at, "synced": synced, "backup_table_before": backup_table}


def throughput(sc: Scenario) -> dict[str, Any]:
    """Requests/s: sequential short connections for `seconds`, through the VIP and straight to
    one real server (the baseline), alternated in rounds."""
    sc.up()
    direct = sc.params["direct"]
    port = sc.params["direct_port"]
    rates: dict[str, list[float]] = {"vip": [], "direct": []}
    for _ in range(sc.params["rounds"]):
        for label, target, target_port in (("vip", topo.VIP, topo.SERVICE_PORT), ("direct", direct, port)):
            n = 0
            start = time.monotonic()
            while time.monotonic() - start < sc.params["seconds"]:
                tcp_ask(target, target_port)
                n += 1
            rates[label].append(n / (time.monotonic() - start))
    return {"rates": rates}


KINDS: dict[str, Callable[[Scenario], dict[str, Any]]] = {
    "count": count, "least_connection": least_connection, "health": health, "drain": drain,
    "failover": failover, "sync": sync, "throughput": throughput}


def main(job: pathlib.Path) -> int:
    spec = json.loads((job / "job.json").read_text())
    LOGS.mkdir(parents=True, exist_ok=True)
    for module in spec["modules"]:
        sh("/usr/sbin/modprobe", "-d", spec["image"], module)
    started = time.monotonic()
    build_network()
    servers = {name: RealServer(name, [topo.VIP, address]) for name, address in topo.REAL_SERVERS.items()}
    servers.update({name: RealServer(name, ["0.0.0.0"]) for name in topo.NAT_SERVERS})
    report("ready", {"seconds": time.monotonic() - started})
    failures = 0
    for scenario_spec in spec["scenarios"]:
        started = time.monotonic()
        sc = Scenario(job, scenario_spec, servers)
        try:
            result: dict[str, Any] = {"ok": True, **KINDS[scenario_spec["kind"]](sc)}
        except Exception:  # noqa: BLE001  (reported to the host, which fails that scenario's test)
            failures += 1
            result = {"ok": False, "error": traceback.format_exc(), "logs": sc.logs()}
        finally:
            try:
                sc.down()
            except Exception:  # noqa: BLE001
                result = {"ok": False, "error": traceback.format_exc(), "logs": sc.logs()}
        result["seconds"] = time.monotonic() - started
        report("result", {"name": scenario_spec["name"], **result})
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1])))
