"""Prometheus and Alertmanager for the local cluster, as the e2e tests and `make demo` run them:
manifests (plain dicts, for `kubectl apply`) of pods from the images built here
(images/prometheus, images/alertmanager), each with a ConfigMap and a Service."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

import imagebuild


def _deployment(name: str, image: str, args: list[str], port: int, mounts: list[tuple[str, str, str]],
                user: int | None = None) -> list[dict[str, Any]]:
    """A one-replica Deployment and its Service; mounts: (volume, ConfigMap, path), plus an
    emptyDir for the data under /<name>."""
    labels = {"app": name}
    security: dict[str, Any] = {"runAsNonRoot": True}
    if user is not None:
        security["runAsUser"] = user
    volumes = [{"name": volume, "configMap": {"name": configmap}} for volume, configmap, _ in mounts]
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels}, "spec": {
                 "securityContext": security,
                 "containers": [{
                     "name": name, "image": image, "args": args,
                     "ports": [{"name": "http", "containerPort": port}],
                     "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "http"}, "periodSeconds": 1},
                     "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                     "volumeMounts": [*({"name": v, "mountPath": path} for v, _, path in mounts),
                                      {"name": "data", "mountPath": f"/{name}"}]}],
                 "volumes": [*volumes, {"name": "data", "emptyDir": {}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": labels, "ports": [{"port": port, "targetPort": "http"}]}},
    ]


def prometheus(config: dict[str, Any], rules: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Prometheus with `config` (prometheus.yml as a dict) and rule files (name -> text) under
    /etc/prometheus/rules, listening on 9090 (Service `prometheus`)."""
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus"},
         "data": {"prometheus.yml": json.dumps(config)}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus-rules"}, "data": rules or {}},
        *_deployment("prometheus", imagebuild.by_name()["prometheus"].reference,
                     ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                      "--web.listen-address=:9090"], 9090,
                     [("config", "prometheus", "/etc/prometheus"), ("rules", "prometheus-rules", "/etc/prometheus/rules")],
                     user=65534),
    ]


def alertmanager(webhook: str) -> list[dict[str, Any]]:
    """Alertmanager sending every alert, firing and resolved, to `webhook` at once (group_wait
    1s), listening on 9093 (Service `alertmanager`); one instance, no gossip cluster."""
    config = {"route": {"receiver": "person", "group_by": ["alertname", "namespace", "name"],
                        "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
              "receivers": [{"name": "person", "webhook_configs": [{"url": webhook, "send_resolved": True}]}]}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "alertmanager"},
         "data": {"alertmanager.yml": json.dumps(config)}},
        *_deployment("alertmanager", imagebuild.by_name()["alertmanager"].reference,
                     ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager",
                      "--cluster.listen-address="], 9093, [("config", "alertmanager", "/etc/alertmanager")]),
    ]


def scrape_config(operator_namespace: str, rules: bool = True, alertmanager_url: str | None = None,
                  extra_targets: dict[str, str] | None = None) -> dict[str, Any]:
    """prometheus.yml scraping the operator's metrics Service (job hakeeper-metrics, the job the
    chart's alerts name) and `extra_targets` (job -> host:port) every second, evaluating
    the mounted rule files every second and sending alerts to `alertmanager_url`."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "hakeeper-metrics", "static_configs": [
            {"targets": [f"hakeeper-metrics.{operator_namespace}.svc:8081"]}]}],
    }
    for job, target in (extra_targets or {}).items():
        config["scrape_configs"].append({"job_name": job, "static_configs": [{"targets": [target]}]})
    if rules:
        config["rule_files"] = ["/etc/prometheus/rules/*.yaml"]
    if alertmanager_url:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_url]}]}]}
    return config


class WebhookReceiver(http.server.ThreadingHTTPServer):
    """The person on call: an HTTP server on this machine that keeps every notification
    Alertmanager POSTs (its webhook JSON: status, alerts with labels and annotations) and
    hands each alert to `on_alert` as it arrives. `url` is what Alertmanager posts to."""

    def __init__(self, address: str, on_alert: Any = None):
        self.notifications: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                notification = json.loads(body)
                receiver.notifications.append(notification)
                if on_alert is not None:
                    for alert in notification.get("alerts", []):
                        on_alert(alert)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__((address, 0), Handler)
        self.url = f"http://{address}:{self.server_address[1]}/"
        threading.Thread(target=self.serve_forever, name="webhook", daemon=True).start()

    def alerts(self, name: str, status: str) -> list[dict]:
        """The alerts named `name` that arrived with `status` (firing or resolved)."""
        return [a for n in list(self.notifications) for a in n.get("alerts", [])
                if a["labels"].get("alertname") == name and a["status"] == status]

    def close(self) -> None:
        self.shutdown()
        self.server_close()
