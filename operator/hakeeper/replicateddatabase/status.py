"""A database's status from one step of the clustering loop (pure), built as ReplicatedDatabaseStatus.

Conditions: Available (a writable primary exists), Healthy (every member replicates in time),
FailoverInProgress, and Ready, derived from Available by ready() unless a problem keeps the
loop from running (CredentialsMissing). The loop's memory is the typed status.loop
(LoopMemoryStatus); `loopMemory`, the JSON string hakeeper 0.1.0 wrote, is still read by
memory_of so that an upgraded operator resumes, and removed by the next status write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from hakeeper.api.common import Condition, epoch_of, rfc3339
from hakeeper.api.conditions import ConditionType, DatabaseReason, Verdict, with_verdicts
from hakeeper.api.replicateddatabase import (
    ErrantMember,
    HistoryEntry,
    LoopMemoryStatus,
    MemberLag,
    MemberStatus,
    ReplicatedDatabaseStatus,
    SwitchoverStatus,
)
from hakeeper.replicateddatabase.clustering import LoopMemory, StepResult
from hakeeper.replicateddatabase.clustering.memory import Switchover

HISTORY_LIMIT = 20
"""Failovers and switchovers kept in status.history (the model's maxItems)."""


# -- the loop's memory --------------------------------------------------------------------------
def _time(epoch: float | None) -> str | None:
    # to the nearest millisecond, which is as precise as the loop needs (its waits are rounded to it)
    return rfc3339(None if epoch is None else round(epoch, 3))


def loop_status(memory: LoopMemory) -> LoopMemoryStatus:
    """The loop's memory as status.loop; times become RFC 3339 to the nearest millisecond."""
    switchover = memory.switchover
    return LoopMemoryStatus(
        probe_failures=memory.probe_failures,
        failing_since=_time(memory.failing_since),
        last_failover=_time(memory.last_failover),
        last_lag=[MemberLag(member=m, seconds=s) for m, s in sorted(memory.last_lag.items())],
        errant=[ErrantMember(member=m, gtids=g) for m, g in sorted(memory.errant.items())],
        switchover=None if switchover is None else SwitchoverStatus(
            target=switchover.target, source=switchover.source, started=_time(switchover.started) or ""),
        lease_expires=_time(memory.lease_expires),
        last_state=memory.last_state,
        last_notes=list(memory.last_notes),
        primary_semi_sync=memory.primary_semi_sync,
    )


def loop_memory(loop: LoopMemoryStatus) -> LoopMemory:
    """status.loop back as the loop's memory (loop_status' inverse, to the millisecond)."""
    switchover = loop.switchover
    started = epoch_of(switchover.started) if switchover is not None else None
    return LoopMemory(
        probe_failures=loop.probe_failures,
        failing_since=epoch_of(loop.failing_since),
        last_failover=epoch_of(loop.last_failover),
        last_lag={lag.member: lag.seconds for lag in loop.last_lag},
        errant={e.member: e.gtids for e in loop.errant},
        # a switchover whose start cannot be read is forgotten: the next step starts it again
        switchover=None if switchover is None or started is None else Switchover(
            target=switchover.target, source=switchover.source, started=started),
        lease_expires=epoch_of(loop.lease_expires),
        last_state=loop.last_state,
        last_notes=tuple(loop.last_notes),
        primary_semi_sync=loop.primary_semi_sync,
    )


def memory_of(status: Mapping[str, Any] | None) -> LoopMemory | None:
    """The loop's memory from a status as read from the API; None when it has none or it cannot
    be read (losing it is safe: clustering.memory says why).

    Reads status.loop, or else `loopMemory`, the JSON string of hakeeper 0.1.0, so that an
    operator upgraded from it resumes. That fallback goes in the release after next.
    """
    status = status or {}
    try:
        if status.get("loop"):
            return loop_memory(LoopMemoryStatus.model_validate(status["loop"]))
        if status.get("loopMemory"):
            return LoopMemory.from_dict(json.loads(status["loopMemory"]))
    except (ValidationError, ValueError, TypeError):
        pass
    return None


# -- conditions ---------------------------------------------------------------------------------
def ready(result: StepResult | None, problem: Verdict | None = None, needed: int = 1) -> Verdict:
    """Ready: the primary takes writes and at least `needed` replicas replicate from it (as many
    as acknowledge a write: semiSync.waitForReplicaCount, one without semi-sync, none for a lone
    member), bootstrap done. A problem that keeps the loop from running at all
    (CredentialsMissing) wins; a refused failover says FailoverRefused."""
    if problem is not None:
        return problem
    assert result is not None
    if result.refused:
        return Verdict(False, DatabaseReason.FAILOVER_REFUSED, result.reason)
    if not result.available:
        return Verdict(False, DatabaseReason.NOT_AVAILABLE, result.reason)
    if result.state == "Initializing":
        return Verdict(False, DatabaseReason.INITIALIZING, f"{result.primary} takes writes; setting up the replicas")
    if result.replicating < needed:
        return Verdict(False, DatabaseReason.REPLICAS_NOT_REPLICATING,
                       f"{result.primary} takes writes but only {result.replicating} of the {needed} replica(s) "
                       f"that must acknowledge each write replicate: {result.reason}")
    return Verdict(True, DatabaseReason.AVAILABLE, f"{result.primary} takes writes; {result.replicating} "
                   f"replica{'s' if result.replicating != 1 else ''} replicating")


def replicas_needed(members: int, semi_sync: bool, wait_for_replica_count: int) -> int:
    """Replicas that must replicate for Ready: those that acknowledge a write."""
    if members <= 1:
        return 0
    return min(members - 1, wait_for_replica_count if semi_sync else 1)


def conditions_for(previous: Iterable[Condition | Mapping[str, Any]] | None, generation: int | None,
                   result: StepResult, now: str, needed: int = 1) -> list[Condition]:
    """The previous conditions with Available, Healthy, FailoverInProgress and Ready (see ready;
    `needed` replicas replicating) set from the step."""
    if result.available:
        available = Verdict(True, DatabaseReason.PRIMARY_WRITABLE, f"{result.primary} takes writes")
    else:
        available = Verdict(False, DatabaseReason.NO_WRITABLE_PRIMARY, result.reason)
    # not healthy: the phase says how (Degraded, Failed, Lost, Switching, Initializing)
    healthy = Verdict(result.healthy, DatabaseReason.ALL_REPLICATING if result.healthy else result.state,
                      result.reason)
    if result.failover_in_progress:
        failing = Verdict(True, DatabaseReason.FAILOVER_IN_PROGRESS, result.reason)
    else:
        failing = Verdict(False, DatabaseReason.IDLE, "no failover or switchover running")
    return with_verdicts(previous, [
        (ConditionType.AVAILABLE, available),
        (ConditionType.HEALTHY, healthy),
        (ConditionType.FAILOVER_IN_PROGRESS, failing),
        (ConditionType.READY, ready(result, needed=needed)),
    ], generation, now)


def not_ready(previous: Mapping[str, Any] | None, generation: int | None, problem: Verdict,
              now: str | None = None) -> dict[str, Any]:
    """The status patch that sets Ready=False for a problem that stops the loop (reason
    DatabaseReason.CREDENTIALS_MISSING), leaving the rest of the status as it is."""
    conditions = with_verdicts((previous or {}).get("conditions"),
                               [(ConditionType.READY, ready(None, problem))], generation, now)
    return ReplicatedDatabaseStatus(conditions=conditions).patch()


# -- the status ---------------------------------------------------------------------------------
def _member(m: Mapping[str, Any]) -> MemberStatus:
    # empty strings are "nothing to say": left out, as nulls are
    return MemberStatus(name=m["name"], role=m["role"], reachable=m["reachable"], read_only=m["read_only"],
                        lag_seconds=m["lag_seconds"], gtid=m["gtid"] or None, errant=m["errant"],
                        message=m["message"] or None, transactions_behind=m.get("transactions_behind"),
                        semi_sync_active=m.get("semi_sync_active"), serving=bool(m.get("serving")),
                        reseed=m.get("reseed") or None)


def status_model(body: Mapping[str, Any], result: StepResult, now_iso: str,
                 needed: int = 1) -> ReplicatedDatabaseStatus:
    """The status after one step: phase, primary, members, history (newest first, HISTORY_LIMIT
    entries), conditions, the loop's memory; `body["status"]` is the previous status as read from
    the API, `now_iso` the time of a condition that changes. handledSwitchover is the caller's."""
    previous = body.get("status") or {}
    generation = body["metadata"].get("generation")
    history = [HistoryEntry.model_validate(h) for h in previous.get("history") or []]
    if result.history:
        history = [HistoryEntry.model_validate(result.history), *history][:HISTORY_LIMIT]
    status = ReplicatedDatabaseStatus(
        observed_generation=generation,
        phase=result.state,
        current_primary=result.primary,
        ready_members=sum(1 for m in result.members if m["role"] in ("primary", "replica") and m["reachable"]),
        members=[_member(m) for m in result.members],
        history=history,
        conditions=conditions_for(previous.get("conditions"), generation, result, now_iso, needed),
        loop=loop_status(result.memory),
        loop_memory=None,  # 0.1.0's JSON string: superseded by loop, removed
    )
    last = history[0].time if history and history[0].kind == "failover" else previous.get("lastFailoverTime")
    if last:
        status.last_failover_time = last
    return status


def status_fingerprint(status: Mapping[str, Any]) -> str:
    """What a status patch says, less what changes on every step without news: the lease's
    expiry (loop.leaseExpires, renewed each step) and the conditions' transition times.

    The handler writes the status when this changes (or every so often): losing a lease
    renewal is safe, a failover then waits one lease longer.
    """
    loop = {k: v for k, v in (status.get("loop") or {}).items() if k != "leaseExpires"}
    conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []]
    return json.dumps({**status, "loop": loop, "conditions": conditions}, sort_keys=True, default=str)
