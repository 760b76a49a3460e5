"""classify: one table row per situation, then properties over random clusters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hakeeper.replicateddatabase.clustering.classify import ANY_REPLICA, classify
from hakeeper.replicateddatabase.clustering.gtid import MariaDBGtidList, MySQLGtidSet
from hakeeper.replicateddatabase.clustering.members import Member, MemberState, Replication
from hakeeper.replicateddatabase.clustering.memory import LoopMemory, Switchover
from hakeeper.replicateddatabase.clustering.policy import Policy

from .test_mysql_states import MEMBERS, cluster, down, healthy, primary, replica, up

POLICY = Policy()
FAILED3 = LoopMemory(probe_failures=3)

# (id, states, recorded primary, memory, policy, switchover target, state, candidate, reason contains)
CASES = [
    ("healthy", healthy(), "db-0", LoopMemory(), POLICY, None, "Healthy", None, "all members replicate"),
    ("replica down", cluster(primary(), down("db-1"), up("db-2", replication=replica())), "db-0", LoopMemory(),
     POLICY, None, "Degraded", None, "db-1: unreachable"),
    ("io stopped", cluster(primary(), up("db-1", replication=replica(io="stopped")), up("db-2", replication=replica())),
     "db-0", LoopMemory(), POLICY, None, "Degraded", None, "IO thread stopped"),
    ("sql failed", cluster(primary(), up("db-1", replication=replica(sql=False, sql_error="1062: dup")),
                           up("db-2", replication=replica())),
     "db-0", LoopMemory(), POLICY, None, "Degraded", None, "SQL thread failed (1062: dup)"),
    ("lagging", cluster(primary(), up("db-1", replication=replica(lag=120)), up("db-2", replication=replica())),
     "db-0", LoopMemory(), POLICY, None, "Degraded", None, "lagging 120s"),
    ("not replicating", cluster(primary(), up("db-1"), up("db-2", replication=replica())), "db-0", LoopMemory(),
     POLICY, None, "Degraded", None, "not replicating from db-0"),
    ("replicating from the wrong source",
     cluster(primary(), up("db-1", replication=replica(source="db-2")), up("db-2", replication=replica())),
     "db-0", LoopMemory(), POLICY, None, "Degraded", None, "db-1: not replicating from db-0"),
    ("errant replica", cluster(primary(), up("db-1", "0-1-10,0-2-11", replication=replica()),
                               up("db-2", replication=replica())),
     "db-0", LoopMemory(), POLICY, None, "Degraded", None, "has transactions the primary lacks (0-2-11)"),
    ("stray writable", cluster(primary(), up("db-1", read_only=False, replication=replica()),
                               up("db-2", replication=replica())),
     "db-0", LoopMemory(), POLICY, None, "Degraded", None, "accepts writes but is not the primary"),
    ("primary restarted read-only", cluster(primary(read_only=True), up("db-1", replication=replica(io="connecting")),
                                            up("db-2", replication=replica(io="connecting"))),
     "db-0", LoopMemory(), POLICY, None, "Degraded", None, "refuses writes"),
    ("primary restarted without its tail",
     cluster(primary(executed="0-1-8", read_only=True), up("db-1", replication=replica(received="0-1-10")),
             up("db-2", "0-1-8", replication=replica(received="0-1-9"))),
     "db-0", LoopMemory(), POLICY, None, "Failed", "db-1", "restarted without transactions that db-1, db-2"),
    ("primary unreachable, below threshold",
     cluster(down("db-0"), up("db-1", replication=replica(io="connecting")), up("db-2", replication=replica())),
     "db-0", LoopMemory(probe_failures=2), POLICY, None, "Degraded", None, "unreachable (2/3 probes)"),
    ("primary silent to us, replicas still see it",
     cluster(down("db-0"), up("db-1", replication=replica(io="running")),
             up("db-2", replication=replica(io="connecting"))),
     "db-0", FAILED3, POLICY, None, "Degraded", None, "db-1 still replicate from it"),
    ("failed: most advanced wins",
     cluster(down("db-0"), up("db-1", replication=replica(io="connecting", received="0-1-10")),
             up("db-2", "0-1-12", replication=replica(io="connecting", received="0-1-12"))),
     "db-0", FAILED3, POLICY, None, "Failed", "db-2", "3 failed probes"),
    ("failed: equal fetched, the one that applied more wins",
     cluster(down("db-0"), up("db-1", "0-1-7", replication=replica(io="connecting", sql=False, received="0-1-12")),
             up("db-2", "0-1-12", replication=replica(io="connecting", received="0-1-12"))),
     "db-0", FAILED3, POLICY, None, "Failed", "db-2", "lost"),
    ("failed: a lagging replica is not chosen over a complete one",
     cluster(down("db-0"), up("db-1", "0-1-5", replication=replica(io="connecting", lag=None, received="0-1-12")),
             up("db-2", "0-1-12", replication=replica(io="connecting", received="0-1-12"))),
     "db-0", LoopMemory(probe_failures=3, last_lag={"db-1": 3600}), POLICY, None, "Failed", "db-2", "lost"),
    ("lost: only the lagging replica has everything",
     cluster(down("db-0"), up("db-1", "0-1-5", replication=replica(io="connecting", lag=None, received="0-1-12")),
             up("db-2", "0-1-11", replication=replica(io="connecting", received="0-1-11"))),
     "db-0", LoopMemory(probe_failures=3, last_lag={"db-1": 3600}), POLICY, None, "Lost", None,
     "only db-1, lagging more than maxLagSeconds"),
    ("failed: the replica with a failed SQL thread is passed over",
     cluster(down("db-0"), up("db-1", replication=replica(io="connecting", sql=False, sql_error="1062: dup",
                                                          received="0-1-10")),
             up("db-2", replication=replica(io="connecting", received="0-1-10"))),
     "db-0", FAILED3, POLICY, None, "Failed", "db-2", "lost"),
    ("failed: a remembered errant replica is never promoted",
     cluster(down("db-0"), up("db-1", "0-1-10,0-2-3", replication=replica(io="stopped", received="0-1-10")),
             up("db-2", "0-1-9", replication=replica(io="connecting", received="0-1-9"))),
     "db-0", LoopMemory(probe_failures=3, errant={"db-1": "0-2-3"}), POLICY, None, "Failed", "db-2", "lost"),
    ("lost: a replica is unreachable and may hold the only acknowledged copy",
     cluster(down("db-0"), down("db-1"), up("db-2", replication=replica(io="connecting"))),
     "db-0", FAILED3, POLICY, None, "Lost", None, "db-1 is unreachable too"),
    ("failed without semi-sync under durability Available: the reachable replica is promoted",
     cluster(down("db-0"), down("db-1"), up("db-2", replication=replica(io="connecting"))),
     "db-0", FAILED3, Policy(semi_sync=False, lossless=False), None, "Failed", "db-2", "lost"),
    ("lost without semi-sync under durability Lossless: any write may be on the primary alone",
     cluster(down("db-0"), up("db-1", replication=replica(io="connecting")),
             up("db-2", replication=replica(io="connecting"))),
     "db-0", FAILED3, Policy(semi_sync=False), None, "Lost", None, "semi-sync is off"),
    ("lost: the primary was last seen with semi-sync fallen back to async (Lossless)",
     cluster(down("db-0"), up("db-1", replication=replica(io="connecting", received="0-1-10")),
             up("db-2", replication=replica(io="connecting", received="0-1-10"))),
     "db-0", LoopMemory(probe_failures=3, primary_semi_sync=False), POLICY, None, "Lost", None,
     "db-0 was last seen with semi-sync inactive"),
    ("failed: semi-sync had fallen back, durability Available promotes the most complete",
     cluster(down("db-0"), up("db-1", replication=replica(io="connecting", received="0-1-10")),
             up("db-2", "0-1-11", replication=replica(io="connecting", received="0-1-11"))),
     "db-0", LoopMemory(probe_failures=3, primary_semi_sync=False), Policy(lossless=False), None, "Failed", "db-2",
     "3 failed probes"),
    # field fault (a): the lag seen before the primary died no longer counts once the relay log is applied
    ("failed: a replica caught up after the primary died is eligible whatever lag was last seen",
     cluster(down("db-0"), up("db-1", "0-1-10", replication=replica(io="connecting", lag=None, received="0-1-10")),
             up("db-2", "0-1-10", replication=replica(io="connecting", lag=None, received="0-1-10"))),
     "db-0", LoopMemory(probe_failures=3, last_lag={"db-1": 90.0, "db-2": 120.0}), POLICY, None, "Failed", "db-1",
     "3 failed probes"),
    ("lost: the only complete replica still has a lagging relay log to apply",
     cluster(down("db-0"), up("db-1", "0-1-5", replication=replica(io="connecting", lag=None, received="0-1-10")),
             up("db-2", "0-1-5", replication=replica(io="connecting", lag=None, received="0-1-8"))),
     "db-0", LoopMemory(probe_failures=3, last_lag={"db-1": 90.0, "db-2": 120.0}), POLICY, None, "Lost", None,
     "only db-1, lagging more than maxLagSeconds"),
    ("lost: no replica left",
     cluster(down("db-0"), up("db-1", "0-1-10,0-2-3"), up("db-2", "0-1-10,0-3-3")),
     "db-0", LoopMemory(probe_failures=3, errant={"db-1": "0-2-3", "db-2": "0-3-3"}), POLICY, None, "Lost", None,
     "no replica without errant transactions"),
    ("failed: an interrupted promotion is resumed on the same member",
     cluster(down("db-0"), up("db-1", read_only=False, executed="0-1-10"),
             up("db-2", replication=replica(source="db-1", received="0-1-10"))),
     "db-0", FAILED3, POLICY, None, "Failed", "db-1", "lost"),
    ("fresh cluster", cluster(up("db-0", ""), up("db-1", ""), down("db-2")), None, LoopMemory(), POLICY, None,
     "Initializing", "db-0", "new cluster"),
    ("fresh cluster, first member not up yet", cluster(down("db-0"), up("db-1", ""), up("db-2", "")), None,
     LoopMemory(), POLICY, None, "Initializing", None, "waiting for db-0"),
    ("status lost: the member with everything", cluster(up("db-0", "0-1-5"), up("db-1", "0-1-9"), up("db-2", "0-1-7")),
     None, LoopMemory(), POLICY, None, "Initializing", "db-1", "db-1 has every transaction"),
    ("status lost: diverged", cluster(up("db-0", "0-1-5"), up("db-1", "0-1-5,0-2-6"), up("db-2", "0-1-5,0-3-6")),
     None, LoopMemory(), POLICY, None, "Lost", None, "diverged"),
    ("status lost: not everyone answered", cluster(up("db-0", "0-1-5"), down("db-1"), up("db-2", "0-1-7")),
     None, LoopMemory(), POLICY, None, "Initializing", None, "waiting for all members"),
    ("switchover requested", healthy(), "db-0", LoopMemory(), POLICY, "db-2", "Switching", "db-2", "from db-0 to db-2"),
    ("switchover to the primary is nothing", healthy(), "db-0", LoopMemory(), POLICY, "db-0", "Healthy", None, ""),
    ("switchover in progress, target already detached",
     cluster(primary(read_only=True), up("db-1", replication=replica()), up("db-2")),
     "db-0", LoopMemory(switchover=Switchover("db-2", "db-0", 1.0)), POLICY, None, "Switching", "db-2", "to db-2"),
    # the primary's pod is being deleted: a planned restart is a switchover, to the best replica
    ("switchover to any replica picks the most complete",
     cluster(primary(executed="0-1-12"), up("db-1", "0-1-11", replication=replica(received="0-1-11")),
             up("db-2", "0-1-12", replication=replica(received="0-1-12"))),
     "db-0", LoopMemory(), POLICY, ANY_REPLICA, "Switching", "db-2", "from db-0 to db-2"),
    ("switchover to any replica skips an unreachable one",
     cluster(primary(), down("db-1"), up("db-2", replication=replica(received="0-1-10"))),
     "db-0", LoopMemory(), POLICY, ANY_REPLICA, "Switching", "db-2", "to db-2"),
    ("switchover interrupted and forgotten, requested again",
     cluster(primary(read_only=True), up("db-1", replication=replica()), up("db-2")),
     "db-0", LoopMemory(), POLICY, "db-2", "Switching", "db-2", "to db-2"),
]


@pytest.mark.parametrize(("states", "recorded", "memory", "policy", "target", "state", "candidate", "reason"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(states, recorded, memory, policy, target, state, candidate, reason) -> None:
    c = classify(MEMBERS, states, recorded, memory, policy, target)
    assert (c.state, c.candidate) == (state, candidate), c.reason
    assert reason in c.reason


REFUSED = cluster(down("db-0"), up("db-1", replication=replica(io="connecting", received="0-1-10")),
                  up("db-2", "0-1-10", replication=replica(io="connecting", received="0-1-11")))
FALLEN_BACK = LoopMemory(probe_failures=3, primary_semi_sync=False)


def test_a_refused_failover_says_how_to_force_it_and_a_forced_one_names_what_may_be_lost() -> None:
    refused = classify(MEMBERS, REFUSED, "db-0", FALLEN_BACK, POLICY)
    assert (refused.state, refused.refused) == ("Lost", True)
    assert "hakeeper.io/force-failover-to=db-2" in refused.reason, refused.reason
    forced = classify(MEMBERS, REFUSED, "db-0", FALLEN_BACK, POLICY, force_target="db-1")
    assert (forced.state, forced.candidate, forced.forced) == ("Failed", "db-1", True)
    assert "semi-sync inactive" in (forced.possible_loss or "")
    assert "db-1 lacks transactions db-2 has" in (forced.possible_loss or ""), forced.possible_loss
    # a person's choice also overrides an automatic failover's own choice
    chosen = classify(MEMBERS, REFUSED, "db-0", FAILED3, POLICY, force_target="db-1")
    assert (chosen.state, chosen.candidate, chosen.forced) == ("Failed", "db-1", True)


@pytest.mark.parametrize(("target", "why"), [
    ("db-0", "it is the lost primary"), ("db-7", "it is not a member"), ("db-1", "it is unreachable"),
])
def test_a_force_that_names_no_possible_candidate_is_rejected(target: str, why: str) -> None:
    states = {**REFUSED, "db-1": down("db-1")}
    c = classify(MEMBERS, states, "db-0", FALLEN_BACK, POLICY, force_target=target)
    assert (c.state, c.force_rejected) == ("Lost", why)


@pytest.mark.parametrize(("target", "states", "why"), [
    ("db-9", healthy(), "not a member"),
    ("db-1", cluster(primary(), down("db-1"), up("db-2", replication=replica())), "unreachable"),
    ("db-1", cluster(primary(), up("db-1", "0-1-10,0-2-1", replication=replica()), up("db-2", replication=replica())),
     "errant"),
    ("db-1", cluster(primary(), up("db-1", replication=replica(lag=500)), up("db-2", replication=replica())),
     "lagging"),
    ("db-1", cluster(primary(), up("db-1", replication=replica(sql=False, sql_error="1062: x")),
                     up("db-2", replication=replica())), "SQL thread failed"),
])
def test_a_switchover_to_an_unfit_member_is_refused(target: str, states, why: str) -> None:
    c = classify(MEMBERS, states, "db-0", LoopMemory(), POLICY, target)
    assert c.state in ("Healthy", "Degraded") and c.refused_switchover and why in c.refused_switchover


def test_a_switchover_to_any_replica_without_one_is_refused() -> None:
    c = classify(MEMBERS, cluster(primary(), down("db-1"), down("db-2")), "db-0", LoopMemory(), POLICY, ANY_REPLICA)
    assert c.state == "Degraded" and c.refused_switchover == "no healthy replica to switch over to"


def test_member_views_say_why() -> None:
    states = cluster(primary(), up("db-1", "0-1-10,0-2-11", replication=replica()), down("db-2"))
    c = classify(MEMBERS, states, "db-0", LoopMemory(last_lag={"db-2": 4.0}), POLICY)
    assert c.view("db-0").role == "primary"
    assert c.view("db-1").role == "fenced" and c.view("db-1").errant == "0-2-11"
    assert c.view("db-2").role == "unknown" and c.view("db-2").lag == 4.0


def test_mysql_cluster_fails_over_to_the_superset() -> None:
    a, b = "3e11fa47-71ca-11e1-9e33-c80aa9429562", "4a22cb58-82db-22f2-8f44-d91bb0530673"

    def mysql_up(name: str, executed: str, received: str) -> MemberState:
        return MemberState(name=name, reachable=True, origin=b if name == "db-1" else "x", read_only=True,
                           super_read_only=True, executed=MySQLGtidSet.parse(executed),
                           replication=Replication("10.0.40.1", 3306, "connecting", True, None,
                                                   MySQLGtidSet.parse(received)))
    states = cluster(down("db-0"), mysql_up("db-1", f"{a}:1-90", f"{a}:1-100"), mysql_up("db-2", f"{a}:1-95",
                                                                                           f"{a}:1-99"))
    c = classify(MEMBERS, states, "db-0", FAILED3, POLICY)
    assert c.state == "Failed" and c.candidate == "db-1"


# ------------------------------------------------------------------------------ properties

NAMES = [m.name for m in MEMBERS]


@st.composite
def member_state(draw, name: str) -> MemberState:
    if not draw(st.booleans()) and draw(st.booleans()):
        return down(name)
    own = draw(st.integers(0, 1))
    seq = draw(st.integers(0, 6))
    executed = f"0-1-{seq}" + (f",0-{NAMES.index(name) + 1}-{seq + 1}" if own and name != "db-0" else "")
    fetched = draw(st.integers(seq, 8))
    repl = None
    if draw(st.booleans()):
        repl = replica(source=draw(st.sampled_from(NAMES)), io=draw(st.sampled_from(["running", "connecting",
                                                                                      "stopped"])),
                       sql=draw(st.booleans()), lag=draw(st.sampled_from([None, 0.0, 100.0])),
                       received=f"0-1-{fetched}" if fetched else "")
    return up(name, executed if seq or own else "", read_only=draw(st.booleans()), replication=repl)


clusters = st.fixed_dictionaries({n: member_state(n) for n in NAMES})


@settings(max_examples=400, deadline=None)
@given(clusters, st.sampled_from([None, "db-0", "db-1"]), st.integers(0, 5),
       st.dictionaries(st.sampled_from(NAMES), st.just("0-9-1"), max_size=2), st.booleans())
def test_a_candidate_is_always_safe(states, recorded, failures, errant, semi) -> None:
    memory = LoopMemory(probe_failures=failures, errant=errant)
    c = classify(MEMBERS, states, recorded, memory, Policy(semi_sync=semi))
    if c.candidate is None:
        assert c.state not in ("Failed", "Switching")
        return
    cand = states[c.candidate]
    assert cand.reachable
    if c.state == "Failed":
        assert c.candidate != recorded and c.candidate not in errant
        assert not (cand.replication and cand.replication.sql_failed)
        # It has (or has fetched) everything every reachable, non-errant member has.
        for name, s in states.items():
            if name not in (recorded, c.candidate) and s.reachable and name not in errant \
                    and not c.view(name).errant:
                assert cand.progress.contains(s.progress)  # type: ignore[union-attr]
        if not c.primary_lost_data:
            assert memory.probe_failures >= POLICY.failure_threshold
            assert not any(s.reachable and s.replication and s.replication.io == "running"
                           and s.replication.source_host == MEMBERS[NAMES.index(recorded)].host
                           for n, s in states.items() if n != recorded)


@settings(max_examples=300, deadline=None)
@given(clusters)
def test_healthy_means_every_member_in_place(states) -> None:
    c = classify(MEMBERS, states, "db-0", LoopMemory(), POLICY)
    if c.state == "Healthy":
        assert states["db-0"].writable
        for n in NAMES[1:]:
            s = states[n]
            assert s.reachable and not s.writable and s.replicates_from(MEMBERS[0])
            assert s.replication.io == "running" and s.replication.sql_running  # type: ignore[union-attr]


def test_gtids_of_an_unknown_member_are_not_needed() -> None:
    assert MariaDBGtidList.parse("").is_empty() and Member("x", "h").port == 3306
