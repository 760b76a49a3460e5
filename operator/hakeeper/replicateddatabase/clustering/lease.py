"""Self-fencing: a primary that stops hearing from the operator makes itself read-only.

The operator renews a lease on the primary at every step (a row in hakeeper.lease, written
with sql_log_bin=0, so it never becomes a GTID and never replicates). An EVENT on every
member runs each second; on a writable member whose lease has lapsed it first kills the
sessions waiting for a semi-sync acknowledgement (their commits are then never acknowledged
to the client: a partitioned primary gets no acknowledgements) and then sets read-only. A
failover opens the new primary only after the old primary's lease plus one event period
has passed, so two writable primaries never coexist even when the old one cannot be reached.

The table is InnoDB, not MEMORY: a MEMORY table would log a DELETE (a new GTID, an errant
transaction) the first time it is opened after a restart.
"""

from __future__ import annotations

from hakeeper.replicateddatabase.clustering.flavor import Flavor, Statement
from hakeeper.replicateddatabase.clustering.observe import LEASE_EVENT


def _event_body(flavor: Flavor) -> str:
    fence = "; ".join(sql for sql, _ in flavor.fence())
    return f"""
CREATE EVENT IF NOT EXISTS hakeeper.{LEASE_EVENT} ON SCHEDULE EVERY 1 SECOND
COMMENT 'hakeeper: fence this server when the operator stops renewing its lease'
DO BEGIN
  DECLARE done INT DEFAULT 0;
  DECLARE waiter BIGINT;
  DECLARE waiters CURSOR FOR SELECT ID FROM information_schema.PROCESSLIST
    WHERE STATE LIKE 'Waiting for semi-sync ACK%%';
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  IF @@GLOBAL.read_only = 0 AND NOT EXISTS (
      SELECT 1 FROM hakeeper.lease WHERE id = 1 AND expires > NOW(6)) THEN
    OPEN waiters;
    kill_waiters: LOOP
      FETCH waiters INTO waiter;
      IF done THEN LEAVE kill_waiters; END IF;
      KILL CONNECTION waiter;
    END LOOP;
    CLOSE waiters;
    {fence};
  END IF;
END"""


def install(flavor: Flavor) -> list[Statement]:
    statements: list[Statement] = [
        ("SET SESSION sql_log_bin = 0", ()),
        ("CREATE DATABASE IF NOT EXISTS hakeeper", ()),
        ("CREATE TABLE IF NOT EXISTS hakeeper.lease (id TINYINT PRIMARY KEY, expires DATETIME(6) NOT NULL) "
         "ENGINE=InnoDB", ()),
        (_event_body(flavor), ()),
        ("SET GLOBAL event_scheduler = ON", ()),
        ("SET SESSION sql_log_bin = 1", ()),
    ]
    return flavor.unlocked(statements)


def uninstall(flavor: Flavor) -> list[Statement]:
    return flavor.unlocked([
        ("SET SESSION sql_log_bin = 0", ()),
        (f"DROP EVENT IF EXISTS hakeeper.{LEASE_EVENT}", ()),
        ("SET SESSION sql_log_bin = 1", ()),
    ])


def renew(seconds: float, flavor: Flavor | None = None) -> list[Statement]:
    """The lease is renewed on a new primary before it opens (it must not fence itself the
    moment it does): on MySQL, where super_read_only refuses the operator's write too, that
    needs flavor.unlocked."""
    statements: list[Statement] = [
        ("SET SESSION sql_log_bin = 0", ()),
        ("REPLACE INTO hakeeper.lease (id, expires) VALUES (1, NOW(6) + INTERVAL %s MICROSECOND)",
         (int(seconds * 1_000_000),)),
        ("SET SESSION sql_log_bin = 1", ()),
    ]
    return flavor.unlocked(statements) if flavor is not None else statements
