"""The SQL each flavor adapter produces. Both also run for real in the integration tier
(tests/integration/test_mysql_server_real.py: MariaDB 10.11 and MySQL 9.7 from the images)."""

from __future__ import annotations

import pymysql.converters
import pytest

from hakeeper.api.replicateddatabase import OPERATOR_OWNED_SETTINGS
from hakeeper.replicateddatabase.clustering import lease
from hakeeper.replicateddatabase.clustering.flavor import MariaDB, MySQL, flavor_for
from hakeeper.replicateddatabase.clustering.policy import Policy


def render(statement: tuple[str, tuple]) -> str:
    """What pymysql sends: %s replaced by escaped literals, %% by %."""
    sql, args = statement
    return sql % tuple(pymysql.converters.escape_item(a, "utf8mb4") for a in args)


def rendered(statements: list) -> list[str]:
    return [render(s) for s in statements]


def test_mariadb_points_a_replica_at_a_source_with_gtid() -> None:
    sql = rendered(MariaDB().replicate_from("10.0.0.5", 3306, "repl", "pa'ss", 1.0))
    assert sql == [
        "STOP SLAVE",
        "CHANGE MASTER TO MASTER_HOST = '10.0.0.5', MASTER_PORT = 3306, MASTER_USER = 'repl', "
        "MASTER_PASSWORD = 'pa\\'ss', MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1, "
        "MASTER_HEARTBEAT_PERIOD = 1",
        "START SLAVE",
    ]


def test_mariadb_former_primary_continues_after_its_own_binlog() -> None:
    sql = rendered(MariaDB().replicate_from("h", 3306, "u", "p", 1.0, adopt_binlog_position=True))
    assert sql[1] == "SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_current_pos"
    assert sql.index("STOP SLAVE") < 1 < sql.index("START SLAVE")


def test_mysql_points_a_replica_at_a_source_with_auto_position() -> None:
    sql = rendered(MySQL().replicate_from("10.0.0.5", 3307, "repl", "secret", 2.5, adopt_binlog_position=True))
    assert sql == [
        "STOP REPLICA",
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '10.0.0.5', SOURCE_PORT = 3307, SOURCE_USER = 'repl', "
        "SOURCE_PASSWORD = 'secret', SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 1, "
        "SOURCE_HEARTBEAT_PERIOD = 2.5, GET_SOURCE_PUBLIC_KEY = 1",
        "START REPLICA",
    ]


def test_mysql_resets_the_applier_only_when_asked() -> None:
    sql = rendered(MySQL().replicate_from("10.0.0.5", 3307, "repl", "secret", 2.5, reset_applier=True))
    assert sql[:2] == ["STOP REPLICA", "RESET REPLICA"] and sql[-1] == "START REPLICA"


@pytest.mark.parametrize(("flavor", "fence", "open_", "stop", "stop_io", "reset", "wait", "ok", "timeout"), [
    (MariaDB(), ["SET GLOBAL read_only = ON"], ["SET GLOBAL read_only = OFF"], ["STOP SLAVE"],
     ["STOP SLAVE IO_THREAD"], ["STOP SLAVE", "RESET SLAVE ALL"], "SELECT MASTER_GTID_WAIT('0-1-5', 3)", 0, -1),
    (MySQL(), ["SET GLOBAL super_read_only = ON"],
     ["SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"], ["STOP REPLICA"],
     ["STOP REPLICA IO_THREAD"], ["STOP REPLICA", "RESET REPLICA ALL"],
     "SELECT WAIT_FOR_EXECUTED_GTID_SET('0-1-5', 3)", 0, 1),
])
def test_role_changes(flavor, fence, open_, stop, stop_io, reset, wait, ok, timeout) -> None:
    assert rendered(flavor.fence()) == fence
    assert rendered(flavor.open_writes()) == open_
    assert rendered(flavor.stop_replication()) == stop
    assert rendered(flavor.stop_io_thread()) == stop_io
    assert rendered(flavor.reset_replication()) == reset
    assert render(flavor.wait_for_executed("0-1-5", 3)) == wait
    assert flavor.wait_succeeded(ok) and not flavor.wait_succeeded(timeout) and not flavor.wait_succeeded(None)


def test_semi_sync_settings() -> None:
    assert rendered(MariaDB().set_semi_sync(True, True, 5000, 2)) == [
        "SET GLOBAL rpl_semi_sync_master_enabled = ON", "SET GLOBAL rpl_semi_sync_slave_enabled = ON",
        "SET GLOBAL rpl_semi_sync_master_timeout = 5000"]  # MariaDB has no wait-for-count
    assert rendered(MySQL().set_semi_sync(False, True, 5000, 2)) == [
        "SET GLOBAL rpl_semi_sync_source_enabled = OFF", "SET GLOBAL rpl_semi_sync_replica_enabled = ON",
        "SET GLOBAL rpl_semi_sync_source_timeout = 5000", "SET GLOBAL rpl_semi_sync_source_wait_for_replica_count = 2"]


def test_accounts_are_created_idempotently_with_escaped_passwords() -> None:
    sql = rendered(MariaDB().ensure_users("repl", "r'1", "op", "o\\2"))
    assert sql[0] == "CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'r\\'1'"
    assert "ALTER USER 'repl'@'%' IDENTIFIED BY 'r\\'1'" in sql  # a rotated password takes effect
    assert "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'" in sql
    assert "GRANT ALL PRIVILEGES ON *.* TO 'op'@'%' WITH GRANT OPTION" in sql
    assert "'o\\\\2'" in sql[3]


def test_mysql_creates_accounts_with_super_read_only_lifted() -> None:
    """The first primary is still super_read_only when the operator creates its accounts: MySQL
    9.7 refuses CREATE USER even to the operator then (1290)."""
    sql = rendered(MySQL().ensure_users("repl", "r", "op", "o"))
    assert sql[:2] == ["SET @hakeeper_super_read_only = @@GLOBAL.super_read_only", "SET GLOBAL super_read_only = OFF"]
    assert sql[-1] == "SET GLOBAL super_read_only = @hakeeper_super_read_only"
    assert "CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'r'" in sql
    assert "super_read_only" not in " ".join(rendered(MariaDB().ensure_users("repl", "r", "op", "o")))


def test_lease_renewal_works_on_a_member_not_yet_open() -> None:
    """A new primary's lease is renewed before it opens: on MySQL super_read_only is still on."""
    sql = rendered(lease.renew(2, MySQL()))
    assert sql[1] == "SET GLOBAL super_read_only = OFF" and sql[-1].startswith("SET GLOBAL super_read_only = @")
    assert any(s.startswith("REPLACE INTO hakeeper.lease") for s in sql)
    assert rendered(lease.renew(2, MariaDB())) == rendered(lease.renew(2))


@pytest.mark.parametrize("flavor", [MariaDB(), MySQL()])
def test_every_member_starts_read_only_without_replication(flavor) -> None:
    settings = flavor.server_settings(7, semi_sync=True, semi_sync_timeout_ms=4000)
    assert settings["server_id"] == "7" and settings["read_only"] == "ON"
    assert settings.get("skip_slave_start", settings.get("skip_replica_start")) == "ON"
    assert settings["log_bin"] and settings["sync_binlog"] == "1"
    # Source-side semi-sync only ever on the primary (the operator switches it on).
    assert "OFF" in (settings.get("rpl_semi_sync_master_enabled"), settings.get("rpl_semi_sync_source_enabled"))
    # The settings a user may not override include every one the operator relies on here.
    for key in ("server_id", "read_only", "log_bin"):
        assert key in OPERATOR_OWNED_SETTINGS


def test_mariadb_restarted_primary_drops_its_unacknowledged_tail() -> None:
    settings = MariaDB().server_settings(1)
    assert settings["rpl_semi_sync_master_wait_point"] == "AFTER_SYNC"
    assert settings["init_rpl_role"] == "SLAVE" and settings["rpl_semi_sync_slave_enabled"] == "ON"
    assert settings["gtid_strict_mode"] == "ON" and settings["log_slave_updates"] == "ON"
    assert MariaDB().server_settings(1, semi_sync=False)["init_rpl_role"] == "MASTER"


def test_mysql_settings() -> None:
    settings = MySQL().server_settings(2)
    assert settings["gtid_mode"] == "ON" and settings["enforce_gtid_consistency"] == "ON"
    assert settings["super_read_only"] == "ON"
    assert "semisync_source.so" in settings["plugin_load_add"]


@pytest.mark.parametrize("flavor", [MariaDB(), MySQL()])
def test_both_flavors_keep_a_replicas_relay_log_across_a_restart(flavor) -> None:
    """Field fault (g): MariaDB had relay-log-recovery=ON, MySQL OFF; a relay log may hold the
    only copy of an acknowledged write. One rule, in the settings and in the shipped my.cnf."""
    from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec
    from hakeeper.replicateddatabase.clustering.policy import Policy
    from hakeeper.replicateddatabase.objects import my_cnf

    assert flavor.settings_for(Policy(), 1)["relay_log_recovery"] == "OFF"
    lines = my_cnf(ReplicatedDatabaseSpec(flavor=flavor.name)).splitlines()
    assert [line for line in lines if line.startswith("relay")] == ["relay-log=relay-bin", "relay-log-recovery=OFF"]


LOSSLESS, AVAILABLE = Policy(), Policy(lossless=False)


def event_body(flavor, policy) -> str:
    return next(sql for sql in rendered(lease.install(flavor, policy)) if sql.lstrip().startswith("CREATE EVENT"))


def test_mysql_lifts_super_read_only_only_around_its_own_statements() -> None:
    sql = rendered(lease.install(MySQL(), LOSSLESS))
    assert sql[0].startswith("SET @hakeeper_super_read_only") and sql[1] == "SET GLOBAL super_read_only = OFF"
    assert sql[-1] == "SET GLOBAL super_read_only = @hakeeper_super_read_only"
    assert rendered(lease.install(MariaDB(), LOSSLESS))[0] == "SET SESSION sql_log_bin = 0"


@pytest.mark.parametrize("policy", [LOSSLESS, AVAILABLE])
def test_lease_event_kills_unacknowledged_commits_then_fences(policy) -> None:
    body = event_body(MariaDB(), policy)
    assert "LIKE 'Waiting for semi-sync ACK%'" in body
    assert body.index("KILL CONNECTION") < body.index("SET GLOBAL read_only = ON")
    assert "SET GLOBAL super_read_only = ON" in event_body(MySQL(), policy)


def test_under_lossless_only_a_primary_cut_off_from_its_replicas_fences_and_one_event_replaces_the_other() -> None:
    lossless, available = rendered(lease.install(MySQL(), LOSSLESS)), rendered(lease.install(MySQL(), AVAILABLE))
    assert "DROP EVENT IF EXISTS hakeeper.hakeeper_lease_fence" in lossless
    assert "DROP EVENT IF EXISTS hakeeper.hakeeper_lease_fence_cut_off" in available
    cut_off = event_body(MySQL(), LOSSLESS)
    assert "CREATE EVENT IF NOT EXISTS hakeeper.hakeeper_lease_fence_cut_off" in cut_off
    assert "COMMAND LIKE 'Binlog Dump%'" in cut_off and "AND TIME >= 1" in cut_off
    assert "Binlog Dump" not in event_body(MySQL(), AVAILABLE)
    assert lease.event_name(Policy(semi_sync=False, lossless=True)) == "hakeeper_lease_fence"
    assert rendered(lease.renew(2.5))[1] == (
        "REPLACE INTO hakeeper.lease (id, expires) VALUES (1, NOW(6) + INTERVAL 2500000 MICROSECOND)")
    assert all("sql_log_bin" in s for s in rendered(lease.renew(1))[::2])  # never a GTID


def test_flavor_lookup() -> None:
    assert flavor_for("mariadb").name == "mariadb" and flavor_for("mysql").name == "mysql"
    with pytest.raises(ValueError, match="unknown flavor"):
        flavor_for("postgres")


def test_settings_follow_the_policy() -> None:
    from hakeeper.replicateddatabase.clustering.policy import Policy

    three = MariaDB().settings_for(Policy(semi_sync_timeout=4, probe_interval=1, failure_threshold=3), 2)
    assert three["init_rpl_role"] == "SLAVE" and three["rpl_semi_sync_master_timeout"] == "4000"
    assert three["slave_net_timeout"] == "3"  # a silent primary is noticed within the failure threshold
    # A lone server keeps its acknowledged tail on crash recovery: nothing else holds it.
    assert MariaDB().settings_for(Policy(semi_sync=False), 1)["init_rpl_role"] == "MASTER"
    assert MySQL().settings_for(Policy(semi_sync_wait_count=2), 1)["rpl_semi_sync_source_wait_for_replica_count"] == "2"
