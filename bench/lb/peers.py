"""HAProxy as hakeeper configures it, side by side with its peers, in one run (issue 17 item 5).

Four ways to reach the same three backends (HAProxy responders answering 200 at once, so the
proxy is what is measured, not a slow test server):

- straight to one backend (the baseline: no proxy at all);
- HAProxy with the configuration hakeeper renders for a pool (`config.render`, the servers in
  their slots as the agent writes them to disk; health checks, `option forwardfor`, the metrics
  frontend, the admin socket: everything a pool's balancer runs);
- HAProxy with a hand-written minimal configuration for the same servers (one frontend, one
  round-robin backend, no checks): what hakeeper's additions cost;
- nginx (Debian's) as a reverse proxy with upstream keep-alive, the other common choice.

CPU split (2 cores): the load generators run on CPU 0; the proxy and the backends on CPU 1, so
a proxy shares its core with the backends it feeds, the same for every proxy, and the baseline
gives the backend that core alone. HAProxy and nginx each run one thread/worker (the core
taskset leaves them).

Per target, requests/s from wrk (keep-alive, 50 connections; the median of ROUNDS runs,
targets interleaved so that a slow moment of the machine hits all of them) and p50/p99 from
clients that time every request themselves (wrk 4.1's latency distribution is wrong here:
bench/lb/latency.py). Goal: hakeeper's configuration at ≥ 0.95 of the minimal one's requests/s.

Run alone: .venv/bin/python bench/lb/peers.py; `make bench` runs it from run.py.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from latency import timed_clients

from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.haproxy import config
from tests.support.polling import poll
from tests.support.stats import percentile

NET = "127.79.0"
PROXY = f"{NET}.2"
PORT = 8080
LOAD_CPU, SERVE_CPU = "0", "1"
ROUNDS = int(os.environ.get("BENCH_LB_PEER_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_LB_SECONDS", "5"))
CLIENTS = 8
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _responder(address: str) -> str:
    return (f"global\n    maxconn 4000\ndefaults\n    mode http\n    timeout client 30s\n    timeout server 30s\n"
            f"    timeout connect 5s\nfrontend f\n    bind {address}:8000\n"
            f"    http-request return status 200 content-type text/plain string ok\n")


def minimal_haproxy(backends: list[Backend]) -> str:
    """The configuration a person would write for three servers: nothing hakeeper adds."""
    servers = "".join(f"    server {b.name} {b.address}:{b.port}\n" for b in backends)
    return (f"global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 50s\n"
            f"    timeout server 50s\nfrontend clients\n    bind {PROXY}:{PORT}\n    default_backend servers\n"
            f"backend servers\n    balance roundrobin\n{servers}")


def nginx_config(backends: list[Backend], workdir: pathlib.Path) -> str:
    """nginx as a reverse proxy, keep-alive to the upstreams as HAProxy reuses its server connections."""
    servers = "".join(f"        server {b.address}:{b.port};\n" for b in backends)
    return textwrap.dedent(f"""\
        worker_processes 1;
        daemon off;
        pid {workdir}/nginx.pid;
        error_log {workdir}/error.log warn;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {workdir}/body;
            proxy_temp_path {workdir}/proxy;
            fastcgi_temp_path {workdir}/fastcgi;
            uwsgi_temp_path {workdir}/uwsgi;
            scgi_temp_path {workdir}/scgi;
            upstream servers {{
        {servers}        keepalive 64;
            }}
            server {{
                listen {PROXY}:{PORT};
                location / {{
                    proxy_pass http://servers;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                }}
            }}
        }}
        """)


class _Process:
    """A server process pinned to SERVE_CPU, in its own session so that stop() ends all of it."""

    def __init__(self, argv: list[str], log: pathlib.Path, env: dict[str, str] | None = None) -> None:
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(["taskset", "-c", SERVE_CPU, *argv], env={**os.environ, **(env or {})},
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def _wrk(url: str) -> float:
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c50", f"-d{SECONDS}s", url],
                         capture_output=True, text=True, timeout=SECONDS + 30, check=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"wrk printed no rate: {out}")


def _answers(url: str) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _start_proxies(workdir: pathlib.Path, backends: list[Backend]) -> dict[str, list[str]]:
    """The argv of each proxy, its files written under workdir."""
    spec = LoadBalancerPoolSpec.model_validate({"backends": {"selector": {"matchLabels": {"a": "b"}}, "port": 8000},
                                                "healthCheck": {"type": "http", "path": "/"}})
    run_dir = workdir / "hk"
    run_dir.mkdir()
    rendered = config.render("bench", spec, backends, run_dir=str(run_dir))
    entries = configmap.parse_servers(rendered.files[configmap.SERVERS_FILE])
    (workdir / "hakeeper.cfg").write_text(configmap.on_disk(rendered.files[configmap.CONFIG_FILE], entries))
    (workdir / "minimal.cfg").write_text(minimal_haproxy(backends))
    ngx = workdir / "nginx"
    ngx.mkdir()
    (ngx / "nginx.conf").write_text(nginx_config(backends, ngx))
    return {
        "HAProxy, hakeeper's configuration": ["haproxy", "-W", "-db", "-f", str(workdir / "hakeeper.cfg"),
                                              "-S", f"{run_dir}/master.sock,mode,600"],
        "HAProxy, minimal hand-written": ["haproxy", "-db", "-f", str(workdir / "minimal.cfg")],
        "nginx, reverse proxy": [NGINX, "-c", str(ngx / "nginx.conf"), "-p", str(ngx)],
    }


def rows(workdir: pathlib.Path) -> list[tuple[str, str, str, str]]:
    """The peer table's rows: (measure, value, ratio to the baseline, notes)."""
    workdir = workdir / "peers"
    workdir.mkdir()
    backends = [Backend(f"b{i}", f"{NET}.{10 + i}", 8000) for i in range(3)]
    servers = [_Process(["haproxy", "-db", "-f", str(_write(workdir / f"{b.name}.cfg", _responder(b.address)))],
                        workdir / f"{b.name}.log") for b in backends]
    targets = {"straight to one backend (baseline)": f"http://{backends[0].address}:8000/"}
    proxies = _start_proxies(workdir, backends)
    rates: dict[str, list[float]] = {name: [] for name in [*targets, *proxies]}
    latency: dict[str, tuple[float, float]] = {}
    try:
        poll(lambda: all(_answers(f"http://{b.address}:8000/") for b in backends), 20, what="the backends",
             interval=0.05)
        for _ in range(ROUNDS):
            for name, url in targets.items():
                rates[name].append(_wrk(url))
            for name, argv in proxies.items():
                rates[name].append(_through(workdir, name, argv, _wrk))
        for name, url in targets.items():
            latency[name] = _timed(url)
        for name, argv in proxies.items():
            latency[name] = _through(workdir, name, argv, _timed)
    finally:
        for server in servers:
            server.stop()
    baseline = statistics.median(rates["straight to one backend (baseline)"])
    minimal = statistics.median(rates["HAProxy, minimal hand-written"])
    out = []
    for name, values in rates.items():
        rate = statistics.median(values)
        p50, p99 = latency[name]
        note = f"p50 / p99 {p50:.2f} / {p99:.2f} ms ({CLIENTS} timed clients)"
        if name == "HAProxy, hakeeper's configuration":
            note += f"; {rate / minimal:.2f} of the minimal configuration (goal ≥ 0.95)"
        out.append((f"requests/s {name}", f"{rate:.0f}", f"{rate / baseline:.2f}", note))
    return out


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


def _through(workdir: pathlib.Path, name: str, argv: list[str], measure):
    """Start one proxy, measure through it, stop it: only one proxy runs at a time."""
    slug = name.split(",")[0].split()[0].lower() + str(len(name))
    proxy = _Process(argv, workdir / f"{slug}.log", env={"POD_IP": PROXY})
    url = f"http://{PROXY}:{PORT}/"
    try:
        poll(lambda: _answers(url), 20, what=f"{name} to answer", interval=0.05)
        return measure(url)
    finally:
        proxy.stop()


def _timed(url: str) -> tuple[float, float]:
    """(p50, p99) in ms of CLIENTS closed-loop clients on LOAD_CPU."""
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # the clients' threads inherit it
    try:
        durations = timed_clients(url, SECONDS, CLIENTS)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return percentile(durations, 50) * 1000, percentile(durations, 99) * 1000


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="hakeeper-bench-peers-") as tmp:
        table = rows(pathlib.Path(tmp))
    width = max(len(r[0]) for r in table)
    for row in table:
        print(f"{row[0].ljust(width)}  {row[1]:>7}  {row[2]:>5}  {row[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
