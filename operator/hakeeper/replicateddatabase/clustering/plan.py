"""The actions for a classified cluster (pure): act on exactly the state observed.

configure   (Healthy, Degraded) fence every writable non-primary, point replicas at the
            primary with GTID auto-positioning, keep errant members out, semi-sync on the
            primary only, renew the primary's lease, open the primary if it refuses writes.
bootstrap   (Initializing) create the accounts on the first primary, then configure.
failover    (Failed) fence the old primary where reachable; stop every replica's IO thread;
            let the candidate apply its relay log; wait out the old primary's lease; detach
            the candidate; repoint the others; open it.
switchover  (Switching) fence the primary; wait until the target has applied everything the
            fenced primary has; detach the target; repoint the others; open it; repoint the old
            primary last (a deleted primary's preStop hook releases its server then).
Rejoin of a returning old primary is configure: it is fenced first, checked for errant
transactions by classify, then repointed - or kept out with the reason in its status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from hakeeper.api.events import DatabaseEvent
from hakeeper.replicateddatabase.clustering.actions import (
    Action,
    AwaitLeaseExpiry,
    CatchUp,
    Concurrently,
    Detach,
    EnsureUsers,
    Fence,
    InstallLeaseFence,
    OpenWrites,
    RenewLease,
    ReplicateFrom,
    SetSemiSync,
    StartSQLThread,
    StopIOThread,
    StopReplication,
    WaitRelayApplied,
)
from hakeeper.replicateddatabase.clustering.classify import Classification, errant_against
from hakeeper.replicateddatabase.clustering.members import Member, MemberState
from hakeeper.replicateddatabase.clustering.memory import LoopMemory
from hakeeper.replicateddatabase.clustering.policy import Policy

Event = tuple[str, str]


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    primary: str | None = None
    """The primary once the actions have run (the role label goes there)."""
    completes: Literal["failover", "switchover"] | None = None
    notes: tuple[Event, ...] = ()
    """Decisions worth an Event that are not actions (a failover held back, and why)."""


def plan(c: Classification, members: Sequence[Member], states: Mapping[str, MemberState], policy: Policy,
         memory: LoopMemory, now: float) -> Plan:
    if c.state in ("Healthy", "Degraded"):
        assert c.primary is not None
        if not states[c.primary].reachable:
            # Not (yet) failed: wait, but never let a second member take writes meanwhile.
            return Plan(tuple(Fence(m.name, best_effort=True) for m in members
                              if m.name != c.primary and states[m.name].writable), primary=c.primary)
        return Plan(tuple(_configure(c.primary, members, states, c, policy)), primary=c.primary,
                    notes=(((DatabaseEvent.SWITCHOVER_REFUSED, c.refused_switchover),) if c.refused_switchover else ()))
    if c.state == "Initializing":
        if c.candidate is None:
            return Plan()
        actions: list[Action] = [EnsureUsers(c.candidate)]
        actions += _configure(c.candidate, members, states, c, policy)
        return Plan(tuple(actions), primary=c.candidate,
                    notes=((DatabaseEvent.BOOTSTRAP, f"{c.candidate} becomes the primary: {c.reason}"),))
    if c.state == "Failed":
        return _failover(c, members, states, policy, memory, now)
    if c.state == "Switching":
        return _switchover(c, members, states, policy)
    # Lost: nothing is safe to promote; at least keep every reachable non-primary read-only.
    fences = tuple(Fence(m.name, best_effort=True) for m in members
                   if m.name != c.primary and states[m.name].writable)
    refusal = DatabaseEvent.FAILOVER_REFUSED if c.refused else DatabaseEvent.NO_SAFE_CANDIDATE
    return Plan(fences, primary=c.primary, notes=((refusal, c.reason),))


def _configure(primary: str, members: Sequence[Member], states: Mapping[str, MemberState], c: Classification,
               policy: Policy) -> list[Action]:
    p = states[primary]
    # The lease first: a repair below that keeps failing must not starve it (act stops at
    # the first failure) and make a healthy primary fence itself.
    actions: list[Action] = _lease_install(primary, p, policy)
    if policy.lease:
        actions.append(RenewLease(primary))
    for m in members:
        s = states[m.name]
        if m.name == primary or not s.reachable:
            continue
        if s.writable:
            actions.append(Fence(m.name))
        actions += _lease_install(m.name, s, policy)
        if c.views.get(m.name) and c.view(m.name).errant:
            r = s.replication
            if r is not None and (r.io != "stopped" or r.sql_running):
                actions.append(StopReplication(m.name))
            continue
        repoint = _needs_repoint(s, _member(members, primary))
        actions += _semi_sync(m.name, s, source=False, replica=policy.semi_sync, policy=policy,
                              restart_io=not repoint and s.replication is not None)
        if repoint:
            actions.append(ReplicateFrom(m.name, primary, adopt_binlog_position=_wrote_itself(s),
                                         reset_applier=applier_broken(s)))
    actions += _semi_sync(primary, p, source=policy.semi_sync, replica=policy.semi_sync, policy=policy)
    if p.read_only is not False or p.super_read_only:
        actions.append(OpenWrites(primary))
    return actions


def _failover(c: Classification, members: Sequence[Member], states: Mapping[str, MemberState], policy: Policy,
              memory: LoopMemory, now: float) -> Plan:
    old, new = c.primary, c.candidate
    assert old is not None and new is not None
    # A person who names the member to promote overrides the automatic failover's holds.
    if not policy.failover_enabled and not c.forced:
        return Plan(primary=old, notes=((DatabaseEvent.FAILOVER_DISABLED, f"{c.reason}; failover.enabled is false"),))
    if not c.forced and memory.last_failover is not None and now - memory.last_failover < policy.anti_flap_window:
        wait = policy.anti_flap_window - (now - memory.last_failover)
        return Plan(primary=old, notes=((DatabaseEvent.FAILOVER_SUPPRESSED, f"{c.reason}; the last failover was "
                                         f"{now - memory.last_failover:.0f}s ago, within antiFlapWindow "
                                         f"({wait:.0f}s left)"),))
    reachable = [m for m in members if m.name != old and states[m.name].reachable]
    new_member = _member(members, new)
    # Replicas already following the candidate (an interrupted failover) keep running.
    following = {m.name for m in reachable if m.name != new and not _needs_repoint(states[m.name], new_member)}
    # Fence the old primary where it answers, and stop every replica fetching from it, so it
    # can no longer collect acknowledgements; all at once (each may wait on a silent peer).
    fencing = (Fence(old, best_effort=not c.primary_lost_data),) + tuple(
        StopIOThread(m.name) for m in reachable if states[m.name].replication is not None and m.name not in following)
    actions: list[Action] = [Concurrently(fencing) if len(fencing) > 1 else fencing[0]]
    cand = states[new]
    if cand.replication is not None and not cand.replication.sql_running:
        actions.append(StartSQLThread(new))
    if cand.replication is not None:
        actions.append(WaitRelayApplied(new, policy.catch_up_timeout))
    if policy.lease and memory.lease_expires is not None:
        wait = memory.lease_expires + policy.lease_check_period + 0.25 - now
        if wait > 0:
            actions.append(AwaitLeaseExpiry(round(wait, 3), old_primary=old))
    actions.append(Detach(new))
    for m in reachable:
        s = states[m.name]
        if m.name == new:
            continue
        if s.writable:
            actions.append(Fence(m.name))
        if c.view(m.name).errant or m.name in memory.errant:
            continue
        actions += _semi_sync(m.name, s, source=False, replica=policy.semi_sync, policy=policy)
        if m.name not in following:
            actions.append(ReplicateFrom(m.name, new, adopt_binlog_position=_wrote_itself(s)))
    if c.primary_lost_data:
        o = states[old]
        if not errant_against(o, cand):
            actions += _semi_sync(old, o, source=False, replica=policy.semi_sync, policy=policy)
            actions.append(ReplicateFrom(old, new, adopt_binlog_position=True))
    actions += _lease_install(new, cand, policy)
    if policy.lease:
        actions.append(RenewLease(new))
    actions += _semi_sync(new, cand, source=policy.semi_sync, replica=policy.semi_sync, policy=policy, force=True)
    actions.append(OpenWrites(new))
    notes: tuple[Event, ...] = ((DatabaseEvent.FAILOVER_STARTED, f"{c.reason}; promoting {new}"),)
    if c.forced:
        notes = ((DatabaseEvent.FAILOVER_FORCED, f"{c.reason}; promoting {new}; possible loss: {c.possible_loss}"),)
    elif c.possible_loss:
        notes += ((DatabaseEvent.POSSIBLE_LOSS, f"durability Available: promoting {new} although {c.possible_loss}"),)
    return Plan(tuple(actions), primary=new, completes="failover", notes=notes)


def _switchover(c: Classification, members: Sequence[Member], states: Mapping[str, MemberState],
                policy: Policy) -> Plan:
    old, new = c.primary, c.candidate
    assert old is not None and new is not None
    target = states[new]
    actions: list[Action] = [Fence(old)]
    if target.replication is not None:
        actions.append(CatchUp(new, source=old, timeout=policy.catch_up_timeout))
    actions.append(Detach(new))
    new_member = _member(members, new)
    # The old primary is repointed last: a deleted primary's pod stops its server as soon as it
    # replicates (its preStop hook), and whatever is left of the switchover then could not run.
    release_old: list[Action] = []
    for m in members:
        s = states[m.name]
        if m.name == new or not s.reachable:
            continue
        if m.name == old:
            # Only the replica side, if it differs: switching its source side off blocks for about
            # a second on MySQL (measured: SET GLOBAL rpl_semi_sync_source_enabled = OFF, 0.98 s),
            # which would keep the role label, and the writes, off the new primary that long. It
            # is read-only now and acknowledges nothing; the next step's configure switches it off.
            if s.semi_sync_replica is not None and s.semi_sync_replica != policy.semi_sync:
                release_old += _semi_sync(old, s, source=bool(s.semi_sync_source), replica=policy.semi_sync,
                                          policy=policy)
            if _needs_repoint(s, new_member):
                release_old.append(ReplicateFrom(old, new, adopt_binlog_position=True))
            continue
        if s.writable:
            actions.append(Fence(m.name))
        if c.view(m.name).errant:
            continue
        actions += _semi_sync(m.name, s, source=False, replica=policy.semi_sync, policy=policy)
        if _needs_repoint(s, new_member):
            actions.append(ReplicateFrom(m.name, new, adopt_binlog_position=_wrote_itself(s)))
    actions += _lease_install(new, target, policy)
    if policy.lease:
        actions.append(RenewLease(new))
    actions += _semi_sync(new, target, source=policy.semi_sync, replica=policy.semi_sync, policy=policy, force=True)
    actions.append(OpenWrites(new))
    actions += release_old
    return Plan(tuple(actions), primary=new, completes="switchover",
                notes=((DatabaseEvent.SWITCHOVER_STARTED, f"{old} -> {new}"),))


# ------------------------------------------------------------------------------- helpers

def _member(members: Sequence[Member], name: str) -> Member:
    return next(m for m in members if m.name == name)


APPLIER_METADATA_ERRORS = ("13124:", "1872:", "13117:", "1871:")
"""MySQL's "failed to initialize applier (relay log info) / connection metadata structure from the
repository": the metadata names relay logs this server lacks, as a clone of a replica carries
(MySQL 9.7 Reference Manual 7.6.6.7 "Cloning for Replication"); START REPLICA keeps failing."""


def applier_broken(s: MemberState) -> bool:
    """Whether the member's replication metadata cannot be read (APPLIER_METADATA_ERRORS): a
    repoint resets it first, which drops nothing the CHANGE after it would not (it deletes the
    relay logs anyway; auto-positioning fetches whatever is not executed)."""
    r = s.replication
    return r is not None and (r.sql_error.startswith(APPLIER_METADATA_ERRORS)
                              or r.io_error.startswith(APPLIER_METADATA_ERRORS))


def _needs_repoint(s: MemberState, primary: Member) -> bool:
    r = s.replication
    if r is None or not s.replicates_from(primary) or applier_broken(s):
        return True
    if r.io == "stopped":
        # Stopped by us or by a person: restart. Stopped by a fatal error (the IO thread
        # retries the others itself): repeating the same CHANGE MASTER would not help.
        return not r.io_error
    return not r.sql_running and not r.sql_failed  # a failed SQL thread needs a person


def _wrote_itself(s: MemberState) -> bool:
    """It was a primary once: its own writes are in its binlog, not in its replica position."""
    return s.executed is not None and s.origin is not None and s.origin in s.executed.origins()


def _semi_sync(name: str, s: MemberState, source: bool, replica: bool, policy: Policy,
               restart_io: bool = False, force: bool = False) -> list[Action]:
    timeout_ms = int(policy.semi_sync_timeout * 1000)
    source_differs = s.semi_sync_source is not None and s.semi_sync_source != source
    replica_differs = s.semi_sync_replica is not None and s.semi_sync_replica != replica
    timeout_differs = source and s.semi_sync_timeout_ms is not None and s.semi_sync_timeout_ms != timeout_ms
    if not (force or source_differs or replica_differs or timeout_differs):
        return []
    return [SetSemiSync(name, source=source, replica=replica, restart_io=restart_io and replica_differs)]


def _lease_install(name: str, s: MemberState, policy: Policy) -> list[Action]:
    if policy.lease and not s.lease_fence:
        return [InstallLeaseFence(name)]
    if not policy.lease and s.lease_fence:
        return [InstallLeaseFence(name, enabled=False)]
    return []
