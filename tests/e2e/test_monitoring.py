"""The operator's own metrics as Prometheus scrapes them: every family is served, and a pool's
series follow what it does and go when it does."""

from __future__ import annotations

import pytest

from ..support.kube_objects import backend_deployment
from ..support.polling import poll
from .conftest import metric, operator_metrics

pytestmark = pytest.mark.e2e

FAMILIES = {
    "hakeeper_reconciles", "hakeeper_reconcile_errors", "hakeeper_reconcile_duration_seconds", "hakeeper_ready",
    "hakeeper_database_failovers", "hakeeper_database_switchovers", "hakeeper_database_failovers_refused",
    "hakeeper_database_failover_duration_seconds", "hakeeper_database_phase", "hakeeper_database_members",
    "hakeeper_database_fenced_members", "hakeeper_database_replication_lag_seconds",
    "hakeeper_database_transactions_behind", "hakeeper_database_semi_sync_active",
    "hakeeper_pool_backends", "hakeeper_pool_backends_ready", "hakeeper_pool_config_changes",
    "hakeeper_pool_config_applied", "hakeeper_pool_balancers_ready", "hakeeper_pool_balancer_reloads",
    "hakeeper_pool_propagation_seconds",
    "hakeeper_pool_vrrp_master",
    "hakeeper_policy_trigger_value", "hakeeper_policy_trigger_firing", "hakeeper_policy_degraded",
    "hakeeper_policy_shed_deployments", "hakeeper_policy_shed_tiers", "hakeeper_policy_sheds",
    "hakeeper_policy_restores", "hakeeper_policy_metrics_unavailable_seconds",
}
"""The families docs/monitoring.md lists (prometheus_client's parser names counters without _total)."""


def test_operator_metrics_list_every_family(operator):
    samples = operator_metrics(operator)
    missing = FAMILIES - set(samples)
    assert not missing, f"/metrics lacks {sorted(missing)}"


def test_a_pools_series_follow_its_backends_and_go_with_it(operator, namespace):
    operator.apply(backend_deployment("web", 2), "-n", namespace)
    operator.apply({"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": "web"},
                    "spec": {"backends": {"selector": {"matchLabels": {"app": "web"}}, "port": "http"},
                             "balancer": {"replicas": 1}}}, "-n", namespace)
    pool = {"namespace": namespace, "name": "web"}

    def series(ready: float) -> dict | None:
        samples = operator_metrics(operator)
        seen = {"ready": metric(samples, "hakeeper_ready", kind="LoadBalancerPool", **pool),
                "backends_ready": metric(samples, "hakeeper_pool_backends_ready", **pool),
                "applied": metric(samples, "hakeeper_pool_config_applied", **pool),
                "propagations": metric(samples, "hakeeper_pool_propagation_seconds_count", **pool)}
        return seen if seen["ready"] == 1 and seen["backends_ready"] == ready and seen["applied"] == 1 else None

    first = poll(lambda: series(2), 120, what="the pool's metrics: Ready, 2 backends, config applied")
    operator.kubectl("scale", "deployment/web", "--replicas=3", "-n", namespace)
    # the new backend's EndpointSlice change, rendered and applied by the balancer: one more
    # propagation observed
    poll(lambda: (lambda s: s if s and (s["propagations"] or 0) > (first["propagations"] or 0) else None)(series(3)),
         120, what="3 ready backends and one more propagation measured")
    # a structural change: the balancer's agent reloads HAProxy (hitlessly) and says so
    operator.kubectl("patch", "lbp", "web", "-n", namespace, "--type=merge", "-p", '{"spec":{"algorithm":"leastconn"}}')
    poll(lambda: [v for labels, v in operator_metrics(operator).get("hakeeper_pool_balancer_reloads", [])
                  if labels.get("namespace") == namespace and v >= 1], 120,
         what="a balancer reload counted after the algorithm change")
    operator.kubectl("delete", "lbp", "web", "-n", namespace, "--wait=true", "--timeout=60s")
    poll(lambda: metric(operator_metrics(operator), "hakeeper_pool_backends_ready", **pool) is None, 60,
         what="the deleted pool's series to go")
