"""A real Prometheus for the degradation tests and the bench, and the Deployments a policy acts on.

- Exporter: a tiny HTTP server on a loopback IP serving /metrics; the test sets each gauge
  (or drops it: Prometheus then marks the series stale at the next scrape).
- PrometheusServer: Debian's /usr/bin/prometheus with a throwaway config and TSDB, scraping
  the exporter every second; stop() and start() again to test an unreachable Prometheus.
- Fleet: Deployments held in memory, patched with the JSON merge patches the policy sends to
  the API server (resourceVersion preconditions included), and read the way ClusterReader
  reads them. The integration tier has no Kubernetes; e2e runs the same code against one.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from hakeeper.platform.kube import ApiError

from ..support.polling import poll

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class Exporter:
    """Serves gauges in the Prometheus text format; values are set by the test."""

    def __init__(self, ip: str, port: int | None = None):
        self.ip = ip
        self.port = port or free_port(ip)
        self._values: dict[str, float] = {}
        self._lock = threading.Lock()
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text().encode()
                self.send_response(200 if self.path.startswith("/metrics") else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((ip, self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def target(self) -> str:
        return f"{self.ip}:{self.port}"

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._values[name] = value

    def drop(self, name: str) -> None:
        with self._lock:
            self._values.pop(name, None)

    def text(self) -> str:
        with self._lock:
            items = sorted(self._values.items())
        return "".join(f"# TYPE {n} gauge\n{n} {v!r}\n" for n, v in items)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PrometheusServer:
    """One Prometheus process; its TSDB and config live in a temp dir removed by close()."""

    def __init__(self, ip: str, exporter: Exporter, scrape_interval: str = "1s",
                 tls: tuple[bytes, bytes, bytes] | None = None, remote_read: str | None = None):
        """tls: (certificate PEM, key PEM, CA PEM) to serve HTTPS (Prometheus' --web.config.file).
        remote_read: a remote-read endpoint also asked for recent data (read_recent); when it fails,
        Prometheus answers queries that select series with the local data and a warning."""
        self.ip = ip
        self.port = free_port(ip)
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="hakeeper-prometheus-"))
        config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
                       "scrape_timeout": scrape_interval},
            "scrape_configs": [{"job_name": "exporter", "static_configs": [{"targets": [exporter.target]}]}],
        }
        if remote_read:
            config["remote_read"] = [{"url": remote_read, "read_recent": True}]
        (self.dir / "prometheus.yml").write_text(json.dumps(config))
        self.process: subprocess.Popen | None = None
        self.log = self.dir / "prometheus.log"
        self.flags: list[str] = []
        self.context: ssl.SSLContext | None = None
        if tls:
            cert, key, ca = tls
            (self.dir / "tls.crt").write_bytes(cert)
            (self.dir / "tls.key").write_bytes(key)
            (self.dir / "web.yml").write_text(json.dumps({"tls_server_config": {
                "cert_file": str(self.dir / "tls.crt"), "key_file": str(self.dir / "tls.key")}}))
            self.flags = [f"--web.config.file={self.dir / 'web.yml'}"]
            self.context = ssl.create_default_context(cadata=ca.decode())

    @property
    def url(self) -> str:
        return f"{'https' if self.context else 'http'}://{self.ip}:{self.port}"

    def start(self, timeout: float = 30) -> PrometheusServer:
        assert os.path.exists(PROMETHEUS), f"no {PROMETHEUS}: install Debian's prometheus (make debs)"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address={self.ip}:{self.port}",
                 "--storage.tsdb.retention.time=1h", "--log.level=warn", *self.flags],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            return self.query_value('up{job="exporter"}') == 1.0

        poll(ready, timeout, what="Prometheus to scrape the exporter", interval=0.2)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def query(self, promql: str) -> list:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=2, context=self.context) as answer:
                return json.loads(answer.read())["data"]["result"]
        except OSError:
            return []

    def query_value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, promql: str, predicate: Callable[[float | None], bool], timeout: float = 10) -> None:
        """Until Prometheus has scraped what the exporter now says."""
        poll(lambda: predicate(self.query_value(promql)), timeout, what=f"{promql} in Prometheus", interval=0.1)


def deployment(name: str, replicas: int, labels: dict[str, str] | None = None, namespace: str = "shop",
               priority_class: str | None = None) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"containers": [{"name": "app", "image": "app:1"}]}
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name},
                         "resourceVersion": "1", "uid": f"uid-{name}"},
            "spec": {"replicas": replicas, "template": {"spec": pod_spec}}}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class Fleet:
    """Deployments in memory, with the API server's rules for merge patches that the policy relies on."""

    def __init__(self, *deployments: dict[str, Any], classes: dict[str, int] | None = None):
        self.items = {(d["metadata"]["namespace"], d["metadata"]["name"]): copy.deepcopy(d) for d in deployments}
        self.classes = classes or {}
        self.hpa_list: list[dict[str, Any]] = []
        self.scaled: dict[tuple[str, str], dict[str, Any]] = {}
        """KEDA ScaledObjects by (namespace, name); add_scaled_object puts one in."""
        self.scaled_patches: list[tuple[str, str, dict]] = []
        self.namespace_label_sets: dict[str, dict[str, str] | None] = {}
        """Labels of a namespace (None: it does not exist); an unnamed one exists unlabelled."""
        self.patches: list[tuple[str, str, dict]] = []
        self.pools: dict[tuple[str, str], list[str]] = {}
        """Request class names of a LoadBalancerPool by (namespace, name); absent: no such pool."""
        self.pools_unreadable = False
        self._lock = threading.Lock()
        self._version = 1

    # what ClusterReader offers
    def deployments(self, namespace: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(d) for (ns, _), d in sorted(self.items.items()) if ns == namespace]

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.items.get((namespace, name))
            return copy.deepcopy(found) if found else None

    def pool_classes(self, namespace: str, name: str) -> list[str] | None:
        if self.pools_unreadable:
            raise ApiError(403, "Forbidden", "scripted: cannot get loadbalancerpools")
        found = self.pools.get((namespace, name))
        return None if found is None else list(found)

    def priority_classes(self) -> list[dict[str, Any]]:
        return [{"metadata": {"name": n}, "value": v} for n, v in self.classes.items()]

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        labels = self.namespace_label_sets.get(name, {})
        return None if labels is None else dict(labels)

    def hpas(self, namespace: str) -> list[dict[str, Any]]:
        return [h for h in self.hpa_list if h["metadata"]["namespace"] == namespace]

    def scaled_objects(self, namespace: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for (ns, _), o in sorted(self.scaled.items()) if ns == namespace]

    def secret_key(self, namespace: str, name: str, key: str) -> str:
        raise AssertionError("no Secrets in the fleet")

    def add_scaled_object(self, name: str, deployment: str, namespace: str = "shop",
                          annotations: dict[str, str] | None = None) -> None:
        """A KEDA ScaledObject scaling the Deployment (nothing scales here: KEDA does not run)."""
        with self._lock:
            self._version += 1
            self.scaled[(namespace, name)] = {
                "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(self._version),
                             "annotations": dict(annotations or {})},
                "spec": {"scaleTargetRef": {"name": deployment}}}

    def scaled_annotations(self, name: str, namespace: str = "shop") -> dict[str, str]:
        with self._lock:
            return dict(self.scaled[(namespace, name)]["metadata"].get("annotations") or {})

    def patch_scaled_object(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """What the API server does with a merge patch of a ScaledObject (resourceVersion precondition)."""
        return self._merge(self.scaled, self.scaled_patches, namespace, name, body)

    # what the API server does with the policy's patches
    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._merge(self.items, self.patches, namespace, name, body)

    def _merge(self, store: dict, log: list, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of store[(namespace, name)] with the resourceVersion precondition:
        404 when missing, 409 on a stale resourceVersion; the body is appended to `log`."""
        with self._lock:
            current = store.get((namespace, name))
            if current is None:
                raise ApiError(404, "Not Found")
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict")
            self._version += 1
            updated = merge_patch(current, body)
            updated["metadata"]["resourceVersion"] = str(self._version)
            store[(namespace, name)] = updated
            log.append((namespace, name, body))
            return copy.deepcopy(updated)

    def scale(self, name: str, replicas: int, namespace: str = "shop", manager: str = "kubectl") -> None:
        """Someone else (a person, an HPA, a GitOps tool) sets the replicas."""
        with self._lock:
            current = self.items[(namespace, name)]
            self._version += 1
            current["spec"]["replicas"] = replicas
            current["metadata"]["resourceVersion"] = str(self._version)
            current["metadata"]["managedFields"] = [{"manager": manager, "operation": "Update",
                                                     "time": "2030-01-01T00:00:00Z",
                                                     "fieldsV1": {"f:spec": {"f:replicas": {}}}}]

    def replicas(self, name: str, namespace: str = "shop") -> int:
        with self._lock:
            return self.items[(namespace, name)]["spec"]["replicas"]

    def annotations(self, name: str, namespace: str = "shop") -> dict[str, str]:
        with self._lock:
            return dict(self.items[(namespace, name)]["metadata"].get("annotations") or {})
