"""Real HAProxy balancers and HTTP backends on loopback addresses, for the haproxy tests.

Every process is started by a fixture of this module and stopped in its teardown. Every
wait polls with a deadline. Each balancer and backend gets its own 127.x address, so tests
never compete for ports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.server
import itertools
import os
import pathlib
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from hakeeper.agents import haproxy as agentlib
from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.agents import loop as sidecar
from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.haproxy import config

from ..support.polling import poll

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REPO = pathlib.Path(__file__).resolve().parents[2]
BACKEND_PORT = 8000
FRONTEND_PORT = 8080
# one /16 per test run, chosen by pid, so a leftover of another run cannot hold our addresses
_SECOND_OCTET = 100 + os.getpid() % 100
_addresses = itertools.count(1)
# What a check against a balancer or an agent may raise while it starts or reloads (no socket or
# file yet, a refused or cut connection, a runtime API error): poll(..., ignore=SETTLING) retries.
SETTLING = (OSError, runtime.RuntimeApiError)


def new_address() -> str:
    n = next(_addresses)
    return f"127.{_SECOND_OCTET}.{n // 250}.{n % 250 + 2}"


def port_open(address: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
        return True
    return False


def spec(**fields: Any) -> LoadBalancerPoolSpec:
    """A pool spec from wire-format (camelCase) fields over a minimal valid one."""
    wire = {"backends": {"selector": {"matchLabels": {"app": "web"}}, "port": BACKEND_PORT}, **fields}
    return LoadBalancerPoolSpec.model_validate(wire)


# -- HTTP clients -------------------------------------------------------------------------

@dataclasses.dataclass
class Answer:
    status: int
    backend: str
    headers: dict[str, str]


def get(address: str, path: str = "/", *, port: int = FRONTEND_PORT, headers: dict[str, str] | None = None,
        source: str | None = None, timeout: float = 5.0) -> Answer:
    """One request on a new connection (optionally from a chosen source address)."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
        response = conn.getresponse()
        body = response.read().decode().strip()
        backend = response.getheader("X-Backend") or body
        return Answer(response.status, backend, {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()


def spread(address: str, count: int, **kwargs: Any) -> Counter:
    """Which backend answered each of `count` sequential requests."""
    counts: Counter = Counter()
    for _ in range(count):
        answer = get(address, **kwargs)
        assert answer.status == 200, answer
        counts[answer.backend] += 1
    return counts


class ClientLoop:
    """Clients sending requests without pause, each on a new connection, counting failures.

    A failure is anything but a 200 from a backend: a refused or reset connection, a
    timeout, a 5xx from HAProxy.
    """

    def __init__(self, address: str, threads: int = 2, port: int = FRONTEND_PORT) -> None:
        self.address, self.port = address, port
        self.ok = 0
        self.failures: list[str] = []
        self.backends: Counter = Counter()
        self.timeline: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                answer = get(self.address, port=self.port, timeout=5.0)
                outcome = None if answer.status == 200 else f"HTTP {answer.status}"
            except (OSError, http.client.HTTPException) as exc:
                outcome, answer = f"{type(exc).__name__}: {exc}", None
            with self._lock:
                if outcome is None:
                    self.ok += 1
                    self.backends[answer.backend] += 1
                    self.timeline.append((time.monotonic(), answer.backend))
                else:
                    self.failures.append(outcome)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def since(self, moment: float) -> Counter:
        with self._lock:
            return Counter(backend for t, backend in self.timeline if t >= moment)

    def wait_requests(self, count: int, timeout: float = 10.0) -> None:
        start = self.total
        poll(lambda: self.total - start >= count, timeout, what=f"{count} more client requests")

    def __enter__(self) -> ClientLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


# -- processes ----------------------------------------------------------------------------

class HttpBackend:
    """The tests' backend (images/test-http-backend/httpbackend.py) on its own address: answers with its name."""

    def __init__(self, name: str, workdir: pathlib.Path) -> None:
        self.name = name
        self.address = new_address()
        self.port = BACKEND_PORT
        self.unhealthy_file = workdir / f"{name}.unhealthy"
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "images/test-http-backend/httpbackend.py"), "--address", self.address, "--port", str(self.port),
             "--name", name, "--unhealthy-file", str(self.unhealthy_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def backend(self, weight: int = 1, state: str = "ready") -> Backend:
        return Backend(name=self.name, address=self.address, port=self.port, weight=weight, state=state)

    def ready(self) -> bool:
        return port_open(self.address, self.port)

    def set_healthy(self, healthy: bool) -> None:
        if healthy:
            self.unhealthy_file.unlink(missing_ok=True)
        else:
            self.unhealthy_file.touch()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def begin_stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


class SlowBackend:
    """An in-process HTTP backend that takes `delay` seconds per answer (for leastconn)."""

    def __init__(self, name: str, delay: float) -> None:
        self.name = name
        self.address = new_address()
        self.port = BACKEND_PORT
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path != "/healthz":
                    time.sleep(delay)
                data = outer.name.encode() + b"\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Backend", outer.name)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # HAProxy's connect-only health checks reset their connections

        self.server = Server((self.address, self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def backend(self, weight: int = 1) -> Backend:
        return Backend(name=self.name, address=self.address, port=self.port, weight=weight)

    def ready(self) -> bool:
        return True

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Balancer:
    """A real `haproxy -W` (master-worker) with the pod's command line, on its own address."""

    def __init__(self, workdir: pathlib.Path, peer_name: str | None = None) -> None:
        # unix socket paths must stay short (108 bytes): a directory directly under /tmp
        self.peer_name = peer_name
        """HAProxy's local peer name (-L); in a pod it is the hostname, the pod's name."""
        self.run_dir = tempfile.mkdtemp(prefix="hk-lb-")
        self.address = new_address()
        self.config_path = os.path.join(self.run_dir, "haproxy.cfg")
        self.admin = os.path.join(self.run_dir, config.ADMIN_SOCKET)
        self.master = os.path.join(self.run_dir, "master.sock")
        self.log_path = workdir / f"haproxy-{self.address}.log"
        self.process: subprocess.Popen | None = None
        self._log = None

    def render(self, pool_spec: LoadBalancerPoolSpec, backends: Sequence[Backend],
               previous: dict[str, int] | None = None, peers: Sequence[tuple[str, str]] = ()) -> config.Rendered:
        return config.render("test", pool_spec, backends, previous, run_dir=self.run_dir, peers=peers)

    def write(self, rendered: config.Rendered) -> None:
        """The file as the agent writes it: the structure filled with servers.json."""
        entries = configmap.parse_servers(rendered.files[configmap.SERVERS_FILE])
        pathlib.Path(self.config_path).write_text(configmap.on_disk(rendered.files[configmap.CONFIG_FILE], entries))
        state = os.path.join(self.run_dir, config.STATE_FILE)
        if not os.path.exists(state):
            pathlib.Path(state).write_text("1\n")

    def start(self, rendered: config.Rendered | None = None) -> Balancer:
        if rendered is not None:
            self.write(rendered)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [HAPROXY, "-W", "-db", "-S", f"{self.master},mode,600", "-f", self.config_path,
             *(["-L", self.peer_name] if self.peer_name else [])],
            env={**os.environ, "POD_IP": self.address}, stdout=self._log, stderr=subprocess.STDOUT)
        poll(lambda: self.process.poll() is None and runtime.alive(self.admin)
             and port_open(self.address, FRONTEND_PORT) and runtime.show_proc(self.master),
             timeout=10, what=f"haproxy on {self.address}", ignore=SETTLING)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # what the runtime API tells
    def info(self) -> dict[str, str]:
        return runtime.show_info(self.admin)

    def worker(self) -> int:
        return int(self.info()["Pid"])

    def proc(self) -> runtime.Processes:
        return runtime.show_proc(self.master)

    def servers(self) -> dict[str, runtime.ServerState]:
        return {s.name: s for s in runtime.show_servers_state(self.admin)[0]}

    def wait_up(self, rendered: config.Rendered, *backends: str, timeout: float = 15.0) -> None:
        """Until the backends' slots take requests: a backend added at runtime does once its health
        checks passed (`rise` of them), not before."""
        slots = [f"s{rendered.slots[name]}" for name in backends]
        poll(lambda: all(self.servers()[slot].up for slot in slots), timeout=timeout,
             what=f"{', '.join(backends)} up after their checks", ignore=SETTLING)

    def apply(self, rendered: config.Rendered) -> list[str]:
        """servers.json through the runtime API, as the agent does; the commands sent."""
        current, _ = runtime.show_servers_state(self.admin)
        commands = runtime.plan(current, configmap.parse_servers(rendered.files[configmap.SERVERS_FILE]))
        runtime.apply(self.admin, commands)
        return commands

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # the master stops its workers
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


@dataclasses.dataclass
class Lab:
    """What a test started; everything is stopped at teardown."""

    workdir: pathlib.Path
    started: list[Any] = dataclasses.field(default_factory=list)

    def backends(self, *names: str) -> list[HttpBackend]:
        started = [HttpBackend(name, self.workdir) for name in names]
        self.started.extend(started)
        for backend in started:
            poll(backend.ready, timeout=10, what=f"backend {backend.name}")
        return started

    def slow_backend(self, name: str, delay: float) -> SlowBackend:
        backend = SlowBackend(name, delay)
        self.started.append(backend)
        return backend

    def balancer(self, peer_name: str | None = None) -> Balancer:
        balancer = Balancer(self.workdir, peer_name)
        self.started.append(balancer)
        return balancer

    def process(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        proc = subprocess.Popen(list(args), **kwargs)
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        for thing in self.started:
            if isinstance(thing, HttpBackend):
                thing.begin_stop()  # each takes half a second to notice: all at once
        for thing in reversed(self.started):
            if isinstance(thing, subprocess.Popen):
                if thing.poll() is None:
                    thing.send_signal(signal.SIGTERM)
                    try:
                        thing.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        thing.kill()
                        thing.wait()
            else:
                thing.stop()


@pytest.fixture
def lab(tmp_path: pathlib.Path) -> Iterator[Lab]:
    if not os.path.exists(HAPROXY):
        pytest.fail("haproxy is not installed (Debian package haproxy); the integration tier needs it")
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.stop()


# -- the agent ------------------------------------------------------------------------------

def snapshot(rendered: config.Rendered) -> agentlib.ConfigMapView:
    """A rendered pool as the agent sees its ConfigMap (the operator's config-hash annotation)."""
    return agentlib.ConfigMapView(data=dict(rendered.files),
                                  annotations={agentlib.CONFIG_HASH_ANNOTATION: rendered.config_hash})


class RunningAgent:
    """The balancer's agent in its own loop thread (agents/loop.run, as in the pod), fed ConfigMap
    snapshots instead of the Kubernetes watch; what it reports is kept: the applied config hashes
    in `reported`, the effective-weights reports in `weights`. `options` go to agents.haproxy.Agent
    (e.g. tls=)."""

    def __init__(self, balancer: Balancer, resync: float = 0.5, **options: Any) -> None:
        self.reported: list[str] = []
        self.weights: list[str] = []
        self.agent = agentlib.Agent(balancer.config_path, balancer.admin, balancer.master, self.reported.append,
                                    report_weights=self.weights.append, **options)
        self.latest = sidecar.Latest()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=sidecar.run, args=(self.agent, self.latest, self.stop),
                                       kwargs={"resync": resync, "retry": 0.05}, daemon=True)

    def put(self, rendered: config.Rendered) -> None:
        self.latest.put(snapshot(rendered))

    def wait_reported(self, config_hash: str) -> None:
        poll(lambda: self.reported and self.reported[-1] == config_hash, timeout=10,
             what=f"the agent to report {config_hash}")

    def __enter__(self) -> RunningAgent:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
