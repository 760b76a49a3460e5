"""What the loop carries from one step to the next; the controller persists it in the CR
status (to_dict/from_dict) so a restarted operator resumes where the last one stopped.

Losing it is safe: probe counting restarts (a failover comes N probes later), the lease
is assumed fresh (a failover waits one lease longer), errant members are found again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Switchover:
    target: str
    source: str
    started: float


@dataclass(frozen=True)
class LoopMemory:
    probe_failures: int = 0
    """Consecutive failed probes of the recorded primary."""
    failing_since: float | None = None
    """When the first of those failed probes happened (a failover's duration starts here)."""
    last_failover: float | None = None
    last_lag: dict[str, float] = field(default_factory=dict)
    """Replica lag as last seen while the primary was alive (afterwards the server reports none)."""
    errant: dict[str, str] = field(default_factory=dict)
    """Members found with transactions the primary lacks -> those GTIDs."""
    switchover: Switchover | None = None
    lease_expires: float | None = None
    """When the primary's lease, as last renewed, runs out."""
    last_state: str | None = None
    last_notes: tuple[str, ...] = ()
    """Reasons of the decisions announced last step: a held-back failover is announced once,
    not every probe."""
    primary_semi_sync: bool | None = None
    """Whether the primary, when last seen taking writes, waited for replica acknowledgements
    (Rpl_semi_sync_*_status); False: it had fallen back to asynchronous replication, so writes
    it acknowledged may exist on no replica. None: not seen taking writes since it became primary.
    False holds until a replica is seen with what the primary had (see semi_sync_catch_up)."""
    semi_sync_catch_up: str | None = None
    """After a fallback, the primary's executed GTID set when it was first seen synchronous again;
    the fallback ends once a reachable replica has all of it. A status of ON alone does not end
    it: a restarted server reports ON before any replica has fetched a byte of what it
    acknowledged asynchronously before the restart."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LoopMemory:
        data = dict(data or {})
        known = {f for f in cls.__dataclass_fields__}
        data = {k: v for k, v in data.items() if k in known}
        if "last_notes" in data:
            data["last_notes"] = tuple(data["last_notes"])
        if data.get("switchover"):
            data["switchover"] = Switchover(**data["switchover"])
        return cls(**data)

    def with_(self, **changes: Any) -> LoopMemory:
        return replace(self, **changes)
