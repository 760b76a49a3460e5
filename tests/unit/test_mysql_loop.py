"""The loop's bookkeeping: what the controller persists and writes into the status."""

from __future__ import annotations

import json

from hakeeper.api.replicateddatabase import MemberStatus, ReplicatedDatabaseSpec
from hakeeper.replicateddatabase.clustering.classify import classify
from hakeeper.replicateddatabase.clustering.loop import _count_probe, _errant, _member_statuses
from hakeeper.replicateddatabase.clustering.memory import LoopMemory, Switchover
from hakeeper.replicateddatabase.clustering.policy import Policy

from .test_mysql_states import MEMBERS, cluster, down, healthy, primary, replica, up


def test_memory_survives_a_trip_through_the_status() -> None:
    memory = LoopMemory(probe_failures=2, failing_since=10.5, last_failover=3.0, last_lag={"db-1": 1.5},
                        errant={"db-2": "0-3-4"}, switchover=Switchover("db-1", "db-0", 7.0), lease_expires=12.0,
                        last_state="Switching", last_notes=("FailoverSuppressed",))
    stored = json.loads(json.dumps(memory.to_dict()))  # what a CR status holds
    assert LoopMemory.from_dict(stored) == memory
    assert LoopMemory.from_dict(None) == LoopMemory()
    assert LoopMemory.from_dict({"probe_failures": 1, "field_from_a_newer_operator": True}).probe_failures == 1


def test_policy_from_the_spec_defaults() -> None:
    p = Policy.from_spec(ReplicatedDatabaseSpec())
    assert (p.probe_interval, p.failure_threshold, p.max_lag_seconds, p.anti_flap_window) == (1.0, 3, 30.0, 300.0)
    assert p.semi_sync and p.semi_sync_wait_count == 1 and p.semi_sync_timeout == 10.0
    assert p.lease_seconds == 2.0 and p.probe_timeout == 0.5
    single = Policy.from_spec(ReplicatedDatabaseSpec.model_validate({"replicas": 1}))
    assert not single.semi_sync  # nobody to acknowledge
    slow = Policy.from_spec(ReplicatedDatabaseSpec.model_validate(
        {"failover": {"probeInterval": "2s", "failureThreshold": 5, "antiFlapWindow": "1m"}}))
    assert slow.lease_seconds == 8.0 and slow.anti_flap_window == 60.0


def test_probe_failures_count_consecutive_misses_of_the_primary() -> None:
    m = _count_probe(LoopMemory(), cluster(down("db-0"), up("db-1"), up("db-2")), "db-0", 100.0)
    m = _count_probe(m, cluster(down("db-0"), up("db-1"), up("db-2")), "db-0", 101.0)
    assert (m.probe_failures, m.failing_since) == (2, 100.0)
    m = _count_probe(m, healthy(), "db-0", 102.0)
    assert (m.probe_failures, m.failing_since) == (0, None)


def test_errant_members_are_remembered_and_forgotten_when_reinitialized() -> None:
    states = cluster(primary(), up("db-1", "0-1-10,0-2-3", replication=replica()), up("db-2", replication=replica()))
    c = classify(MEMBERS, states, "db-0", LoopMemory(), Policy())
    errant = _errant(LoopMemory(), c, states)
    assert errant == {"db-1": "0-2-3"}
    # The primary unreachable: nothing is re-judged, the memory stands.
    gone = cluster(down("db-0"), up("db-1", "0-1-10,0-2-3"), up("db-2", replication=replica()))
    c2 = classify(MEMBERS, gone, "db-0", LoopMemory(errant=errant), Policy())
    assert _errant(LoopMemory(errant=errant), c2, gone) == errant
    # db-1 re-initialized (empty) and replicating: no longer errant.
    fresh = cluster(primary(), up("db-1", "", replication=replica()), up("db-2", replication=replica()))
    c3 = classify(MEMBERS, fresh, "db-0", LoopMemory(errant=errant), Policy())
    assert _errant(LoopMemory(errant=errant), c3, fresh) == {}


def test_member_statuses_fit_the_status_schema() -> None:
    states = cluster(primary(), up("db-1", "0-1-10,0-2-3", replication=replica()), down("db-2"))
    c = classify(MEMBERS, states, "db-0", LoopMemory(last_lag={"db-2": 2.0}), Policy())
    rows = _member_statuses(MEMBERS, states, c, "db-0", {"db-1": "0-2-3"})
    parsed = [MemberStatus.model_validate(r) for r in rows]
    assert [(m.name, m.role, m.errant) for m in parsed] == [("db-0", "primary", False), ("db-1", "fenced", True),
                                                          ("db-2", "unknown", False)]
    assert parsed[1].message and "re-seeded" in parsed[1].message
    assert parsed[2].lag_seconds == 2.0 and not parsed[2].reachable
    wire = parsed[1].wire()
    assert wire["readOnly"] is True and wire["gtid"] == "0-1-10,0-2-3"


def test_mariadb_counts_the_one_acknowledgement_it_really_waits_for() -> None:
    from hakeeper.replicateddatabase.clustering.loop import Cluster
    from hakeeper.replicateddatabase.clustering.members import Credentials

    creds = Credentials("r", "p", "o")
    assert Cluster("mariadb", creds, Policy(semi_sync_wait_count=2)).policy.semi_sync_wait_count == 1
    assert Cluster("mysql", creds, Policy(semi_sync_wait_count=2)).policy.semi_sync_wait_count == 2
