"""Planned switchover against real replication, for each flavor: no acknowledged write lost.
Three members started from the server image exactly as the StatefulSet starts them
(mysql_support.PodFleet: the shipped my.cnf), on loopback addresses."""

from __future__ import annotations

import time

import pymysql
import pytest

from hakeeper.api.replicateddatabase import HistoryEntry
from hakeeper.replicateddatabase.clustering import Policy

from ..support.polling import poll
from .mariadb_support import Writer, app_connect, bootstrap, follows, stored_ids
from .mysql_support import PodFleet, database_spec, pod_fleet_fixture

pytestmark = pytest.mark.integration


@pytest.fixture(params=["mariadb", "mysql"])
def fleet(request):
    yield from pod_fleet_fixture(database_spec(request.param))


def test_planned_switchover_under_writes_loses_nothing(fleet: PodFleet) -> None:
    loop = bootstrap(fleet, Policy.from_spec(fleet.spec)).start()
    writer = Writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 200, 30, what="writes")
    # a pooled connection of the application's, idle on the primary across the switchover
    pooled = app_connect(fleet[0].host)
    with pooled.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM hk.writes")

    requested = time.monotonic()
    loop.switchover_target = "db-2"
    done = loop.wait(lambda r: r.primary == "db-2", 20, "the switchover")
    loop.switchover_target = None  # the controller clears the request once it is done
    assert done.history is not None and done.history["kind"] == "switchover"
    assert (done.history["from_member"], done.history["to_member"]) == ("db-0", "db-2")
    HistoryEntry.model_validate(done.history)
    poll(lambda: writer.first_ack(requested, fleet[2].host), 10, what="a write on db-2")
    poll(lambda: len(writer.acked_since(host=fleet[2].host)) >= 100, 20, what="more writes")
    # the fence killed it: the application reconnects (through the -primary Service, to db-2)
    # instead of writing on into a read-only old primary (error 1290) for as long as it stays open
    with pytest.raises(pymysql.err.OperationalError) as gone, pooled.cursor() as cur:
        cur.execute("INSERT INTO hk.writes (id, at) VALUES (-1, 0)")
    assert gone.value.args[0] in (2006, 2013, 4031), gone.value.args
    writer.stop()

    # Write unavailability: the longest gap between two acknowledgements around the switch.
    acks = [a.at for a in writer.acked if a.at > requested - 1]
    gap = max(b - a for a, b in zip(acks, acks[1:]))
    print(f"\n{fleet.flavor}: switchover write unavailability: {gap * 1000:.0f} ms")
    assert gap < 3.0

    acked = writer.ids()
    assert acked <= stored_ids(fleet[2])
    for old in ("db-0", "db-1"):
        # replicating from db-2 (both threads running) and read-only
        poll(lambda old=old: follows(fleet, old, "db-2"), 10, what=f"{old} to replicate from db-2", ignore=Exception)
        poll(lambda old=old: acked <= stored_ids(fleet.by_name(old)), 10, what=f"{old} to have every write", ignore=Exception)
    healthy = loop.wait(lambda r: r.state == "Healthy", 10, "healthy")
    loop.stop()
    assert healthy.primary == "db-2"
    assert [i.name for i in fleet if i.value("SELECT @@read_only") == 0] == ["db-2"]
