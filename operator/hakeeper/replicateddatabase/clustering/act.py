"""Execute a plan's actions through an Ops (pymysql by default), in order, stopping at the first
that fails.

Every action is idempotent: fencing a fenced member, promoting a promoted one, repointing a
replica that already follows the source are no-ops in effect. A crash between two actions
leaves the cluster in a state the next gather classifies and the next plan continues from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hakeeper.api.events import DatabaseEvent
from hakeeper.replicateddatabase.clustering import actions, lease
from hakeeper.replicateddatabase.clustering.flavor import Flavor, Statement, clients_to_kill
from hakeeper.replicateddatabase.clustering.members import Credentials, Member
from hakeeper.replicateddatabase.clustering.ops import Ops, PyMySQLOps, describe
from hakeeper.replicateddatabase.clustering.policy import Policy

Event = tuple[str, str]
CLONE_TIMEOUT = 6 * 3600.0
"""Seconds a clone may take (the statement returns when the copy is complete)."""


class ActionFailed(Exception):
    """An action ran but did not achieve its end (a wait timed out, a member of a actions.Concurrently
    group failed); the message says which and why."""


@dataclass
class ActResult:
    """What execute did: the actions done in order, the Events they are worth, and the one that
    failed (then `error` says why; the actions after it were not run)."""

    done: list[actions.Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    failed: actions.Action | None = None
    error: str | None = None
    lease_renewed_at: float | None = None
    """Ops.monotonic() when the primary's lease write was acknowledged."""
    seconds: list[tuple[str, float]] = field(default_factory=list)
    """How long each action took (its class name): where a failover spends its time."""

    @property
    def ok(self) -> bool:
        """No action failed."""
        return self.failed is None


class Executor:
    """Runs actions on `members` through `ops` (default: PyMySQLOps from flavor, credentials and
    policy). before_action is called with each action before it runs; what it raises is not
    caught (tests raise from it to simulate an operator crash)."""

    def __init__(self, members: Sequence[Member], flavor: Flavor, credentials: Credentials, policy: Policy,
                 before_action: Callable[[actions.Action], None] | None = None, ops: Ops | None = None) -> None:
        self.members = {m.name: m for m in members}
        self.flavor, self.credentials, self.policy = flavor, credentials, policy
        self.before_action = before_action
        self.ops: Ops = ops if ops is not None else PyMySQLOps(flavor, credentials, policy)
        self._fenced: set[str] = set()

    def _run(self, name: str, statements: Sequence[Statement], read_timeout: float | None = None) -> list[Any]:
        return self.ops.run(self.members[name], statements, read_timeout)

    def close(self) -> None:
        """Release the ops' connections (execute does, when it ends)."""
        self.ops.close()

    # ------------------------------------------------------------------ actions
    def execute(self, actions: Sequence[actions.Action]) -> ActResult:
        """Run `actions` in order until one fails; an action's exception becomes result.failed
        and result.error (and an ActionFailed event), only before_action's escape."""
        result = ActResult()
        try:
            for action in actions:
                if self.before_action is not None:
                    self.before_action(action)
                began = self.ops.monotonic()
                try:
                    event = self._do(action, result)
                except Exception as exc:  # noqa: BLE001 - reported, the next step re-plans
                    result.failed, result.error = action, describe(exc) if not isinstance(exc, ActionFailed) \
                        else str(exc)
                    result.events.append(("ActionFailed", f"{_label(action)}: {result.error}"))
                    break
                result.done.append(action)
                result.seconds.append((type(action).__name__, self.ops.monotonic() - began))
                if event:
                    result.events.append(event)
        finally:
            self.close()
        return result

    def _do(self, action: actions.Action, result: ActResult) -> Event | None:
        f, creds, policy = self.flavor, self.credentials, self.policy
        if isinstance(action, actions.Concurrently):
            return self._concurrently(action, result)
        if isinstance(action, actions.Fence):
            try:
                self._run(action.member, f.fence(), read_timeout=policy.probe_timeout + 2)
            except Exception as exc:
                if not action.best_effort:
                    raise
                return ("FenceSkipped", f"{action.member} unreachable, not fenced directly ({describe(exc)})")
            self._fenced.add(action.member)
            killed = self._kill_clients(action.member)
            return ("Fenced", f"{action.member} is read-only" + (
                f"; killed {killed} client session(s), to reconnect to the new primary" if killed else ""))
        if isinstance(action, actions.DisconnectClients):
            killed = self._kill_clients(action.member)
            if not killed:
                return None
            return (DatabaseEvent.CLIENTS_DISCONNECTED, f"{action.member} is no longer the -primary Service's "
                    f"endpoint; killed {killed} client session(s) still on it, to reconnect to the primary")
        if isinstance(action, actions.OpenWrites):
            self._run(action.member, f.open_writes())
            return ("Writable", f"{action.member} accepts writes")
        if isinstance(action, actions.StopIOThread):
            try:
                self._run(action.member, f.stop_io_thread())
            except Exception as exc:  # noqa: BLE001 - a replica that vanished cannot acknowledge either
                return ("StopIOThreadSkipped", f"{action.member}: {describe(exc)}")
            return None
        if isinstance(action, actions.StartSQLThread):
            self._run(action.member, f.start_sql_thread())
            return None
        if isinstance(action, actions.WaitRelayApplied):
            rows = self._run(action.member, [(f.replica_status_sql, ())])[0]
            received = f.received(rows[0] if rows else None)
            if received.is_empty():
                return None
            self._wait(action.member, received.position_text(), action.timeout, "its relay log")
            return None
        if isinstance(action, actions.CatchUp):
            position = self._executed(action.source)
            self._wait(action.member, position, action.timeout, f"everything {action.source} has ({position})")
            return None
        if isinstance(action, actions.Detach):
            self._run(action.member, f.reset_replication())
            return ("Detached", f"{action.member} no longer replicates")
        if isinstance(action, actions.ReplicateFrom):
            source = self.members[action.source]
            self._run(action.member, f.replicate_from(
                source.host, source.port, creds.replication_user, creds.replication_password,
                policy.heartbeat_seconds, action.adopt_binlog_position, action.reset_applier))
            return ("ReplicationConfigured", f"{action.member} replicates from {action.source}")
        if isinstance(action, actions.StopReplication):
            self._run(action.member, f.stop_replication())
            return ("ReplicationStopped", f"{action.member} stopped replicating (errant transactions)")
        if isinstance(action, actions.EnsureUsers):
            self._run(action.member, f.ensure_users(creds.replication_user, creds.replication_password,
                                                    creds.operator_user, creds.operator_password))
            return ("UsersEnsured", f"replication and operator accounts exist on {action.member}")
        if isinstance(action, actions.SetSemiSync):
            statements = f.set_semi_sync(action.source, action.replica, int(policy.semi_sync_timeout * 1000),
                                         policy.semi_sync_wait_count)
            if action.restart_io:
                statements += f.restart_io_thread()
            self._run(action.member, statements)
            return None
        if isinstance(action, actions.Clone):
            donor = self.members[action.donor]
            self._run(action.member, f.clone_from(donor.host, donor.port, creds.operator_user, creds.operator_password,
                                                  action.directory), read_timeout=CLONE_TIMEOUT)
            return (DatabaseEvent.CLONED, f"{action.member} copied {action.donor}'s data into {action.directory}")
        if isinstance(action, actions.InstallLeaseFence):
            self._run(action.member, lease.install(f, policy) if action.enabled else lease.uninstall(f))
            return None
        if isinstance(action, actions.RenewLease):
            self._run(action.member, lease.renew(policy.lease_seconds, f))
            result.lease_renewed_at = self.ops.monotonic()
            return None
        if isinstance(action, actions.AwaitLeaseExpiry):
            if action.old_primary not in self._fenced and action.seconds > 0:
                self.ops.sleep(action.seconds)
                return ("LeaseExpired", f"waited {action.seconds:.2f}s for {action.old_primary}'s lease to lapse")
            return None
        raise TypeError(f"unknown action {action!r}")

    def _kill_clients(self, member: str) -> int:
        """Kill the fenced member's application sessions (flavor.clients_to_kill); how many. A
        session that ended meanwhile is no failure."""
        rows = self._run(member, [self.flavor.sessions_sql()])[0]
        keep = (self.credentials.operator_user, self.credentials.replication_user)
        killed = 0
        for session in clients_to_kill(rows, keep):
            try:
                self._run(member, [("KILL CONNECTION %s", (session,))])
                killed += 1
            except Exception:  # noqa: BLE001 - gone already
                pass
        return killed

    def _concurrently(self, group: actions.Concurrently, result: ActResult) -> Event | None:
        """Each action in its own thread; fails if any one fails. The plan groups actions on
        different members only, and Ops allows concurrent calls for different members."""
        def run(action: actions.Action) -> tuple[actions.Action, Event | None, Exception | None]:
            try:
                return action, self._do(action, result), None
            except Exception as exc:  # noqa: BLE001
                return action, None, exc

        with ThreadPoolExecutor(max_workers=len(group.actions)) as pool:
            outcomes = list(pool.map(run, group.actions))
        for action, event, exc in outcomes:
            if exc is not None:
                raise ActionFailed(f"{_label(action)}: {describe(exc)}")
            if event:
                result.events.append(event)
        return None

    def _executed(self, name: str) -> str:
        return self.ops.executed(self.members[name]).position_text()

    def _wait(self, name: str, position: str, timeout: float, what: str) -> None:
        if not self.ops.wait_for_executed(self.members[name], position, timeout):
            raise ActionFailed(f"{name} did not apply {what} within {timeout:.0f}s")



def _label(action: actions.Action) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in vars(action).items())
    return f"{type(action).__name__}({fields})"


def execute(actions: Sequence[actions.Action], members: Sequence[Member], flavor: Flavor, credentials: Credentials,
            policy: Policy, before_action: Callable[[actions.Action], None] | None = None,
            ops: Ops | None = None) -> ActResult:
    """Executor(...).execute(actions): see both."""
    return Executor(members, flavor, credentials, policy, before_action, ops).execute(actions)


__all__ = ["ActResult", "ActionFailed", "Executor", "execute"]
