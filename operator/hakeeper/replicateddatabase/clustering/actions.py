"""The steps a plan is made of. Each names members, not connections, and is safe to repeat:
act.py executes them, the loop re-gathers before every decision."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemberAction:
    """An action on one member, named by its pod name."""

    member: str


@dataclass(frozen=True)
class Fence(MemberAction):
    """Refuse client writes (read_only; super_read_only on MySQL)."""

    best_effort: bool = False
    """An unreachable member is skipped (a dead old primary; its lease fences it)."""


class DisconnectClients(MemberAction):
    """Kill a former primary's client sessions once the -primary Service no longer routes to it:
    those a client opened or re-opened through the Service before kube-proxy moved (the fence
    killed the ones before it), which would otherwise stay on a read-only member."""


class OpenWrites(MemberAction):
    """Let clients write: read_only (and super_read_only) off; the member is the primary now."""


class StopIOThread(MemberAction):
    """Stop fetching from the old primary, so it can no longer collect acknowledgements."""


class StartSQLThread(MemberAction):
    """Apply what was fetched (the IO thread stays as it is)."""


@dataclass(frozen=True)
class WaitRelayApplied(MemberAction):
    """Wait until the member has applied everything it fetched."""

    timeout: float


@dataclass(frozen=True)
class CatchUp(MemberAction):
    """Wait until the member has applied everything `source` has (read when the step runs,
    after the source was fenced)."""

    source: str
    timeout: float


class Detach(MemberAction):
    """Stop replication and forget the source: the member is about to become the primary."""


@dataclass(frozen=True)
class ReplicateFrom(MemberAction):
    """Replicate from `source` by GTID (the member's transactions must all be the source's too)."""

    source: str
    adopt_binlog_position: bool = False
    reset_applier: bool = False
    """Reset the applier's metadata first (MySQL RESET REPLICA): it names relay logs the member
    lacks (plan.applier_broken)."""


class StopReplication(MemberAction):
    """An errant member: keep it from applying more (and from acknowledging)."""


class EnsureUsers(MemberAction):
    """Create the replication and operator accounts on the first primary."""


@dataclass(frozen=True)
class SetSemiSync(MemberAction):
    """Switch the semi-sync source and replica sides on or off (restarting the IO thread so a
    replica registers as semi-sync with its source)."""

    source: bool
    replica: bool
    restart_io: bool = False


@dataclass(frozen=True)
class InstallLeaseFence(MemberAction):
    """Install (or, not enabled, drop) the event that fences the primary when its lease lapses
    (the one the policy needs: lease.event_name; the other one is dropped)."""

    enabled: bool = True


class RenewLease(MemberAction):
    """Push the primary's lease further: it fences itself when the lease lapses unrenewed."""


@dataclass(frozen=True)
class AwaitLeaseExpiry:
    """Before a new primary opens, let the old one's lease lapse (it then fences itself),
    unless it was fenced directly earlier in this run."""

    seconds: float
    old_primary: str


@dataclass(frozen=True)
class Clone(MemberAction):
    """Copy `donor`'s data into `directory` on the member's volume (the member keeps serving
    from its own data meanwhile): a re-seed's copy (MySQL's clone plugin)."""

    donor: str
    directory: str


@dataclass(frozen=True)
class Concurrently:
    """Independent actions run at the same time: stopping IO threads that are stuck
    connecting to a silent primary each take up to slave_net_timeout."""

    actions: tuple[Fence | StopIOThread, ...]


Action = (Concurrently | Fence | OpenWrites | StopIOThread | StartSQLThread | WaitRelayApplied | CatchUp | Detach
          | ReplicateFrom | StopReplication | EnsureUsers | SetSemiSync | InstallLeaseFence | RenewLease
          | AwaitLeaseExpiry | DisconnectClients | Clone)
