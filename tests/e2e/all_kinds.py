"""A namespace holding all three kinds, each taken by the operator (its finalizer on), with a
Deployment shed by the DegradationPolicy: what a namespace deletion and `helm uninstall` must
never strand."""

from __future__ import annotations

import time

from hakeeper.api.meta import FINALIZER, ORIGINAL_REPLICAS_ANNOTATION

from ..integration.prometheus_support import Exporter
from ..support.kube_objects import backend_deployment
from ..support.polling import poll
from .conftest import Cluster, database_manifest
from .monitoring_support import ClusterPrometheus

KINDS = ("loadbalancerpool", "replicateddatabase", "degradationpolicy")
SHED = "batch"
"""The Deployment the policy sheds, from SHED_REPLICAS to 0."""
SHED_REPLICAS = 2


def finalized(cluster: Cluster, namespace: str) -> list[str]:
    """The objects of the three kinds in `namespace` that carry hakeeper's finalizer, as kind/name."""
    items = cluster.get(",".join(KINDS), "-n", namespace)["items"]
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in items
                  if FINALIZER in (o["metadata"].get("finalizers") or []))


def replicas(cluster: Cluster, namespace: str, name: str) -> tuple[int, int, str | None]:
    """(spec.replicas, ready replicas, the original-replicas annotation) of a Deployment."""
    d = cluster.get("deployment", name, "-n", namespace)
    return (d["spec"]["replicas"], d["status"].get("readyReplicas", 0),
            (d["metadata"].get("annotations") or {}).get(ORIGINAL_REPLICAS_ANNOTATION))


def hold_all_three_kinds(cluster: Cluster, namespace: str, exporter: Exporter, metric: str) -> None:
    """In `namespace`: a Prometheus scraping `exporter`, a LoadBalancerPool in front of a backend,
    a one-member ReplicatedDatabase, and a DegradationPolicy that has shed SHED (its trigger, the
    gauge `metric`, left firing); returns once the operator holds a finalizer on all three."""
    exporter.set(metric, 1)
    prometheus = ClusterPrometheus(cluster, namespace, exporter.target)
    cluster.apply(backend_deployment(SHED, SHED_REPLICAS, labels={"tier": "batch"}, grace_seconds=1), "-n", namespace)
    cluster.apply(backend_deployment("web", 1, grace_seconds=1), "-n", namespace)
    cluster.apply({"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": "web"},
                   "spec": {"backends": {"selector": {"matchLabels": {"app": "web"}}, "port": "http"},
                            "balancer": {"replicas": 1}}}, "-n", namespace)
    database = database_manifest("db", "mariadb")
    database["spec"]["replicas"] = 1
    cluster.apply(database, "-n", namespace)
    poll(lambda: replicas(cluster, namespace, SHED)[1] == SHED_REPLICAS, 90, what=f"{SHED}'s pods ready")
    prometheus.wait_value(f"max({metric})", lambda v: v == 1)
    cluster.apply({"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy", "metadata": {"name": "peak"},
                   "spec": {"prometheus": {"url": prometheus.url, "timeout": "1s"}, "interval": "1s",
                            "triggers": [{"name": "load", "query": f"max({metric})", "threshold": 10,
                                          "recoverThreshold": 6, "for": "1s"}],
                            "tiers": [{"name": "batch", "priority": 10,
                                       "selector": {"matchLabels": {"tier": "batch"}}}],
                            "restore": {"cooldown": "2s", "interval": "1s"}, "maxShedFraction": 1.0}},
                  "-n", namespace)
    exporter.set(metric, 12)
    started = time.monotonic()
    poll(lambda: replicas(cluster, namespace, SHED)[::2] == (0, str(SHED_REPLICAS)), 60, what=f"{SHED} shed")
    poll(lambda: len(finalized(cluster, namespace)) == 3, 60,
         what="the operator's finalizer on the pool, the database and the policy")
    print(f"{SHED} shed and the three kinds finalized {time.monotonic() - started:.1f}s after the trigger fired")
