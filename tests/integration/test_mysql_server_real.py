"""Both flavors' real servers, run from their images exactly as the StatefulSet asks.

Each member is started the way a kubelet runs the pod (mysql_support: the image's root
filesystem read-only, the volumes, the init container's script, then the server's command, as
uid 999 with no capabilities), and the clustering loop drives them through the flavor adapter:
accounts from init.sql, GTID auto-positioned semi-synchronous replication, read-only fencing,
a switchover and a kill -9 failover with no acknowledged write lost, the old primary re-attached.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from unittest import mock

import pymysql
import pytest

from hakeeper.replicateddatabase.clustering import Policy
from hakeeper.replicateddatabase.clustering.flavor import flavor_for
from hakeeper.replicateddatabase.clustering.ops import connect

from ..support.polling import poll
from .mariadb_support import LoopDriver, Writer, bootstrap, follows, stored_ids
from .mysql_support import (
    CREDENTIALS,
    PASSWORDS,
    PodFleet,
    container_argv,
    database_spec,
    image_user,
    pod_fleet_fixture,
    replica_row,
)

pytestmark = pytest.mark.integration

FLAVORS = ["mariadb", "mysql"]


@pytest.fixture(params=FLAVORS)
def fleet(request):
    yield from pod_fleet_fixture(database_spec(request.param))


def policy_for(fleet: PodFleet, **changes) -> Policy:
    """The loop's policy from the same spec as the servers' my.cnf."""
    return dataclasses.replace(Policy.from_spec(fleet.spec), **changes)


def auto_positioned(fleet: PodFleet, member: str) -> bool:
    row = replica_row(fleet.by_name(member))
    if fleet.flavor == "mysql":
        return str(row.get("Auto_Position")) == "1"
    return row.get("Using_Gtid") == "Slave_Pos"


def semi_sync_status(pod) -> dict[str, str]:
    return {r["Variable_name"]: r["Value"] for r in pod.query("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'")}


def test_members_initialise_and_start_as_non_root_on_a_read_only_root(fleet: PodFleet) -> None:
    uid, gid = image_user(fleet.rootfs)
    assert (uid, gid) == (999, 999), "the StatefulSet runs the server as 999:999"
    flavor = flavor_for(fleet.flavor)
    for pod in fleet:
        assert pod.server_uids() == (999, 999)
        assert pod.server_capabilities() == 0
        # the operator's accounts from init.sql, with their (escaped) passwords
        for user, key in (("hakeeper", "operator-password"), ("hakeeper-repl", "replication-password"),
                          ("root", "root-password")):
            with pod.connect(user, PASSWORDS[key]) as conn, conn.cursor() as cur:
                cur.execute("SELECT CURRENT_USER()")
                assert cur.fetchone()[0] == f"{user}@%"
        with pytest.raises(pymysql.err.OperationalError):
            pod.connect("root", "wrong").close()
        # the application's account, from the Secret's application-password: no administrative
        # privilege, so read_only stops it (the member is read-only until the operator opens one)
        with pod.connect("app", PASSWORDS["application-password"]) as conn, conn.cursor() as cur:
            cur.execute("SHOW GRANTS")
            grants = " ".join(row[0] for row in cur.fetchall())
            assert "INSERT" in grants and not any(p in grants for p in ("SUPER", "READ_ONLY ADMIN", "ALL PRIVILEGES",
                                                                        "GRANT OPTION", "CONNECTION_ADMIN"))
            with pytest.raises(pymysql.err.OperationalError) as refused:
                cur.execute("CREATE DATABASE app_scratch")
            assert refused.value.args[0] == 1290, refused.value
        assert pod.value("SELECT @@server_id") == 100 + pod.index
        assert "NO_BACKSLASH_ESCAPES" in str(pod.value("SELECT @@GLOBAL.sql_mode"))  # and yet the passwords work
        assert pod.value("SELECT @@relay_log_recovery") == 0  # one rule for both flavors
        assert pod.value("SELECT @@report_host") == pod.host
        assert pod.value("SELECT @@read_only") == 1
        if flavor.has_super_read_only:
            assert pod.value("SELECT @@super_read_only") == 1
        # no member starts with transactions of its own: the users are not in any binlog
        executed = flavor.executed({r["Variable_name"]: r["Value"] for r in pod.query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('gtid_executed', 'gtid_binlog_state', 'gtid_slave_pos')")})
        assert executed.is_empty(), f"{pod.name}: {executed}"
        # semi-sync is there (MySQL: the plugins plugin-load-add names)
        variables = {r["Variable_name"] for r in pod.query("SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'")}
        assert ("rpl_semi_sync_source_enabled" if fleet.flavor == "mysql" else "rpl_semi_sync_master_enabled") \
            in variables
        # the root filesystem is read-only: everything the server wrote is on a volume
        mounts = open(f"/proc/{pod.process.pid}/mountinfo").read().splitlines()  # type: ignore[union-attr]
        root = next(line.split() for line in mounts if line.split()[4] == "/")
        assert "ro" in root[5].split(","), root
        assert (pod.volumes["run"] / "mysqld.sock").exists()
        assert pod.value("SELECT @@secure_file_priv").rstrip("/") == "/var/lib/mysql-files"

    # a restarted pod (init container again, the claim kept) comes back the same
    pod = fleet[1]
    pod.stop()
    pod.start()
    assert pod.value("SELECT @@server_id") == 101
    assert "--initialize" not in pod.init_output

    if fleet.flavor == "mariadb":
        # a volume from before 0.3 held MariaDB's datadir at its root: moved into data/, kept
        with pod.admin() as conn, conn.cursor() as cur:
            cur.execute("SET sql_log_bin = 0")
            cur.execute("CREATE DATABASE kept_across_the_move")
        pod.stop()
        volume = pod.volumes["data"]
        for entry in list((volume / "data").iterdir()):
            entry.rename(volume / entry.name)
        (volume / "data").rmdir()
        pod.start()
        assert not (volume / "mysql").exists() and (volume / "data" / "kept_across_the_move").is_dir()
        assert pod.value("SELECT COUNT(*) FROM information_schema.SCHEMATA "
                         "WHERE SCHEMA_NAME = 'kept_across_the_move'") == 1


def test_the_loop_replicates_switches_over_and_fails_over_without_losing_a_write(fleet: PodFleet) -> None:
    policy = policy_for(fleet, anti_flap_window=2.0)
    flavor = flavor_for(fleet.flavor)
    if fleet.flavor == "mysql":
        # The operator's image has no `cryptography`: caching_sha2_password must work without
        # it (pymysql's preferred TLS to MySQL's own certificates), never through RSA.
        with mock.patch("pymysql._auth._have_cryptography", False):
            conn = connect(fleet[0], CREDENTIALS, 2)  # type: ignore[arg-type]
            assert conn._secure
            conn.close()
    loop = bootstrap(fleet, policy)  # type: ignore[arg-type]
    assert loop.primary == "db-0"
    for replica in ("db-1", "db-2"):
        poll(lambda r=replica: follows(fleet, r, "db-0"), 20, what=f"{replica} to follow db-0", ignore=Exception)
        assert auto_positioned(fleet, replica)
    primary = fleet[0]
    assert primary.value("SELECT @@read_only") == 0
    poll(lambda: flavor.semi_sync_active(semi_sync_status(primary)), 20, what="semi-sync on the primary",
         ignore=Exception)
    status = semi_sync_status(primary)
    clients = status.get("Rpl_semi_sync_source_clients", status.get("Rpl_semi_sync_master_clients"))
    assert int(clients or 0) == 2, status

    writer = Writer(loop.primary_host)
    writer.start()
    loop.start()
    poll(lambda: len(writer.acked) >= 200, 30, what="200 acknowledged writes")
    # every replica fenced: the application account cannot write there
    from .mariadb_support import app_connect
    with app_connect(fleet[1].host) as conn, conn.cursor() as cur, pytest.raises(pymysql.err.OperationalError):
        cur.execute("INSERT INTO hk.writes (id, at) VALUES (-1, 0)")

    # an administrator's session on the primary: read_only would not stop root on MariaDB; the
    # fence kills every client session (MySQL's super_read_only would refuse it anyway), so it
    # commits nothing after
    admin = primary.connect("root", PASSWORDS["root-password"])

    # switchover: db-1 promoted, db-0 and db-2 re-pointed at it, nothing lost
    loop.switchover_target = "db-1"
    switched = loop.wait(lambda r: r.primary == "db-1" and r.state == "Healthy", 30, "the switchover to db-1")
    loop.switchover_target = None
    assert switched.history is None or switched.history["to_member"] == "db-1"
    with pytest.raises(pymysql.err.OperationalError) as stopped:
        with admin.cursor() as cur:
            cur.execute("INSERT INTO hk.writes (id, at) VALUES (-2, 0)")
    assert stopped.value.args[0] in (2006, 2013, 4031), stopped.value  # killed: gone
    admin.close()
    for member in ("db-0", "db-2"):
        poll(lambda m=member: follows(fleet, m, "db-1") and auto_positioned(fleet, m), 20,
             what=f"{member} to follow db-1", ignore=Exception)
    poll(lambda: len(writer.acked_since(host=fleet[1].host)) >= 100, 30, what="writes on db-1")
    poll(lambda: flavor.semi_sync_active(semi_sync_status(fleet[1])), 20, what="semi-sync on db-1", ignore=Exception)

    # failover: kill -9 of the new primary's server
    time.sleep(policy.anti_flap_window)
    fleet[1].kill()
    killed = time.monotonic()
    failover = loop.wait(lambda r: r.primary not in ("db-1", None), 30, "a new primary after kill -9")
    new = failover.primary
    assert new in ("db-0", "db-2")
    poll(lambda: writer.first_ack(killed, fleet.by_name(new).host), 20, what=f"a write on {new}")
    poll(lambda: len(writer.acked_since(killed)) >= 100, 30, what="writes after the failover")
    writer.stop()
    acked = writer.ids()
    assert acked <= stored_ids(fleet.by_name(new)), sorted(acked - stored_ids(fleet.by_name(new)))[:10]
    other = next(n for n in ("db-0", "db-2") if n != new)
    poll(lambda: follows(fleet, other, new), 20, what=f"{other} to follow {new}", ignore=Exception)
    poll(lambda: acked <= stored_ids(fleet.by_name(other)), 20, what=f"{other} to have every write", ignore=Exception)

    # the killed member's pod restarts (init container again): it rejoins as a replica. MySQL
    # keeps what the killed primary had binlogged but no replica had acknowledged (MariaDB's
    # init_rpl_role=SLAVE cuts that tail): such a member comes back errant and stays out,
    # read-only, and what it has beyond the new primary are writes no client was told of.
    fleet[1].start()
    assert fleet[1].value("SELECT @@read_only") == 1

    def rejoined_or_kept_out() -> str | None:
        if follows(fleet, "db-1", new):
            return "rejoined"
        member = next((m for m in loop.last.members if m["name"] == "db-1"), {})
        return "errant" if fleet.flavor == "mysql" and member.get("errant") else None

    outcome = poll(rejoined_or_kept_out, 30, what=f"db-1 to rejoin as a replica of {new} (MySQL: or be kept out)",
                   ignore=Exception)
    if outcome == "errant":
        extra = stored_ids(fleet[1]) - stored_ids(fleet.by_name(new))
        assert not extra & acked, f"db-1 is errant with acknowledged writes {sorted(extra & acked)[:10]}"
        assert loop.wait(lambda r: r.primary == new, 10, "the primary to stay").primary == new
        loop.stop()
        assert [p.name for p in fleet if p.value("SELECT @@read_only") == 0] == [new]
        return
    poll(lambda: acked <= stored_ids(fleet[1]), 20, what="db-1 to catch up", ignore=Exception)
    healthy = loop.wait(lambda r: r.state == "Healthy", 30, "a healthy cluster again")
    loop.stop()
    assert healthy.primary == new
    assert [p.name for p in fleet if p.value("SELECT @@read_only") == 0] == [new]
    assert not any(m["errant"] for m in healthy.members)


def test_loop_driver_is_parametrised_by_the_fleet() -> None:
    """The shared helpers pick the fleet's flavor and credentials (no MariaDB default leaks)."""
    fake = type("F", (), {"flavor": "mysql", "credentials": CREDENTIALS, "__iter__": lambda self: iter([])})()
    driver = LoopDriver(fake, Policy())  # type: ignore[arg-type]
    assert driver.cluster.flavor.name == "mysql" and driver.cluster.credentials is CREDENTIALS


@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_init_container_cut_short_is_completed_by_the_next_start(flavor: str) -> None:
    """Field fault (h): a pod deleted while its init container initialised the datadir left a
    MariaDB mysql/ directory the next start took for a complete one; the server then ran without
    the accounts init.sql creates (error 1130 for every client) and replication never settled."""
    fleet = PodFleet(database_spec(flavor, replicas=1))
    pod = fleet[0]
    try:
        pod.fresh_volumes()
        init = subprocess.Popen(container_argv(pod.init_spec, pod), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        volume = pod.volumes["data"]
        # cut it once the initialisation has begun to write system tables
        poll(lambda: any((volume / d / "mysql").is_dir() for d in ("data", ".initialising")) or init.poll() is not None,
             60, what="the initialisation to begin", interval=0.01)
        assert init.poll() is None, "the initialisation ended before it could be cut short"
        os.killpg(init.pid, signal.SIGKILL)
        init.wait(timeout=30)
        pod.start()
        with pod.connect("hakeeper", PASSWORDS["operator-password"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone()[0] == "hakeeper@%"
    finally:
        fleet.close()
