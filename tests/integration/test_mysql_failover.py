"""Automatic failover against real MariaDB replication (three mariadbd on loopback addresses)."""

from __future__ import annotations

import time

import pytest

from hakeeper.api.replicateddatabase import HistoryEntry, MemberStatus
from hakeeper.replicateddatabase.clustering import Cluster, Policy
from hakeeper.replicateddatabase.clustering.actions import Concurrently, Detach

from ..support.polling import hold, poll
from .mariadb_support import (
    CREDENTIALS,
    Fleet,
    LoopDriver,
    Writer,
    bootstrap,
    fleet_fixture,
    follows,
    replica_status,
    stored_ids,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def fleet():
    yield from fleet_fixture(3)


def test_kill_9_of_the_primary_under_writes_loses_no_acknowledged_write(fleet: Fleet) -> None:
    policy = Policy(anti_flap_window=4.0)  # the defaults otherwise: probe 1s, 3 failures
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
    print(f"\nkill -9 -> first acknowledged write on {new}: {first.at - killed:.2f}s")  # type: ignore[union-attr]
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

    # The old primary comes back: read-only first, then a replica of the new primary.
    fleet.by_name(old).start()
    assert fleet.by_name(old).value("SELECT @@read_only") == 1
    poll(lambda: follows(fleet, old, new), 20, what=f"{old} to rejoin as a replica of {new}", ignore=Exception)
    rejoined = loop.wait(lambda r: r.state == "Healthy", 20, "a healthy cluster again")
    assert rejoined.primary == new
    assert {m["name"]: m["role"] for m in rejoined.members}[old] == "replica"
    poll(lambda: acked <= stored_ids(fleet.by_name(old)), 15, what=f"{old} to catch up", ignore=Exception)

    # ...and it stays a replica, past the anti-flap window too.
    hold(lambda: loop.last.primary == new, policy.anti_flap_window + 2 * policy.probe_interval, interval=0.2,
         what=f"{new} as the primary")
    loop.stop()
    assert fleet.by_name(old).value("SELECT @@read_only") == 1
    writable = [i.name for i in fleet if i.value("SELECT @@read_only") == 0]
    assert writable == [new]


def test_a_lagging_replica_is_not_chosen_over_a_complete_one(fleet: Fleet) -> None:
    policy = Policy(probe_interval=0.5, max_lag_seconds=1)
    loop = bootstrap(fleet, policy).start()
    # db-1 fetches everything at once but applies it an hour late.
    fleet[1].query("STOP SLAVE")
    fleet[1].query("CHANGE MASTER TO MASTER_DELAY = 3600")
    fleet[1].query("START SLAVE")
    writer = Writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 200, 30, what="writes")
    writer.stop()
    lagging = loop.wait(lambda r: "lagging" in (r.members[1]["message"] or ""), 15, "db-1 reported lagging")
    assert lagging.state == "Degraded"
    # db-1 has fetched as much as db-2 (its relay log is complete), but not applied it.
    poll(lambda: replica_status(fleet[1])["Gtid_IO_Pos"] == replica_status(fleet[2])["Gtid_IO_Pos"], 10,
         what="both replicas to have fetched everything", ignore=Exception)
    assert fleet[1].value("SELECT COUNT(*) FROM hk.writes") < len(writer.acked)

    fleet[0].kill()
    failover = loop.wait(lambda r: r.primary != "db-0", 20, "a new primary")
    assert failover.primary == "db-2"
    assert writer.ids() <= stored_ids(fleet[2])


def test_a_replica_with_an_errant_transaction_is_never_promoted(fleet: Fleet) -> None:
    policy = Policy(probe_interval=0.5)
    loop = bootstrap(fleet, policy).start()
    writer = Writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 100, 30, what="writes")
    writer.stop()
    # A local write on db-1 (root bypasses read_only): a GTID of db-1's own the primary never had.
    fleet[1].query("INSERT INTO hk.writes (id, at) VALUES (999999, 0)")
    flagged = loop.wait(lambda r: r.members[1]["errant"], 10, "db-1 flagged errant")
    status = {m["name"]: m for m in flagged.members}["db-1"]
    assert status["role"] == "fenced" and "re-initialized" in status["message"]
    assert any(reason == "ErrantTransactions" for reason, _ in flagged.events)
    poll(lambda: replica_status(fleet[1]).get("Slave_SQL_Running") == "No", 10, what="db-1's replication stopped",
         ignore=Exception)

    fleet[0].kill()
    failover = loop.wait(lambda r: r.primary != "db-0", 20, "a new primary")
    assert failover.primary == "db-2"
    after = loop.wait(lambda r: True, 5)
    loop.stop()
    assert {m["name"]: m for m in after.members}["db-1"]["errant"]
    status = replica_status(fleet[1])
    assert status.get("Master_Host") != fleet[2].host or status.get("Slave_SQL_Running") == "No"
    assert fleet[1].value("SELECT @@read_only") == 1


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_after", ["first action", "promotion"])
def test_an_operator_crash_in_the_middle_of_a_failover_is_finished_by_the_next(fleet: Fleet,
                                                                                crash_after: str) -> None:
    policy = Policy(probe_interval=0.5)
    loop = bootstrap(fleet, policy).start()
    writer = Writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 100, 30, what="writes")
    loop.stop()  # this operator is about to be replaced by one that crashes
    fleet[0].kill()
    time.sleep(0.2)
    writer.stop()
    acked = writer.ids()

    done: list = []

    def crash(action) -> None:
        # Called before each action: "die" once the failover has done its first action, or
        # right after the candidate was detached (promoted, not yet writable, others not repointed).
        if (crash_after == "first action" and len(done) == 1) or (done and isinstance(done[-1], Detach)):
            raise Crash(f"operator died before {action}")
        done.append(action)

    crashing = LoopDriver(fleet, policy, Cluster("mariadb", CREDENTIALS, policy, before_action=crash))
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
