"""The steps a plan is made of. Each names members, not connections, and is safe to repeat:
act.py executes them, the loop re-gathers before every decision."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fence:
    """Refuse client writes (read_only; super_read_only on MySQL)."""

    member: str
    best_effort: bool = False
    """An unreachable member is skipped (a dead old primary; its lease fences it)."""


@dataclass(frozen=True)
class OpenWrites:
    member: str


@dataclass(frozen=True)
class StopIOThread:
    """Stop fetching from the old primary, so it can no longer collect acknowledgements."""

    member: str


@dataclass(frozen=True)
class StartSQLThread:
    member: str


@dataclass(frozen=True)
class WaitRelayApplied:
    """Wait until the member has applied everything it fetched."""

    member: str
    timeout: float


@dataclass(frozen=True)
class CatchUp:
    """Wait until the member has applied everything `source` has (read when the step runs,
    after the source was fenced)."""

    member: str
    source: str
    timeout: float


@dataclass(frozen=True)
class Detach:
    """Stop replication and forget the source: the member is about to become the primary."""

    member: str


@dataclass(frozen=True)
class ReplicateFrom:
    member: str
    source: str
    adopt_binlog_position: bool = False


@dataclass(frozen=True)
class StopReplication:
    """An errant member: keep it from applying more (and from acknowledging)."""

    member: str


@dataclass(frozen=True)
class EnsureUsers:
    """Create the replication and operator accounts on the first primary."""

    member: str


@dataclass(frozen=True)
class SetSemiSync:
    member: str
    source: bool
    replica: bool
    restart_io: bool = False


@dataclass(frozen=True)
class InstallLeaseFence:
    member: str
    enabled: bool = True


@dataclass(frozen=True)
class RenewLease:
    member: str


@dataclass(frozen=True)
class AwaitLeaseExpiry:
    """Before a new primary opens, let the old one's lease lapse (it then fences itself),
    unless it was fenced directly earlier in this run."""

    seconds: float
    old_primary: str


@dataclass(frozen=True)
class Concurrently:
    """Independent actions run at the same time: stopping IO threads that are stuck
    connecting to a silent primary each take up to slave_net_timeout."""

    actions: tuple[Fence | StopIOThread, ...]


Action = (Concurrently | Fence | OpenWrites | StopIOThread | StartSQLThread | WaitRelayApplied | CatchUp | Detach
          | ReplicateFrom | StopReplication | EnsureUsers | SetSemiSync | InstallLeaseFence | RenewLease
          | AwaitLeaseExpiry)
