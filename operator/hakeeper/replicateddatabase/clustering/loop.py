"""The clustering loop, one step at a time: gather -> classify -> plan -> act.

The controller (a kopf daemon per ReplicatedDatabase) calls Cluster.step every
probeInterval with the members in ordinal order, the primary recorded in the status, and
the memory the previous step returned. It must persist StepResult.primary and
StepResult.memory in the status *before* moving the role label, then move the label to
StepResult.primary, post StepResult.events as Events and write the rest of the status.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hakeeper.api.events import DatabaseEvent
from hakeeper.api.meta import FORCE_FAILOVER_ANNOTATION
from hakeeper.replicateddatabase.clustering.act import Executor
from hakeeper.replicateddatabase.clustering.actions import Action, Clone, DisconnectClients, OpenWrites, ReplicateFrom
from hakeeper.replicateddatabase.clustering.classify import Classification, ClusterState, classify
from hakeeper.replicateddatabase.clustering.flavor import Flavor, flavor_for
from hakeeper.replicateddatabase.clustering.members import NOT_ADDRESSED, Credentials, Member, MemberState
from hakeeper.replicateddatabase.clustering.memory import LoopMemory, Switchover
from hakeeper.replicateddatabase.clustering.ops import Ops, PyMySQLOps
from hakeeper.replicateddatabase.clustering.plan import Plan, plan
from hakeeper.replicateddatabase.clustering.policy import Policy

Event = tuple[str, str]

PROBE_WORKERS = 8
PROBES = ThreadPoolExecutor(PROBE_WORKERS, thread_name_prefix="probe")
"""Every database's probes share these threads (a pool per step started and joined threads at
every probeInterval; bench/scale). Probes submit nothing, so a step waiting on them never holds
one of them: no deadlock however many steps wait."""


@dataclass(frozen=True)
class StepResult:
    """What one step saw, decided and did, for the controller to persist and publish."""

    state: ClusterState
    """The phase to show (after this step's actions)."""
    reason: str
    primary: str | None
    """Where the role label belongs now (None until a fresh cluster is bootstrapped)."""
    members: list[dict[str, Any]]
    """api.replicateddatabase.MemberStatus fields, one per member in the order given."""
    events: list[Event]
    """(reason, message) for kubernetes Events, in order."""
    history: dict[str, Any] | None
    """api.replicateddatabase.HistoryEntry fields when a failover or switchover completed."""
    memory: LoopMemory
    available: bool
    """A writable primary exists (condition Available)."""
    healthy: bool
    """Every member replicates from the primary in time (condition Healthy)."""
    failover_in_progress: bool
    refused: bool = False
    """The primary is lost and no member may be promoted (FailoverRefused; state Lost)."""
    replicating: int = 0
    """Replicas serving: replicating from the primary, in time, not errant (the -replicas Service)."""
    force: tuple[str, str] | None = None
    """("used" | "ignored", why) when the step consumed a person's force_target: the controller
    removes the annotation then."""
    probe_seconds: float = 0.0
    """How long gathering took (the rest of the step is acting): a metric."""
    action_seconds: list[tuple[str, float]] = field(default_factory=list)
    done: list[Action] = field(default_factory=list)
    error: str | None = None
    """The action that failed this step, if any (the next step re-plans)."""
    states: dict[str, MemberState] = field(default_factory=dict, repr=False)


class Cluster:
    """One database cluster's loop. flavor: "mysql", "mariadb" or a Flavor (ValueError for
    another name). ops: how members are reached (default: PyMySQLOps over the network with
    these credentials and policy; the unit tier passes an in-memory one)."""

    def __init__(self, flavor: str | Flavor, credentials: Credentials, policy: Policy,
                 before_action: Callable[[Action], None] | None = None, ops: Ops | None = None) -> None:
        self.flavor = flavor_for(flavor) if isinstance(flavor, str) else flavor
        if self.flavor.name == "mariadb" and policy.semi_sync_wait_count != 1:
            # MariaDB waits for exactly one acknowledgement whatever the spec asks; the
            # failover's safety rule must count what the server really does.
            policy = dataclasses.replace(policy, semi_sync_wait_count=1)
        self.credentials, self.policy = credentials, policy
        self.before_action = before_action
        """Called before each action; tests raise from it to simulate an operator crash."""
        self.ops: Ops = ops if ops is not None else PyMySQLOps(self.flavor, credentials, policy)
        self._own_ops = ops is None

    def disconnect_clients(self, members: Sequence[Member], member: str) -> list[Event]:
        """actions.DisconnectClients on `member` (a former primary): its Events; none when it
        had no client or cannot be reached (a member that is down has no client to keep)."""
        done = Executor(members, self.flavor, self.credentials, self.policy, self.before_action,
                        self.ops).execute([DisconnectClients(member)])
        return done.events if done.ok else []

    def clone(self, members: Sequence[Member], member: str, donor: str, directory: str) -> tuple[bool, list[Event]]:
        """actions.Clone: `member`'s server copies `donor`'s data into `directory` (blocks until
        the copy is complete: run it off the step's thread, which it shares no connection with).
        (succeeded, its Events)."""
        ops = PyMySQLOps(self.flavor, self.credentials, self.policy) if self._own_ops else self.ops
        done = Executor(members, self.flavor, self.credentials, self.policy, self.before_action,
                        ops).execute([Clone(member, donor, directory)])
        return done.ok, done.events

    def gather(self, members: Sequence[Member], primary: str | None = None) -> dict[str, MemberState]:
        """Probe the others in parallel, then the primary: whatever a replica was seen to have
        fetched, the primary had before it was probed, so comparing the two never races."""
        others = [m for m in members if m.name != primary]
        first = [m for m in members if m.name == primary]

        def probe(member: Member) -> MemberState:
            if not member.addressed:  # unreachable, and known to be without a connection
                return MemberState(name=member.name, reachable=False, error=NOT_ADDRESSED)
            return self.ops.gather(member)

        states: dict[str, MemberState] = {}
        if len(others) == 1:
            states[others[0].name] = probe(others[0])
        elif others:
            states.update({s.name: s for s in PROBES.map(probe, others)})
        for m in first:
            states[m.name] = probe(m)
        return {m.name: states[m.name] for m in members}

    def step(self, members: Sequence[Member], recorded_primary: str | None, memory: LoopMemory | None,
             now: float | None = None, switchover_target: str | None = None,
             force_target: str | None = None) -> StepResult:
        """gather -> classify -> plan -> act, once. members: in ordinal order; recorded_primary
        and memory: what the last step returned (None for a new cluster); now: epoch seconds
        (default time.time()); switchover_target: a member's name, classify.ANY_REPLICA, or
        None; force_target: the member a person names to promote although the failover may
        lose writes (used once: StepResult.force says when). Action failures are reported in
        the result, not raised; what before_action raises is."""
        started = self.ops.monotonic()
        now = time.time() if now is None else now
        memory = memory or LoopMemory()
        states = self.gather(members, recorded_primary)
        probed = self.ops.monotonic() - started
        memory = _count_probe(memory, states, recorded_primary, now)
        c = classify(members, states, recorded_primary, memory, self.policy, switchover_target, force_target)
        p = plan(c, members, states, self.policy, memory, now)
        act = Executor(members, self.flavor, self.credentials, self.policy, self.before_action,
                       self.ops).execute(p.actions)
        elapsed = self.ops.monotonic() - started
        # Once the new primary takes writes it is the primary, whatever failed after that (the
        # last action of a switchover points the old primary at it, and a deleted pod's server
        # may be gone by then): recording the old one would leave the label, the Services and
        # the next step on a fenced member while another one takes writes.
        opened_new = p.primary is not None and any(
            isinstance(a, OpenWrites) and a.member == p.primary for a in act.done)
        decided = act.ok or opened_new
        completed = p.completes if decided else None
        primary = p.primary if decided and p.primary is not None else recorded_primary

        events: list[Event] = []
        if c.state != memory.last_state:
            events.append((c.state, c.reason))
        events += [n for n in p.notes if n[0] not in memory.last_notes] + act.events
        errant = _errant(memory, c, states)
        for name in sorted(set(errant) - set(memory.errant)):
            events.append(("ErrantTransactions", f"{name} has transactions the primary lacks ({errant[name]}); "
                                                 "it stays out until it is re-seeded from a healthy member"))
        history = None
        if completed:
            since = memory.failing_since if completed == "failover" else (
                memory.switchover.started if memory.switchover else now)
            duration = round(now + elapsed - (since if since is not None else now), 3)
            history = {"time": _iso(now + elapsed), "kind": completed, "from_member": c.primary,
                       "to_member": primary, "reason": c.reason, "duration_seconds": duration,
                       "possible_loss": c.possible_loss if completed == "failover" else None,
                       "forced": c.forced and completed == "failover"}
            events.append((f"{completed.capitalize()}Completed",
                           f"{c.primary} -> {primary} in {duration:.1f}s: {c.reason}"))

        new_memory = memory.with_(
            last_lag=_lags(memory, c, states, members, recorded_primary),
            errant=errant,
            last_state=c.state,
            last_notes=tuple(reason for reason, _ in p.notes),
            switchover=_switchover_memory(memory, c, completed, now),
            lease_expires=(now + (act.lease_renewed_at - started) + self.policy.lease_seconds
                           if act.lease_renewed_at is not None else memory.lease_expires),
        )
        new_memory = _track_semi_sync(new_memory, states, recorded_primary, self.flavor)
        if completed == "failover":
            new_memory = new_memory.with_(last_failover=now + elapsed, probe_failures=0, failing_since=None,
                                          primary_semi_sync=None, semi_sync_catch_up=None)
        elif completed == "switchover":
            new_memory = new_memory.with_(probe_failures=0, failing_since=None, primary_semi_sync=None,
                                          semi_sync_catch_up=None)
        force = _force_outcome(force_target, c, states, recorded_primary, completed)
        if force is not None and force[0] == "ignored":
            events.append((DatabaseEvent.FORCE_IGNORED, f"{FORCE_FAILOVER_ANNOTATION}={force_target} removed "
                                                        f"unused: {force[1]}"))

        state, reason = c.state, c.reason
        if completed:
            state = "Degraded" if completed == "failover" else "Healthy"
            reason = f"{completed} from {c.primary} to {primary} completed"
        opened = any(isinstance(a, OpenWrites) and a.member == primary for a in act.done)
        available = primary is not None and (opened or (states.get(primary) is not None and states[primary].writable
                                                        and act.ok))
        statuses = _member_statuses(members, states, c, primary, errant,
                                    repointed={a.member for a in act.done if isinstance(a, ReplicateFrom)})
        return StepResult(
            state=state, reason=reason, primary=primary, members=statuses,
            events=events, history=history, memory=new_memory, available=available,
            healthy=c.state == "Healthy" and act.ok,
            failover_in_progress=c.state in ("Failed", "Switching") and not completed,
            refused=c.refused and not completed, replicating=sum(1 for m in statuses if m["serving"]), force=force,
            probe_seconds=probed, action_seconds=act.seconds, done=act.done, error=act.error, states=states,
        )


# ------------------------------------------------------------------------------- helpers

def _count_probe(memory: LoopMemory, states: dict[str, MemberState], primary: str | None, now: float) -> LoopMemory:
    if primary is None or primary not in states:
        return memory.with_(probe_failures=0, failing_since=None)
    if states[primary].reachable:
        return memory.with_(probe_failures=0, failing_since=None)
    return memory.with_(probe_failures=memory.probe_failures + 1,
                        failing_since=memory.failing_since if memory.failing_since is not None else now)


def _track_semi_sync(memory: LoopMemory, states: dict[str, MemberState], primary: str | None,
                     flavor: Flavor) -> LoopMemory:
    """memory with primary_semi_sync and semi_sync_catch_up updated from this step's probes.

    Only a primary seen taking writes counts (a read-only one has acknowledged nothing since).
    A status of OFF is a fallback; ON ends a fallback only once a reachable replica has every
    transaction the primary had when first seen ON again: MySQL and MariaDB switch the status
    back on when a replica catches up, but a restarted server also starts with it ON, while its
    replicas may still lack what it acknowledged asynchronously before the restart ("1 if the
    plugin has been enabled and a commit acknowledgment has not occurred": MySQL 8.4 manual
    19.4.10.3, "Semisynchronous Replication Monitoring", Rpl_semi_sync_source_status).
    Replicas are probed before the primary (Controller.gather), so a replica holding the
    primary's set really has it all."""
    state = states.get(primary) if primary is not None else None
    if state is None or not state.writable or state.semi_sync_active is None:
        return memory
    if not state.semi_sync_active:
        return memory.with_(primary_semi_sync=False, semi_sync_catch_up=None)
    if memory.primary_semi_sync is not False:
        return memory.with_(primary_semi_sync=True, semi_sync_catch_up=None)
    mark = (flavor.gtid_type.parse(memory.semi_sync_catch_up)  # type: ignore[attr-defined]
            if memory.semi_sync_catch_up else state.executed)
    if mark is None:
        return memory
    caught_up = any(s.reachable and s.progress is not None and s.progress.contains(mark)
                    for name, s in states.items() if name != primary)
    if caught_up:
        return memory.with_(primary_semi_sync=True, semi_sync_catch_up=None)
    return memory.with_(primary_semi_sync=False, semi_sync_catch_up=str(mark))


def _force_outcome(target: str | None, c: Classification, states: dict[str, MemberState], primary: str | None,
                   completed: str | None) -> tuple[str, str] | None:
    """Whether a person's force-failover request is done with: used by a completed failover,
    or ignored (it names no possible candidate, or no failover is pending: the primary answers)."""
    if target is None:
        return None
    if completed == "failover" and c.forced:
        return "used", f"forced failover to {target} completed"
    if c.force_rejected:
        return "ignored", f"cannot force a failover to {target}: {c.force_rejected}"
    if primary is None:
        return "ignored", "the database has no primary yet"
    if c.state in ("Healthy", "Degraded", "Switching") and states[primary].reachable:
        return "ignored", f"no failover is refused: the primary {primary} answers"
    return None


def _lags(memory: LoopMemory, c: Classification, states: dict[str, MemberState], members: Sequence[Member],
          primary: str | None) -> dict[str, float]:
    lags = dict(memory.last_lag)
    if primary is None or primary not in states or not states[primary].reachable:
        return lags  # keep what was seen while the primary was alive
    for m in members:
        r = states[m.name].replication
        if m.name != primary and r is not None and r.seconds_behind is not None:
            lags[m.name] = r.seconds_behind
    return lags


def _errant(memory: LoopMemory, c: Classification, states: dict[str, MemberState]) -> dict[str, str]:
    errant = dict(memory.errant)
    primary_seen = c.primary is not None and states.get(c.primary) is not None and states[c.primary].reachable
    if not primary_seen:
        return errant
    for name, view in c.views.items():
        if view.errant:
            errant[name] = view.errant
        elif states[name].reachable and name != c.primary:
            errant.pop(name, None)  # re-initialized, or it was the old primary's tail and is gone
    return errant


def _switchover_memory(memory: LoopMemory, c: Classification, completed: str | None, now: float) -> Switchover | None:
    if completed or c.state != "Switching":
        return None
    if memory.switchover is not None and memory.switchover.target == c.candidate:
        return memory.switchover
    assert c.candidate is not None and c.primary is not None
    return Switchover(target=c.candidate, source=c.primary, started=now)


def _member_statuses(members: Sequence[Member], states: dict[str, MemberState], c: Classification,
                     primary: str | None, errant: dict[str, str],
                     repointed: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """As observed at the start of the step, with the roles this step's actions gave."""
    out = []
    for m in members:
        s = states[m.name]
        view = c.views.get(m.name)
        role = view.role if view else ("unknown" if not s.reachable else "replica")
        if m.name == primary:
            role = "primary"
        elif m.name in repointed and m.name not in errant:
            role = "replica"
        elif role == "primary":
            role = "fenced" if s.reachable else "unknown"
        problems = list(view.problems) if view else []
        if not s.reachable and not problems:
            problems = [f"unreachable: {s.error}"]
        lag = view.lag if view else None
        leader = states.get(primary) if primary is not None else None
        behind = (s.executed.behind(leader.executed) if s.executed is not None and leader is not None
                  and leader.executed is not None and type(s.executed) is type(leader.executed) else None)
        out.append({
            "name": m.name,
            "role": role,
            "reachable": s.reachable,
            "read_only": s.read_only,
            "lag_seconds": lag,
            "gtid": s.position or None,
            "errant": m.name in errant,
            "message": "; ".join(problems) or None,
            "transactions_behind": behind,
            "semi_sync_active": s.semi_sync_active if m.name == primary else None,
            "serving": role == "replica" and view is not None and view.serving and m.name not in errant,
            "reseed": view.reseed if view else None,
        })
    return out


def _iso(epoch: float) -> str:
    return (datetime.datetime.fromtimestamp(epoch, datetime.UTC).replace(microsecond=0)
            .isoformat().replace("+00:00", "Z"))


__all__ = ["Cluster", "Credentials", "LoopMemory", "Member", "Policy", "StepResult", "Plan"]
