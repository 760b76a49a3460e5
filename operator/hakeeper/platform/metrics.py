"""The operator's own Prometheus metrics, through prometheus_client: every family, and the
HTTP endpoint that serves them (`hakeeper run --metrics-port`).

Names follow Prometheus' conventions (https://prometheus.io/docs/practices/naming/): the
`hakeeper_` prefix, base units (seconds), `_total` on counters, histograms for durations.
Series of one custom resource carry its `namespace` and `name` and go when the resource does
(`Series.forget`), so a deleted database leaves no stale series behind to alert on.

The families are the contract of the chart's alert rules and dashboard
(charts/hakeeper/files/): rename one there too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RESOURCE = ("namespace", "name")
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
FAILOVER_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)
PROPAGATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)

# -- every kind ------------------------------------------------------------------------------------
RECONCILES = Counter("hakeeper_reconciles_total", "Passes of the per-object loop.", ["kind"])
RECONCILE_ERRORS = Counter("hakeeper_reconcile_errors_total", "Passes that raised (Ready=False, a Warning).",
                           ["kind"])
RECONCILE_DURATION = Histogram("hakeeper_reconcile_duration_seconds", "How long one pass took.", ["kind"],
                               buckets=DURATION_BUCKETS)
READY = Gauge("hakeeper_ready", "1 when the resource's Ready condition is True.", ["kind", *RESOURCE])

# -- ReplicatedDatabase ---------------------------------------------------------------------------
DB_FAILOVERS = Counter("hakeeper_database_failovers_total", "Failovers, by outcome (completed, failed).",
                       [*RESOURCE, "outcome"])
DB_SWITCHOVERS = Counter("hakeeper_database_switchovers_total", "Switchovers, by outcome (completed, failed).",
                         [*RESOURCE, "outcome"])
DB_FAILOVERS_REFUSED = Counter("hakeeper_database_failovers_refused_total",
                               "Times the cluster was found Lost: no replica could be promoted without "
                               "risking acknowledged writes.", RESOURCE)
DB_FAILOVER_DURATION = Histogram("hakeeper_database_failover_duration_seconds",
                                 "From the primary's first failed probe to the new primary taking writes.",
                                 RESOURCE, buckets=FAILOVER_BUCKETS)
DB_PHASE = Gauge("hakeeper_database_phase", "1 for the database's current phase.", [*RESOURCE, "phase"])
DB_MEMBERS = Gauge("hakeeper_database_members", "Members by role (primary, replica, fenced, unknown).",
                   [*RESOURCE, "role"])
DB_FENCED = Gauge("hakeeper_database_fenced_members", "Members kept out: errant, or refusing to follow.", RESOURCE)
DB_LAG = Gauge("hakeeper_database_replication_lag_seconds", "A replica's lag behind the primary.",
               [*RESOURCE, "member"])
DB_BEHIND = Gauge("hakeeper_database_transactions_behind",
                  "Transactions the primary has that the member has not applied (GTID distance).",
                  [*RESOURCE, "member"])
DB_SEMI_SYNC = Gauge("hakeeper_database_semi_sync_active",
                     "1 while the primary waits for replica acknowledgements; 0 when it fell back to async.",
                     RESOURCE)
DB_BACKUP_LAST_SUCCESS = Gauge("hakeeper_database_backup_last_success_timestamp_seconds",
                               "When the newest backup in status.backup finished (Unix seconds); no series "
                               "before the first.", RESOURCE)
DB_BACKUP_LAST_SIZE = Gauge("hakeeper_database_backup_last_size_bytes",
                            "The newest backup's compressed size in the store.", RESOURCE)
DB_BACKUP_RUNS = Counter("hakeeper_database_backup_runs_total",
                         "Finished backup runs the operator reported, by result (succeeded, failed; a failed "
                         "binary log archive run counts as failed).", [*RESOURCE, "result"])
DB_BACKUP_SUCCEEDED = Gauge("hakeeper_database_backup_last_succeeded",
                            "1 when LastBackupSucceeded is True, 0 when False (a run failed, or the "
                            "configuration is invalid); no series without spec.backup or before a run.", RESOURCE)

# -- LoadBalancerPool -----------------------------------------------------------------------------
POOL_BACKENDS = Gauge("hakeeper_pool_backends", "Backends the pool selects.", RESOURCE)
POOL_BACKENDS_READY = Gauge("hakeeper_pool_backends_ready", "Backends ready for traffic.", RESOURCE)
POOL_CONFIG_CHANGES = Counter("hakeeper_pool_config_changes_total", "New balancer configurations written.",
                              RESOURCE)
POOL_CONFIG_APPLIED = Gauge("hakeeper_pool_config_applied",
                            "1 when every ready balancer pod runs the current configuration.", RESOURCE)
POOL_BALANCERS = Gauge("hakeeper_pool_balancers_ready", "Balancer pods ready.", RESOURCE)
POOL_RELOADS = Gauge("hakeeper_pool_balancer_reloads",
                     "Hitless HAProxy reloads each balancer pod's agent has done since it started (it "
                     "resets with the agent, so use it with resets() or increase()).", [*RESOURCE, "pod"])
POOL_PROPAGATION = Histogram("hakeeper_pool_propagation_seconds",
                             "From an EndpointSlice change seen by the operator to every ready balancer "
                             "running the configuration made from it.", RESOURCE, buckets=PROPAGATION_BUCKETS)
POOL_VRRP_MASTER = Gauge("hakeeper_pool_vrrp_master", "1 for the node holding the pool's virtual IP.",
                         [*RESOURCE, "node"])

# -- DegradationPolicy ----------------------------------------------------------------------------
POLICY_TRIGGER_VALUE = Gauge("hakeeper_policy_trigger_value", "A trigger's last query value.",
                             [*RESOURCE, "trigger"])
POLICY_TRIGGER_FIRING = Gauge("hakeeper_policy_trigger_firing", "1 while the trigger is firing.",
                              [*RESOURCE, "trigger"])
POLICY_DEGRADED = Gauge("hakeeper_policy_degraded", "1 while the policy is not Normal (Pending, Degraded, "
                        "Recovering).", RESOURCE)
POLICY_SHED_DEPLOYMENTS = Gauge("hakeeper_policy_shed_deployments", "Deployments shed (scaled to zero).", RESOURCE)
POLICY_SHED_TIERS = Gauge("hakeeper_policy_shed_tiers", "Tiers with a shed Deployment.", RESOURCE)
POLICY_SHEDS = Counter("hakeeper_policy_sheds_total", "Deployments shed.", RESOURCE)
POLICY_RESTORES = Counter("hakeeper_policy_restores_total", "Deployments restored.", RESOURCE)
POLICY_METRICS_UNAVAILABLE = Counter("hakeeper_policy_metrics_unavailable_seconds_total",
                                     "Time the policy's Prometheus could not be queried.", RESOURCE)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serves /metrics on a daemon thread (prometheus_client's exposition server)."""
    start_http_server(port, addr=address)


class Series:
    """The labelled series of one custom resource.

    `set` keeps a group of series in step with what the resource has now (a member gone, a
    role no longer held: its series is removed, not left at its last value); `forget` drops
    every series of the resource. Thread-safe.
    """

    def __init__(self, kind: str, namespace: str, name: str) -> None:
        self.kind, self.namespace, self.name = kind, namespace, name
        self._held: dict[tuple[int, str], set[tuple[str, ...]]] = {}
        self._families: dict[tuple[int, str], Any] = {}
        self._lock = threading.Lock()

    def set(self, family: Gauge, values: Mapping[tuple[str, ...], float] | float, group: str = "") -> None:
        """Sets the family's series of this resource: `values` maps the labels after namespace
        and name to a value (or is one value for a family labelled by the resource alone);
        series of the group not in `values` are removed."""
        if not isinstance(values, Mapping):
            values = {(): float(values)}
        key = (id(family), group)
        with self._lock:
            held = self._held.setdefault(key, set())
            self._families[key] = family
            for extra in held - set(values):
                _remove(family, (self.namespace, self.name, *extra))
            for extra, value in values.items():
                family.labels(self.namespace, self.name, *extra).set(value)
            self._held[key] = set(values)

    def inc(self, family: Counter, *extra: str, amount: float = 1.0) -> None:
        """Counts for this resource (labels after namespace and name: `extra`)."""
        self._remember(family, extra)
        family.labels(self.namespace, self.name, *extra).inc(amount)

    def observe(self, family: Histogram, value: float, *extra: str) -> None:
        self._remember(family, extra)
        family.labels(self.namespace, self.name, *extra).observe(value)

    def _remember(self, family: Any, extra: tuple[str, ...]) -> None:
        with self._lock:
            key = (id(family), "\0counted")
            self._families[key] = family
            self._held.setdefault(key, set()).add(extra)

    def ready(self, ready: bool | None) -> None:
        """hakeeper_ready: 1, 0, or no series while the resource has no Ready condition yet."""
        if ready is None:
            _remove(READY, (self.kind, self.namespace, self.name))
        else:
            READY.labels(self.kind, self.namespace, self.name).set(1.0 if ready else 0.0)

    def forget(self) -> None:
        """Drops every series of the resource (a deleted resource leaves nothing to alert on)."""
        with self._lock:
            for key, held in self._held.items():
                for extra in held:
                    _remove(self._families[key], (self.namespace, self.name, *extra))
            self._held.clear()
        _remove(READY, (self.kind, self.namespace, self.name))


def _remove(family: Any, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # never set
        family.remove(*labels)
