"""LoadBalancerPool benchmark: propagation latency, throughput through HAProxy, reload cost.

1. Propagation: on the local control plane with the operator and a pool whose backends are
   a selector-less Service, the benchmark writes the EndpointSlice itself (t0) and polls the
   balancer pod's HAProxy runtime API until the new server address is in `show servers
   state` (t1). Baseline in the same run: the time until a plain watch on EndpointSlices sees
   the same write — the API server's own floor.
2. Throughput: wrk against HAProxy running the rendered config in front of 3 backends, and
   straight against one backend (the backends are HAProxy responders, so the balancer is
   what is measured, not a slow test server).
3. Reload: a structural reload through the master CLI under wrk load: failed requests and
   reload time.

Run: `make bench` (or .venv/bin/python bench/lb/run.py). Needs root, haproxy, wrk, the tools.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "hack"), str(ROOT)]

from latency import latency_rows  # bench/lb/latency.py: Static vs Latency weighting

from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.api.meta import POOL_LABEL
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.haproxy import config
from tests.support.polling import poll
from tests.support.stats import percentile
from tests.support.tools import tools_bin

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import peers  # bench/lb/peers.py: hakeeper's HAProxy beside a minimal HAProxy and nginx
import tls  # bench/lb/tls.py: HTTPS against plain HTTP

CHANGES = int(os.environ.get("BENCH_LB_CHANGES", "50"))
SPACING = float(os.environ.get("BENCH_LB_SPACING", "0.25"))
"""Seconds between one change reaching HAProxy and the next EndpointSlice write (0: back to back)."""
WRK_SECONDS = int(os.environ.get("BENCH_LB_SECONDS", "5"))
NET = "127.77.0"


# -- data plane: HAProxy processes --------------------------------------------------------

class HAProxy:
    def __init__(self, workdir: pathlib.Path, name: str, text: str, env: dict[str, str] | None = None):
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        self.cfg = self.dir / "haproxy.cfg"
        self.cfg.write_text(text)
        self.master = str(self.dir / "master.sock")
        self.proc = subprocess.Popen(["haproxy", "-W", "-db", "-S", f"{self.master},mode,600", "-f", str(self.cfg)],
                                     env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)


def responder(ip: str, port: int) -> str:
    return (f"global\n    maxconn 4000\ndefaults\n    mode http\n    timeout client 30s\n    timeout server 30s\n"
            f"    timeout connect 5s\nfrontend f\n    bind {ip}:{port}\n"
            f"    http-request return status 200 content-type text/plain string ok\n")


def wrk(url: str, seconds: int, connections: int = 50) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out)[1])
    total = int(re.search(r"([0-9]+) requests in", out)[1])
    non2xx = int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: ([0-9]+)", out)) else 0
    errors = sum(int(x) for x in m.groups()) if (m := re.search(
        r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)", out)) else 0
    return {"rps": rps, "total": total, "failed": non2xx + errors}


def data_plane(workdir: pathlib.Path) -> list[tuple[str, str, str, str]]:
    backends = [Backend(f"b{i}", f"{NET}.{10 + i}", 8000) for i in range(3)]
    procs = [HAProxy(workdir, b.name, responder(b.address, b.port)) for b in backends]
    spec = LoadBalancerPoolSpec.model_validate({"backends": {"selector": {"matchLabels": {"a": "b"}}, "port": 8000},
                                                "healthCheck": {"type": "http", "path": "/"}})
    rendered = config.render("bench", spec, backends, run_dir=str(workdir / "lb"))
    (workdir / "lb").mkdir()
    entries = configmap.parse_servers(rendered.files[configmap.SERVERS_FILE])
    balancer = HAProxy(workdir, "balancer", configmap.on_disk(rendered.files[configmap.CONFIG_FILE], entries),
                       env={"POD_IP": f"{NET}.2"})
    procs.append(balancer)
    try:
        admin = str(workdir / "lb" / config.ADMIN_SOCKET)
        poll(lambda: runtime.alive(admin) and all(s.up for s in runtime.show_servers_state(admin)[0]
                                                  if s.address != config.PLACEHOLDER_ADDRESS),
             20, what="balancer up", interval=0.005)
        direct = wrk(f"http://{NET}.10:8000/", WRK_SECONDS)
        through = wrk(f"http://{NET}.2:8080/", WRK_SECONDS)
        # a structural reload while wrk runs
        result: dict[str, dict[str, float]] = {}
        load = threading.Thread(target=lambda: result.setdefault("r", wrk(f"http://{NET}.2:8080/", 4)))
        load.start()
        time.sleep(1.5)  # let the load reach steady state before reloading (not a test wait)
        started = time.monotonic()
        runtime.reload(balancer.master, admin)
        reload_ms = (time.monotonic() - started) * 1000
        load.join()
        under_reload = result["r"]
    finally:
        for proc in procs:
            proc.stop()
    return [
        ("requests/s, straight to one backend (baseline)", f"{direct['rps']:.0f}", "1.00", f"{direct['failed']} failed"),
        ("requests/s through HAProxy (3 backends)", f"{through['rps']:.0f}", f"{through['rps'] / direct['rps']:.2f}",
         f"{through['failed']} failed"),
        ("structural reload under load: time to new worker", f"{reload_ms:.0f} ms", "",
         f"{under_reload['failed']} failed of {under_reload['total']}"),
    ]


# -- propagation on the local control plane -----------------------------------------------

def propagation(bin_dir: pathlib.Path, workdir: pathlib.Path) -> list[tuple[str, str, str, str]]:
    from localcluster.api import Api
    from localcluster.pytest_support import cluster_session

    with cluster_session(bin_dir) as cluster:
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PATH": f"{bin_dir}:{os.environ['PATH']}"}

        def kubectl(*args: str, stdin: str | None = None) -> str:
            return subprocess.run(["kubectl", *args], input=stdin, env=env, check=True, capture_output=True,
                                  text=True).stdout

        kubectl("apply", "-f", str(ROOT / "crds"))
        kubectl("wait", "--for=condition=Established", "-f", str(ROOT / "crds"))
        log = open(workdir / "operator.log", "w")
        operator = subprocess.Popen([sys.executable, "-m", "hakeeper", "run", "--standalone", "-A"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "default"},
                 "spec": {"ports": [{"name": "http", "port": 8000}]}},
                {"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool",
                 "metadata": {"name": "bench", "namespace": "default"},
                 "spec": {"backends": {"service": "ext", "port": 8000}, "healthCheck": {"type": "none"},
                          "balancer": {"replicas": 1}}}]}))
            pki = cluster.state_dir / "pki"
            api = Api(cluster.control_plane.server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key")
            pod = poll(lambda: next((p["metadata"]["uid"] for p in api.get(
                "/api/v1/namespaces/default/pods", labelSelector="hakeeper.io/pool=bench")["items"]
                if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))),
                None), 120, what="a ready balancer pod", interval=0.2)
            # the socket's path under the cluster's temporary kubelet directory is longer than a
            # unix socket address may be (108 bytes): reach it through a short symlink
            admin = str(workdir / "admin.sock")
            os.symlink(cluster.node.volume_path(pod, "run") / config.ADMIN_SOCKET, admin)
            watch_seen: dict[str, float] = {}
            written: dict[str, float] = {}
            stop = threading.Event()
            threading.Thread(target=_watch_slices, args=(api, watch_seen, stop), daemon=True).start()
            threading.Thread(target=_watch_configmap, args=(api, written, stop), daemon=True).start()
            time.sleep(1)  # let the watches connect before the first write (not a test wait)
            totals, floors, operator_part = [], [], []
            worker = runtime.show_info(admin)["Pid"]
            for i in range(CHANGES):
                address = f"10.244.250.{i + 1}"
                slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                          "metadata": {"name": "ext-bench", "namespace": "default",
                                       "labels": {"kubernetes.io/service-name": "ext",
                                                  "endpointslice.kubernetes.io/managed-by": "bench"}},
                          "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
                          "endpoints": [{"addresses": [address], "conditions": {"ready": True}}]}
                started = time.monotonic()
                api.request("PATCH", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/ext-bench",
                            slice_, content_type="application/apply-patch+yaml",
                            params={"fieldManager": "bench", "force": "true"})
                poll(lambda address=address: any(s.address == address for s in runtime.show_servers_state(admin)[0]), 30,
                     what=f"{address} in HAProxy", interval=0.005)
                totals.append(time.monotonic() - started)
                seen = poll(lambda address=address: watch_seen.get(address), 10, what="the watch event", interval=0.005)
                floors.append(seen - started)
                configmap_at = poll(lambda address=address: written.get(address), 10, what="the ConfigMap's write",
                                    interval=0.005)
                operator_part.append(configmap_at - started)
                # the next change comes after the pool loop's debounce (0.1 s between two passes'
                # starts): each change is measured alone, as one pod's readiness arrives; changes
                # closer than that are coalesced into the next pass (bench/scale measures those)
                time.sleep(SPACING)
            stop.set()
            reloads = "no reload" if runtime.show_info(admin)["Pid"] == worker else "HAProxy RELOADED"
        finally:
            operator.terminate()
            try:
                operator.wait(20)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
            log.close()
    ms = lambda v: f"{v * 1000:.0f} ms"  # noqa: E731
    ratio = statistics.median(totals) / statistics.median(floors)
    agent_part = [total - op for total, op in zip(totals, operator_part, strict=True)]
    return [
        (f"EndpointSlice write → watch event, p50 / p99 (baseline, n={CHANGES})",
         f"{ms(statistics.median(floors))} / {ms(percentile(floors, 99))}", "1.00", ""),
        ("  stage 1: EndpointSlice write → the pool's ConfigMap written (operator), p50 / p99",
         f"{ms(statistics.median(operator_part))} / {ms(percentile(operator_part, 99))}",
         f"{statistics.median(operator_part) / statistics.median(floors):.1f}", "seen by a watch on the ConfigMap"),
        ("  stage 2: ConfigMap written → HAProxy runtime state (agent), p50 / p99",
         f"{ms(statistics.median(agent_part))} / {ms(percentile(agent_part, 99))}", "", "the agent's watch and runtime API"),
        (f"EndpointSlice write → HAProxy runtime state, p50 / p99 (n={CHANGES})",
         f"{ms(statistics.median(totals))} / {ms(percentile(totals, 99))}", f"{ratio:.1f}",
         f"max {ms(max(totals))}, {reloads}"),
    ]


def _watch_slices(api, seen: dict[str, float], stop: threading.Event) -> None:
    session = api._session()
    with session.get(api.server + "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
                     params={"watch": "true", "labelSelector": "endpointslice.kubernetes.io/managed-by=bench"},
                     stream=True, timeout=300) as response:
        for line in _lines(response):
            if stop.is_set():
                return
            if line:
                event = json.loads(line)
                for endpoint in event["object"].get("endpoints") or []:
                    for address in endpoint.get("addresses") or []:
                        seen.setdefault(address, time.monotonic())


def _watch_configmap(api, written: dict[str, float], stop: threading.Event) -> None:
    """When each backend address first appears in the pool's ConfigMap (servers.json)."""
    session = api._session()
    with session.get(api.server + "/api/v1/namespaces/default/configmaps",
                     params={"watch": "true", "labelSelector": f"{POOL_LABEL}=bench"},
                     stream=True, timeout=300) as response:
        for line in _lines(response):
            if stop.is_set():
                return
            if line:
                data = json.loads(line)["object"].get("data") or {}
                for entry in configmap.parse_servers(data.get(configmap.SERVERS_FILE, "[]")):
                    written.setdefault(entry.address, time.monotonic())


def _lines(response):
    try:
        yield from response.iter_lines()
    except Exception:  # the cluster stopping ends the watch  # noqa: BLE001
        return


def main() -> int:
    bin_dir = tools_bin()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hakeeper-bench-lb-") as tmp:
        workdir = pathlib.Path(tmp)
        rows += data_plane(workdir)
        rows += peers.rows(workdir)
        rows += tls.rows(workdir, HAProxy, responder, WRK_SECONDS)
        rows += propagation(bin_dir, workdir)
        rows += latency_rows(workdir)
    widths = [max(len(r[i]) for r in rows + [("measure", "value", "ratio", "notes")]) for i in range(4)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    print(line(("measure", "value", "ratio", "notes")))
    print(line(tuple("-" * w for w in widths)))
    for row in rows:
        print(line(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
