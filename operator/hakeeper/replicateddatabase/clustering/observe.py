"""A member's answers as a MemberState (pure): ops.gather asks the server, state_from reads the
answers, so the reading is tested without a server (and the in-memory ops of the unit tier
answers in the same words)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hakeeper.replicateddatabase.clustering.flavor import Flavor
from hakeeper.replicateddatabase.clustering.members import IoState, MemberState, Replication

LEASE_EVENT = "hakeeper_lease_fence"


def state_from(name: str, flavor: Flavor, variables: Mapping[str, str], status: Mapping[str, str],
               replica_row: Mapping[str, Any] | None, lease_fence: bool = False) -> MemberState:
    """Pure: the server's answers as a MemberState (unit-testable without a server).

    variables: SHOW GLOBAL VARIABLES, lower-case name -> value (flavor.variables); status: SHOW
    GLOBAL STATUS, name -> value (flavor.status_variables); replica_row: the row of
    flavor.replica_status_sql, None when it has none; lease_fence: the lease event exists.
    Raises ValueError on a GTID text the flavor cannot parse."""
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
        lease_fence=lease_fence and _flag(variables.get("event_scheduler")) is not False,
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


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.upper() in ("ON", "1")


def _error(errno: Any, message: Any) -> str:
    if not errno or int(errno) == 0:
        return ""
    return f"{errno}: {message}"

