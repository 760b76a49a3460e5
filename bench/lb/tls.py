"""TLS termination's cost (spec.tls): requests/s and p99 latency through one HAProxy, over HTTPS
against plain HTTP, with the configuration the operator renders (a P-256 certificate, as
cert-manager issues by default for ECDSA, made here by `cryptography`).

Two client patterns, each against its own plain-HTTP baseline from the same run:
- keep-alive: wrk's connections stay open, so TLS costs only encryption;
- a new connection per request (`Connection: close`): every request pays a full handshake.

`rows(workdir)` returns the table rows (measure, value, ratio, notes); bench/lb/run.py prints them.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.agents import haproxy_tls
from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.haproxy import config
from tests.support.certs import make_cert
from tests.support.polling import poll

NET = "127.77.1"


def _wrk(url: str, seconds: int, close: bool, connections: int = 50) -> dict[str, float]:
    """wrk's requests/s, p99 latency (ms) and failed requests."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if close:
        args += ["-H", "Connection: close"]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out)[1])
    value, unit = re.search(r"^\s+99%\s+([0-9.]+)(us|ms|s)\s*$", out, re.MULTILINE).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non2xx = int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: ([0-9]+)", out)) else 0
    errors = sum(int(x) for x in m.groups()) if (m := re.search(
        r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)", out)) else 0
    return {"rps": rps, "p99": p99, "failed": non2xx + errors}


def rows(workdir: pathlib.Path, haproxy: type, responder: object, seconds: int) -> list[tuple[str, str, str, str]]:
    """Start a responder backend and a balancer rendered with spec.tls, run wrk four times, stop both.

    `haproxy` is run.py's HAProxy process class and `responder` its backend configuration
    function (kept there, shared with the other measures)."""
    backend = Backend("b0", f"{NET}.10", 8000)
    procs = [haproxy(workdir, "tls-backend", responder(backend.address, backend.port))]  # type: ignore[operator]
    spec = LoadBalancerPoolSpec.model_validate({"backends": {"selector": {"matchLabels": {"a": "b"}}, "port": 8000},
                                                "healthCheck": {"type": "http", "path": "/"},
                                                "tls": {"secretName": "bench-tls"}})
    run_dir = workdir / "tls-lb"
    run_dir.mkdir()
    cert = make_cert("bench.example")
    haproxy_tls.write_private(str(run_dir / "tls.pem"), haproxy_tls.joined(cert.cert_pem, cert.key_pem))
    rendered = config.render("bench", spec, [backend], run_dir=str(run_dir))
    entries = configmap.parse_servers(rendered.files[configmap.SERVERS_FILE])
    balancer = haproxy(workdir, "tls-balancer", configmap.on_disk(rendered.files[configmap.CONFIG_FILE], entries),
                       env={"POD_IP": f"{NET}.2"})
    procs.append(balancer)
    try:
        admin = str(run_dir / config.ADMIN_SOCKET)
        poll(lambda: runtime.alive(admin) and all(s.up for s in runtime.show_servers_state(admin)[0]
                                                  if s.address != config.PLACEHOLDER_ADDRESS),
             20, what="TLS balancer up", interval=0.005)
        plain, https = f"http://{NET}.2:8080/", f"https://{NET}.2:8443/"
        measured = {(scheme, close): _wrk(url, seconds, close)
                    for close in (False, True) for scheme, url in (("http", plain), ("https", https))}
    finally:
        for proc in procs:
            proc.stop()
    out = []
    for close, pattern in ((False, "keep-alive"), (True, "new connection per request")):
        base, tls = measured[("http", close)], measured[("https", close)]
        out += [
            (f"requests/s plain HTTP through HAProxy, {pattern} (baseline)", f"{base['rps']:.0f}", "1.00",
             f"p99 {base['p99']:.1f} ms, {base['failed']:.0f} failed"),
            (f"requests/s HTTPS (spec.tls) through HAProxy, {pattern}", f"{tls['rps']:.0f}",
             f"{tls['rps'] / base['rps']:.2f}", f"p99 {tls['p99']:.1f} ms, {tls['failed']:.0f} failed"),
        ]
    return out
