"""The cluster's state from one round of probes (pure).

Healthy      the recorded primary is writable; every other member replicates from it, in time,
             without errant transactions.
Degraded     the primary is there, something else is not (a replica down, stopped, lagging,
             errant, or the primary refusing writes after a restart); also a primary that has
             missed fewer than failureThreshold probes, or that the replicas still see.
Failed       the primary is lost: failureThreshold consecutive failed probes and every
             reachable replica's IO thread lost it too - or it came back without transactions
             its replicas have. A failover candidate exists (durability Available: possibly
             one that lacks acknowledged writes, said in possible_loss), or a person forced one.
Lost         the primary is lost and no member can take over without losing acknowledged
             writes (or none is left): the failover is refused until the members that may
             hold them are back, or a person forces it.
Switching    a planned switchover is under way.
Initializing no primary is recorded yet (a fresh cluster).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hakeeper.api.meta import FORCE_FAILOVER_ANNOTATION
from hakeeper.api.replicateddatabase import MemberRole, Phase
from hakeeper.replicateddatabase.clustering.gtid import GtidSet
from hakeeper.replicateddatabase.clustering.members import Member, MemberState
from hakeeper.replicateddatabase.clustering.memory import LoopMemory
from hakeeper.replicateddatabase.clustering.policy import Policy

ClusterState = Phase
Role = MemberRole


@dataclass(frozen=True)
class MemberView:
    name: str
    role: Role
    problems: tuple[str, ...] = ()
    errant: str | None = None
    """The GTIDs this member has and the primary lacks (it must not rejoin)."""
    lag: float | None = None
    serving: bool = False
    """A replica fit to serve reads (the -replicas Service): replicating, in time, not errant."""
    reseed: str | None = None
    """Why it cannot rejoin by replication and must be rebuilt from another member's data."""


@dataclass(frozen=True)
class Classification:
    state: ClusterState
    reason: str
    primary: str | None
    """The recorded primary, or the one a fresh cluster starts with."""
    candidate: str | None = None
    """The member to promote (Initializing, Failed, Switching)."""
    members: tuple[MemberView, ...] = ()
    primary_lost_data: bool = False
    refused_switchover: str | None = None
    refused: bool = False
    """Lost in a failover: the primary is lost and no member may be promoted (FailoverRefused)."""
    forced: bool = False
    """Failed with a candidate a person named (the force-failover annotation)."""
    force_rejected: str | None = None
    """Why the member a person named cannot be promoted."""
    possible_loss: str | None = None
    """Failed: why the candidate may lack acknowledged writes (durability Available, or forced)."""
    views: dict[str, MemberView] = field(default_factory=dict, compare=False, repr=False)

    def view(self, name: str) -> MemberView:
        return self.views.get(name) or next(m for m in self.members if m.name == name)


def lag_of(state: MemberState, memory: LoopMemory) -> float | None:
    if state.replication is not None and state.replication.seconds_behind is not None:
        return state.replication.seconds_behind
    return memory.last_lag.get(state.name)


def candidate_lag(state: MemberState, memory: LoopMemory) -> float | None:
    """A replica's lag as a failover candidate, the primary being lost: what the server reports;
    else none when it has applied everything it fetched (nothing is left to apply, and what it
    lacks no lag measures); else the lag last seen while the primary was alive."""
    if state.replication is not None and state.replication.seconds_behind is not None:
        return state.replication.seconds_behind
    if state.executed is not None and state.relay_log_applied:
        return 0.0
    return memory.last_lag.get(state.name)


def errant_against(state: MemberState, primary: MemberState) -> GtidSet | None:
    """Transactions this member has (or fetched) that the primary lacks, not written by the
    primary itself: the member's own writes, or an old primary's unreplicated tail."""
    if state.progress is None or primary.executed is None:
        return None
    extra = state.progress.subtract(primary.executed)
    foreign = extra.subtract(extra.from_origins(frozenset({primary.origin or ""})))
    return foreign or None


BINLOG_GONE_ERRORS = ("1236:", "13114:")
"""A replica's IO thread error when its source cannot send what it asks for (purged binary logs,
or a GTID the source's binlogs never had): 1236 ER_MASTER_FATAL_ERROR_READING_BINLOG on MariaDB,
13114 ER_SERVER_SOURCE_FATAL_ERROR_READING_BINLOG (carrying 1236) on MySQL 8+. Replication
retrying cannot mend it; copying a healthy member's data can."""


def reseed_reason(state: MemberState, errant: GtidSet | None) -> str | None:
    """Why a member must be rebuilt from another member's data, or None: it has errant
    transactions, or its source cannot send the transactions it lacks (BINLOG_GONE_ERRORS)."""
    if errant:
        return f"it has transactions the primary lacks ({errant})"
    r = state.replication
    if r is not None and r.io_error.startswith(BINLOG_GONE_ERRORS):
        return f"its source no longer has the binary logs it needs ({r.io_error})"
    return None


def primary_lost_data(states: Sequence[MemberState], primary: MemberState) -> list[str]:
    """Members holding transactions the primary itself wrote but no longer has: it restarted
    and lost its tail (its replicas are ahead of it). Only a read-only primary is judged: a
    restarted one is, and a writable one's set grows while the others are being probed."""
    if primary.read_only is False and not primary.super_read_only:
        return []
    out = []
    for s in states:
        if s.name == primary.name or not s.reachable or s.progress is None or primary.executed is None:
            continue
        extra = s.progress.subtract(primary.executed)
        if extra.from_origins(frozenset({primary.origin or ""})):
            out.append(s.name)
    return out


def classify(members: Sequence[Member], states: Mapping[str, MemberState], recorded_primary: str | None,
             memory: LoopMemory, policy: Policy, switchover_target: str | None = None,
             force_target: str | None = None) -> Classification:
    """The cluster's state (module docstring). switchover_target: a member's name, ANY_REPLICA
    or None; force_target: the member a person names to promote when the primary is lost."""
    by_name = {m.name: m for m in members}
    if recorded_primary is None or recorded_primary not in by_name:
        return _initializing(members, states)
    primary = by_name[recorded_primary]
    p_state = states[primary.name]
    if not p_state.reachable:
        return _primary_unreachable(members, states, primary, memory, policy, force_target)

    views = _member_views(members, states, primary, memory, policy)
    behind = primary_lost_data([states[m.name] for m in members], p_state)
    if behind:
        return _failed(members, states, primary, memory, policy, views, lost_data=True,
                       reason=f"primary {primary.name} restarted without transactions that "
                              f"{', '.join(behind)} already have", force_target=force_target)

    switching = _switchover(members, states, primary, memory, switchover_target, views)
    if isinstance(switching, Classification):
        return switching
    refused = switching

    problems = [f"{v.name}: {'; '.join(v.problems)}" for v in views.values() if v.problems]
    if not problems:
        return Classification("Healthy", "all members replicate from the primary", primary.name,
                              members=tuple(views.values()), views=views, refused_switchover=refused)
    return Classification("Degraded", "; ".join(problems), primary.name, members=tuple(views.values()),
                          views=views, refused_switchover=refused)


# ------------------------------------------------------------------------------- helpers

def _member_views(members: Sequence[Member], states: Mapping[str, MemberState], primary: Member,
                  memory: LoopMemory, policy: Policy) -> dict[str, MemberView]:
    p_state = states[primary.name]
    views: dict[str, MemberView] = {}
    for m in members:
        s = states[m.name]
        if m.name == primary.name:
            refusing = () if s.read_only is False else ("refuses writes (read_only is on)",)
            views[m.name] = MemberView(m.name, "primary", refusing)
            continue
        if not s.reachable:
            views[m.name] = MemberView(m.name, "unknown", (f"unreachable: {s.error}",),
                                       errant=memory.errant.get(m.name), lag=memory.last_lag.get(m.name))
            continue
        errant = errant_against(s, p_state)
        lag = lag_of(s, memory)
        if errant:
            views[m.name] = MemberView(
                m.name, "fenced",
                (f"has transactions the primary lacks ({errant}); it stays out of the cluster until it is "
                 "re-seeded from a healthy member",), errant=str(errant), lag=lag,
                reseed=reseed_reason(s, errant))
            continue
        problems: list[str] = []
        r = s.replication
        if s.writable:
            problems.append("accepts writes but is not the primary")
        if r is None or not s.replicates_from(primary):
            problems.append(f"not replicating from {primary.name}")
        else:
            if r.io == "stopped":
                problems.append("replication IO thread stopped" + (f" ({r.io_error})" if r.io_error else ""))
            elif r.io == "connecting":
                problems.append("replication IO thread reconnecting" + (f" ({r.io_error})" if r.io_error else ""))
            if r.sql_failed:
                problems.append(f"replication SQL thread failed ({r.sql_error})")
            elif not r.sql_running:
                problems.append("replication SQL thread stopped")
            if lag is not None and lag > policy.max_lag_seconds:
                problems.append(f"lagging {lag:.0f}s (maxLagSeconds {policy.max_lag_seconds:.0f})")
        views[m.name] = MemberView(m.name, "replica", tuple(problems), lag=lag, serving=not problems,
                                   reseed=reseed_reason(s, None))
    return views


def _initializing(members: Sequence[Member], states: Mapping[str, MemberState]) -> Classification:
    reachable = [m for m in members if states[m.name].reachable]
    views = {m.name: MemberView(m.name, "unknown" if not states[m.name].reachable else "replica") for m in members}
    if not members or not reachable:
        return Classification("Initializing", "waiting for members to answer", None, members=tuple(views.values()),
                              views=views)
    fresh = all(states[m.name].progress is None or not states[m.name].progress for m in reachable)
    if fresh:
        first = members[0]
        if not states[first.name].reachable:
            return Classification("Initializing", f"waiting for {first.name}, the first primary, to answer", None,
                                  members=tuple(views.values()), views=views)
        return Classification("Initializing", f"new cluster: {first.name} becomes the primary", None,
                              candidate=first.name, members=tuple(views.values()), views=views)
    # Data but no recorded primary (the status was lost): adopt the member that has everything.
    if len(reachable) < len(members):
        return Classification("Initializing", "members have data but no primary is recorded: waiting for all "
                              "members to answer before choosing one", None, members=tuple(views.values()),
                              views=views)
    pool = [states[m.name] for m in members]
    best = _most_complete(pool, pool, {m.name: i for i, m in enumerate(members)}, {})
    if best is None:
        return Classification("Lost", "members have diverged and no primary is recorded; choose one by hand",
                              None, members=tuple(views.values()), views=views)
    return Classification("Initializing", f"no primary recorded: {best} has every transaction and becomes it",
                          None, candidate=best, members=tuple(views.values()), views=views)


def _primary_unreachable(members: Sequence[Member], states: Mapping[str, MemberState], primary: Member,
                         memory: LoopMemory, policy: Policy, force_target: str | None) -> Classification:
    views = _member_views_without_primary(members, states, primary, memory, policy)
    p_error = states[primary.name].error
    if memory.probe_failures < policy.failure_threshold:
        return Classification(
            "Degraded", f"primary {primary.name} unreachable ({memory.probe_failures}/{policy.failure_threshold} "
            f"probes): {p_error}", primary.name, members=tuple(views.values()), views=views)
    still_connected = [m.name for m in members if m.name != primary.name and states[m.name].reachable
                       and states[m.name].replicates_from(primary)
                       and states[m.name].replication.io == "running"]  # type: ignore[union-attr]
    if still_connected:
        return Classification(
            "Degraded", f"primary {primary.name} does not answer the operator, but {', '.join(still_connected)} "
            "still replicate from it: not failing over", primary.name, members=tuple(views.values()), views=views)
    return _failed(members, states, primary, memory, policy, views, lost_data=False,
                   reason=f"primary {primary.name} lost: {memory.probe_failures} failed probes ({p_error}) and no "
                          "replica is connected to it", force_target=force_target)


def _member_views_without_primary(members: Sequence[Member], states: Mapping[str, MemberState], primary: Member,
                                  memory: LoopMemory, policy: Policy) -> dict[str, MemberView]:
    views: dict[str, MemberView] = {}
    for m in members:
        s = states[m.name]
        if m.name == primary.name:
            views[m.name] = MemberView(m.name, "unknown", (f"unreachable: {s.error}",))
        elif not s.reachable:
            views[m.name] = MemberView(m.name, "unknown", (f"unreachable: {s.error}",),
                                       errant=memory.errant.get(m.name), lag=memory.last_lag.get(m.name))
        elif m.name in memory.errant:
            views[m.name] = MemberView(m.name, "fenced", ("has errant transactions",), errant=memory.errant[m.name],
                                       lag=lag_of(s, memory))
        else:
            # Its data is as fresh as any while the primary is away: it keeps serving reads
            # unless it cannot apply or was lagging already.
            lag = lag_of(s, memory)
            r = s.replication
            serving = (r is not None and r.sql_running and not r.sql_failed
                       and (lag is None or lag <= policy.max_lag_seconds))
            views[m.name] = MemberView(m.name, "replica", (f"primary {primary.name} unreachable",), lag=lag,
                                       serving=serving)
    return views


def _failed(members: Sequence[Member], states: Mapping[str, MemberState], primary: Member, memory: LoopMemory,
            policy: Policy, views: dict[str, MemberView], lost_data: bool, reason: str,
            force_target: str | None = None) -> Classification:
    """Failed with the member to promote, or Lost with why none may be (refused).

    Durability Lossless promotes only a member known to hold every acknowledged write: every
    acknowledged write is on at least waitForReplicaCount replicas while semi-sync is active
    (MySQL 8.4 Reference Manual 19.4.10 "Semisynchronous Replication"; MariaDB's "Semisynchronous
    Replication" page), so the most complete reachable replica holds them all when fewer than that
    many replicas are unreachable and the primary was last seen with semi-sync active. Available
    promotes the most complete reachable replica anyway and says what may be lost; so does a
    person's force_target, under either durability."""
    order = {m.name: i for i, m in enumerate(members)}
    others = [m for m in members if m.name != primary.name]
    could_ack = [m for m in others if m.name not in memory.errant and views[m.name].errant is None]
    unreachable = [m.name for m in could_ack if not states[m.name].reachable]

    def lost(why: str) -> Classification:
        return Classification("Lost", f"{reason}; {why}", primary.name, members=tuple(views.values()), views=views,
                              primary_lost_data=lost_data, refused=True)

    risks = _loss_risks(primary, memory, policy, unreachable)
    pool = [s for s in (states[m.name] for m in could_ack)
            if s.reachable and not (s.replication is not None and s.replication.sql_failed)]
    lags = {s.name: candidate_lag(s, memory) for s in pool}
    if force_target is not None:
        return _forced(force_target, members, states, primary, memory, views, pool, risks, reason, lost_data)
    if not could_ack:
        return lost("no replica without errant transactions is left")
    eligible = [s for s in pool if (lag := lags[s.name]) is None or lag <= policy.max_lag_seconds]
    best = _most_complete(eligible, pool, order, lags)
    if best is None:
        complete = _most_complete(pool, pool, order, lags)
        why = (f"only {complete}, lagging more than maxLagSeconds, has every transaction"
               if complete else "no reachable replica has every transaction of the others (diverged, or "
               "none is reachable)")
        return lost(f"{why}; {_force_hint(complete)}")
    if risks and policy.lossless:
        return lost(f"refusing to promote {best} (durability Lossless): {'; '.join(risks)}; {_force_hint(best)}")
    return Classification("Failed", reason, primary.name, candidate=best, members=tuple(views.values()),
                          views=views, primary_lost_data=lost_data, possible_loss="; ".join(risks) or None)


def _loss_risks(primary: Member, memory: LoopMemory, policy: Policy, unreachable: Sequence[str]) -> list[str]:
    """Why the most complete reachable replica may still lack writes the primary acknowledged."""
    risks = []
    if not policy.semi_sync:
        risks.append("semi-sync is off, so writes the primary acknowledged may be on no replica")
    elif memory.primary_semi_sync is False:
        risks.append(f"{primary.name} was last seen with semi-sync inactive (fallen back to asynchronous "
                     "replication), so writes it acknowledged since may be on no replica")
    if policy.semi_sync and len(unreachable) >= policy.semi_sync_wait_count:
        risks.append(f"{', '.join(unreachable)} {'is' if len(unreachable) == 1 else 'are'} unreachable too and "
                     "may hold the only copy of acknowledged writes")
    return risks


def _force_hint(member: str | None) -> str:
    return (f"to promote {member or 'a member'} anyway, accepting the loss, annotate the database "
            f"{FORCE_FAILOVER_ANNOTATION}={member or '<member>'}")


def _forced(target: str, members: Sequence[Member], states: Mapping[str, MemberState], primary: Member,
            memory: LoopMemory, views: dict[str, MemberView], pool: Sequence[MemberState], risks: Sequence[str],
            reason: str, lost_data: bool) -> Classification:
    """A person names the member to promote: Failed with it, or Lost with why it cannot be."""
    names = {m.name for m in members}
    problem = None
    if target == primary.name:
        problem = "it is the lost primary"
    elif target not in names:
        problem = "it is not a member"
    elif not states[target].reachable:
        problem = "it is unreachable"
    elif target in memory.errant or views[target].errant:
        problem = "it has errant transactions"
    elif states[target].replication is not None and states[target].replication.sql_failed:  # type: ignore[union-attr]
        problem = "its replication SQL thread failed"
    if problem is not None:
        return Classification("Lost", f"{reason}; cannot force a failover to {target}: {problem}", primary.name,
                              members=tuple(views.values()), views=views, primary_lost_data=lost_data, refused=True,
                              force_rejected=problem)
    chosen = states[target]
    missing = [s.name for s in pool if s.name != target and s.progress is not None and
               (chosen.progress is None or not chosen.progress.contains(s.progress))]
    loss = list(risks) + ([f"{target} lacks transactions {', '.join(missing)} {'has' if len(missing) == 1 else 'have'}"]
                          if missing else [])
    return Classification("Failed", f"{reason}; a person forced the failover to {target}", primary.name,
                          candidate=target, members=tuple(views.values()), views=views, primary_lost_data=lost_data,
                          forced=True, possible_loss="; ".join(loss) or "none known")


ANY_REPLICA = "*"


def _serious(problems: Sequence[str]) -> list[str]:
    """Problems that make a replica unfit to take over in a switchover (a replica that accepts
    writes is fenced by the switchover; one whose IO thread reconnects will catch up)."""
    return [p for p in problems if not p.startswith("accepts writes") and "reconnecting" not in p]


def _best_replica(members: Sequence[Member], states: Mapping[str, MemberState], primary: Member,
                  memory: LoopMemory, views: Mapping[str, MemberView]) -> str | None:
    """The most complete reachable replica without errant transactions or serious problems."""
    order = {m.name: i for i, m in enumerate(members)}
    pool = [states[m.name] for m in members if m.name != primary.name and states[m.name].reachable
            and views[m.name].errant is None and m.name not in memory.errant
            and not _serious(views[m.name].problems)]
    lags = {s.name: lag_of(s, memory) for s in pool}
    return _most_complete(pool, pool, order, lags)


def _most_complete(eligible: Sequence[MemberState], pool: Sequence[MemberState], order: Mapping[str, int],
                   lags: Mapping[str, float | None]) -> str | None:
    """The eligible member whose transactions (applied or fetched) include every pool member's.
    Ties: the one with most already applied, then one already writable (a promotion that was
    interrupted), then the least lag, then the lowest ordinal."""
    full = [s for s in eligible if all(s.progress is not None and o.progress is not None
                                       and s.progress.contains(o.progress) for o in pool)]
    if not full:
        return None

    def key(s: MemberState) -> tuple:
        applied_over = sum(1 for o in full if s.executed is not None and o.executed is not None
                           and s.executed.contains(o.executed))
        return (-applied_over, not s.writable, lags.get(s.name) or 0.0, order.get(s.name, 0))

    return min(full, key=key).name


def _switchover(members: Sequence[Member], states: Mapping[str, MemberState], primary: Member, memory: LoopMemory,
                target: str | None, views: dict[str, MemberView]) -> Classification | str | None:
    """A Switching classification, the reason a requested switchover is refused, or None.

    `target` ANY_REPLICA asks for the most complete healthy replica (the primary's pod is
    being deleted: a planned restart is a switchover)."""
    if memory.switchover is not None and memory.switchover.source == primary.name:
        target = memory.switchover.target
    if target == ANY_REPLICA:
        target = _best_replica(members, states, primary, memory, views)
        if target is None:
            return "no healthy replica to switch over to"
    if target is None or target == primary.name:
        return None
    names = {m.name for m in members}
    if target not in names:
        return f"switchover target {target} is not a member"
    s = states[target]
    view = views[target]
    if not s.reachable:
        return f"switchover target {target} is unreachable"
    if view.errant:
        return f"switchover target {target} has errant transactions"
    serious = _serious(view.problems)
    # Detached and holding everything the primary has: an interrupted switchover got this far.
    p_exec = states[primary.name].executed
    already_promoted = (s.replication is None and p_exec is not None and s.progress is not None
                        and s.progress.contains(p_exec))
    if serious and not already_promoted:
        return f"switchover target {target} is not a healthy replica: {'; '.join(serious)}"
    return Classification("Switching", f"switching the primary from {primary.name} to {target}", primary.name,
                          candidate=target, members=tuple(views.values()), views=views)
