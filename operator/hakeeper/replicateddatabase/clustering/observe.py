"""Probe one member over pymysql: a MemberState, with an error recorded instead of raised."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pymysql
import pymysql.cursors

from hakeeper.replicateddatabase.clustering.flavor import Flavor
from hakeeper.replicateddatabase.clustering.members import Credentials, IoState, Member, MemberState, Replication

ACCESS_DENIED = 1045
LEASE_EVENT = "hakeeper_lease_fence"


def connect(member: Member, credentials: Credentials, timeout: float) -> pymysql.Connection:
    """The operator account; root until the bootstrap has created it (a fresh member)."""
    common = dict(host=member.host, port=member.port, connect_timeout=timeout, read_timeout=timeout,
                  write_timeout=timeout, autocommit=True, cursorclass=pymysql.cursors.DictCursor)
    try:
        return pymysql.connect(user=credentials.operator_user, password=credentials.operator_password, **common)
    except pymysql.err.OperationalError as exc:
        if exc.args[0] != ACCESS_DENIED:
            raise
    return pymysql.connect(user=credentials.root_user, password=credentials.root_password, **common)


def gather(member: Member, flavor: Flavor, credentials: Credentials, timeout: float = 1.0) -> MemberState:
    try:
        conn = connect(member, credentials, timeout)
    except Exception as exc:  # noqa: BLE001 - an unreachable member is an observation
        return MemberState(name=member.name, reachable=False, error=_describe(exc))
    try:
        with conn.cursor() as cur:
            variables = _variables(cur, "SHOW GLOBAL VARIABLES", flavor.variables)
            status = _variables(cur, "SHOW GLOBAL STATUS", flavor.status_variables)
            cur.execute(flavor.replica_status_sql)
            row = cur.fetchone()
            cur.execute("SELECT COUNT(*) AS n FROM information_schema.EVENTS "
                        "WHERE EVENT_SCHEMA = 'hakeeper' AND EVENT_NAME = %s", (LEASE_EVENT,))
            lease = bool((cur.fetchone() or {}).get("n"))
        return state_from(member.name, flavor, variables, status, row, lease)
    except Exception as exc:  # noqa: BLE001
        return MemberState(name=member.name, reachable=False, error=_describe(exc))
    finally:
        conn.close()


def state_from(name: str, flavor: Flavor, variables: Mapping[str, str], status: Mapping[str, str],
               replica_row: Mapping[str, Any] | None, lease_fence: bool = False) -> MemberState:
    """Pure: the server's answers as a MemberState (unit-testable without a server)."""
    executed = flavor.executed(variables)
    return MemberState(
        name=name,
        reachable=True,
        server_id=int(variables["server_id"]) if variables.get("server_id") else None,
        origin=flavor.origin(variables),
        read_only=_flag(variables.get("read_only")),
        super_read_only=_flag(variables.get("super_read_only")) if flavor.has_super_read_only else None,
        executed=executed,
        position=variables.get("gtid_current_pos") or variables.get("gtid_executed") or str(executed),
        replication=_replication(flavor, replica_row),
        semi_sync_source=flavor.semi_sync_source_enabled(variables),
        semi_sync_replica=flavor.semi_sync_replica_enabled(variables),
        semi_sync_timeout_ms=flavor.semi_sync_timeout_ms(variables),
        semi_sync_active=flavor.semi_sync_active(status),
        lease_fence=lease_fence,
    )


def _replication(flavor: Flavor, row: Mapping[str, Any] | None) -> Replication | None:
    c = flavor.columns
    if not row or not row.get(c.source_host):
        return None  # never configured, or RESET SLAVE ALL
    io_text = str(row.get(c.io_running) or "No")
    io: IoState = {"Yes": "running", "Connecting": "connecting"}.get(io_text, "stopped")  # type: ignore[assignment]
    behind = row.get(c.seconds_behind)
    return Replication(
        source_host=str(row[c.source_host]),
        source_port=int(row.get(c.source_port) or 3306),
        io=io,
        sql_running=str(row.get(c.sql_running)) == "Yes",
        seconds_behind=float(behind) if behind is not None else None,
        received=flavor.received(row),
        io_error=_error(row.get(c.last_io_errno), row.get(c.last_io_error)),
        sql_error=_error(row.get(c.last_sql_errno), row.get(c.last_sql_error)),
    )


def _variables(cur: Any, statement: str, names: tuple[str, ...]) -> dict[str, str]:
    placeholders = ", ".join(["%s"] * len(names))
    cur.execute(f"{statement} WHERE Variable_name IN ({placeholders})", names)
    return {str(r["Variable_name"]).lower() if statement.endswith("VARIABLES") else str(r["Variable_name"]):
            str(r["Value"]) for r in cur.fetchall()}


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.upper() in ("ON", "1")


def _error(errno: Any, message: Any) -> str:
    if not errno or int(errno) == 0:
        return ""
    return f"{errno}: {message}"


def _describe(exc: Exception) -> str:
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        return f"{exc.args[0]}: {exc.args[1]}"
    return f"{type(exc).__name__}: {exc}"
