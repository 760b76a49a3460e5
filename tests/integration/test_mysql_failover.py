"""Automatic failover against real replication, for each flavor: three members started from the
server image exactly as the StatefulSet starts them (mysql_support.PodFleet: the shipped
my.cnf, the init container's accounts), on loopback addresses."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from hakeeper.api.replicateddatabase import HistoryEntry, MemberStatus
from hakeeper.replicateddatabase.clustering import Cluster, Policy
from hakeeper.replicateddatabase.clustering.actions import Concurrently, Detach
from hakeeper.replicateddatabase.clustering.flavor import Statement, flavor_for
from hakeeper.replicateddatabase.clustering.gtid import GtidSet

from ..support.polling import hold, poll
from .mariadb_support import LoopDriver, Writer, bootstrap, follows, replica_status, stored_ids
from .mysql_support import Pod, PodFleet, database_spec, pod_fleet_fixture

pytestmark = pytest.mark.integration

DELAY = {"mariadb": "CHANGE MASTER TO MASTER_DELAY = %s", "mysql": "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = %s"}
"""Apply what the replica fetched this many seconds late (the flavor adapter has no statement
for it: the operator never delays a replica)."""


@pytest.fixture(params=["mariadb", "mysql"])
def fleet(request):
    yield from pod_fleet_fixture(database_spec(request.param))


def policy_for(fleet: PodFleet, **changes: Any) -> Policy:
    """The loop's policy from the spec the servers' my.cnf was made from, with `changes`."""
    return dataclasses.replace(Policy.from_spec(fleet.spec), **changes)


def run(pod: Pod, statements: list[Statement]) -> None:
    """Statements as root in one session (flavor.unlocked keeps a session variable between them)."""
    with pod.connect() as conn, conn.cursor() as cur:
        for sql, args in statements:
            cur.execute(sql, args or None)


def fetched(pod: Pod) -> GtidSet:
    """What a replica has applied or holds in its relay log, as its server says. Not the
    received column alone: MySQL's Retrieved_Gtid_Set starts afresh when CHANGE REPLICATION
    SOURCE TO purges the relay log (MariaDB's Gtid_IO_Pos goes on)."""
    flavor = flavor_for(pod.flavor)
    names = flavor.variables
    variables = {r["Variable_name"]: r["Value"] for r in pod.query(
        f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({', '.join(['%s'] * len(names))})", names)}
    return flavor.received(replica_status(pod)).union(flavor.executed(variables))


def test_kill_9_of_the_primary_under_writes_loses_no_acknowledged_write(fleet: PodFleet) -> None:
    policy = policy_for(fleet, anti_flap_window=4.0)  # the spec's defaults otherwise: probe 1s, 3 failures
    loop = bootstrap(fleet, policy)
    old = loop.primary
    assert old == "db-0"
    writer = Writer(loop.primary_host)
    writer.start()
    loop.start()
    poll(lambda: len(writer.acked) >= 300, 30, what="300 acknowledged writes")

    fleet.by_name(old).kill()
    killed = time.monotonic()
    failover = loop.wait(lambda r: r.primary != old, 20, "a new primary")
    new = failover.primary
    assert new in ("db-1", "db-2")
    first = poll(lambda: writer.first_ack(killed, fleet.by_name(new).host), 15, what="a write on the new primary")
    print(f"\n{fleet.flavor}: kill -9 -> first acknowledged write on {new}: {first.at - killed:.2f}s")  # type: ignore[union-attr]
    assert failover.history is not None and failover.history["kind"] == "failover"
    assert failover.history["from_member"] == old and failover.history["to_member"] == new
    HistoryEntry.model_validate(failover.history)
    for m in failover.members:
        MemberStatus.model_validate(m)
    assert any(reason == "FailoverCompleted" for reason, _ in failover.events)

    poll(lambda: len(writer.acked_since(killed)) >= 100, 20, what="writes after the failover")
    writer.stop()

    # Every write the client saw acknowledged is on the new primary, and on the other replica.
    acked = writer.ids()
    assert acked <= stored_ids(fleet.by_name(new)), sorted(acked - stored_ids(fleet.by_name(new)))[:10]
    other = next(n for n in ("db-1", "db-2") if n != new)
    poll(lambda: follows(fleet, other, new), 15, what=f"{other} to follow {new}", ignore=Exception)
    poll(lambda: acked <= stored_ids(fleet.by_name(other)), 15, what=f"{other} to have every acknowledged write",
         ignore=Exception)

    # The old primary comes back (its pod restarts: the init container again, the claim kept):
    # read-only first, then a replica of the new primary. MySQL keeps what the killed primary had
    # binlogged but no replica had received (MariaDB's init_rpl_role=SLAVE cuts that tail): such
    # a member comes back errant and is kept out, read-only, until re-seeded; what it has
    # beyond the new primary are writes no client was told of.
    fleet.by_name(old).start()
    assert fleet.by_name(old).value("SELECT @@read_only") == 1

    def rejoined_or_kept_out() -> str | None:
        if follows(fleet, old, new):
            return "rejoined"
        member = next((m for m in loop.last.members if m["name"] == old), {})
        return "errant" if fleet.flavor == "mysql" and member.get("errant") else None

    outcome = poll(rejoined_or_kept_out, 20, what=f"{old} to rejoin as a replica of {new} (MySQL: or be kept out)",
                   ignore=Exception)
    if outcome == "rejoined":
        rejoined = loop.wait(lambda r: r.state == "Healthy", 20, "a healthy cluster again")
        assert rejoined.primary == new
        assert {m["name"]: m["role"] for m in rejoined.members}[old] == "replica"
        poll(lambda: acked <= stored_ids(fleet.by_name(old)), 15, what=f"{old} to catch up", ignore=Exception)
    else:
        extra = stored_ids(fleet.by_name(old)) - stored_ids(fleet.by_name(new))
        assert not extra & acked, f"{old} is errant with acknowledged writes {sorted(extra & acked)[:10]}"
        print(f"{fleet.flavor}: {old} came back errant ({len(extra)} unacknowledged writes) and is kept out")

    # ...and it stays out of the primary's seat, past the anti-flap window too.
    hold(lambda: loop.last.primary == new, policy.anti_flap_window + 2 * policy.probe_interval, interval=0.2,
         what=f"{new} as the primary")
    loop.stop()
    assert fleet.by_name(old).value("SELECT @@read_only") == 1
    writable = [i.name for i in fleet if i.value("SELECT @@read_only") == 0]
    assert writable == [new]


def test_a_lagging_replica_is_not_chosen_over_a_complete_one(fleet: PodFleet) -> None:
    policy = policy_for(fleet, probe_interval=0.5, max_lag_seconds=1)
    flavor = flavor_for(fleet.flavor)
    loop = bootstrap(fleet, policy).start()
    # db-1 fetches everything at once but applies it an hour late.
    run(fleet[1], [*flavor.stop_replication(), (DELAY[fleet.flavor], (3600,)),
                   (f"START {flavor.replica_word}", ())])
    writer = Writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 200, 30, what="writes")
    writer.stop()
    lagging = loop.wait(lambda r: "lagging" in (r.members[1]["message"] or ""), 15, "db-1 reported lagging")
    assert lagging.state == "Degraded"
    # db-1 has fetched as much as db-2 (its relay log is complete), but not applied it.
    poll(lambda: fetched(fleet[1]).compare(fetched(fleet[2])) == "equal", 10,
         what="both replicas to have fetched everything", ignore=Exception)
    assert fleet[1].value("SELECT COUNT(*) FROM hk.writes") < len(writer.acked)

    fleet[0].kill()
    failover = loop.wait(lambda r: r.primary != "db-0", 20, "a new primary")
    assert failover.primary == "db-2"
    assert writer.ids() <= stored_ids(fleet[2])


def test_a_replica_with_an_errant_transaction_is_never_promoted(fleet: PodFleet) -> None:
    policy = policy_for(fleet, probe_interval=0.5)
    columns = flavor_for(fleet.flavor).columns
    loop = bootstrap(fleet, policy).start()
    writer = Writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 100, 30, what="writes")
    writer.stop()
    # A local write on db-1 as root: a GTID of db-1's own the primary never had. read_only does
    # not stop root; MySQL's super_read_only does, so it is lifted for that one write and put
    # back (flavor.unlocked, what the operator does for its own statements on a replica).
    run(fleet[1], flavor_for(fleet.flavor).unlocked([("INSERT INTO hk.writes (id, at) VALUES (999999, 0)", ())]))
    assert 999999 in stored_ids(fleet[1]) and 999999 not in stored_ids(fleet[0])
    flagged = loop.wait(lambda r: r.members[1]["errant"], 10, "db-1 flagged errant")
    status = {m["name"]: m for m in flagged.members}["db-1"]
    assert status["role"] == "fenced" and "re-seeded" in status["message"]
    assert any(reason == "ErrantTransactions" for reason, _ in flagged.events)
    poll(lambda: replica_status(fleet[1]).get(columns.sql_running) == "No", 10, what="db-1's replication stopped",
         ignore=Exception)

    fleet[0].kill()
    failover = loop.wait(lambda r: r.primary != "db-0", 20, "a new primary")
    assert failover.primary == "db-2"
    after = loop.wait(lambda r: True, 5)
    loop.stop()
    assert {m["name"]: m for m in after.members}["db-1"]["errant"]
    status = replica_status(fleet[1])
    assert status.get(columns.source_host) != fleet[2].host or status.get(columns.sql_running) == "No"
    assert fleet[1].value("SELECT @@read_only") == 1


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_after", ["first action", "promotion"])
def test_an_operator_crash_in_the_middle_of_a_failover_is_finished_by_the_next(fleet: PodFleet,
                                                                                crash_after: str) -> None:
    policy = policy_for(fleet, probe_interval=0.5)
    loop = bootstrap(fleet, policy).start()
    writer = Writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 100, 30, what="writes")
    loop.stop()  # this operator is about to be replaced by one that crashes
    fleet[0].kill()
    killed = time.monotonic()
    # the writer finds the primary gone (its next statement fails) before it is stopped
    poll(lambda: any(at > killed for at, _ in writer.errors), 10, what="the writer to find db-0 gone")
    writer.stop()
    acked = writer.ids()

    done: list = []

    def crash(action) -> None:
        # Called before each action: "die" once the failover has done its first action, or
        # right after the candidate was detached (promoted, not yet writable, others not repointed).
        if (crash_after == "first action" and len(done) == 1) or (done and isinstance(done[-1], Detach)):
            raise Crash(f"operator died before {action}")
        done.append(action)

    crashing = LoopDriver(fleet, policy, Cluster(fleet.flavor, fleet.credentials, policy, before_action=crash))
    crashing.primary, crashing.memory = loop.primary, loop.memory
    with pytest.raises(Crash):
        crashing.run_until(lambda r: False, 20, "the crash")
    assert done and isinstance(done[0], Concurrently)  # fenced, replicas' IO threads stopped

    # A new operator process: only what the last completed step persisted.
    resumed = LoopDriver(fleet, policy)
    resumed.primary, resumed.memory = crashing.primary, crashing.memory
    assert resumed.primary == "db-0"
    result = resumed.run_until(lambda r: r.primary != "db-0", 20, "the failover to finish")
    new = result.primary
    assert result.history is not None and result.history["to_member"] == new
    if crash_after == "promotion":
        assert new == next(a.member for a in done if isinstance(a, Detach))  # the same candidate, finished
    other = next(n for n in ("db-1", "db-2") if n != new)
    poll(lambda: follows(fleet, other, new), 15, what=f"{other} to follow {new}", ignore=Exception)
    assert acked <= stored_ids(fleet.by_name(new))
    assert [i.name for i in fleet if i.running and i.value("SELECT @@read_only") == 0] == [new]
