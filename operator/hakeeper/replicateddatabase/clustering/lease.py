"""Self-fencing: a primary that stops hearing from the operator makes itself read-only.

The operator renews a lease on the primary at every step (a row in hakeeper.lease, written
with sql_log_bin=0, so it never becomes a GTID and never replicates). An EVENT on every
member runs each second; on a writable member whose lease has lapsed it first kills the
sessions waiting for a semi-sync acknowledgement (their commits are then never acknowledged
to the client) and then sets read-only. A failover opens the new primary only after the old
primary's lease plus one event period has passed.

Which lapsed lease fences depends on the durability (event_name):

- CUT_OFF_EVENT (durability Lossless, semi-sync on): only a primary that is cut off fences -
  no replica connected, or a commit that has waited a second or more for an acknowledgement.
  A healthy primary keeps taking writes however long the operator is away. This is safe
  because a Lossless promotion happens only when fewer than waitForReplicaCount replicas are
  unreachable and the reachable ones have stopped fetching from the old primary: from then
  on no commit there can collect its acknowledgements, so it waits, and the event kills its
  session before semiSync.timeout (at least 3 s, a CEL rule) would let it through
  asynchronously: its client is never told it committed. MariaDB is read-only at once; on
  MySQL the killed commit keeps waiting until the timeout and `SET GLOBAL super_read_only`
  waits for it (new writes block behind it, then are refused), so a commit that enters its
  wait between the kill and the fence could be acknowledged at the timeout (README, limits).
  A cut-off primary with no commit in flight may stay writable until a client tries one.
- LEASE_EVENT (durability Available, or no semi-sync): every primary whose lease lapsed
  fences, since Available may promote while replicas that still acknowledge the old primary
  are unreachable. The cost: when the operator is away longer than the lease, writes stop.

The table is InnoDB, not MEMORY: a MEMORY table would log a DELETE (a new GTID, an errant
transaction) the first time it is opened after a restart.
"""

from __future__ import annotations

from hakeeper.replicateddatabase.clustering.flavor import Flavor, Statement
from hakeeper.replicateddatabase.clustering.observe import LEASE_EVENT
from hakeeper.replicateddatabase.clustering.policy import Policy

CUT_OFF_EVENT = f"{LEASE_EVENT}_cut_off"
EVENTS = (LEASE_EVENT, CUT_OFF_EVENT)
# A dump thread: "Binlog Dump" (MariaDB), "Binlog Dump GTID" (MySQL with auto-positioning).
_CUT_OFF = """ AND (
      NOT EXISTS (SELECT 1 FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%%')
      OR EXISTS (SELECT 1 FROM information_schema.PROCESSLIST
                 WHERE STATE LIKE 'Waiting for semi-sync ACK%%' AND TIME >= 1))"""


def event_name(policy: Policy) -> str:
    """The lease event a member of a cluster run with `policy` needs (module docstring)."""
    return CUT_OFF_EVENT if policy.fence_only_when_cut_off else LEASE_EVENT


def _event_body(flavor: Flavor, name: str) -> str:
    fence = "; ".join(sql for sql, _ in flavor.fence())
    when = "when the operator stops renewing its lease and it is cut off from its replicas" \
        if name == CUT_OFF_EVENT else "when the operator stops renewing its lease"
    return f"""
CREATE EVENT IF NOT EXISTS hakeeper.{name} ON SCHEDULE EVERY 1 SECOND
COMMENT 'hakeeper: fence this server {when}'
DO BEGIN
  DECLARE done INT DEFAULT 0;
  DECLARE waiter BIGINT;
  DECLARE waiters CURSOR FOR SELECT ID FROM information_schema.PROCESSLIST
    WHERE STATE LIKE 'Waiting for semi-sync ACK%%';
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  IF @@GLOBAL.read_only = 0 AND NOT EXISTS (
      SELECT 1 FROM hakeeper.lease WHERE id = 1 AND expires > NOW(6)){_CUT_OFF if name == CUT_OFF_EVENT else ""} THEN
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


def install(flavor: Flavor, policy: Policy) -> list[Statement]:
    """The lease table and the event `policy` needs, in place of the other one."""
    name = event_name(policy)
    statements: list[Statement] = [
        ("SET SESSION sql_log_bin = 0", ()),
        ("CREATE DATABASE IF NOT EXISTS hakeeper", ()),
        ("CREATE TABLE IF NOT EXISTS hakeeper.lease (id TINYINT PRIMARY KEY, expires DATETIME(6) NOT NULL) "
         "ENGINE=InnoDB", ()),
        *[(f"DROP EVENT IF EXISTS hakeeper.{other}", ()) for other in EVENTS if other != name],
        (_event_body(flavor, name), ()),
        ("SET GLOBAL event_scheduler = ON", ()),
        ("SET SESSION sql_log_bin = 1", ()),
    ]
    return flavor.unlocked(statements)


def uninstall(flavor: Flavor) -> list[Statement]:
    return flavor.unlocked([
        ("SET SESSION sql_log_bin = 0", ()),
        *[(f"DROP EVENT IF EXISTS hakeeper.{name}", ()) for name in EVENTS],
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
