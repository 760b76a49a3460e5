"""The spec's failover and semi-sync settings in the units the loop computes with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Policy:
    failover_enabled: bool = True
    probe_interval: float = 1.0
    failure_threshold: int = 3
    max_lag_seconds: float = 30.0
    anti_flap_window: float = 300.0
    semi_sync: bool = True
    semi_sync_wait_count: int = 1
    semi_sync_timeout: float = 10.0
    lossless: bool = True
    """spec.durability Lossless: never promote a member that may lack an acknowledged write
    (classify._failed says when that may be); False (Available): promote the most advanced one
    and record the possible loss."""
    lease: bool = True
    """The primary fences itself (read_only, kills commits waiting for an acknowledgement)
    when the loop stops renewing its lease - under durability Lossless only once it is also cut
    off from its replicas (fence_only_when_cut_off): a primary cut off from the operator cannot
    keep taking writes while a replica is promoted."""
    catch_up_timeout: float = 30.0
    """How long a promotion waits for the candidate to apply its relay log, or a switchover
    target to catch up with the fenced primary."""

    @property
    def fence_only_when_cut_off(self) -> bool:
        """The primary's lease event fences only a primary cut off from its replicas, so that an
        operator outage never stops writes: with durability Lossless and semi-sync (lease.py
        says why that is safe then and only then)."""
        return self.lossless and self.semi_sync

    @property
    def probe_timeout(self) -> float:
        """Connect/read timeout of one probe: a silent (partitioned) member must not stall the loop."""
        return min(2.0, max(0.3, self.probe_interval / 2))

    @property
    def lease_seconds(self) -> float:
        """Long enough to survive a slow step; short enough to lapse before a failover starts."""
        return max(2.0, 2 * self.probe_interval, (self.failure_threshold - 1) * self.probe_interval)

    @property
    def lease_check_period(self) -> float:
        return 1.0  # the event runs every second (the finest MariaDB/MySQL event schedule)

    @property
    def heartbeat_seconds(self) -> float:
        """Replicas ask for a heartbeat this often, so a silent primary is noticed quickly."""
        return max(0.5, self.probe_interval)

    @classmethod
    def from_spec(cls, spec: Any, lease: bool = True) -> Policy:
        """From api.replicateddatabase.ReplicatedDatabaseSpec (durations as Go strings)."""
        from hakeeper.api.common import parse_duration

        return cls(
            failover_enabled=spec.failover.enabled,
            probe_interval=parse_duration(spec.failover.probe_interval),
            failure_threshold=spec.failover.failure_threshold,
            max_lag_seconds=float(spec.failover.max_lag_seconds),
            anti_flap_window=parse_duration(spec.failover.anti_flap_window),
            semi_sync=spec.semi_sync.enabled and spec.replicas > 1,
            semi_sync_wait_count=spec.semi_sync.wait_for_replica_count,
            semi_sync_timeout=parse_duration(spec.semi_sync.timeout),
            lossless=spec.durability == "Lossless",
            lease=lease,
        )
