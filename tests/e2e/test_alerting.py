"""The path from a failover to a person: Prometheus scrapes the operator (and a balancer's
HAProxy exporter) and evaluates the chart's alert rules, Alertmanager routes the alert to a webhook receiver (this test, playing
the person on call): a crash-looping primary is replaced, the failover alert arrives, then its
resolved notification."""

from __future__ import annotations

import pytest
import yaml

from localcluster import monitoring

from ..support.kube_objects import backend_deployment
from ..support.polling import poll
from .conftest import OPERATOR_NAMESPACE, ROOT
from .monitoring_support import ClusterAlertmanager, ClusterPrometheus, WebhookReceiver, host_ip

pytestmark = pytest.mark.e2e

WINDOW = "1m"
"""alerts.failoverWindow for this test: how long the failover alert keeps firing."""


@pytest.fixture
def receiver(cluster):
    hook = WebhookReceiver(host_ip(cluster))
    yield hook
    hook.close()


def _rules(cluster) -> str:
    """The chart's rules file as `helm template` renders it with this test's window."""
    out = cluster.helm("template", "hakeeper", str(ROOT / "charts/hakeeper"), "--namespace", OPERATOR_NAMESPACE,
                       "--kube-version", "1.34.0", "--show-only", "templates/alerts.yaml",
                       "--set", f"alerts.failoverWindow={WINDOW}").stdout
    configmap = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "ConfigMap")
    return configmap["data"]["hakeeper.rules.yaml"]


def test_a_failover_pages_a_person_and_its_resolution_follows(operator, namespace, receiver):
    # a pool whose balancer serves HAProxy's own exporter, which Prometheus scrapes too
    operator.apply(backend_deployment("web", 2), "-n", namespace)
    operator.apply({"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": "web"},
                    "spec": {"backends": {"selector": {"matchLabels": {"app": "web"}}, "port": "http"},
                             "balancer": {"replicas": 1, "metricsPort": 9101}}}, "-n", namespace)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=120s", "-n", namespace, "lbp/web")
    balancer = operator.get("pods", "-n", namespace, "-l", "hakeeper.io/pool=web")["items"][0]["status"]["podIP"]

    alertmanager = ClusterAlertmanager(operator, namespace, receiver.url)
    config = monitoring.scrape_config(OPERATOR_NAMESPACE, alertmanager_url=alertmanager.url,
                                      extra_targets={"haproxy": f"{balancer}:9101"})
    prometheus = ClusterPrometheus(operator, namespace, config=config, rules={"hakeeper.yaml": _rules(operator)})
    prometheus.wait_value('up{job="hakeeper-metrics"}', lambda v: v == 1, 60)
    prometheus.wait_value('haproxy_backend_active_servers{job="haproxy",proxy="servers"}', lambda v: v == 2, 60)

    operator.apply({"apiVersion": "hakeeper.io/v1alpha1", "kind": "ReplicatedDatabase", "metadata": {"name": "db"},
                    "spec": {"flavor": "mariadb", "replicas": 3, "storage": {"size": "1Gi"},
                             "failover": {"probeInterval": "1s", "failureThreshold": 3}}}, "-n", namespace)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=300s", "-n", namespace, "rdb/db", timeout=320)
    # the counter is scraped at 0 before the failover: its first increase is one Prometheus sees
    prometheus.wait_value(f'hakeeper_database_failovers_total{{namespace="{namespace}",outcome="completed"}}',
                          lambda v: v == 0, 60)
    primary = operator.get("rdb", "db", "-n", namespace)["status"]["currentPrimary"]

    # kill -9 of the primary's server, again each time the kubelet brings it back, until the
    # operator has promoted another member
    assert operator.crash_loop(
        namespace, primary, "mariadb",
        lambda: operator.get("rdb", "db", "-n", namespace)["status"].get("currentPrimary") != primary, 90), \
        "no failover within 90 s"

    fired = poll(lambda: [a for a in receiver.alerts("HakeeperDatabaseFailover", "firing")
                          if a["labels"].get("namespace") == namespace], 120,
                 what="the failover alert at the webhook receiver")
    alert = fired[0]
    assert alert["labels"]["name"] == "db" and alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["summary"] == f"Database {namespace}/db failed over"
    assert alert["annotations"]["runbook_url"].endswith("docs/runbook.md#hakeeperdatabasefailover")
    # the failover is over: once the window has passed, the person is told so
    poll(lambda: [a for a in receiver.alerts("HakeeperDatabaseFailover", "resolved")
                  if a["labels"].get("namespace") == namespace], 240,
         what="the failover alert's resolved notification")
