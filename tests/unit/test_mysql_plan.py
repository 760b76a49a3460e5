"""plan: the actions for each classified situation, in order; then properties every plan keeps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hakeeper.replicateddatabase.clustering.actions import (
    AwaitLeaseExpiry,
    CatchUp,
    Concurrently,
    Detach,
    EnsureUsers,
    Fence,
    InstallLeaseFence,
    OpenWrites,
    RenewLease,
    ReplicateFrom,
    SetSemiSync,
    StartSQLThread,
    StopIOThread,
    StopReplication,
    WaitRelayApplied,
)
from hakeeper.replicateddatabase.clustering.classify import classify
from hakeeper.replicateddatabase.clustering.memory import LoopMemory
from hakeeper.replicateddatabase.clustering.plan import plan
from hakeeper.replicateddatabase.clustering.policy import Policy

from .test_mysql_classify import clusters
from .test_mysql_states import MEMBERS, cluster, down, healthy, primary, replica, up

POLICY = Policy()
NOW = 1_000_000.0


def planned(states, recorded="db-0", memory=None, policy=POLICY, target=None, now=NOW):
    memory = memory or LoopMemory()
    c = classify(MEMBERS, states, recorded, memory, policy, target)
    return c, plan(c, MEMBERS, states, policy, memory, now)


def test_healthy_renews_the_lease_and_nothing_else() -> None:
    c, p = planned(healthy())
    assert p.actions == (RenewLease("db-0"),) and p.primary == "db-0" and p.completes is None
    assert planned(healthy(), policy=Policy(lease=False))[1].actions == (
        InstallLeaseFence("db-0", enabled=False), InstallLeaseFence("db-1", enabled=False),
        InstallLeaseFence("db-2", enabled=False))


def test_a_replica_that_does_not_replicate_is_pointed_at_the_primary() -> None:
    _, p = planned(cluster(primary(), up("db-1", replication=replica(io="stopped")), up("db-2", lease=False)))
    assert p.actions == (RenewLease("db-0"), ReplicateFrom("db-1", "db-0"), InstallLeaseFence("db-2"),
                         ReplicateFrom("db-2", "db-0"))


def test_a_stopped_sql_thread_is_restarted_but_a_failed_one_is_left_for_a_person() -> None:
    _, p = planned(cluster(primary(), up("db-1", replication=replica(sql=False)),
                           up("db-2", replication=replica(sql=False, sql_error="1062: dup"))))
    assert ReplicateFrom("db-1", "db-0") in p.actions
    assert not any(getattr(a, "member", None) == "db-2" for a in p.actions)


def test_a_replica_whose_applier_metadata_cannot_be_read_is_reset_and_repointed() -> None:
    """A clone of a replica carries applier metadata naming relay logs it lacks: START REPLICA
    fails (1872) and the SQL thread reports 13124; only such a replica is reset first."""
    broken = "13124: Replica failed to initialize applier metadata structure from the repository"
    _, p = planned(cluster(primary(), up("db-1", replication=replica(sql=False, sql_error=broken)),
                           up("db-2", replication=replica(sql=False, sql_error="1062: dup"))))
    assert ReplicateFrom("db-1", "db-0", reset_applier=True) in p.actions
    assert not any(getattr(a, "member", None) == "db-2" for a in p.actions)
    _, p = planned(cluster(primary(), up("db-1", replication=replica(io="stopped")), up("db-2")))
    assert ReplicateFrom("db-1", "db-0") in p.actions  # reset_applier=False: a delay or the like is kept


def test_a_returning_old_primary_is_fenced_first_then_rejoins_after_its_own_binlog() -> None:
    # db-1 is the primary now; db-0 (server 1) comes back writable with nothing db-1 lacks.
    states = cluster(up("db-0", "0-1-10", read_only=False), primary("db-1", "0-1-10,0-2-15"),
                     up("db-2", "0-1-10,0-2-15", replication=replica("db-1")))
    c, p = planned(states, recorded="db-1")
    assert c.state == "Degraded"
    assert p.actions == (RenewLease("db-1"), Fence("db-0"), ReplicateFrom("db-0", "db-1", adopt_binlog_position=True))


def test_a_returning_old_primary_with_errant_transactions_stays_out() -> None:
    states = cluster(up("db-0", "0-1-12", read_only=False), primary("db-1", "0-1-10,0-2-15"),
                     up("db-2", "0-1-10,0-2-15", replication=replica("db-1")))
    c, p = planned(states, recorded="db-1")
    assert c.view("db-0").role == "fenced" and c.view("db-0").errant == "0-1-12"
    assert p.actions == (RenewLease("db-1"), Fence("db-0"))
    # Replicating errant members are stopped, so they neither apply nor acknowledge.
    states["db-0"] = up("db-0", "0-1-12", replication=replica("db-1"))
    assert planned(states, recorded="db-1")[1].actions == (RenewLease("db-1"), StopReplication("db-0"))


def test_a_primary_that_restarted_read_only_is_opened_after_renewing_its_lease() -> None:
    states = cluster(primary(read_only=True), up("db-1", replication=replica(io="connecting")),
                     up("db-2", replication=replica()))
    _, p = planned(states)
    assert p.actions == (RenewLease("db-0"), OpenWrites("db-0"))


def test_semi_sync_source_side_only_on_the_primary() -> None:
    states = cluster(up("db-0", read_only=False, semi_source=False),
                     up("db-1", replication=replica(), semi_source=True),
                     up("db-2", replication=replica(), semi_replica=False))
    _, p = planned(states)
    assert SetSemiSync("db-0", source=True, replica=True) in p.actions
    assert SetSemiSync("db-1", source=False, replica=True) in p.actions
    assert SetSemiSync("db-2", source=False, replica=True, restart_io=True) in p.actions  # registers on reconnect


def test_failover_sequence() -> None:
    states = cluster(down("db-0"), up("db-1", "0-1-9", replication=replica(io="connecting", received="0-1-10")),
                     up("db-2", "0-1-10", replication=replica(io="connecting", sql=False, received="0-1-10")))
    memory = LoopMemory(probe_failures=3, lease_expires=NOW - 0.5)
    c, p = planned(states, memory=memory)
    assert c.candidate == "db-2"
    assert p.actions == (
        Concurrently((Fence("db-0", best_effort=True), StopIOThread("db-1"), StopIOThread("db-2"))),
        StartSQLThread("db-2"),
        WaitRelayApplied("db-2", POLICY.catch_up_timeout),
        AwaitLeaseExpiry(0.75, old_primary="db-0"),  # lease ran out 0.5s ago; the event checks each second
        Detach("db-2"),
        ReplicateFrom("db-1", "db-2"),
        RenewLease("db-2"),
        SetSemiSync("db-2", source=True, replica=True),
        OpenWrites("db-2"),
    )
    assert p.primary == "db-2" and p.completes == "failover"
    assert p.notes[0][0] == "FailoverStarted"


def test_failover_when_the_primary_restarted_without_its_tail() -> None:
    states = cluster(primary(executed="0-1-8", read_only=True), up("db-1", replication=replica(received="0-1-10")),
                     up("db-2", "0-1-8", replication=replica(received="0-1-9")))
    _, p = planned(states)
    assert p.actions[0].actions[0] == Fence("db-0")  # reachable: must be fenced, not best effort
    assert ReplicateFrom("db-0", "db-1", adopt_binlog_position=True) in p.actions
    assert p.actions[-1] == OpenWrites("db-1")


def test_an_interrupted_failover_continues_without_undoing_anything() -> None:
    states = cluster(down("db-0"), up("db-1", read_only=False), up("db-2", replication=replica("db-1")))
    c, p = planned(states, memory=LoopMemory(probe_failures=5))
    assert c.candidate == "db-1"
    assert p.actions[0] == Fence("db-0", best_effort=True)  # db-2 already follows db-1: its IO thread keeps running
    assert not any(isinstance(a, (Concurrently, StopIOThread, ReplicateFrom)) for a in p.actions)
    assert p.actions[-1] == OpenWrites("db-1")


@pytest.mark.parametrize(("policy", "memory", "note"), [
    (Policy(failover_enabled=False), LoopMemory(probe_failures=3), "FailoverDisabled"),
    (Policy(anti_flap_window=300), LoopMemory(probe_failures=3, last_failover=NOW - 100), "FailoverSuppressed"),
])
def test_failover_held_back(policy: Policy, memory: LoopMemory, note: str) -> None:
    states = cluster(down("db-0"), up("db-1", replication=replica(io="connecting")),
                     up("db-2", replication=replica(io="connecting")))
    c, p = planned(states, memory=memory, policy=policy)
    assert c.state == "Failed" and p.actions == () and p.primary == "db-0" and p.notes[0][0] == note


def test_anti_flap_window_over_allows_the_next_failover() -> None:
    states = cluster(down("db-0"), up("db-1", replication=replica(io="connecting")),
                     up("db-2", replication=replica(io="connecting")))
    _, p = planned(states, memory=LoopMemory(probe_failures=3, last_failover=NOW - 301))
    assert p.completes == "failover"


def test_switchover_sequence() -> None:
    _, p = planned(healthy(), target="db-1")
    assert p.actions == (
        Fence("db-0"),
        CatchUp("db-1", source="db-0", timeout=POLICY.catch_up_timeout),
        Detach("db-1"),
        ReplicateFrom("db-2", "db-1"),
        RenewLease("db-1"),
        SetSemiSync("db-1", source=True, replica=True),
        OpenWrites("db-1"),
        # last: a deleted primary's preStop hook lets its server stop once it replicates. Its
        # source-side semi-sync is left to the next step: switching it off blocks ~1 s on MySQL.
        ReplicateFrom("db-0", "db-1", adopt_binlog_position=True),
    )
    assert p.completes == "switchover" and p.primary == "db-1"


def test_bootstrap_creates_accounts_before_anything_replicates() -> None:
    states = cluster(up("db-0", "", lease=False, semi_source=False), up("db-1", "", read_only=False, lease=False),
                     down("db-2"))
    c, p = planned(states, recorded=None)
    assert c.candidate == "db-0"
    assert p.actions == (
        EnsureUsers("db-0"),
        InstallLeaseFence("db-0"),
        RenewLease("db-0"),
        Fence("db-1"),
        InstallLeaseFence("db-1"),
        ReplicateFrom("db-1", "db-0"),
        SetSemiSync("db-0", source=True, replica=True),
        OpenWrites("db-0"),
    )
    assert p.primary == "db-0"


def test_nothing_to_do_while_waiting() -> None:
    _, p = planned(cluster(down("db-0"), up("db-1", ""), up("db-2", "")), recorded=None)
    assert p.actions == () and p.primary is None
    _, p = planned(cluster(down("db-0"), up("db-1", replication=replica(io="connecting")),
                           up("db-2", read_only=False)), memory=LoopMemory(probe_failures=1))
    assert p.actions == (Fence("db-2", best_effort=True),)  # while we wait, nobody else takes writes


def test_lost_keeps_everyone_read_only() -> None:
    states = cluster(down("db-0"), down("db-1"), up("db-2", read_only=False))
    c, p = planned(states, memory=LoopMemory(probe_failures=3))
    assert c.state == "Lost" and p.actions == (Fence("db-2", best_effort=True),)
    assert p.notes[0][0] == "FailoverRefused"


# ------------------------------------------------------------------------------ properties

@settings(max_examples=500, deadline=None)
@given(clusters, st.sampled_from([None, "db-0", "db-2"]), st.integers(0, 4), st.sampled_from([None, "db-1"]),
       st.dictionaries(st.sampled_from(["db-0", "db-1", "db-2"]), st.just("0-9-1"), max_size=1))
def test_every_plan_keeps_a_single_writer(states, recorded, failures, target, errant) -> None:
    memory = LoopMemory(probe_failures=failures, errant=errant)
    c = classify(MEMBERS, states, recorded, memory, POLICY, target)
    p = plan(c, MEMBERS, states, POLICY, memory, NOW)
    opens = [a for a in p.actions if isinstance(a, OpenWrites)]
    # Only the plan's primary is ever opened, after its lease, as the last step but for a
    # switchover's release of the old (fenced) primary, which comes after it on purpose.
    assert all(a.member == p.primary for a in opens)
    if opens:
        after = p.actions[p.actions.index(opens[0]) + 1:]
        assert len(opens) == 1
        assert not after or (p.completes == "switchover"
                             and all(a.member == c.primary and isinstance(a, (SetSemiSync, ReplicateFrom))
                                     for a in after)
                             and Fence(c.primary) in p.actions[:p.actions.index(opens[0])])
        assert RenewLease(p.primary) in p.actions
        # Every other member that took writes was fenced before.
        flat = [x for a in p.actions for x in (a.actions if isinstance(a, Concurrently) else (a,))]
        for name, s in states.items():
            if name != p.primary and s.writable:
                assert any(isinstance(a, Fence) and a.member == name for a in flat)
    # Nothing replicates from a member that is not the plan's primary.
    assert all(a.source == p.primary for a in p.actions if isinstance(a, ReplicateFrom))
    # Errant members never replicate and are never promoted.
    # (Configure re-checks against the live primary; a failover also trusts what was remembered.)
    flagged = {n for n, v in c.views.items() if v.errant} | (set(errant) - {recorded} if c.state == "Failed" else set())
    assert not any(isinstance(a, (ReplicateFrom, Detach, OpenWrites)) and a.member in flagged
                   for a in p.actions if not (isinstance(a, OpenWrites) and c.state in ("Healthy", "Degraded")))
    if p.completes == "failover":
        order = [type(a) for a in p.actions]
        if WaitRelayApplied in order:
            assert order.index(WaitRelayApplied) < order.index(Detach)
        first = p.actions[0]
        assert isinstance(first, Fence) or isinstance(first.actions[0], Fence)
