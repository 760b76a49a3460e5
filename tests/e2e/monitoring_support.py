"""Prometheus and Alertmanager as pods of the e2e cluster, from the images built here."""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request

from localcluster import monitoring
from localcluster.monitoring import WebhookReceiver

from ..support.kube_objects import restricted
from ..support.polling import poll


class ClusterPrometheus:
    """Prometheus as a pod (hack/localcluster/monitoring.py) scraping `target` every second, or
    running `config` (a prometheus.yml as a dict); `rules`: files (name -> text) under
    /etc/prometheus/rules.

    `url` is what a policy names (the Service's DNS name, resolved in the operator's pod);
    the test itself queries the pod's address."""

    def __init__(self, cluster, namespace: str, target: str = "", config: dict | None = None,
                 rules: dict[str, str] | None = None):
        self.cluster, self.namespace = cluster, namespace
        config = config or {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                            "scrape_configs": [{"job_name": "e2e", "static_configs": [{"targets": [target]}]}]}
        for doc in monitoring.prometheus(config, rules):  # restricted: the e2e namespaces enforce it
            cluster.apply(restricted(doc), "-n", namespace)
        cluster.kubectl("rollout", "status", "deployment/prometheus", "-n", namespace, "--timeout=180s",
                        timeout=200)
        pod = cluster.get("pods", "-n", namespace, "-l", "app=prometheus")["items"][0]
        self.pod_url = f"http://{pod['status']['podIP']}:9090"
        self.url = f"http://prometheus.{namespace}.svc:9090"

    def query_value(self, promql: str) -> float | None:
        url = f"{self.pod_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                result = json.loads(answer.read())["data"]["result"]
        except OSError:
            return None
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, promql: str, predicate, timeout: float = 20) -> None:
        """Until Prometheus has scraped what the exporter now says."""
        poll(lambda: predicate(self.query_value(promql)), timeout, what=f"{promql} in Prometheus", interval=0.2)


def host_ip(cluster) -> str:
    """An address of the test's machine that pods reach: the local node's bridge address."""
    if cluster.node is not None:
        return cluster.node.network.node_ip
    return os.environ["HAKEEPER_E2E_HOST_IP"]




class ClusterAlertmanager:
    """Alertmanager as a pod (hack/localcluster/monitoring.py) that sends every alert, firing and
    resolved, to `webhook` at once; `url` is its Service, for Prometheus."""

    def __init__(self, cluster, namespace: str, webhook: str):
        for doc in monitoring.alertmanager(webhook):
            cluster.apply(restricted(doc), "-n", namespace)
        cluster.kubectl("rollout", "status", "deployment/alertmanager", "-n", namespace, "--timeout=180s",
                        timeout=200)
        self.url = f"alertmanager.{namespace}.svc:9093"


__all__ = ["ClusterAlertmanager", "ClusterPrometheus", "WebhookReceiver", "host_ip"]
