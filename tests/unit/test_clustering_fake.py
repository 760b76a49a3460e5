"""The clustering loop end to end in the unit tier: Cluster.step, unchanged, against an in-memory
fleet of either flavor (fake_mysql.FakeFleet) - bootstrap, failover, rejoin, switchover, errant
transactions, an operator crash at every action of a failover, partitions. Time is the fleet's
simulated clock; nothing sleeps. The same stories against real servers: tests/integration."""

from __future__ import annotations

from collections.abc import Callable

import pymysql
import pytest

from hakeeper.replicateddatabase.clustering import Cluster, Credentials, LoopMemory, Policy, StepResult
from hakeeper.replicateddatabase.clustering.actions import Action, Detach, ReplicateFrom
from hakeeper.replicateddatabase.clustering.classify import ANY_REPLICA

from .fake_mysql import FakeFleet, UnknownStatement

CREDENTIALS = Credentials("root-secret", "replication-secret", "operator-secret")
FLAVORS = pytest.mark.parametrize("flavor", ["mysql", "mariadb"])


class Crash(Exception):
    """The operator process dies (raised from before_action)."""


class Controller:
    """Plays the ReplicatedDatabase controller (handlers.run_cluster) on a FakeFleet: a step
    every probeInterval of simulated time, replication catching up before it unless told not
    to, primary and memory persisted from each result, a switchover request dropped once a
    switchover completed. After every step, no running server but the primary takes writes."""

    def __init__(self, fleet: FakeFleet, policy: Policy) -> None:
        self.fleet, self.policy = fleet, policy
        self.cluster = self.operator()
        self.primary: str | None = None
        self.memory: LoopMemory | None = None
        self.switchover: str | None = None
        self.force: str | None = None
        """The force-failover annotation; dropped once a step used or ignored it."""

    def operator(self, before_action: Callable[[Action], None] | None = None) -> Cluster:
        """A new operator process (it knows only what the controller persisted)."""
        return Cluster(self.fleet.flavor.name, CREDENTIALS, self.policy, before_action=before_action, ops=self.fleet)

    def step(self, persist: bool = True) -> StepResult:
        """One probeInterval later, one step. Not persisted when persist is False (the
        controller died before writing the status), nor when before_action raised."""
        self.fleet.advance(self.policy.probe_interval)
        self.fleet.replicate()
        result = self.cluster.step(self.fleet.members, self.primary, self.memory, now=self.fleet.now,
                                   switchover_target=self.switchover, force_target=self.force)
        if not persist:
            return result
        self.primary, self.memory = result.primary, result.memory
        if result.history and result.history["kind"] == "switchover":
            self.switchover = None
        if result.force is not None:
            self.force = None
        assert set(self.fleet.acknowledging()) <= {result.primary}, (self.fleet.acknowledging(), result)
        if not self.policy.fence_only_when_cut_off:
            assert set(self.fleet.writable()) <= {result.primary}, (self.fleet.writable(), result)
        return result

    def steps(self, count: int) -> list[StepResult]:
        """`count` steps."""
        return [self.step() for _ in range(count)]

    def until(self, predicate: Callable[[StepResult], bool], limit: int = 10) -> StepResult:
        """Steps until one's result satisfies `predicate`; AssertionError after `limit`."""
        for _ in range(limit):
            result = self.step()
            if predicate(result):
                return result
        raise AssertionError(f"not within {limit} steps; last: {result.state} {result.reason} {result.error}")


def bootstrapped(flavor: str, policy: Policy | None = None, writes: int = 0) -> Controller:
    """A fresh three-member cluster, bootstrapped and Healthy; then, if asked, `writes`
    acknowledged client commits on db-0 and a step (every replica has them)."""
    policy = policy or Policy()
    ctl = Controller(FakeFleet(flavor, 3, policy), policy)
    ctl.step()
    assert ctl.step().state == "Healthy"
    if writes:
        assert len(ctl.fleet.write("db-0", writes)) == writes
        assert ctl.step().state == "Healthy"
    return ctl


def reasons(result: StepResult) -> list[str]:
    """The Event reasons of a step, in order."""
    return [reason for reason, _ in result.events]


def member(result: StepResult, name: str) -> dict:
    """A member's status row (api MemberStatus fields)."""
    return next(m for m in result.members if m["name"] == name)


def roles(result: StepResult) -> dict[str, str]:
    """Member name -> role, as the status shows them."""
    return {m["name"]: m["role"] for m in result.members}


# ------------------------------------------------------------------------------- bootstrap

@FLAVORS
def test_a_new_cluster_gets_one_writable_primary_and_two_semi_sync_replicas(flavor: str) -> None:
    fleet = FakeFleet(flavor, 3)
    ctl = Controller(fleet, Policy())
    first = ctl.step()
    assert (first.primary, first.available, first.error) == ("db-0", True, None)
    assert reasons(first)[:3] == ["Initializing", "Bootstrap", "UsersEnsured"] and "Writable" in reasons(first)
    assert fleet.writable() == ["db-0"]

    second = ctl.step()
    assert second.state == "Healthy" and second.healthy and second.error is None
    assert roles(second) == {"db-0": "primary", "db-1": "replica", "db-2": "replica"}
    assert [m["read_only"] for m in second.members] == [False, True, True]
    assert fleet.follows("db-1", "db-0") and fleet.follows("db-2", "db-0")
    # the accounts were created once, on the primary, and reached the replicas by replication
    assert len({m["gtid"] for m in second.members}) == 1
    assert all(s.accounts[CREDENTIALS.replication_user] == CREDENTIALS.replication_password
               for s in fleet.servers.values())

    acked = fleet.write("db-0", 10)
    assert len(acked) == 10 and fleet.holds("db-1", acked)  # acknowledged once a replica has it
    third = ctl.step()
    assert third.state == "Healthy" and third.events == []
    assert [type(a).__name__ for a in third.done] == ["RenewLease"]
    assert all(fleet.has_all(name, acked) for name in fleet.servers)


# ------------------------------------------------------------------------------- failover

@FLAVORS
@pytest.mark.parametrize("threshold", [2, 4])
def test_a_lost_primary_fails_over_to_the_most_advanced_replica_after_the_configured_probes(
        flavor: str, threshold: int) -> None:
    ctl = bootstrapped(flavor, Policy(failure_threshold=threshold))
    fleet = ctl.fleet
    fleet.write("db-0", 5)
    fleet.server("db-1").fetch_paused = True  # a slow link: db-2 alone acknowledges what follows...
    fleet.server("db-2").apply_lags = True  # ...and has not applied it when the primary dies
    assert len(fleet.write("db-0", 5)) == 5
    ctl.step()
    fleet.crash("db-0")

    for probe in range(1, threshold):
        held = ctl.step()
        assert (held.primary, held.state, held.failover_in_progress) == ("db-0", "Degraded", False)
        assert f"({probe}/{threshold} probes)" in held.reason and "FailoverStarted" not in reasons(held)
    failover = ctl.step()
    assert failover.primary == "db-2" and failover.error is None and failover.available
    assert failover.history is not None and failover.history["kind"] == "failover"
    assert (failover.history["from_member"], failover.history["to_member"]) == ("db-0", "db-2")
    assert {"FailoverStarted", "FenceSkipped", "FailoverCompleted"} <= set(reasons(failover))
    assert fleet.writable() == ["db-2"] and fleet.has_all("db-2", fleet.acknowledged)
    fleet.server("db-1").fetch_paused = False
    acked = fleet.write("db-2", 3)
    assert len(acked) == 3 and fleet.holds("db-1", acked)  # semi-sync from its first write

    after = ctl.step()
    assert after.state == "Degraded" and roles(after) == {"db-0": "unknown", "db-1": "replica", "db-2": "primary"}
    assert fleet.follows("db-1", "db-2") and fleet.has_all("db-1", fleet.acknowledged)


@FLAVORS
def test_the_old_primary_returns_read_only_rejoins_as_a_replica_and_is_never_promoted_back(flavor: str) -> None:
    ctl = bootstrapped(flavor, Policy(anti_flap_window=5.0), writes=5)
    fleet = ctl.fleet
    fleet.crash("db-0")
    new = ctl.until(lambda r: r.primary != "db-0").primary
    assert new == "db-1"  # equally complete replicas: the lowest ordinal
    assert len(fleet.write(new, 5)) == 5

    fleet.restart("db-0")
    assert fleet.server("db-0").read_only  # refusing writes from its first moment
    back = ctl.step()
    assert back.primary == new and member(back, "db-0")["role"] == "replica"
    assert "db-0 replicates from db-1" in [message for _, message in back.events]
    healthy = ctl.until(lambda r: r.state == "Healthy")
    assert roles(healthy) == {"db-0": "replica", "db-1": "primary", "db-2": "replica"}
    assert fleet.follows("db-0", new) and fleet.has_all("db-0", fleet.acknowledged)

    for result in ctl.steps(10):  # well past the anti-flap window
        assert result.primary == new and result.state == "Healthy" and result.history is None
    assert fleet.writable() == [new]


@FLAVORS
def test_a_primary_restarted_without_its_tail_is_replaced_at_once_and_rejoins(flavor: str) -> None:
    ctl = bootstrapped(flavor, writes=5)
    fleet = ctl.fleet
    fleet.crash("db-0")
    fleet.restart("db-0", lose_last=2)  # its replicas have two of its transactions it lost
    failover = ctl.step()
    assert failover.primary == "db-1" and failover.history is not None
    assert "restarted without transactions" in failover.history["reason"]
    assert fleet.has_all("db-1", fleet.acknowledged) and fleet.writable() == ["db-1"]
    healthy = ctl.until(lambda r: r.state == "Healthy")
    assert roles(healthy)["db-0"] == "replica" and fleet.has_all("db-0", fleet.acknowledged)


@FLAVORS
def test_an_old_primary_back_with_writes_nobody_acknowledged_is_kept_out(flavor: str) -> None:
    ctl = bootstrapped(flavor, writes=5)
    fleet = ctl.fleet
    fleet.partition("db-0")
    assert fleet.write("db-0", 2) == []  # committed on the island, never acknowledged
    new = ctl.until(lambda r: r.primary != "db-0").primary
    fleet.heal()
    kept_out = ctl.step()
    status = member(kept_out, "db-0")
    assert kept_out.primary == new and status["errant"] and status["role"] == "fenced"
    assert "ErrantTransactions" in reasons(kept_out)
    assert fleet.writable() == [new] and fleet.server("db-0").channel is None  # not re-attached


# ------------------------------------------------------------------------------- switchover

@FLAVORS
@pytest.mark.parametrize(("target", "slow", "expected"), [
    ("db-2", ("db-2", "apply_lags"), "db-2"),  # the target applies what it has while the loop waits
    (ANY_REPLICA, None, "db-1"),  # equally complete: the lowest ordinal
    (ANY_REPLICA, ("db-1", "fetch_paused"), "db-2"),  # the most complete one
])
def test_a_switchover_moves_the_primary_without_losing_a_write(flavor: str, target: str,
                                                                slow: tuple[str, str] | None, expected: str) -> None:
    ctl = bootstrapped(flavor)
    fleet = ctl.fleet
    if slow:
        setattr(fleet.server(slow[0]), slow[1], True)
    assert len(fleet.write("db-0", 5)) == 5
    ctl.step()
    ctl.switchover = target
    done = ctl.step()
    assert done.primary == expected and done.state == "Healthy" and done.error is None
    assert done.history is not None and done.history["kind"] == "switchover"
    assert (done.history["from_member"], done.history["to_member"]) == ("db-0", expected)
    assert {"SwitchoverStarted", "SwitchoverCompleted"} <= set(reasons(done))
    assert fleet.writable() == [expected] and fleet.has_all(expected, fleet.acknowledged)

    if slow:
        setattr(fleet.server(slow[0]), slow[1], False)
    assert len(fleet.write(expected, 3)) == 3
    after = ctl.step()
    assert after.state == "Healthy" and after.primary == expected and ctl.switchover is None
    for name in fleet.servers:
        assert name == expected or fleet.follows(name, expected)
        assert fleet.has_all(name, fleet.acknowledged)


# ------------------------------------------------------------------------------- errant

@FLAVORS
def test_a_replica_with_errant_transactions_is_reported_kept_out_and_never_promoted(flavor: str) -> None:
    ctl = bootstrapped(flavor, writes=5)
    fleet = ctl.fleet
    errant = fleet.inject("db-1")  # someone wrote on the replica directly: db-1 now has the most
    flagged = ctl.step()
    assert flagged.state == "Degraded" and flagged.primary == "db-0"
    assert reasons(flagged).count("ErrantTransactions") == 1
    status = member(flagged, "db-1")
    assert status["errant"] and status["role"] == "fenced" and "re-seeded" in status["message"]
    assert not fleet.follows("db-1", "db-0")  # its replication is stopped
    again = ctl.step()
    assert "ErrantTransactions" not in reasons(again) and member(again, "db-1")["errant"]  # said once

    fleet.crash("db-0")
    failover = ctl.until(lambda r: r.primary != "db-0")
    assert failover.primary == "db-2"
    after = ctl.step()
    assert member(after, "db-1")["errant"] and member(after, "db-1")["role"] == "fenced"
    assert not fleet.follows("db-1", "db-2") and fleet.server("db-1").read_only
    assert fleet.has_all("db-2", fleet.acknowledged) and not fleet.has_all("db-2", errant)


@FLAVORS
def test_a_replica_someone_opened_for_writes_is_fenced_at_the_next_step(flavor: str) -> None:
    ctl = bootstrapped(flavor)
    fleet = ctl.fleet
    # SET GLOBAL read_only = OFF by hand, with the event scheduler off (else the lease event
    # fences it within a second: it has no lease)
    fleet.server("db-2").event_scheduler = False
    fleet.server("db-2").read_only = False
    fenced = ctl.step()
    assert "db-2 is read-only" in [message for _, message in fenced.events]
    assert "accepts writes but is not the primary" in member(fenced, "db-2")["message"]
    assert fleet.writable() == ["db-0"] and ctl.step().state == "Healthy"


# ------------------------------------------------------------------------------- operator crash

def about_to_fail_over(flavor: str, loss: str) -> Controller:
    """db-2 ahead of db-1 but not done applying, the primary killed or cut off, one probe short
    of a failover; failureThreshold 2, so the old primary's lease has not lapsed yet."""
    ctl = bootstrapped(flavor, Policy(failure_threshold=2))
    fleet = ctl.fleet
    fleet.write("db-0", 5)
    fleet.server("db-1").fetch_paused = True
    fleet.server("db-2").apply_lags = True
    assert len(fleet.write("db-0", 5)) == 5
    ctl.step()
    if loss == "killed":
        fleet.crash("db-0")
    else:
        fleet.partition("db-0")
    fleet.server("db-1").fetch_paused = False  # it cannot reach db-0 any more
    ctl.steps(ctl.policy.failure_threshold - 1)
    return ctl


@FLAVORS
@pytest.mark.parametrize("loss", ["killed", "partitioned"])
def test_an_operator_crash_at_any_action_of_a_failover_is_finished_by_the_next_operator(flavor: str,
                                                                                      loss: str) -> None:
    uninterrupted = about_to_fail_over(flavor, loss).step()
    assert uninterrupted.primary == "db-2" and uninterrupted.history is not None
    actions = uninterrupted.done
    assert len(actions) >= 6

    # before each action in turn, then after the last one but before the status was written
    for crash_at in range(len(actions) + 1):
        ctl = about_to_fail_over(flavor, loss)
        fleet = ctl.fleet
        done: list[Action] = []

        def crash(action: Action, crash_at: int = crash_at, done: list[Action] = done) -> None:
            if len(done) == crash_at:
                raise Crash(f"the operator died before {action}")
            done.append(action)

        ctl.cluster = ctl.operator(before_action=crash)
        if crash_at < len(actions):
            with pytest.raises(Crash):
                ctl.step()
        else:
            ctl.step(persist=False)
        assert done == list(actions[:crash_at])
        ctl.cluster = ctl.operator()  # restarted: only what the last completed step persisted
        assert ctl.primary == "db-0"

        finished = ctl.until(lambda r: r.primary != "db-0")
        new = finished.primary
        assert new is not None and finished.history is not None and finished.history["kind"] == "failover"
        promoted = [a.member for a in done if isinstance(a, Detach)]
        if (promoted and not any(isinstance(a, ReplicateFrom) for a in done)) or crash_at == len(actions):
            assert new == "db-2"  # the interrupted promotion is finished, not redone elsewhere
        other = "db-1" if new == "db-2" else "db-2"
        ctl.until(lambda _: fleet.follows(other, new))  # noqa: B023 - called within this iteration
        if loss == "partitioned":
            fleet.heal()  # the old primary, cut off and idle, may still be writable: the loop fences it
            ctl.until(lambda _: fleet.writable() == [new])  # noqa: B023
        assert fleet.writable() == [new], (crash_at, actions[crash_at])
        assert fleet.has_all(new, fleet.acknowledged) and fleet.has_all("db-1", fleet.acknowledged)


# ------------------------------------------------------------------------------- partitions

@FLAVORS
def test_a_partitioned_replica_is_reported_and_catches_up_when_the_partition_heals(flavor: str) -> None:
    ctl = bootstrapped(flavor)
    fleet = ctl.fleet
    fleet.partition("db-2")
    assert len(fleet.write("db-0", 5)) == 5  # db-1 acknowledges
    for result in ctl.steps(5):  # past failureThreshold: the primary answers, nothing to fail over
        assert (result.primary, result.state, result.available, result.healthy) == ("db-0", "Degraded", True, False)
        status = member(result, "db-2")
        assert not status["reachable"] and status["role"] == "unknown" and "unreachable" in status["message"]
    assert fleet.writable() == ["db-0"]

    fleet.heal()
    healed = ctl.until(lambda r: r.state == "Healthy")
    assert healed.primary == "db-0" and fleet.follows("db-2", "db-0")
    assert fleet.has_all("db-2", fleet.acknowledged)


@FLAVORS
def test_a_primary_the_replicas_still_reach_is_not_failed_over(flavor: str) -> None:
    ctl = bootstrapped(flavor)
    fleet = ctl.fleet
    fleet.cut_operator("db-0")  # only the operator lost it
    for result in ctl.steps(5):  # past failureThreshold
        assert result.primary == "db-0" and result.history is None and not result.failover_in_progress
    assert "still replicate from it: not failing over" in result.reason
    fleet.heal()
    back = ctl.until(lambda r: r.state == "Healthy")
    assert back.primary == "db-0" and fleet.writable() == ["db-0"]


@FLAVORS
@pytest.mark.parametrize("threshold", [2, 3])
def test_a_partitioned_primary_fences_itself_before_a_replica_opens_and_rejoins_after(flavor: str,
                                                                                      threshold: int) -> None:
    """Durability Available: the lease alone fences, so the old primary is read-only before the
    new one opens, whether a client writes there or not."""
    ctl = bootstrapped(flavor, Policy(failure_threshold=threshold, lossless=False), writes=5)
    fleet = ctl.fleet
    cut = fleet.now
    fleet.partition("db-0")  # alive, writable, on its own
    failover = ctl.until(lambda r: r.primary != "db-0")
    new = failover.primary
    assert new is not None
    fenced = next(t for t, name, writable in fleet.transitions if t > cut and name == "db-0" and not writable)
    opened = next(t for t, name, writable in fleet.transitions if t > cut and name == new and writable)
    assert fenced < opened
    # a client still reaching the old primary cannot write there
    with pytest.raises(pymysql.err.OperationalError) as refused:
        fleet.write("db-0")
    assert refused.value.args[0] == 1290
    if flavor == "mysql":
        assert fleet.server("db-0").super_read_only  # accounts with SUPER refused too

    assert len(fleet.write(new, 5)) == 5
    fleet.heal()
    healed = ctl.until(lambda r: r.state == "Healthy")
    assert healed.primary == new and fleet.follows("db-0", new)
    assert fleet.has_all("db-0", fleet.acknowledged) and fleet.writable() == [new]


@FLAVORS
@pytest.mark.parametrize("threshold", [2, 3])
def test_a_partitioned_primary_acknowledges_nothing_after_the_cut_and_fences_itself_when_a_client_writes(
        flavor: str, threshold: int) -> None:
    """Durability Lossless: the old primary's lease event fences it once it is cut off and a
    commit waits; no commit made there after the cut is ever acknowledged, before or after the
    new primary opens."""
    ctl = bootstrapped(flavor, Policy(failure_threshold=threshold), writes=5)
    fleet = ctl.fleet
    cut = fleet.now
    fleet.partition("db-0")
    assert fleet.write("db-0") == []  # its replicas are gone: the client waits
    unacknowledged = fleet.server("db-0").gtids()[-1]
    failover = ctl.until(lambda r: r.primary != "db-0")
    new = failover.primary
    assert new is not None
    fenced = next(t for t, name, writable in fleet.transitions if t > cut and name == "db-0" and not writable)
    assert fenced <= cut + ctl.policy.lease_seconds + 2.0  # its lease lapsed, then one or two event runs
    with pytest.raises(pymysql.err.OperationalError) as refused:
        fleet.write("db-0")
    assert refused.value.args[0] == 1290
    assert unacknowledged not in fleet.acknowledged
    assert len(fleet.write(new, 5)) == 5
    fleet.heal()
    # back, it holds the commit nobody acknowledged: kept out as errant (until re-seeded), read-only
    back = ctl.until(lambda r: member(r, "db-0")["errant"])
    assert back.primary == new and fleet.writable() == [new] and not member(back, "db-0")["serving"]
    assert fleet.has_all(new, fleet.acknowledged)


@FLAVORS
def test_an_operator_outage_never_stops_writes_under_lossless_and_does_after_a_lease_under_available(
        flavor: str) -> None:
    """Issue 11 item 3: a healthy primary keeps taking writes while the operator is away for a
    minute; a primary cut off from its replicas meanwhile stops at its first waiting commit.
    Available keeps the old rule: the lease alone fences."""
    lossless = bootstrapped(flavor, Policy(), writes=2)
    fleet = lossless.fleet
    for _ in range(60):  # no operator: nobody renews the lease
        fleet.advance(1.0)
        fleet.replicate()
        assert len(fleet.write("db-0")) == 1
    fleet.replicate()
    assert fleet.writable() == ["db-0"] and fleet.has_all("db-1", fleet.acknowledged)
    fleet.partition("db-0")  # now it is cut off from its replicas too
    assert fleet.write("db-0") == []
    fleet.advance(2.0)
    assert fleet.writable() == []  # fenced: the waiting commit was killed, never acknowledged
    assert fleet.server("db-0").waiting_since is None

    available = bootstrapped(flavor, Policy(lossless=False), writes=2)
    fleet = available.fleet
    fleet.advance(available.policy.lease_seconds + 2)
    assert fleet.writable() == []
    with pytest.raises(pymysql.err.OperationalError):
        fleet.write("db-0")


# ------------------------------------------------------------------------------- durability

def fallen_back_then_killed(flavor: str, policy: Policy) -> tuple[Controller, list[str]]:
    """A healthy cluster whose replicas stop acknowledging (a slow link: they fetch nothing),
    so that the primary waits out the semi-sync timeout (keep it shorter than the lease: the
    loop does not step while the fake's client waits), falls back to asynchronous replication
    and acknowledges writes no replica has; the loop sees that; then the primary is killed and
    the link comes back. Returns the controller and the acknowledged writes only db-0 had."""
    ctl = bootstrapped(flavor, policy, writes=5)
    fleet = ctl.fleet
    for replica in ("db-1", "db-2"):
        fleet.server(replica).fetch_paused = True
    only_on_primary = fleet.write("db-0", 3, wait_timeout=True)
    assert len(only_on_primary) == 3
    seen = ctl.step()
    assert member(seen, "db-0")["semi_sync_active"] is False and seen.memory.primary_semi_sync is False
    fleet.crash("db-0")
    for replica in ("db-1", "db-2"):
        fleet.server(replica).fetch_paused = False
    return ctl, only_on_primary


def lost(fleet: FakeFleet, on: str) -> list[str]:
    """Acknowledged writes `on` lacks: the writer's count of loss."""
    return [g for g in fleet.acknowledged if not fleet.has_all(on, [g])]


@FLAVORS
def test_lossless_refuses_to_promote_after_semi_sync_fell_back_and_a_person_can_force_it(flavor: str) -> None:
    ctl, only_on_primary = fallen_back_then_killed(flavor, Policy(semi_sync_timeout=1.0))
    fleet = ctl.fleet
    refused = ctl.until(lambda r: r.state == "Lost")
    assert refused.refused and refused.primary == "db-0" and not refused.available
    assert "FailoverRefused" in reasons(refused)
    assert "semi-sync inactive" in refused.reason and "hakeeper.io/force-failover-to=" in refused.reason
    for held in ctl.steps(5):  # it stays refused, and nobody takes writes
        assert held.state == "Lost" and held.refused and held.history is None
        assert "FailoverRefused" not in reasons(held)  # announced once
    assert fleet.writable() == []

    ctl.force = "db-2"
    forced = ctl.step()
    assert forced.primary == "db-2" and forced.force is not None and forced.force[0] == "used"
    assert forced.history is not None and forced.history["forced"]
    assert "semi-sync inactive" in (forced.history["possible_loss"] or "")
    assert {"FailoverForced", "FailoverCompleted"} <= set(reasons(forced))
    assert fleet.writable() == ["db-2"]
    # what the forced failover cost: exactly the writes only the old primary had
    assert lost(fleet, "db-2") == only_on_primary


@FLAVORS
def test_available_promotes_after_semi_sync_fell_back_and_the_writer_counts_the_loss(flavor: str) -> None:
    """The negative control of the one above: the same history under durability Available loses
    the writes only the old primary had, and the count sees them."""
    ctl, only_on_primary = fallen_back_then_killed(flavor, Policy(semi_sync_timeout=1.0, lossless=False))
    fleet = ctl.fleet
    failover = ctl.until(lambda r: r.history is not None)
    assert failover.primary in ("db-1", "db-2") and not failover.refused
    assert failover.history is not None and not failover.history["forced"]
    assert "semi-sync inactive" in (failover.history["possible_loss"] or "")
    assert "FailoverMayLoseWrites" in reasons(failover)
    assert lost(fleet, failover.primary) == only_on_primary


@FLAVORS
def test_a_restarted_primary_reporting_semi_sync_on_does_not_undo_a_fallback(flavor: str) -> None:
    """CI fault: the fallen-back primary crash-looped; one start came up writable with its
    semi-sync status ON (a server starts synchronous: nothing has timed out yet) while its
    replicas still lacked what it had acknowledged asynchronously; the loop took that ON as
    "synchronous again", and the next crash's failover promoted a replica and lost those writes
    without asking anyone. A fallback holds until a replica has what the primary had."""
    ctl, only_on_primary = fallen_back_then_killed(flavor, Policy(semi_sync_timeout=1.0))
    fleet = ctl.fleet
    for replica in ("db-1", "db-2"):
        fleet.server(replica).fetch_paused = True  # the link is still down
    fleet.restart("db-0")
    back = ctl.until(lambda r: r.available and member(r, "db-0")["semi_sync_active"] is True)
    assert back.memory.primary_semi_sync is False, "a restart is not a catch-up"
    fleet.crash("db-0")
    for replica in ("db-1", "db-2"):
        fleet.server(replica).fetch_paused = False
    refused = ctl.until(lambda r: r.state == "Lost")
    assert refused.refused and "semi-sync inactive" in refused.reason
    assert all(not fleet.has_all(m, only_on_primary) for m in ("db-1", "db-2"))


@FLAVORS
def test_semi_sync_back_on_after_a_fallback_makes_a_failover_lossless_again(flavor: str) -> None:
    ctl = bootstrapped(flavor, Policy(semi_sync_timeout=1.0), writes=5)
    fleet = ctl.fleet
    fleet.server("db-1").fetch_paused = True
    fleet.server("db-2").fetch_paused = True
    fleet.write("db-0", 2, wait_timeout=True)
    assert ctl.step().memory.primary_semi_sync is False
    fleet.server("db-1").fetch_paused = False
    fleet.server("db-2").fetch_paused = False
    caught_up = ctl.until(lambda r: r.memory.primary_semi_sync is True)
    assert caught_up.state == "Healthy"
    fleet.crash("db-0")
    failover = ctl.until(lambda r: r.history is not None)
    assert failover.history is not None and failover.history["possible_loss"] is None
    assert lost(fleet, failover.primary) == []


@FLAVORS
def test_a_force_annotation_with_nothing_refused_is_dropped_with_a_warning(flavor: str) -> None:
    ctl = bootstrapped(flavor, writes=2)
    ctl.force = "db-1"
    result = ctl.step()
    assert result.force is not None and result.force[0] == "ignored" and "the primary db-0 answers" in result.force[1]
    assert "ForceFailoverIgnored" in reasons(result) and ctl.force is None
    assert result.primary == "db-0" and result.history is None


@FLAVORS
def test_a_replica_caught_up_after_the_primary_died_is_promoted_whatever_lag_was_last_seen(flavor: str) -> None:
    """Field fault (a): the lag last seen before the primary's death kept every replica
    ineligible, and the database stayed Lost forever."""
    ctl = bootstrapped(flavor, Policy(max_lag_seconds=30), writes=5)
    fleet = ctl.fleet
    for replica in ("db-1", "db-2"):
        fleet.server(replica).lag_seconds = 120.0  # busy appliers, as their servers report it
    fleet.write("db-0", 3)
    lagging = ctl.step()
    assert lagging.memory.last_lag == {"db-1": 120.0, "db-2": 120.0}
    assert lagging.replicating == 0 and not member(lagging, "db-1")["serving"]  # out of -replicas
    fleet.crash("db-0")
    failover = ctl.until(lambda r: r.history is not None)
    assert failover.primary in ("db-1", "db-2") and lost(fleet, failover.primary) == []


@FLAVORS
def test_a_new_database_is_ready_only_once_its_replicas_replicate(flavor: str) -> None:
    """Field fault (i): Ready=True while the phase was still Initializing."""
    from hakeeper.replicateddatabase.status import ready

    policy = Policy()
    ctl = Controller(FakeFleet(flavor, 3, policy), policy)
    first = ctl.step()
    assert first.available and first.state == "Initializing"
    assert ready(first, needed=1)[:2] == (False, "Initializing")
    settled = ctl.until(lambda r: r.state == "Healthy")
    assert ready(settled, needed=2)[:2] == (True, "Available")
    ctl.fleet.crash("db-1")
    ctl.fleet.crash("db-2")
    alone = ctl.step()
    assert alone.available and ready(alone, needed=1)[:2] == (False, "ReplicasNotReplicating")


@FLAVORS
def test_only_replicas_that_replicate_in_time_serve_reads(flavor: str) -> None:
    ctl = bootstrapped(flavor, writes=2)
    fleet = ctl.fleet
    healthy = ctl.step()
    assert healthy.replicating == 2 and all(member(healthy, r)["serving"] for r in ("db-1", "db-2"))
    fleet.server("db-2").lag_seconds = 100.0
    lagging = ctl.step()
    assert lagging.replicating == 1 and not member(lagging, "db-2")["serving"] and member(lagging, "db-1")["serving"]
    fleet.server("db-2").lag_seconds = 0.0
    assert ctl.step().replicating == 2
    fleet.inject("db-1")  # errant: out, and it stays out
    errant = ctl.step()
    assert not member(errant, "db-1")["serving"] and member(errant, "db-2")["serving"]


@FLAVORS
def test_an_event_scheduler_someone_turned_off_is_turned_back_on_so_the_self_fence_stays_armed(flavor: str) -> None:
    """Field fault (c): `SET GLOBAL event_scheduler = OFF` silently disarmed the lease fence."""
    ctl = bootstrapped(flavor, writes=2)
    fleet = ctl.fleet
    fleet.server("db-0").event_scheduler = False
    rearmed = ctl.step()
    assert "InstallLeaseFence" in [name for name, _ in rearmed.action_seconds]
    assert fleet.server("db-0").event_scheduler
    # and it fences: cut off from the operator and its replicas, the primary stops taking writes
    fleet.partition("db-0")
    assert fleet.write("db-0") == []
    fleet.advance(2 * ctl.policy.lease_seconds + 2)
    assert "db-0" not in fleet.writable()


@FLAVORS
def test_a_fence_kills_every_client_session_and_no_replication_thread(flavor: str) -> None:
    """Issue 11 item 4: MariaDB's read_only does not stop SUPER or READ_ONLY ADMIN accounts, and
    on both flavors a client's open connection would go on reaching the old primary (kube-proxy
    keeps its backend): the fence kills every client session, the replicas' dump threads and the
    server's own threads not."""
    ctl = bootstrapped(flavor, writes=2)
    fleet = ctl.fleet
    fleet.server("db-0").client_sessions = {41: "root", 42: "app"}
    ctl.switchover = "db-1"
    switched = ctl.until(lambda r: r.primary == "db-1")
    fenced = [m for reason, m in switched.events if reason == "Fenced" and m.startswith("db-0")]
    assert fleet.server("db-0").client_sessions == {} and fleet.server("db-0").killed_threads == []
    assert fenced == ["db-0 is read-only; killed 2 client session(s), to reconnect to the new primary"]


@FLAVORS
def test_a_former_primary_s_clients_are_disconnected_again_on_request(flavor: str) -> None:
    """Clients that reconnected to the old primary through the Service before kube-proxy moved
    (the controller asks once the -primary Service no longer routes there): killed, the
    replication threads not; a member that is down or has no client posts nothing."""
    ctl = bootstrapped(flavor, writes=2)
    ctl.switchover = "db-1"
    ctl.until(lambda r: r.primary == "db-1")
    fleet = ctl.fleet
    fleet.server("db-0").client_sessions = {51: "app", 52: "app"}
    events = ctl.cluster.disconnect_clients(fleet.members, "db-0")
    assert [reason for reason, _ in events] == ["ClientsDisconnected"] and "killed 2" in events[0][1]
    assert fleet.server("db-0").client_sessions == {} and fleet.server("db-0").killed_threads == []
    assert ctl.cluster.disconnect_clients(fleet.members, "db-0") == []
    fleet.crash("db-0")
    assert ctl.cluster.disconnect_clients(fleet.members, "db-0") == []


# ------------------------------------------------------------------------------- the fake itself

@FLAVORS
def test_the_fake_refuses_statements_it_does_not_simulate(flavor: str) -> None:
    fleet = FakeFleet(flavor, 1)
    with pytest.raises(UnknownStatement):
        fleet.run(fleet.members[0], [("SET GLOBAL sync_binlog = 0", ())])
    with pytest.raises(UnknownStatement):  # a literal % that pymysql's formatting would reject
        fleet.run(fleet.members[0], [("SELECT 'Waiting for semi-sync ACK%'", ())])


@FLAVORS
def test_a_switchover_whose_old_primary_dies_before_it_is_repointed_still_moves_the_primary(flavor: str) -> None:
    """A deleted primary pod: its preStop hook keeps the server up for the switchover, but the
    kubelet may stop it before the last action (pointing it at the new primary). The new
    primary already takes writes then, so it is the primary: recorded, and the switchover
    completed; the old member is repointed when it comes back (found in e2e, 2026-11-29)."""
    ctl = bootstrapped(flavor, writes=3)
    fleet = ctl.fleet

    def stop_old_primary(action: Action) -> None:
        if isinstance(action, ReplicateFrom) and action.member == "db-0":
            fleet.crash("db-0")

    ctl.cluster = ctl.operator(before_action=stop_old_primary)
    ctl.switchover = ANY_REPLICA
    done = ctl.step()  # the Controller checks that no server but the recorded primary takes writes
    assert done.primary in ("db-1", "db-2") and fleet.writable() == [done.primary]
    assert done.history is not None and done.history["kind"] == "switchover"
    assert "SwitchoverCompleted" in reasons(done) and done.error is not None
    ctl.cluster = ctl.operator()
    fleet.restart("db-0")
    ctl.until(lambda r: r.state == "Healthy" and fleet.follows("db-0", done.primary))
    assert fleet.has_all("db-0", fleet.acknowledged)
