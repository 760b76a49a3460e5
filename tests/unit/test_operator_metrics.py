"""The operator's own metrics: what each kind exports from its status and Events, read back
from prometheus_client's registry as a scrape would see it."""

from __future__ import annotations

import itertools

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from hakeeper.api.events import DatabaseEvent, PolicyEvent, PoolEvent
from hakeeper.degradationpolicy.telemetry import PolicyTelemetry
from hakeeper.loadbalancerpool.telemetry import PoolTelemetry
from hakeeper.platform import metrics
from hakeeper.platform.loop import Event, Outcome
from hakeeper.replicateddatabase import telemetry as db_telemetry
from hakeeper.replicateddatabase.clustering.gtid import MariaDBGtidList, MySQLGtidSet

_names = (f"t{i}" for i in itertools.count())


def value(sample: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(sample, labels)


def series(kind: str) -> metrics.Series:
    """A resource of its own per test: the registry is the process's."""
    return metrics.Series(kind, "ns", next(_names))


def db_status(*members: dict, phase: str = "Healthy", history: list | None = None) -> dict:
    return {"phase": phase, "members": list(members), "history": history or [],
            "conditions": [{"type": "Ready", "status": "True"}]}


def test_a_database_exports_its_phase_roles_lag_distance_and_semi_sync() -> None:
    s = series("ReplicatedDatabase")
    r = {"namespace": "ns", "name": s.name}
    db_telemetry.record(s, db_status({"name": "db-0", "role": "primary", "semiSyncActive": True},
                                     {"name": "db-1", "role": "replica", "lagSeconds": 2.5, "transactionsBehind": 7},
                                     {"name": "db-2", "role": "fenced"}), Outcome())
    assert value("hakeeper_database_phase", phase="Healthy", **r) == 1
    assert value("hakeeper_database_phase", phase="Lost", **r) == 0
    assert value("hakeeper_database_members", role="replica", **r) == 1
    assert value("hakeeper_database_fenced_members", **r) == 1
    assert value("hakeeper_database_replication_lag_seconds", member="db-1", **r) == 2.5
    assert value("hakeeper_database_transactions_behind", member="db-1", **r) == 7
    assert value("hakeeper_database_semi_sync_active", **r) == 1
    # db-1 left: its series go, not stay at their last value
    db_telemetry.record(s, db_status({"name": "db-0", "role": "primary", "semiSyncActive": False}), Outcome())
    assert value("hakeeper_database_replication_lag_seconds", member="db-1", **r) is None
    assert value("hakeeper_database_semi_sync_active", **r) == 0


def test_a_completed_failover_is_counted_and_its_duration_observed() -> None:
    s = series("ReplicatedDatabase")
    r = {"namespace": "ns", "name": s.name}
    status = db_status({"name": "db-1", "role": "primary"}, phase="Degraded",
                       history=[{"kind": "failover", "from": "db-0", "to": "db-1", "durationSeconds": 4.2}])
    db_telemetry.record(s, status, Outcome(events=[Event("Normal", DatabaseEvent.FAILOVER_COMPLETED, "db-0 -> db-1")]))
    db_telemetry.record(s, status, Outcome())  # the next pass: no new failover
    assert value("hakeeper_database_failovers_total", outcome="completed", **r) == 1
    assert value("hakeeper_database_failover_duration_seconds_count", **r) == 1
    assert value("hakeeper_database_failover_duration_seconds_sum", **r) == 4.2
    db_telemetry.record(s, db_status(phase="Lost"), Outcome(events=[Event("Warning", DatabaseEvent.LOST, "…"),
                                                                   Event("Warning", DatabaseEvent.FAILOVER_REFUSED, "…")]))
    assert value("hakeeper_database_failovers_refused_total", **r) == 1


def test_a_database_exports_its_last_backup_and_counts_each_run_once() -> None:
    s = series("ReplicatedDatabase")
    r = {"namespace": "ns", "name": s.name}
    db_telemetry.record(s, db_status(), Outcome())
    assert value("hakeeper_database_backup_runs_total", result="failed", **r) == 0
    assert value("hakeeper_database_backup_last_success_timestamp_seconds", **r) is None
    assert value("hakeeper_database_backup_last_succeeded", **r) is None
    status = {**db_status(), "backup": {"recent": [{"name": "20261130T030000Z", "finished": "2026-11-30T03:00:05Z",
                                                    "source": "db-1", "sizeBytes": 5000}]},
              "conditions": [{"type": "LastBackupSucceeded", "status": "True"}]}
    db_telemetry.record(s, status, Outcome(events=[Event("Normal", DatabaseEvent.BACKUP_SUCCEEDED, "…")]))
    db_telemetry.record(s, status, Outcome())
    assert value("hakeeper_database_backup_runs_total", result="succeeded", **r) == 1
    assert value("hakeeper_database_backup_last_success_timestamp_seconds", **r) == 1796007605.0
    assert value("hakeeper_database_backup_last_size_bytes", **r) == 5000
    assert value("hakeeper_database_backup_last_succeeded", **r) == 1
    failing = {**status, "conditions": [{"type": "LastBackupSucceeded", "status": "False"}]}
    db_telemetry.record(s, failing, Outcome(events=[Event("Warning", DatabaseEvent.BACKUP_FAILED, "…")]))
    assert value("hakeeper_database_backup_runs_total", result="failed", **r) == 1
    assert value("hakeeper_database_backup_last_succeeded", **r) == 0


def test_forget_drops_every_series_of_the_resource() -> None:
    s = series("ReplicatedDatabase")
    r = {"namespace": "ns", "name": s.name}
    s.ready(True)
    db_telemetry.record(s, db_status({"name": "db-0", "role": "primary"}),
                        Outcome(events=[Event("Normal", DatabaseEvent.FAILOVER_COMPLETED, "")]))
    assert value("hakeeper_ready", kind="ReplicatedDatabase", **r) == 1
    s.forget()
    assert value("hakeeper_ready", kind="ReplicatedDatabase", **r) is None
    assert value("hakeeper_database_members", role="primary", **r) is None
    assert value("hakeeper_database_failovers_total", outcome="completed", **r) is None


def pool_status(config_hash: str, applied: bool, ready: int = 2) -> dict:
    return {"configHash": config_hash, "backends": {"total": 3, "ready": ready},
            "balancers": [{"pod": "b-0", "reloads": 2}, {"pod": "b-1"}],
            "conditions": [{"type": "ConfigApplied", "status": "True" if applied else "False"}]}


def test_propagation_runs_from_the_slice_change_to_every_balancer_applying_its_config() -> None:
    clock = iter([10.0, 12.5]).__next__
    t = PoolTelemetry(clock=clock)
    s = series("LoadBalancerPool")
    r = {"namespace": "ns", "name": s.name}
    t.slices_changed()  # at 10.0
    changed = Outcome(events=[Event("Normal", PoolEvent.CONFIG_CHANGED, "config h2")])
    t(s, pool_status("h2", applied=False), changed)  # rendered, balancers still on h1
    assert value("hakeeper_pool_propagation_seconds_count", **r) is None
    assert value("hakeeper_pool_config_applied", **r) == 0
    t(s, pool_status("h2", applied=True), Outcome())  # at 12.5: applied everywhere
    assert value("hakeeper_pool_propagation_seconds_count", **r) == 1
    assert value("hakeeper_pool_propagation_seconds_sum", **r) == 2.5
    assert value("hakeeper_pool_config_changes_total", **r) == 1
    assert value("hakeeper_pool_backends_ready", **r) == 2 and value("hakeeper_pool_backends", **r) == 3
    assert value("hakeeper_pool_balancer_reloads", pod="b-0", **r) == 2
    assert value("hakeeper_pool_balancer_reloads", pod="b-1", **r) is None  # its agent said nothing yet


def test_a_change_whose_event_is_folded_is_counted_and_its_propagation_measured() -> None:
    """ConfigChanged Events are folded (one a minute per pool): a change whose pass posted none
    is still a change (found by the e2e test_monitoring: the second change went unmeasured)."""
    clock = iter([0.0, 1.0, 5.0, 5.5]).__next__
    t = PoolTelemetry(clock=clock)
    s = series("LoadBalancerPool")
    r = {"namespace": "ns", "name": s.name}
    t.slices_changed()  # at 0.0
    t(s, pool_status("h1", applied=False), Outcome(events=[Event("Normal", PoolEvent.CONFIG_CHANGED, "h1")]))
    t(s, pool_status("h1", applied=True), Outcome())  # at 1.0
    t.slices_changed()  # at 5.0
    t(s, pool_status("h2", applied=False), Outcome())  # its Event held back
    t(s, pool_status("h2", applied=True), Outcome())  # at 5.5
    assert value("hakeeper_pool_config_changes_total", **r) == 2
    assert value("hakeeper_pool_propagation_seconds_count", **r) == 2
    assert value("hakeeper_pool_propagation_seconds_sum", **r) == 1.5
    t(s, pool_status("h2", applied=True), Outcome(events=[Event("Normal", PoolEvent.CONFIG_CHANGED, "h2, folded")]))
    assert value("hakeeper_pool_config_changes_total", **r) == 2  # the held Event is no new change


def test_a_restarted_operator_does_not_count_the_config_it_finds() -> None:
    t = PoolTelemetry(clock=lambda: 0.0)
    s = series("LoadBalancerPool")
    t(s, pool_status("h1", applied=True), Outcome())
    assert value("hakeeper_pool_config_changes_total", namespace="ns", name=s.name) == 0


def test_a_config_change_without_a_slice_change_is_no_propagation() -> None:
    t = PoolTelemetry(clock=lambda: 0.0)
    s = series("LoadBalancerPool")
    t(s, pool_status("h2", applied=True), Outcome(events=[Event("Normal", PoolEvent.CONFIG_CHANGED, "spec")]))
    assert value("hakeeper_pool_propagation_seconds_count", namespace="ns", name=s.name) is None


def test_a_policy_counts_sheds_restores_and_the_time_its_metrics_were_unavailable() -> None:
    clock = iter([0.0, 30.0, 45.0]).__next__
    t = PolicyTelemetry(clock=clock)
    s = series("DegradationPolicy")
    r = {"namespace": "ns", "name": s.name}
    down = {"state": "Degraded", "conditions": [{"type": "MetricsAvailable", "status": "False"}],
            "triggers": [{"name": "latency", "value": 0.9, "firing": True}],
            "shed": [{"namespace": "a", "name": "x", "tier": "low"}, {"namespace": "a", "name": "y", "tier": "low"},
                     {"namespace": "a", "name": "z", "tier": "batch", "dryRun": True}]}
    t(s, down, Outcome(events=[Event("Normal", PolicyEvent.SHED, ""), Event("Normal", PolicyEvent.SHED, "")]))
    t(s, down, Outcome())  # 30 s later, still unavailable
    t(s, {"state": "Normal", "conditions": [{"type": "MetricsAvailable", "status": "True"}]},
      Outcome(events=[Event("Normal", PolicyEvent.RESTORED, "")]))  # 15 s later, back
    assert value("hakeeper_policy_metrics_unavailable_seconds_total", **r) == 45.0
    assert value("hakeeper_policy_sheds_total", **r) == 2 and value("hakeeper_policy_restores_total", **r) == 1
    assert value("hakeeper_policy_degraded", **r) == 0
    assert value("hakeeper_policy_trigger_value", trigger="latency", **r) is None  # no triggers now


def test_gtid_distance_counts_the_transactions_the_primary_has_beyond_the_member() -> None:
    a = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    assert MySQLGtidSet.parse(f"{a}:1-5").behind(MySQLGtidSet.parse(f"{a}:1-12")) == 7
    assert MySQLGtidSet.parse(f"{a}:1-12").behind(MySQLGtidSet.parse(f"{a}:1-5")) == 0
    assert MariaDBGtidList.parse("0-1-100").behind(MariaDBGtidList.parse("0-2-130,1-1-5")) == 35


def test_every_family_is_in_the_monitoring_doc() -> None:
    import pathlib

    doc = (pathlib.Path(__file__).resolve().parents[2] / "docs/monitoring.md").read_text()
    families = {m.describe()[0].name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    missing = {f for f in families if f"`{f}`" not in doc and f"`{f}_total`" not in doc}
    assert not missing, f"docs/monitoring.md does not list {sorted(missing)}"


def test_counters_start_at_zero_so_the_first_failover_is_an_increase() -> None:
    """increase() over a counter that appears at 1 is 0: the first failover would page nobody."""
    s = series("ReplicatedDatabase")
    r = {"namespace": "ns", "name": s.name}
    db_telemetry.record(s, db_status({"name": "db-0", "role": "primary"}), Outcome())
    assert value("hakeeper_database_failovers_total", outcome="completed", **r) == 0
    assert value("hakeeper_database_failovers_refused_total", **r) == 0
    p, pool = PoolTelemetry(clock=lambda: 0.0), series("LoadBalancerPool")
    p(pool, pool_status("h1", applied=True), Outcome())
    assert value("hakeeper_pool_config_changes_total", namespace="ns", name=pool.name) == 0
    policy = series("DegradationPolicy")
    PolicyTelemetry(clock=lambda: 0.0)(policy, {"state": "Normal"}, Outcome())
    assert value("hakeeper_policy_sheds_total", namespace="ns", name=policy.name) == 0
