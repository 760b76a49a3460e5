"""Scale benchmark: one operator, 100, 300 and 1,000 LoadBalancerPools (issue 17 item 1).

A control plane of its own (etcd, kube-apiserver, kube-controller-manager, kube-scheduler; no
node, so the balancer and database pods stay Pending: this measures the operator, not
HAProxy), a real Prometheus on loopback, and the operator as a process (`hakeeper run
--standalone -A`) with a ServiceAccount token of its own, so that the API server's audit log
counts its requests and nobody else's.

Objects: N pools (engine haproxy, health check none) whose backends are selector-less headless
Services with EndpointSlices the benchmark writes itself; plus, from the first size on, 100
DegradationPolicies evaluating a real PromQL query every 10 s (below threshold: nothing is shed)
and 20 ReplicatedDatabases whose members never start (no node), so every probe fails.

Per size, after every pool's ConfigMap carries its first backend, every pool's balancer pod exists
(kube-controller-manager creates them at its own pace) and SETTLE_SECONDS more (what the creation
started ends: kopf's handlers, the first status writes of a thousand objects, the first periodic pass of each pool):
- idle (IDLE_SECONDS): the operator's RSS and threads (/proc), CPU as a share of one core,
  requests/s it sent to the API server (audit log, by its ServiceAccount);
- churn (CHURN_SECONDS at CHURN_RATE EndpointSlice writes/s, each to a random pool, each a new
  address): CPU, requests/s, and the time from each slice write to the moment a watch sees the
  pool's ConfigMap carry the new address, or a later one of the same pool (a pass that reads two
  writes at once applies the second only: coalesced, counted apart); p50 / p99 / max, and writes
  never applied within 30 s.
Then how each figure grows from the first size to the last: it should be flat or linear in the
number of objects, and the churn figures flat (the churn is the same at every size).

Goals (issue 17) at 1,000 pools: RSS ≤ 300 MB, ≤ 64 threads, idle CPU ≤ 5 % of a core, slice →
ConfigMap p99 ≤ 250 ms under the churn.

Run: `make bench` (or .venv/bin/python bench/scale/run.py). BENCH_SCALE_SIZES (default
"100,300,1000"), BENCH_SCALE_IDLE (s, 60), BENCH_SCALE_CHURN (s, 30), BENCH_SCALE_RATE (50), BENCH_SCALE_SETTLE (s, 330:
longer than the pools' periodic passes, 150 to 300 s, so the idle window is the steady state);
BENCH_SCALE_LOG: a path to keep the operator's log at; BENCH_SCALE_PROFILE: a directory where py-spy
(pip install py-spy) records the operator during each idle and churn window (the thread holding the GIL: CPU, not waits), as collapsed stacks
(<size>-idle.txt, <size>-churn.txt; py-spy pauses the process to sample it: a profiling run's
figures are not the benchmark's).
"""

from __future__ import annotations

import collections
import datetime
import ipaddress
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "hack"), str(ROOT)]

from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.meta import BALANCER_COMPONENT, COMPONENT_LABEL, POOL_LABEL, SERVICE_NAME_LABEL
from localcluster.api import Api
from localcluster.controlplane import ControlPlane, kubeconfig
from tests.integration.prometheus_support import Exporter, PrometheusServer
from tests.support.polling import poll
from tests.support.stats import percentile
from tests.support.tools import tools_bin

SIZES = [int(s) for s in os.environ.get("BENCH_SCALE_SIZES", "100,300,1000").split(",")]
IDLE_SECONDS = float(os.environ.get("BENCH_SCALE_IDLE", "60"))
CHURN_SECONDS = float(os.environ.get("BENCH_SCALE_CHURN", "30"))
CHURN_RATE = float(os.environ.get("BENCH_SCALE_RATE", "50"))
SETTLE_SECONDS = float(os.environ.get("BENCH_SCALE_SETTLE", "330"))
POLICIES, DATABASES = 100, 20
NAMESPACE = "scale"
OPERATOR_SA = ("hakeeper-bench", "operator")
TICKS = os.sysconf("SC_CLK_TCK")


def _list(items: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def _pool(i: int) -> list[dict[str, Any]]:
    """Pool i, its backends' headless Service and the first EndpointSlice."""
    service = f"backends-{i}"
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": NAMESPACE},
         "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 8000}]}},
        _slice(i, _address(i, 0)),
        {"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool",
         "metadata": {"name": f"pool-{i}", "namespace": NAMESPACE},
         "spec": {"backends": {"service": service, "port": 8000}, "healthCheck": {"type": "none"},
                  "balancer": {"replicas": 1}}},
    ]


def _slice(i: int, address: str) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"backends-{i}-bench", "namespace": NAMESPACE,
                         "labels": {SERVICE_NAME_LABEL: f"backends-{i}",
                                    "endpointslice.kubernetes.io/managed-by": "bench"}},
            "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}]}


def _address(pool: int, change: int) -> str:
    """A distinct address per (pool, change): 10.128.0.0/9 holds 2**23 of them."""
    return str(ipaddress.IPv4Address("10.128.0.0") + ((change * 1009 + pool) % (1 << 23)))


def _policy(i: int, prometheus: str) -> dict[str, Any]:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy",
            "metadata": {"name": f"policy-{i}", "namespace": NAMESPACE},
            "spec": {"prometheus": {"url": prometheus}, "interval": "10s",
                     "triggers": [{"name": "load", "query": "bench_load", "operator": ">", "threshold": 100,
                                   "for": "10s"}],
                     "tiers": [{"name": "batch", "priority": 1,
                                "selector": {"matchLabels": {"hakeeper.io/tier": f"batch-{i}"}}}]}}


def _database(i: int) -> dict[str, Any]:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "ReplicatedDatabase",
            "metadata": {"name": f"db-{i}", "namespace": NAMESPACE},
            "spec": {"flavor": "mariadb", "replicas": 3, "semiSync": {"enabled": True, "waitForReplicaCount": 1}}}


class Profile:
    """py-spy recording the operator for one window (BENCH_SCALE_PROFILE), or nothing."""

    def __init__(self, pid: int, name: str, seconds: float) -> None:
        self.proc = None
        folder = os.environ.get("BENCH_SCALE_PROFILE")
        if folder:
            pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
            self.proc = subprocess.Popen(
                [str(pathlib.Path(sys.executable).parent / "py-spy"), "record", "--gil", "-p", str(pid), "-r", "50", "-d",
                 str(int(seconds)), "--format", "raw", "-o", str(pathlib.Path(folder) / f"{name}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Operator:
    """`hakeeper run` as its own process, with the bench ServiceAccount's token."""

    def __init__(self, workdir: pathlib.Path, config: pathlib.Path) -> None:
        self.log = open(workdir / "operator.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "hakeeper", "run", "--standalone", "-A"],
                                     env={**os.environ, "KUBECONFIG": str(config)}, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def sample(self) -> dict[str, float]:
        """CPU seconds so far, RSS in MB, threads."""
        stat = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = dict(line.split(":", 1) for line in
                      pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines() if ":" in line)
        return {"cpu": (int(stat[11]) + int(stat[12])) / TICKS,
                "rss": int(status["VmRSS"].split()[0]) / 1024, "threads": int(status["Threads"])}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class AuditCounter:
    """Requests the operator's ServiceAccount made, from the API server's audit log."""

    def __init__(self, path: pathlib.Path, user: str) -> None:
        self.path, self.user = path, user

    def count(self, since: datetime.datetime, until: datetime.datetime) -> tuple[int, collections.Counter]:
        """(requests received in [since, until), their count by verb and resource)."""
        seen: dict[str, str] = {}
        with open(self.path, encoding="utf-8") as log:
            for line in log:
                if self.user not in line:
                    continue
                event = json.loads(line)
                if event.get("user", {}).get("username") != self.user:
                    continue
                received = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
                if since <= received < until:
                    ref = event.get("objectRef") or {}
                    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                    seen[event["auditID"]] = f"{event['verb']} {ref.get('resource', '?')}{sub}"
        return len(seen), collections.Counter(seen.values())


class ConfigMapWatch:
    """When each backend address first appears in a pool's ConfigMap (servers.json)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            session = self.api._session()
            try:
                with session.get(self.api.server + f"/api/v1/namespaces/{NAMESPACE}/configmaps",
                                 params={"watch": "true", "labelSelector": POOL_LABEL, "timeoutSeconds": "600"},
                                 stream=True, timeout=700) as response:
                    self.ready.set()
                    for line in response.iter_lines():
                        if self.stop.is_set():
                            return
                        if not line:
                            continue
                        now = time.monotonic()
                        data = json.loads(line)["object"].get("data") or {}
                        for entry in configmap.parse_servers(data.get(configmap.SERVERS_FILE, "[]")):
                            self.seen.setdefault(entry.address, now)
            except Exception:  # noqa: BLE001 - the API server restarting or the run ending: watch again
                if not self.stop.is_set():
                    time.sleep(0.5)


def _kubectl(bin_dir: pathlib.Path, config: pathlib.Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run([str(bin_dir / "kubectl"), "--kubeconfig", str(config), *args], input=stdin,
                          check=True, capture_output=True, text=True).stdout


def _apply(bin_dir: pathlib.Path, config: pathlib.Path, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 300):
        _kubectl(bin_dir, config, "apply", "--server-side", "--field-manager", "bench", "-f", "-",
                 stdin=_list(items[start:start + 300]))


def _operator_kubeconfig(bin_dir: pathlib.Path, plane: ControlPlane, workdir: pathlib.Path) -> pathlib.Path:
    namespace, name = OPERATOR_SA
    admin = plane.kubeconfig
    _apply(bin_dir, admin, [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "hakeeper-bench-operator"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ])
    token = _kubectl(bin_dir, admin, "-n", namespace, "create", "token", name, "--duration", "6h").strip()
    path = workdir / "operator.kubeconfig"
    path.write_text(kubeconfig(plane.server, plane.ca_file, user="operator", token=token))
    path.chmod(0o600)
    return path


def _balancer_pods(api: Api) -> int:
    """How many balancer pods exist (Pending: there is no node)."""
    found = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=f"{COMPONENT_LABEL}={BALANCER_COMPONENT}")
    return len(found["items"])


def _events(api: Api) -> str:
    """The Events in the namespace so far by kind and reason, the most frequent first (an Event
    repeated by the API server's series counts `count` times)."""
    counts: collections.Counter = collections.Counter()
    for event in api.get(f"/api/v1/namespaces/{NAMESPACE}/events")["items"]:
        counts[f"{event['involvedObject'].get('kind')} {event.get('reason')}"] += int(event.get("count") or 1)
    return ", ".join(f"{what} {n}" for what, n in counts.most_common(8))


def _top(by_kind: collections.Counter, seconds: float) -> str:
    return ", ".join(f"{what} {n / seconds:.1f}/s" for what, n in by_kind.most_common(5))


def _measure_idle(operator: Operator, audit: AuditCounter, size: int) -> dict[str, Any]:
    profile = Profile(operator.proc.pid, f"{size}-idle", IDLE_SECONDS)
    start, since = operator.sample(), datetime.datetime.now(datetime.UTC)
    time.sleep(IDLE_SECONDS)  # the measurement window itself, not a wait for a condition
    end, until = operator.sample(), datetime.datetime.now(datetime.UTC)
    profile.close()
    requests, by_kind = audit.count(since, until)
    return {"rss": end["rss"], "threads": end["threads"], "cpu": (end["cpu"] - start["cpu"]) / IDLE_SECONDS,
            "requests": requests / IDLE_SECONDS, "top": _top(by_kind, IDLE_SECONDS)}


def _measure_churn(api: Api, size: int, operator: Operator, audit: AuditCounter, watch: ConfigMapWatch,
                   changes: collections.Counter) -> dict[str, Any]:
    rng = random.Random(size)
    written: dict[str, float] = {}
    last: dict[int, str] = {}
    """Each pool's last address written."""
    superseded: dict[str, str] = {}
    """An address -> the one written to its pool next."""
    profile = Profile(operator.proc.pid, f"{size}-churn", CHURN_SECONDS)
    start, since = operator.sample(), datetime.datetime.now(datetime.UTC)
    began = time.monotonic()
    n = 0
    while (now := time.monotonic()) < began + CHURN_SECONDS:
        due = began + n / CHURN_RATE
        if now < due:
            time.sleep(due - now)  # pacing the writes at CHURN_RATE
        pool = rng.randrange(size)
        changes[pool] += 1
        address = _address(pool, changes[pool])
        if pool in last:
            superseded[last[pool]] = address
        last[pool] = address
        written[address] = time.monotonic()
        api.request("PATCH", f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/backends-{pool}-bench",
                    _slice(pool, address), content_type="application/apply-patch+yaml",
                    params={"fieldManager": "bench", "force": "true"})
        n += 1
    elapsed = time.monotonic() - began
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(a in watch.seen for a in last.values()):
        time.sleep(0.05)  # polling the watch's record with a deadline
    end, until = operator.sample(), datetime.datetime.now(datetime.UTC)
    profile.close()

    def applied(address: str | None) -> float | None:
        """When the pool's ConfigMap first carried this address or a later one of the same pool:
        a pass that reads two writes at once applies only the second (coalesced, not lost)."""
        times = []
        while address is not None:
            if address in watch.seen:
                times.append(watch.seen[address])
            address = superseded.get(address)
        return min(times) if times else None

    delays = [at - t for a, t in written.items() if (at := applied(a)) is not None]
    seconds = (until - since).total_seconds()
    requests, by_kind = audit.count(since, until)
    lost = len(written) - len(delays)
    return {"rate": n / elapsed, "cpu": (end["cpu"] - start["cpu"]) / seconds, "requests": requests / seconds,
            "top": _top(by_kind, seconds),
            "p50": percentile(delays, 50) if delays else float("nan"),
            "p99": percentile(delays, 99) if delays else float("nan"),
            "max": max(delays) if delays else float("nan"), "lost": lost,
            "coalesced": sum(a not in watch.seen for a in written) - lost,
            "rss": end["rss"], "threads": end["threads"]}


def run(workdir: pathlib.Path) -> list[dict[str, Any]]:
    bin_dir = tools_bin()
    plane = ControlPlane(workdir / "plane", bin_dir, address="127.0.0.1",
                         service_network=ipaddress.ip_network("10.112.0.0/16"), node_name="bench")
    exporter = Exporter("127.0.0.1")
    exporter.set("bench_load", 1)
    prometheus = PrometheusServer("127.0.0.1", exporter)
    results = []
    operator = watch = None
    try:
        plane.start()
        prometheus.start()
        admin = plane.kubeconfig
        _kubectl(bin_dir, admin, "apply", "-f", str(ROOT / "crds"))
        _kubectl(bin_dir, admin, "wait", "--for=condition=Established", "-f", str(ROOT / "crds"))
        _apply(bin_dir, admin, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
        pki = plane.dir / "pki"
        api = Api(plane.server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key")
        watch = ConfigMapWatch(api)
        poll(watch.ready.is_set, 30, what="the ConfigMap watch")
        _apply(bin_dir, admin, [_policy(i, prometheus.url) for i in range(POLICIES)]
               + [_database(i) for i in range(DATABASES)])
        operator = Operator(workdir, _operator_kubeconfig(bin_dir, plane, workdir))
        audit = AuditCounter(plane.audit_log, f"system:serviceaccount:{OPERATOR_SA[0]}:{OPERATOR_SA[1]}")
        created = 0
        changes: collections.Counter = collections.Counter()
        for size in SIZES:
            started = time.monotonic()
            _apply(bin_dir, admin, [item for i in range(created, size) for item in _pool(i)])
            created = size
            poll(lambda size=size: all(_address(i, 0) in watch.seen or changes[i] for i in range(size)), 900,
                 what=f"{size} pools' ConfigMaps", interval=1)
            ready_in = time.monotonic() - started
            # the control plane creates a ReplicaSet and a pod for each pool's Deployment at its own
            # pace (kube-controller-manager's 20 requests/s): the operator is not idle while a
            # thousand pods appear (each one an event it indexes, a pool it wakes)
            poll(lambda size=size: _balancer_pods(api) >= size, 900, what=f"{size} balancer pods", interval=5)
            settled_in = time.monotonic() - started
            time.sleep(SETTLE_SECONDS)  # a fixed window, stated in the table: not a wait for a condition
            idle = _measure_idle(operator, audit, size)
            churn = _measure_churn(api, size, operator, audit, watch, changes)
            results.append({"size": size, "ready_in": ready_in, "settled_in": settled_in, "idle": idle,
                            "churn": churn, "events": _events(api)})
            shown = {"ready_in": round(ready_in, 1), "settled_in": round(settled_in, 1), "idle": idle, "churn": churn}
            print(f"  {size} pools: {json.dumps(shown)}", flush=True)
    finally:
        if watch is not None:
            watch.stop.set()
        if operator is not None:
            operator.stop()
        prometheus.close()
        plane.stop()
    return results


def table(results: list[dict[str, Any]]) -> list[str]:
    rows = [("measure", *(f"{r['size']} pools" for r in results), f"{results[-1]['size']} / {results[0]['size']}",
             "goal at 1,000")]

    def row(name: str, values: list[float], fmt: str, goal: str = "") -> None:
        growth = values[-1] / values[0] if values[0] else float("nan")
        rows.append((name, *(fmt.format(v) for v in values), f"{growth:.2f}", goal))

    row("every pool's ConfigMap written after creation, s", [r["ready_in"] for r in results], "{:.1f}")
    row("every balancer pod created (kube-controller-manager) after creation, s",
        [r["settled_in"] for r in results], "{:.1f}")
    row(f"RSS idle ({SETTLE_SECONDS:.0f} s after the last balancer pod), MB", [r["idle"]["rss"] for r in results],
        "{:.0f}", "≤ 300")
    row("threads idle", [r["idle"]["threads"] for r in results], "{:.0f}", "≤ 64")
    row("CPU idle, % of a core", [100 * r["idle"]["cpu"] for r in results], "{:.1f}", "≤ 5")
    row("API requests/s idle", [r["idle"]["requests"] for r in results], "{:.1f}")
    row(f"CPU under churn ({CHURN_RATE:.0f} slice writes/s), % of a core", [100 * r["churn"]["cpu"] for r in results],
        "{:.1f}")
    row("API requests/s under churn", [r["churn"]["requests"] for r in results], "{:.1f}")
    row("slice → ConfigMap p50 under churn, ms", [1000 * r["churn"]["p50"] for r in results], "{:.0f}")
    row("slice → ConfigMap p99 under churn, ms", [1000 * r["churn"]["p99"] for r in results], "{:.0f}", "≤ 250")
    row("slice → ConfigMap max under churn, ms", [1000 * r["churn"]["max"] for r in results], "{:.0f}")
    row("slice writes never applied (neither it nor a later one of its pool) in 30 s",
        [r["churn"]["lost"] for r in results], "{:.0f}", "0")
    row("slice writes coalesced with the next write to their pool", [r["churn"]["coalesced"] for r in results],
        "{:.0f}")
    row("RSS after churn, MB", [r["churn"]["rss"] for r in results], "{:.0f}")
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for r in results:
        lines.append(f"{r['size']} pools, the operator's most frequent requests: idle {r['idle']['top']}; "
                     f"under churn {r['churn']['top']}")
        lines.append(f"{r['size']} pools, Events in the namespace so far: {r['events']}")
    return lines


def main() -> int:
    if not shutil.which("prometheus"):
        raise SystemExit("bench/scale needs Debian's prometheus (make debs)")
    with tempfile.TemporaryDirectory(prefix="hakeeper-bench-scale-") as tmp:
        try:
            results = run(pathlib.Path(tmp))
        finally:
            if os.environ.get("BENCH_SCALE_LOG"):  # the operator's log, kept to read after the run
                shutil.copy(pathlib.Path(tmp) / "operator.log", os.environ["BENCH_SCALE_LOG"])
    for line in table(results):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
