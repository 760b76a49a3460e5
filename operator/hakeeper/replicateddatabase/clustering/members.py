"""What the clustering loop knows about members: who they are and what was observed (data only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hakeeper.replicateddatabase.clustering.gtid import GtidSet

IoState = Literal["running", "connecting", "stopped"]


@dataclass(frozen=True)
class Member:
    """A database server; `name` is what the controller knows it by (the pod name)."""

    name: str
    host: str
    port: int = 3306
    addressed: bool = True
    """False while the member's pod has no IP (not scheduled, not started): it cannot answer,
    so the loop records it unreachable without a connection (`NOT_ADDRESSED`)."""


NOT_ADDRESSED = "not probed: the member's pod has no IP (not scheduled or not started)"
"""MemberState.error of a member without an address."""


@dataclass(frozen=True)
class Credentials:
    """Passed in from the Secret; never logged (repr hides the passwords)."""

    root_password: str = field(repr=False)
    replication_password: str = field(repr=False)
    operator_password: str = field(repr=False)
    root_user: str = "root"
    replication_user: str = "hakeeper-repl"
    operator_user: str = "hakeeper"


@dataclass(frozen=True)
class Replication:
    """SHOW SLAVE STATUS / SHOW REPLICA STATUS, flavor-neutral."""

    source_host: str
    source_port: int
    io: IoState
    sql_running: bool
    seconds_behind: float | None
    received: GtidSet
    io_error: str = ""
    sql_error: str = ""

    @property
    def sql_failed(self) -> bool:
        return bool(self.sql_error)


@dataclass(frozen=True)
class MemberState:
    """One probe of one member. `error` is set (and the rest mostly None) when unreachable."""

    name: str
    reachable: bool
    error: str | None = None
    server_id: int | None = None
    origin: str | None = None
    read_only: bool | None = None
    super_read_only: bool | None = None
    executed: GtidSet | None = None
    position: str = ""
    replication: Replication | None = None
    semi_sync_source: bool | None = None
    semi_sync_replica: bool | None = None
    semi_sync_timeout_ms: int | None = None
    semi_sync_active: bool | None = None
    lease_fence: bool = False
    """The self-fencing event exists here (see act.ensure_lease_fence)."""

    @property
    def writable(self) -> bool:
        return self.reachable and self.read_only is False

    @property
    def progress(self) -> GtidSet | None:
        """Everything this member has or has fetched: what it could serve as a new primary."""
        if self.executed is None:
            return None
        if self.replication is None:
            return self.executed
        return self.executed.union(self.replication.received)

    @property
    def relay_log_applied(self) -> bool:
        if self.replication is None or self.executed is None:
            return True
        return self.executed.contains(self.replication.received)

    def replicates_from(self, member: Member) -> bool:
        r = self.replication
        return r is not None and r.source_host == member.host and r.source_port == member.port
