"""One small adapter per server flavor: the SQL and settings that differ, nothing else.

Both run against real servers in the integration tier, started from the images the
StatefulSet uses exactly as it starts them (tests/integration/test_mysql_server_real.py:
Debian's MariaDB 10.11 and MySQL 9.7), and MariaDB also in the failover benchmark. The MySQL
adapter uses only statements that 8.4 and 9.x share (CHANGE REPLICATION SOURCE TO ...
SOURCE_AUTO_POSITION=1, gtid_executed, super_read_only, the rpl_semi_sync_source/replica
plugins, WAIT_FOR_EXECUTED_GTID_SET, SHOW REPLICA STATUS); only 9.7 is tested.

Statements are (sql, args) pairs in pymysql's %s style, so passwords and host names are
escaped by the driver, never pasted into SQL.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hakeeper.replicateddatabase.clustering.gtid import GtidSet, MariaDBGtidList, MySQLGtidSet
from hakeeper.replicateddatabase.clustering.policy import Policy

Statement = tuple[str, tuple[Any, ...]]


def _on(value: bool) -> str:
    return "ON" if value else "OFF"


@dataclass(frozen=True)
class ReplicaColumns:
    """Column names of SHOW SLAVE STATUS / SHOW REPLICA STATUS."""

    io_running: str
    sql_running: str
    source_host: str
    source_port: str
    seconds_behind: str
    received: str
    last_io_errno: str = "Last_IO_Errno"
    last_io_error: str = "Last_IO_Error"
    last_sql_errno: str = "Last_SQL_Errno"
    last_sql_error: str = "Last_SQL_Error"


@dataclass(frozen=True)
class SemiSyncNames:
    """The flavor's names of the semi-sync settings (global variables) and of its state
    (a status variable): MariaDB says master/slave, MySQL 8.4+ source/replica."""

    source_enabled: str
    replica_enabled: str
    timeout_ms: str
    active: str


class Flavor(ABC):
    name: ClassVar[str]
    gtid_type: ClassVar[type[GtidSet]]
    replica_status_sql: ClassVar[str]
    columns: ClassVar[ReplicaColumns]
    semi_sync: ClassVar[SemiSyncNames]
    replica_word: ClassVar[str]
    """What the replication statements call a replica: SLAVE (MariaDB), REPLICA (MySQL 8.4+)."""
    has_super_read_only: ClassVar[bool]
    variables: ClassVar[tuple[str, ...]]
    status_variables: ClassVar[tuple[str, ...]]

    # ---------------------------------------------------------------- reading state
    @abstractmethod
    def executed(self, variables: Mapping[str, str]) -> GtidSet:
        """Every transaction this server has applied (its own and replicated)."""

    @abstractmethod
    def origin(self, variables: Mapping[str, str]) -> str:
        """How this server's own transactions are labelled in GTIDs."""

    def received(self, replica_row: Mapping[str, Any] | None) -> GtidSet:
        """What the IO thread has fetched into the relay log (applied or not)."""
        text = (replica_row or {}).get(self.columns.received) or ""
        return self.gtid_type.parse(text)  # type: ignore[attr-defined]

    def semi_sync_source_enabled(self, variables: Mapping[str, str]) -> bool | None:
        return _bool(variables.get(self.semi_sync.source_enabled))

    def semi_sync_replica_enabled(self, variables: Mapping[str, str]) -> bool | None:
        return _bool(variables.get(self.semi_sync.replica_enabled))

    def semi_sync_timeout_ms(self, variables: Mapping[str, str]) -> int | None:
        value = variables.get(self.semi_sync.timeout_ms)
        return int(value) if value not in (None, "") else None

    def semi_sync_active(self, status: Mapping[str, str]) -> bool | None:
        """Whether the source currently waits for acknowledgements (OFF after a timeout)."""
        return _bool(status.get(self.semi_sync.active))

    # ---------------------------------------------------------------- writing state
    @abstractmethod
    def fence(self) -> list[Statement]:
        """Refuse client writes (replication still applies)."""

    def sessions_sql(self) -> Statement:
        """Every other session of the server with its account and command (id, user, command):
        what a fence chooses the client sessions to kill from (clients_to_kill)."""
        return ("SELECT ID AS id, USER AS user, COMMAND AS command FROM information_schema.PROCESSLIST "
                "WHERE ID <> CONNECTION_ID()", ())

    @abstractmethod
    def open_writes(self) -> list[Statement]: ...

    @abstractmethod
    def clone_from(self, host: str, port: int, user: str, password: str, directory: str) -> list[Statement]:
        """Copy the server at host:port's data into `directory` on this server (which must not
        exist), as `user`; NotImplementedError where the server cannot (MariaDB)."""

    def stop_replication(self) -> list[Statement]:
        return [(f"STOP {self.replica_word}", ())]

    def stop_io_thread(self) -> list[Statement]:
        return [(f"STOP {self.replica_word} IO_THREAD", ())]

    def start_sql_thread(self) -> list[Statement]:
        return [(f"START {self.replica_word} SQL_THREAD", ())]

    def reset_replication(self) -> list[Statement]:
        """Forget the source entirely (stop first)."""
        return [(f"STOP {self.replica_word}", ()), (f"RESET {self.replica_word} ALL", ())]

    @abstractmethod
    def replicate_from(self, host: str, port: int, user: str, password: str, heartbeat_seconds: float,
                       adopt_binlog_position: bool = False, reset_applier: bool = False) -> list[Statement]:
        """Stop, point at the source with GTID auto-positioning, start.

        adopt_binlog_position: this member wrote transactions itself (it was a primary) and has
        been checked to have nothing errant, so replication continues after its own binlog.
        reset_applier: its replication metadata cannot be read (plan.applier_broken): reset first.
        """

    @abstractmethod
    def wait_for_executed(self, position: str, timeout_seconds: float) -> Statement:
        """A SELECT that blocks until `position` is applied here, or the timeout passes."""

    @abstractmethod
    def wait_succeeded(self, value: Any) -> bool: ...

    @abstractmethod
    def set_semi_sync(self, source: bool, replica: bool, timeout_ms: int,
                      wait_for_replica_count: int) -> list[Statement]:
        """Source-side waiting is on only on the primary: a replica's applier would otherwise
        wait for acknowledgements from replicas it does not have."""

    @abstractmethod
    def restart_io_thread(self) -> list[Statement]:
        """A replica registers as semi-synchronous only when its IO thread connects."""

    def ensure_users(self, replication_user: str, replication_password: str,
                     operator_user: str, operator_password: str) -> list[Statement]:
        """Idempotent: create when missing, reset the password (a rotated Secret), grant."""
        return [
            ("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (replication_user, replication_password)),
            ("ALTER USER %s@'%%' IDENTIFIED BY %s", (replication_user, replication_password)),
            ("GRANT REPLICATION SLAVE ON *.* TO %s@'%%'", (replication_user,)),
            ("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (operator_user, operator_password)),
            ("ALTER USER %s@'%%' IDENTIFIED BY %s", (operator_user, operator_password)),
            ("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (operator_user,)),
        ]

    def unlocked(self, statements: list[Statement]) -> list[Statement]:
        """Statements the operator runs on a read-only member for itself (not replicated)."""
        return statements

    def settings_for(self, policy: Policy, server_id: int) -> dict[str, str]:
        """server_settings for a cluster run with `policy` (Policy.from_spec turns semi-sync off
        for a single member: there is no replica to hold a crashed primary's tail), plus the
        settings both flavors share (COMMON_SETTINGS)."""
        return {**self.server_settings(
            server_id, semi_sync=policy.semi_sync, semi_sync_timeout_ms=int(policy.semi_sync_timeout * 1000),
            wait_for_replica_count=policy.semi_sync_wait_count,
            net_timeout_seconds=max(2, math.ceil(policy.failure_threshold * policy.probe_interval))),
            **COMMON_SETTINGS}

    @abstractmethod
    def server_settings(self, server_id: int, semi_sync: bool = True, semi_sync_timeout_ms: int = 10000,
                        wait_for_replica_count: int = 1, net_timeout_seconds: int = 4) -> dict[str, str]:
        """The [mysqld] settings the operator owns (see api OPERATOR_OWNED_SETTINGS)."""


COMMON_SETTINGS = {
    # One rule for both flavors. Semi-sync acknowledges a write once a replica has it in its
    # relay log (AFTER_SYNC: written and flushed, MySQL 8.4 Reference Manual 19.4.10.1;
    # MariaDB's "Semisynchronous Replication"), so when the primary is gone a replica's relay
    # log may hold the only copy of an acknowledged write. relay_log_recovery=ON would make a
    # replica that restarts in that window throw its relay log away and fetch again from a
    # primary that no longer exists (MySQL 8.4 Reference Manual 19.4.2, "Handling an Unexpected
    # Halt of a Replica"); OFF keeps it, and a failover applies it (the loop starts only the SQL
    # thread of a candidate: MariaDB discards the relay log whenever a GTID IO thread starts).
    # The applied position is crash-safe either way (InnoDB tables mysql.slave_relay_log_info,
    # mysql.gtid_slave_pos) and GTID auto-positioning fetches what a replica lacks.
    "relay_log_recovery": "OFF",
}
"""The [mysqld] settings the operator owns on both flavors."""


class MariaDB(Flavor):
    name = "mariadb"
    replica_word = "SLAVE"
    gtid_type = MariaDBGtidList
    replica_status_sql = "SHOW SLAVE STATUS"
    columns = ReplicaColumns(
        io_running="Slave_IO_Running", sql_running="Slave_SQL_Running", source_host="Master_Host",
        source_port="Master_Port", seconds_behind="Seconds_Behind_Master", received="Gtid_IO_Pos",
    )
    semi_sync = SemiSyncNames(source_enabled="rpl_semi_sync_master_enabled",
                              replica_enabled="rpl_semi_sync_slave_enabled",
                              timeout_ms="rpl_semi_sync_master_timeout", active="Rpl_semi_sync_master_status")
    has_super_read_only = False
    variables = (
        "server_id", "read_only", "gtid_binlog_state", "gtid_binlog_pos", "gtid_slave_pos", "gtid_current_pos",
        "rpl_semi_sync_master_enabled", "rpl_semi_sync_slave_enabled", "rpl_semi_sync_master_timeout",
        "event_scheduler",
    )
    status_variables = ("Rpl_semi_sync_master_status", "Rpl_semi_sync_master_clients", "Rpl_semi_sync_slave_status")

    def executed(self, variables: Mapping[str, str]) -> GtidSet:
        # The binlog state keeps the newest seq_no of every server in every domain, which is
        # what the errant check needs; log_slave_updates puts replicated transactions there too.
        return MariaDBGtidList.parse(variables.get("gtid_binlog_state", "")).union(
            MariaDBGtidList.parse(variables.get("gtid_slave_pos", "")))

    def origin(self, variables: Mapping[str, str]) -> str:
        return str(variables.get("server_id", ""))

    def fence(self) -> list[Statement]:
        return [("SET GLOBAL read_only = ON", ())]

    def open_writes(self) -> list[Statement]:
        return [("SET GLOBAL read_only = OFF", ())]

    def replicate_from(self, host: str, port: int, user: str, password: str, heartbeat_seconds: float,
                       adopt_binlog_position: bool = False, reset_applier: bool = False) -> list[Statement]:
        statements: list[Statement] = [("STOP SLAVE", ())]
        if adopt_binlog_position:
            # A former primary's gtid_slave_pos is stale: its own writes are in the binlog only.
            # gtid_current_pos takes a domain's binlog position where this server wrote the last
            # GTID in its binlog, else the replica position (MariaDB's "gtid_current_pos"): a
            # member re-seeded from a copy whose last GTID is its own old one has no binlog yet,
            # and gtid_binlog_pos, empty, made it replay everything (1062, found by bench/failover).
            statements.append(("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_current_pos", ()))
        statements += [
            ("CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, MASTER_PASSWORD = %s, "
             "MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1, "
             f"MASTER_HEARTBEAT_PERIOD = {_num(heartbeat_seconds)}",
             (host, int(port), user, password)),
            ("START SLAVE", ()),
        ]
        return statements

    def clone_from(self, host: str, port: int, user: str, password: str, directory: str) -> list[Statement]:
        raise NotImplementedError("MariaDB has no clone plugin: its members are re-seeded with mariabackup "
                                  "by their init container")

    def wait_for_executed(self, position: str, timeout_seconds: float) -> Statement:
        return (f"SELECT MASTER_GTID_WAIT(%s, {_num(timeout_seconds)})", (position,))

    def wait_succeeded(self, value: Any) -> bool:
        return value is not None and int(value) == 0  # -1 is a timeout

    def set_semi_sync(self, source: bool, replica: bool, timeout_ms: int,
                      wait_for_replica_count: int) -> list[Statement]:
        # MariaDB waits for one acknowledgement; it has no wait-for-count setting.
        return [
            (f"SET GLOBAL rpl_semi_sync_master_enabled = {_on(source)}", ()),
            (f"SET GLOBAL rpl_semi_sync_slave_enabled = {_on(replica)}", ()),
            ("SET GLOBAL rpl_semi_sync_master_timeout = %s", (int(timeout_ms),)),
        ]

    def restart_io_thread(self) -> list[Statement]:
        return [("STOP SLAVE IO_THREAD", ()), ("START SLAVE IO_THREAD", ())]

    def server_settings(self, server_id: int, semi_sync: bool = True, semi_sync_timeout_ms: int = 10000,
                        wait_for_replica_count: int = 1, net_timeout_seconds: int = 4) -> dict[str, str]:
        return {
            "server_id": str(server_id),
            "log_bin": "mysql-bin",
            "relay_log": "relay-bin",  # not derived from the host name, which may change
            "log_slave_updates": "ON",
            "binlog_format": "ROW",
            "gtid_domain_id": "0",
            "gtid_strict_mode": "ON",
            "sync_binlog": "1",
            "innodb_flush_log_at_trx_commit": "1",
            # Every member starts refusing writes and not replicating: the operator decides
            # which one is the primary, so a restarted old primary cannot take writes by itself.
            "read_only": "ON",
            "skip_slave_start": "ON",
            # The operator turns source-side semi-sync on for the primary alone.
            "rpl_semi_sync_master_enabled": "OFF",
            "rpl_semi_sync_slave_enabled": _on(semi_sync),
            "rpl_semi_sync_master_timeout": str(semi_sync_timeout_ms),
            # Wait for the acknowledgement before the engine commit, and on crash recovery cut
            # the binlog tail whose engine commit was not yet durable: a killed primary then
            # comes back without transactions the new primary may lack, and can rejoin. Its
            # replicas hold that tail (semi-sync), which is why this is off without semi-sync:
            # a lone server would lose acknowledged commits.
            "rpl_semi_sync_master_wait_point": "AFTER_SYNC",
            "init_rpl_role": "SLAVE" if semi_sync else "MASTER",
            # A replica notices a silent (partitioned) primary after this many seconds.
            "slave_net_timeout": str(net_timeout_seconds),
            "skip_name_resolve": "ON",
            "event_scheduler": "ON",
        }


class MySQL(Flavor):
    name = "mysql"
    replica_word = "REPLICA"
    gtid_type = MySQLGtidSet
    replica_status_sql = "SHOW REPLICA STATUS"
    columns = ReplicaColumns(
        io_running="Replica_IO_Running", sql_running="Replica_SQL_Running", source_host="Source_Host",
        source_port="Source_Port", seconds_behind="Seconds_Behind_Source", received="Retrieved_Gtid_Set",
    )
    semi_sync = SemiSyncNames(source_enabled="rpl_semi_sync_source_enabled",
                              replica_enabled="rpl_semi_sync_replica_enabled",
                              timeout_ms="rpl_semi_sync_source_timeout", active="Rpl_semi_sync_source_status")
    has_super_read_only = True
    variables = (
        "server_id", "server_uuid", "read_only", "super_read_only", "gtid_executed",
        "rpl_semi_sync_source_enabled", "rpl_semi_sync_replica_enabled", "rpl_semi_sync_source_timeout",
        "event_scheduler",
    )
    status_variables = ("Rpl_semi_sync_source_status", "Rpl_semi_sync_source_clients", "Rpl_semi_sync_replica_status")

    def executed(self, variables: Mapping[str, str]) -> GtidSet:
        return MySQLGtidSet.parse(variables.get("gtid_executed", ""))

    def origin(self, variables: Mapping[str, str]) -> str:
        return str(variables.get("server_uuid", "")).lower()

    def fence(self) -> list[Statement]:
        # super_read_only also stops accounts with CONNECTION_ADMIN/SUPER; it implies read_only.
        return [("SET GLOBAL super_read_only = ON", ())]

    def open_writes(self) -> list[Statement]:
        return [("SET GLOBAL super_read_only = OFF", ()), ("SET GLOBAL read_only = OFF", ())]

    def replicate_from(self, host: str, port: int, user: str, password: str, heartbeat_seconds: float,
                       adopt_binlog_position: bool = False, reset_applier: bool = False) -> list[Statement]:
        # Auto-positioning sends gtid_executed, which already includes a former primary's own writes.
        # reset_applier (RESET REPLICA): applier metadata that names relay log files this server
        # lacks (a clone of a replica copies it, not the files: MySQL 9.7 Reference Manual 7.6.6.7
        # "Cloning for Replication") fails START REPLICA with 1872; resetting it drops nothing more
        # than the CHANGE below, which deletes the relay logs anyway (15.4.2.2 "CHANGE REPLICATION
        # SOURCE TO Statement"). Only then: it also resets settings such as SOURCE_DELAY.
        return [
            ("STOP REPLICA", ()),
            *([("RESET REPLICA", ())] if reset_applier else []),
            ("CHANGE REPLICATION SOURCE TO SOURCE_HOST = %s, SOURCE_PORT = %s, SOURCE_USER = %s, "
             "SOURCE_PASSWORD = %s, SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 1, "
             f"SOURCE_HEARTBEAT_PERIOD = {_num(heartbeat_seconds)}, GET_SOURCE_PUBLIC_KEY = 1",
             (host, int(port), user, password)),
            ("START REPLICA", ()),
        ]

    def clone_from(self, host: str, port: int, user: str, password: str, directory: str) -> list[Statement]:
        # MySQL 9.7 Reference Manual, 7.6.6 "The Clone Plugin": the recipient names its donor in
        # clone_valid_donor_list; DATA DIRECTORY leaves the recipient's own data in place.
        return [("SET GLOBAL clone_valid_donor_list = %s", (f"{host}:{int(port)}",)),
                ("CLONE INSTANCE FROM %s@%s:%s IDENTIFIED BY %s DATA DIRECTORY = %s",
                 (user, host, int(port), password, directory))]

    def wait_for_executed(self, position: str, timeout_seconds: float) -> Statement:
        return (f"SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, {_num(timeout_seconds)})", (position,))

    def wait_succeeded(self, value: Any) -> bool:
        return value is not None and int(value) == 0  # 1 is a timeout

    def set_semi_sync(self, source: bool, replica: bool, timeout_ms: int,
                      wait_for_replica_count: int) -> list[Statement]:
        return [
            (f"SET GLOBAL rpl_semi_sync_source_enabled = {_on(source)}", ()),
            (f"SET GLOBAL rpl_semi_sync_replica_enabled = {_on(replica)}", ()),
            ("SET GLOBAL rpl_semi_sync_source_timeout = %s", (int(timeout_ms),)),
            ("SET GLOBAL rpl_semi_sync_source_wait_for_replica_count = %s", (int(wait_for_replica_count),)),
        ]

    def restart_io_thread(self) -> list[Statement]:
        return [("STOP REPLICA IO_THREAD", ()), ("START REPLICA IO_THREAD", ())]

    def ensure_users(self, replication_user: str, replication_password: str,
                     operator_user: str, operator_password: str) -> list[Statement]:
        # Run on the first primary before it opens: super_read_only refuses CREATE USER even
        # to the operator (error 1290, seen on MySQL 9.7), so it is lifted around them.
        return self.unlocked(super().ensure_users(replication_user, replication_password, operator_user,
                                                  operator_password))

    def unlocked(self, statements: list[Statement]) -> list[Statement]:
        # super_read_only stops even the operator; lift it for these statements, then put
        # back what was there (read_only stays on throughout, so clients still cannot write).
        return ([("SET @hakeeper_super_read_only = @@GLOBAL.super_read_only", ()),
                 ("SET GLOBAL super_read_only = OFF", ())]
                + statements
                + [("SET GLOBAL super_read_only = @hakeeper_super_read_only", ())])

    def server_settings(self, server_id: int, semi_sync: bool = True, semi_sync_timeout_ms: int = 10000,
                        wait_for_replica_count: int = 1, net_timeout_seconds: int = 4) -> dict[str, str]:
        return {
            "server_id": str(server_id),
            "log_bin": "mysql-bin",
            "relay_log": "relay-bin",
            "log_replica_updates": "ON",
            "gtid_mode": "ON",
            "enforce_gtid_consistency": "ON",
            "sync_binlog": "1",
            "innodb_flush_log_at_trx_commit": "1",
            "super_read_only": "ON",
            "read_only": "ON",
            "skip_replica_start": "ON",
            # clone: a member is re-seeded from another's data (replicateddatabase.reseed)
            "plugin_load_add": "semisync_source.so;semisync_replica.so;mysql_clone.so",
            "rpl_semi_sync_source_enabled": "OFF",
            "rpl_semi_sync_replica_enabled": _on(semi_sync),
            "rpl_semi_sync_source_timeout": str(semi_sync_timeout_ms),
            "rpl_semi_sync_source_wait_for_replica_count": str(wait_for_replica_count),
            "rpl_semi_sync_source_wait_point": "AFTER_SYNC",
            "replica_net_timeout": str(net_timeout_seconds),
            "skip_name_resolve": "ON",
            "event_scheduler": "ON",
        }


def _num(value: float) -> str:
    """A number we computed, written as a plain decimal literal (the driver would send 1.0e0)."""
    return f"{float(value):.3f}".rstrip("0").rstrip(".") if float(value) != int(value) else str(int(value))


def _bool(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    return str(value).upper() in ("ON", "1", "YES", "TRUE")


FLAVORS: dict[str, Flavor] = {"mariadb": MariaDB(), "mysql": MySQL()}


def flavor_for(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise ValueError(f"unknown flavor {name!r}: expected one of {sorted(FLAVORS)}") from None


SERVER_THREADS = ("system user", "event_scheduler", "unauthenticated user", "")
"""PROCESSLIST users that are the server's own threads (replication applier, event scheduler,
handshakes, daemon plugins), never a client's."""


def clients_to_kill(rows: Sequence[Mapping[str, Any]], keep_users: Sequence[str]) -> list[int]:
    """The ids of the application sessions among sessions_sql()'s rows: not the server's own
    threads, not the accounts in keep_users (the operator's, the replication account's), not
    a replica's binlog dump. A fenced primary's clients are killed so that they reconnect
    through the -primary Service to the new primary: their open connections would otherwise go
    on reaching the old one (kube-proxy keeps an established connection's backend), refused
    read-only or, on MariaDB, writing with SUPER or READ_ONLY ADMIN (MOCO kills them too)."""
    keep = {*SERVER_THREADS, *keep_users}
    return [int(r["id"]) for r in rows
            if (r.get("user") or "") not in keep and not str(r.get("command") or "").startswith("Binlog Dump")]
