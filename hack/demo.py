"""`make demo`: hakeeper's story on a one-node cluster on this machine, in a few minutes.

Starts the local cluster (hack/localcluster, with the images built from the repository's
recipes), installs the chart with helm as a user would, a Prometheus and an Alertmanager that
pages this process (it prints each alert as it arrives), and then shows, each step with the
time it took:

1. traffic spread over a pool's backends, and a backend killed with traffic going on;
2. a database primary crash-looping and a replica promoted in seconds, the old primary back
   as a read-only replica and not switched back, and the failover alert reaching a person;
3. a latency metric crossing its threshold, the low-priority Deployments shed tier by tier,
   then restored when it recovers;
4. `kubectl get hakeeper`, and the failover alert resolved.

Then it stops what it started; with --keep it stays up until Ctrl-C and prints how to open
Prometheus and where the Grafana dashboard is.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))

from prometheus_client import CollectorRegistry, Gauge, start_http_server  # noqa: E402

from localcluster import monitoring  # noqa: E402
from localcluster.pytest_support import cluster_session  # noqa: E402

OPERATOR_NAMESPACE = "hakeeper-system"
BACKEND_IMAGE = "ghcr.io/hakeeper/test-http-backend:1"


class Story:
    """Prints each step with the time since the start and how long it took."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        began = time.monotonic()
        self.say(f"== {title}")
        yield
        self.say(f"   done in {time.monotonic() - began:.1f}s")


def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """check()'s first truthy value; RuntimeError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(subprocess.CalledProcessError, OSError, KeyError, ValueError):
            value = check()
            if value:
                return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def deployment(name: str, replicas: int, tier: str | None = None) -> dict[str, Any]:
    labels = {"app": name, **({"hakeeper.io/tier": tier} if tier else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": BACKEND_IMAGE, "imagePullPolicy": "IfNotPresent",
                                         "ports": [{"name": "http", "containerPort": 8080}]}]}}}}


def shedding_policy() -> dict[str, Any]:
    """The quickstart's policy, quicker: shed the batch tier, then reporting, while the API's
    latency stays above 500 ms for 5 s; restore under 300 ms."""
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy", "metadata": {"name": "peak-shedding"},
            "spec": {"prometheus": {"url": "http://prometheus.monitoring.svc:9090", "timeout": "1s"}, "interval": "2s",
                     "triggers": [{"name": "api-latency", "query": 'demo_api_latency_seconds{job="api"}',
                                   "operator": ">", "threshold": 0.5, "recoverThreshold": 0.3, "for": "5s"}],
                     "tiers": [{"name": "batch", "priority": 100,
                                "selector": {"matchLabels": {"hakeeper.io/tier": "batch"}}},
                               {"name": "reporting", "priority": 200,
                                "selector": {"matchLabels": {"hakeeper.io/tier": "reporting"}}}],
                     "mode": "staged", "restore": {"cooldown": "5s", "interval": "3s"}}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    keep = parser.parse_args().keep
    bin_dir = pathlib.Path(os.environ.get("HAKEEPER_TOOLS_BIN") or subprocess.run(
        ["bash", str(ROOT / "hack/build-tools.sh")], check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1])
    story = Story()
    with cluster_session(bin_dir) as local:
        env = {**os.environ, "KUBECONFIG": str(local.kubeconfig), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        story.say(f"cluster up; KUBECONFIG={local.kubeconfig}")

        def run(*argv: str, stdin: str | None = None) -> str:
            return subprocess.run(argv, env=env, check=True, capture_output=True, text=True, input=stdin).stdout

        def apply(*docs: dict[str, Any], namespace: str = "default") -> None:
            run("kubectl", "apply", "-n", namespace, "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs))

        def get(*args: str) -> dict[str, Any]:
            found: dict[str, Any] = json.loads(run("kubectl", "get", "-o", "json", *args))
            return found

        node_ip = local.network.node_ip
        registry = CollectorRegistry()
        latency = Gauge("demo_api_latency_seconds", "The API's p99 latency, as the demo sets it.", registry=registry)
        latency.set(0.12)
        exporter_server, _ = start_http_server(0, addr=node_ip, registry=registry)
        exporter = f"{node_ip}:{exporter_server.server_port}"
        pages: list[dict[str, Any]] = []

        def page(alert: dict[str, Any]) -> None:
            pages.append(alert)
            labels = alert["labels"]
            story.say(f"   ALERT {alert['status']}: {labels.get('alertname')} ({labels.get('severity')}) "
                      f"{alert['annotations'].get('summary', '')}")

        person = monitoring.WebhookReceiver(node_ip, on_alert=page)
        try:
            with story.step("install: CRDs, the chart (operator), Prometheus and Alertmanager"):
                run("kubectl", "apply", "-f", str(ROOT / "crds"))
                run("kubectl", "wait", "--for=condition=Established", "-f", str(ROOT / "crds"))
                run("helm", "install", "hakeeper", str(ROOT / "charts/hakeeper"), "-n", OPERATOR_NAMESPACE,
                    "--create-namespace", "--set", "replicaCount=1", "--wait", "--timeout", "5m")
                rules = run("helm", "template", "hakeeper", str(ROOT / "charts/hakeeper"), "-n", OPERATOR_NAMESPACE,
                            "--kube-version", "1.34.0", "--show-only", "templates/alerts.yaml",
                            "--set", "alerts.failoverWindow=1m")
                rules_text = next(d for d in yaml.safe_load_all(rules)
                                  if d and d["kind"] == "ConfigMap")["data"]["hakeeper.rules.yaml"]
                run("kubectl", "create", "namespace", "monitoring")
                apply(*monitoring.alertmanager(person.url), namespace="monitoring")
                config = monitoring.scrape_config(OPERATOR_NAMESPACE, alertmanager_url="alertmanager.monitoring.svc:9093",
                                                  extra_targets={"api": exporter})
                apply(*monitoring.prometheus(config, {"hakeeper.yaml": rules_text}), namespace="monitoring")
                run("kubectl", "rollout", "status", "-n", "monitoring", "deployment/prometheus", "deployment/alertmanager",
                    "--timeout=180s")

            with story.step("a LoadBalancerPool over 3 backends, a ReplicatedDatabase, a DegradationPolicy"):
                run("kubectl", "apply", "-f", str(ROOT / "examples/quickstart/loadbalancerpool.yaml"),
                    "-f", str(ROOT / "examples/quickstart/replicateddatabase.yaml"))
                apply(deployment("batch-export", 2, "batch"), deployment("reports", 2, "reporting"),
                      shedding_policy())
                run("kubectl", "wait", "--for=condition=Ready", "--timeout=300s", "lbp/web", "rdb/orders",
                    "dp/peak-shedding")
                print(run("kubectl", "get", "hakeeper"), flush=True)

            service = get("service", "web")["spec"]["clusterIP"]

            def backend() -> str:
                with urllib.request.urlopen(f"http://{service}/", timeout=3) as answer:
                    return str(answer.headers["X-Backend"])

            with story.step("traffic spreads over the pool's backends"):
                wait(backend, 60, "the pool to answer")
                spread = collections.Counter(backend() for _ in range(60))
                story.say(f"   60 requests through service web: {dict(spread)}")

            with story.step("a backend pod killed while a client keeps sending requests"):
                outcomes: collections.Counter[str] = collections.Counter()
                stop = threading.Event()

                def client() -> None:
                    while not stop.is_set():
                        try:
                            backend()
                            outcomes["ok"] += 1
                        except (OSError, urllib.error.URLError):
                            outcomes["failed"] += 1
                        time.sleep(0.02)

                thread = threading.Thread(target=client, daemon=True)
                thread.start()
                victim = sorted(spread)[0]
                run("kubectl", "delete", "pod", victim, "--wait=false")
                story.say(f"   deleted {victim}")
                wait(lambda: get("lbp", "web")["status"]["backends"]["ready"] == 3 and victim not in
                     {p["metadata"]["name"] for p in get("pods", "-l", "app=web")["items"]}, 120,
                     "the pool back at 3 ready backends")
                stop.set()
                thread.join(5)
                story.say(f"   client: {outcomes['ok']} answered, {outcomes['failed']} failed; "
                          f"the pool follows: {get('lbp', 'web')['status']['backends']}")

            with story.step("the database's primary crash-loops; a replica is promoted"):
                primary = get("rdb", "orders")["status"]["currentPrimary"]
                story.say(f"   primary {primary}: SIGKILL of its server each time the kubelet restarts it")
                killed_at = time.monotonic()
                restarts = -1
                while get("rdb", "orders")["status"].get("currentPrimary") == primary:
                    if time.monotonic() - killed_at > 90:
                        raise RuntimeError("no failover within 90 s")
                    pod = get("pod", primary)["status"]
                    container = next((c for c in pod.get("containerStatuses", []) if c["name"] == "mariadb"), {})
                    if "running" in container.get("state", {}) and container.get("restartCount", 0) > restarts:
                        restarts = container.get("restartCount", 0)
                        with contextlib.suppress(Exception):  # it stopped between the look and the kill
                            container_id = container["containerID"].split("://", 1)[1]
                            os.kill(local.node.container_pid(container_id), 9)
                    time.sleep(0.2)
                history = get("rdb", "orders")["status"]["history"][0]
                story.say(f"   {history['kind']}: {history['from']} -> {history['to']} in "
                          f"{history['durationSeconds']}s ({time.monotonic() - killed_at:.1f}s after the first kill)")

            with story.step("the old primary comes back as a read-only replica, and stays one"):
                def old_back() -> dict[str, Any] | None:
                    members = {m["name"]: m for m in get("rdb", "orders")["status"]["members"]}
                    m = members.get(primary, {})
                    return m if m.get("role") == "replica" and m.get("readOnly") else None

                wait(old_back, 240, f"{primary} back as a replica")
                status = get("rdb", "orders")["status"]
                roles = ", ".join(f"{m['name']}={m['role']}" for m in status["members"])
                story.say(f"   roles: {roles}; primary still {status['currentPrimary']}")
                wait(lambda: any(a["labels"].get("alertname") == "HakeeperDatabaseFailover" for a in pages), 120,
                     "the failover alert")

            def replicas() -> dict[str, int]:
                return {d: get("deployment", d)["spec"]["replicas"] for d in ("batch-export", "reports")}

            with story.step("the API's latency crosses 500 ms: low-priority Deployments are shed"):
                latency.set(0.9)
                story.say(f"   demo_api_latency_seconds = 0.9; replicas {replicas()}")
                wait(lambda: replicas() == {"batch-export": 0, "reports": 0}, 120, "both tiers shed")
                story.say(f"   policy {get('dp', 'peak-shedding')['status']['state']}; replicas {replicas()}")

            with story.step("the latency recovers: the Deployments are restored"):
                latency.set(0.1)
                wait(lambda: replicas() == {"batch-export": 2, "reports": 2}, 180, "both tiers restored")
                story.say(f"   policy {get('dp', 'peak-shedding')['status']['state']}; replicas {replicas()}")

            with story.step("the failover alert resolves once its window has passed"):
                wait(lambda: any(a["labels"].get("alertname") == "HakeeperDatabaseFailover"
                                 and a["status"] == "resolved" for a in pages), 240, "the resolved notification")
            print("\n$ kubectl get hakeeper", flush=True)
            print(run("kubectl", "get", "hakeeper"), flush=True)
            if keep:
                story.say(f"running; export KUBECONFIG={local.kubeconfig} PATH={bin_dir}:$PATH")
                story.say("Prometheus: kubectl -n monitoring port-forward svc/prometheus 9090 (then http://localhost:9090)")
                story.say(f"Grafana: import {ROOT / 'charts/hakeeper/files/dashboard.json'} "
                          "(or install the chart with dashboard.enabled=true next to Grafana's sidecar)")
                story.say("Ctrl-C stops everything")
                while True:
                    time.sleep(1)
        except KeyboardInterrupt:
            pass
        except (subprocess.CalledProcessError, RuntimeError) as error:
            detail = error.stderr if isinstance(error, subprocess.CalledProcessError) else ""
            print(f"demo failed: {error}\n{detail}", file=sys.stderr)
            print(run("kubectl", "get", "hakeeper,pods", "-A"), file=sys.stderr)
            return 1
        finally:
            person.close()
            exporter_server.shutdown()
            with contextlib.suppress(subprocess.CalledProcessError):
                run("helm", "uninstall", "hakeeper", "-n", OPERATOR_NAMESPACE, "--wait")
    story.say("stopped everything it started")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
