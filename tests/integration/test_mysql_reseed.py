"""Re-seeding against real servers: a member that cannot rejoin by replication is rebuilt from a
healthy member's data, the way the operator does it (replicateddatabase.reseed). Its pod
restarts with the re-seed entry the `<db>-reseed` ConfigMap gives its init container, which
puts the copy in the datadir's place: on MySQL a copy the member's own server cloned from the
donor beforehand (Cluster.clone), on MariaDB one it streams from the donor pod's backup
container (mariabackup) and prepares. Members start from the images exactly as the StatefulSet
starts them, backup container included."""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

import pytest

from hakeeper.replicateddatabase import objects
from hakeeper.replicateddatabase.clustering import Policy
from hakeeper.replicateddatabase.clustering.flavor import flavor_for

from ..support.polling import poll
from .mariadb_support import Writer, bootstrap, stored_ids
from .mysql_support import PodFleet, database_spec, pod_fleet_fixture, reseed

pytestmark = pytest.mark.integration

ERRANT_ID = 999999


@pytest.fixture(params=["mariadb", "mysql"])
def fleet(request):
    yield from pod_fleet_fixture(database_spec(request.param))


def member_of(result: Any, name: str) -> dict[str, Any]:
    return next(m for m in result.members if m["name"] == name)


def test_an_errant_member_is_rebuilt_from_a_replica_and_its_errant_data_kept(fleet: PodFleet) -> None:
    policy = dataclasses.replace(Policy.from_spec(fleet.spec), probe_interval=0.5)
    loop = bootstrap(fleet, policy).start()
    writer = Writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 100, 30, what="writes")
    # db-2 writes a row of its own: a transaction the primary never had
    with fleet[2].connect() as conn, conn.cursor() as cur:
        for sql, args in flavor_for(fleet.flavor).unlocked(
                [("INSERT INTO hk.writes (id, at) VALUES (%s, 0)", (ERRANT_ID,))]):
            cur.execute(sql, args or None)
    flagged = loop.wait(lambda r: member_of(r, "db-2")["errant"], 15, "db-2 flagged errant")
    assert member_of(flagged, "db-2")["reseed"].startswith("it has transactions the primary lacks")

    # the copy is made while the writes go on
    reseed(loop, fleet[2], "db-1", "t1", keep="errant")
    assert "re-seeded from db-1's data (copy t1)" in fleet[2].init_output
    if fleet.flavor == "mariadb":
        assert "copying db-1's data" in fleet[2].init_output
        assert "copy complete" in fleet[1].sidecar_log("backup")
        # the copy is the replication password's to ask for: anything else gets nothing
        with socket.create_connection((fleet[1].host, objects.BACKUP_PORT), timeout=5) as conn:
            conn.sendall(b"not-the-password\n")
            conn.settimeout(30)
            assert conn.recv(1024) == b""
        poll(lambda: "refused a copy request: wrong token" in fleet[1].sidecar_log("backup"), 10,
             what="the refusal in the backup container's log")
    assert "errant data is kept in /var/lib/mysql/errant-t1" in fleet[2].init_output
    back = loop.wait(lambda r: member_of(r, "db-2")["serving"], 30, "db-2 serving again")
    assert not member_of(back, "db-2")["errant"] and member_of(back, "db-2")["reseed"] is None
    so_far = len(writer.acked)
    poll(lambda: len(writer.acked) >= so_far + 50, 30, what="writes after db-2's return")
    writer.stop()
    poll(lambda: writer.ids() <= stored_ids(fleet[2]), 20, what="db-2 to have every acknowledged write",
         ignore=Exception)
    assert ERRANT_ID not in stored_ids(fleet[2]) and ERRANT_ID not in stored_ids(fleet[0])
    # the errant data is kept, whole: a datadir a person can start a server on
    kept = fleet[2].volumes["data"] / "errant-t1"
    assert (kept / "hk" / "writes.ibd").is_file() and (kept / "mysql").is_dir()
    assert not list(fleet[2].volumes["data"].glob(".reseed-*"))

    # the entry stays until the operator removes it: a restart with it changes nothing
    fleet[2].stop()
    fleet[2].start()
    assert "re-seeded" not in fleet[2].init_output
    loop.wait(lambda r: member_of(r, "db-2")["serving"], 30, "db-2 serving after a restart")
    loop.stop()


def test_a_member_whose_binlogs_were_purged_is_rebuilt_and_catches_up(fleet: PodFleet) -> None:
    policy = dataclasses.replace(Policy.from_spec(fleet.spec), probe_interval=0.5)
    loop = bootstrap(fleet, policy).start()
    fleet[2].stop()
    writer = Writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 100, 30, what="writes while db-2 is down")
    # every member that could be db-2's source forgets what db-2 lacks
    for pod in (fleet[0], fleet[1]):
        pod.query("FLUSH BINARY LOGS")
        pod.query("PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 SECOND")
    fleet[2].start()
    purged = loop.wait(lambda r: (member_of(r, "db-2")["reseed"] or "").startswith(
        "its source no longer has the binary logs"), 30, "db-2 to need a re-seed")
    assert not member_of(purged, "db-2")["serving"]

    reseed(loop, fleet[2], "db-1", "t2", keep="discard")
    assert "re-seeded from db-1's data (copy t2)" in fleet[2].init_output
    loop.wait(lambda r: member_of(r, "db-2")["serving"], 30, "db-2 serving again")
    writer.stop()
    poll(lambda: writer.ids() <= stored_ids(fleet[2]), 20, what="db-2 to have every acknowledged write",
         ignore=Exception)
    # stale data, not errant: nothing is kept
    assert not [p.name for p in fleet[2].volumes["data"].iterdir() if p.name.startswith(("errant-", ".reseed-",
                                                                                          ".discard-"))]
    loop.stop()


def test_a_former_primary_rebuilt_before_the_new_primary_wrote_replays_nothing(fleet: PodFleet) -> None:
    """The copy's last GTID is the member's own, from its days as the primary, and it has no
    binary log yet: MariaDB repointed it adopting its (empty) binlog position as its replica
    position, and it replayed everything from the start (1062, duplicate key; bench/failover)."""
    policy = dataclasses.replace(Policy.from_spec(fleet.spec), probe_interval=0.5)
    loop = bootstrap(fleet, policy).start()
    assert loop.primary == "db-0"
    writer = Writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 100, 30, what="writes on db-0")
    writer.stop()
    loop.switchover_target = "db-1"
    loop.wait(lambda r: r.primary == "db-1" and member_of(r, "db-0")["serving"], 30, "db-0 a serving replica")
    reseed(loop, fleet[0], "db-2", "t3", keep="discard")
    loop.wait(lambda r: member_of(r, "db-0")["serving"], 30, "db-0 serving again")
    writer = Writer(loop.primary_host)
    writer.next_id = 5_000_000
    writer.start()
    poll(lambda: len(writer.acked) >= 50, 30, what="writes on db-1")
    writer.stop()
    poll(lambda: writer.ids() <= stored_ids(fleet[0]), 20, what="db-0 to have the new writes", ignore=Exception)
    assert member_of(loop.last, "db-0")["serving"], member_of(loop.last, "db-0")
    loop.stop()
