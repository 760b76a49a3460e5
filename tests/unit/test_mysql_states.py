"""Member states as the server reports them (observe.state_from), and builders the other
test_mysql_* modules use to describe clusters in one line per member."""

from __future__ import annotations

from hakeeper.replicateddatabase.clustering.flavor import MariaDB, MySQL
from hakeeper.replicateddatabase.clustering.gtid import MariaDBGtidList, MySQLGtidSet
from hakeeper.replicateddatabase.clustering.members import Member, MemberState, Replication
from hakeeper.replicateddatabase.clustering.observe import state_from

MEMBERS = [Member("db-0", "10.0.40.1"), Member("db-1", "10.0.40.2"), Member("db-2", "10.0.40.3")]
HOST = {m.name: m.host for m in MEMBERS}
SERVER_ID = {"db-0": 1, "db-1": 2, "db-2": 3}


def replica(source: str = "db-0", io: str = "running", sql: bool = True, lag: float | None = 0.0,
            received: str = "", sql_error: str = "", io_error: str = "") -> Replication:
    return Replication(source_host=HOST[source], source_port=3306, io=io, sql_running=sql,  # type: ignore[arg-type]
                       seconds_behind=lag, received=MariaDBGtidList.parse(received), io_error=io_error,
                       sql_error=sql_error)


def up(name: str, executed: str = "0-1-10", read_only: bool = True, replication: Replication | None = None,
       semi_source: bool | None = None, semi_replica: bool | None = True, lease: bool = True) -> MemberState:
    return MemberState(
        name=name, reachable=True, server_id=SERVER_ID[name], origin=str(SERVER_ID[name]), read_only=read_only,
        executed=MariaDBGtidList.parse(executed), position=executed, replication=replication,
        semi_sync_source=semi_source, semi_sync_replica=semi_replica, semi_sync_timeout_ms=10000,
        lease_fence=lease)


def primary(name: str = "db-0", executed: str = "0-1-10", read_only: bool = False) -> MemberState:
    return up(name, executed, read_only=read_only, semi_source=True)


def down(name: str) -> MemberState:
    return MemberState(name=name, reachable=False, error="2003: Can't connect")


def cluster(*states: MemberState) -> dict[str, MemberState]:
    return {s.name: s for s in states}


def healthy() -> dict[str, MemberState]:
    return cluster(primary(), up("db-1", replication=replica(received="0-1-10")),
                   up("db-2", replication=replica(received="0-1-10")))


# ------------------------------------------------------------------------------- tests

MARIADB_VARS = {
    "server_id": "2", "read_only": "ON", "gtid_binlog_state": "0-1-100,0-2-7", "gtid_binlog_pos": "0-1-100",
    "gtid_slave_pos": "0-1-100", "gtid_current_pos": "0-1-100", "rpl_semi_sync_master_enabled": "OFF",
    "rpl_semi_sync_slave_enabled": "ON", "rpl_semi_sync_master_timeout": "10000", "event_scheduler": "ON",
}
MARIADB_ROW = {
    "Master_Host": "10.0.40.1", "Master_Port": 3306, "Slave_IO_Running": "Connecting", "Slave_SQL_Running": "Yes",
    "Seconds_Behind_Master": None, "Gtid_IO_Pos": "0-1-102", "Last_IO_Errno": 2003,
    "Last_IO_Error": "error reconnecting to master", "Last_SQL_Errno": 0, "Last_SQL_Error": "",
}


def test_a_mariadb_replica_as_reported() -> None:
    s = state_from("db-1", MariaDB(), MARIADB_VARS, {"Rpl_semi_sync_master_status": "OFF"}, MARIADB_ROW, True)
    assert s.reachable and s.read_only is True and s.super_read_only is None
    assert s.server_id == 2 and s.origin == "2"
    assert str(s.executed) == "0-1-100,0-2-7"
    r = s.replication
    assert r is not None and r.source_host == "10.0.40.1" and r.io == "connecting" and r.sql_running
    assert r.seconds_behind is None and r.io_error.startswith("2003") and not r.sql_failed
    assert str(s.progress) == "0-1-102,0-2-7"
    assert not s.relay_log_applied  # fetched up to 102, applied 100
    assert s.replicates_from(Member("db-0", "10.0.40.1")) and not s.replicates_from(Member("db-2", "10.0.40.3"))
    assert s.semi_sync_source is False and s.semi_sync_replica is True and s.semi_sync_active is False
    assert s.lease_fence and not s.writable


def test_a_member_that_never_replicated_has_no_replication() -> None:
    s = state_from("db-0", MariaDB(), {**MARIADB_VARS, "read_only": "OFF"}, {}, None)
    assert s.replication is None and s.writable and s.relay_log_applied
    reset = {k: "" for k in MARIADB_ROW}  # after RESET SLAVE ALL the row is there but empty
    assert state_from("db-0", MariaDB(), MARIADB_VARS, {}, reset).replication is None


def test_a_mysql_replica_as_reported() -> None:
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    variables = {"server_id": "3", "server_uuid": "AAAAAAAA-71CA-11E1-9E33-C80AA9429562", "read_only": "ON",
                 "super_read_only": "ON", "gtid_executed": f"{uuid}:1-100",
                 "rpl_semi_sync_source_enabled": "OFF", "rpl_semi_sync_replica_enabled": "ON"}
    row = {"Source_Host": "10.0.40.1", "Source_Port": 3306, "Replica_IO_Running": "Yes",
           "Replica_SQL_Running": "No", "Seconds_Behind_Source": None, "Retrieved_Gtid_Set": f"{uuid}:1-105",
           "Last_SQL_Errno": 1062, "Last_SQL_Error": "Duplicate entry"}
    s = state_from("db-2", MySQL(), variables, {}, row)
    assert s.origin == "aaaaaaaa-71ca-11e1-9e33-c80aa9429562" and s.super_read_only is True
    assert isinstance(s.executed, MySQLGtidSet) and s.executed.count() == 100  # type: ignore[union-attr]
    assert s.replication is not None and s.replication.io == "running" and s.replication.sql_failed
    assert str(s.progress) == f"{uuid}:1-105"


def test_an_unreachable_member_is_an_observation_not_an_exception() -> None:
    from hakeeper.replicateddatabase.clustering.members import Credentials
    from hakeeper.replicateddatabase.clustering.ops import gather

    # Port 9 on loopback: nothing listens, the connection is refused at once.
    s = gather(Member("gone", "127.0.0.1", 9), MariaDB(), Credentials("r", "p", "o"), timeout=0.5)
    assert not s.reachable and s.error and "2003" in s.error and s.executed is None
