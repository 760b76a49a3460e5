"""Execute a plan's actions over pymysql, in order, stopping at the first that fails.

Every action is idempotent: fencing a fenced member, promoting a promoted one, repointing a
replica that already follows the source are no-ops in effect. A crash between two actions
leaves the cluster in a state the next gather classifies and the next plan continues from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pymysql

from hakeeper.replicateddatabase.clustering import lease
from hakeeper.replicateddatabase.clustering.actions import Action, AwaitLeaseExpiry, CatchUp, Concurrently, Detach, EnsureUsers, Fence, InstallLeaseFence, OpenWrites, RenewLease, ReplicateFrom, SetSemiSync, StartSQLThread, StopIOThread, StopReplication, WaitRelayApplied
from hakeeper.replicateddatabase.clustering.flavor import Flavor, Statement
from hakeeper.replicateddatabase.clustering.members import Credentials, Member
from hakeeper.replicateddatabase.clustering.observe import _describe, _variables, connect
from hakeeper.replicateddatabase.clustering.policy import Policy

Event = tuple[str, str]


class ActionFailed(Exception):
    pass


@dataclass
class ActResult:
    done: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    failed: Action | None = None
    error: str | None = None
    lease_renewed_at: float | None = None
    """time.monotonic() when the primary's lease write was acknowledged."""
    seconds: list[tuple[str, float]] = field(default_factory=list)
    """How long each action took (its class name): where a failover spends its time."""

    @property
    def ok(self) -> bool:
        return self.failed is None


class Executor:
    def __init__(self, members: Sequence[Member], flavor: Flavor, credentials: Credentials, policy: Policy,
                 before_action: Callable[[Action], None] | None = None) -> None:
        self.members = {m.name: m for m in members}
        self.flavor, self.credentials, self.policy = flavor, credentials, policy
        self.before_action = before_action
        self._conns: dict[str, pymysql.Connection] = {}
        self._fenced: set[str] = set()

    # ------------------------------------------------------------------ connections
    def _conn(self, name: str, read_timeout: float | None = None) -> pymysql.Connection:
        conn = self._conns.get(name)
        if conn is None:
            conn = connect(self.members[name], self.credentials, self.policy.probe_timeout)
            self._conns[name] = conn
        # Waits and fences may legitimately block longer than a probe.
        conn._read_timeout = read_timeout or max(5.0, self.policy.probe_timeout)  # noqa: SLF001
        return conn

    def _run(self, name: str, statements: Sequence[Statement], read_timeout: float | None = None) -> list[Any]:
        conn = self._conn(name, read_timeout)
        results = []
        with conn.cursor() as cur:
            for sql, args in statements:
                cur.execute(sql, args)
                results.append(cur.fetchall())
        return results

    def close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - the member may be gone
                pass
        self._conns.clear()

    # ------------------------------------------------------------------ actions
    def execute(self, actions: Sequence[Action]) -> ActResult:
        result = ActResult()
        try:
            for action in actions:
                if self.before_action is not None:
                    self.before_action(action)
                began = time.monotonic()
                try:
                    event = self._do(action, result)
                except Exception as exc:  # noqa: BLE001 - reported, the next step re-plans
                    self._conns.pop(getattr(action, "member", ""), None)
                    result.failed, result.error = action, _describe(exc) if not isinstance(exc, ActionFailed) \
                        else str(exc)
                    result.events.append(("ActionFailed", f"{_label(action)}: {result.error}"))
                    break
                result.done.append(action)
                result.seconds.append((type(action).__name__, time.monotonic() - began))
                if event:
                    result.events.append(event)
        finally:
            self.close()
        return result

    def _do(self, action: Action, result: ActResult) -> Event | None:  # noqa: C901 - one branch per action
        f, creds, policy = self.flavor, self.credentials, self.policy
        if isinstance(action, Concurrently):
            return self._concurrently(action, result)
        if isinstance(action, Fence):
            try:
                self._run(action.member, f.fence(), read_timeout=policy.probe_timeout + 2)
            except Exception as exc:  # noqa: BLE001
                if not action.best_effort:
                    raise
                self._conns.pop(action.member, None)
                return ("FenceSkipped", f"{action.member} unreachable, not fenced directly ({_describe(exc)})")
            self._fenced.add(action.member)
            return ("Fenced", f"{action.member} is read-only")
        if isinstance(action, OpenWrites):
            self._run(action.member, f.open_writes())
            return ("Writable", f"{action.member} accepts writes")
        if isinstance(action, StopIOThread):
            try:
                self._run(action.member, f.stop_io_thread())
            except Exception as exc:  # noqa: BLE001 - a replica that vanished cannot acknowledge either
                self._conns.pop(action.member, None)
                return ("StopIOThreadSkipped", f"{action.member}: {_describe(exc)}")
            return None
        if isinstance(action, StartSQLThread):
            self._run(action.member, f.start_sql_thread())
            return None
        if isinstance(action, WaitRelayApplied):
            rows = self._run(action.member, [(f.replica_status_sql, ())])[0]
            received = f.received(rows[0] if rows else None)
            if received.is_empty():
                return None
            self._wait(action.member, received.position_text(), action.timeout, "its relay log")
            return None
        if isinstance(action, CatchUp):
            position = self._executed(action.source)
            self._wait(action.member, position, action.timeout, f"everything {action.source} has ({position})")
            return None
        if isinstance(action, Detach):
            self._run(action.member, f.reset_replication())
            return ("Detached", f"{action.member} no longer replicates")
        if isinstance(action, ReplicateFrom):
            source = self.members[action.source]
            self._run(action.member, f.replicate_from(
                source.host, source.port, creds.replication_user, creds.replication_password,
                policy.heartbeat_seconds, action.adopt_binlog_position))
            return ("ReplicationConfigured", f"{action.member} replicates from {action.source}")
        if isinstance(action, StopReplication):
            self._run(action.member, f.stop_replication())
            return ("ReplicationStopped", f"{action.member} stopped replicating (errant transactions)")
        if isinstance(action, EnsureUsers):
            self._run(action.member, f.ensure_users(creds.replication_user, creds.replication_password,
                                                    creds.operator_user, creds.operator_password))
            return ("UsersEnsured", f"replication and operator accounts exist on {action.member}")
        if isinstance(action, SetSemiSync):
            statements = f.set_semi_sync(action.source, action.replica, int(policy.semi_sync_timeout * 1000),
                                         policy.semi_sync_wait_count)
            if action.restart_io:
                statements += f.restart_io_thread()
            self._run(action.member, statements)
            return None
        if isinstance(action, InstallLeaseFence):
            self._run(action.member, lease.install(f) if action.enabled else lease.uninstall(f))
            return None
        if isinstance(action, RenewLease):
            self._run(action.member, lease.renew(policy.lease_seconds, f))
            result.lease_renewed_at = time.monotonic()
            return None
        if isinstance(action, AwaitLeaseExpiry):
            if action.old_primary not in self._fenced and action.seconds > 0:
                time.sleep(action.seconds)
                return ("LeaseExpired", f"waited {action.seconds:.2f}s for {action.old_primary}'s lease to lapse")
            return None
        raise TypeError(f"unknown action {action!r}")

    def _concurrently(self, group: Concurrently, result: ActResult) -> Event | None:
        """Each action with its own connection, in its own thread; fails if any one fails."""
        def run(action: Action) -> tuple[Action, Event | None, Exception | None]:
            solo = Executor(list(self.members.values()), self.flavor, self.credentials, self.policy)
            try:
                return action, solo._do(action, result), None  # noqa: SLF001
            except Exception as exc:  # noqa: BLE001
                return action, None, exc
            finally:
                self._fenced |= solo._fenced  # noqa: SLF001
                solo.close()

        with ThreadPoolExecutor(max_workers=len(group.actions)) as pool:
            outcomes = list(pool.map(run, group.actions))
        for action, event, exc in outcomes:
            if exc is not None:
                raise ActionFailed(f"{_label(action)}: {_describe(exc)}")
            if event:
                result.events.append(event)
        return None

    def _executed(self, name: str) -> str:
        conn = self._conn(name)
        with conn.cursor() as cur:
            variables = _variables(cur, "SHOW GLOBAL VARIABLES", self.flavor.variables)
        return self.flavor.executed(variables).position_text()

    def _wait(self, name: str, position: str, timeout: float, what: str) -> None:
        sql, args = self.flavor.wait_for_executed(position, timeout)
        rows = self._run(name, [(sql, args)], read_timeout=timeout + 5)[0]
        value = next(iter(rows[0].values())) if rows else None
        if not self.flavor.wait_succeeded(value):
            raise ActionFailed(f"{name} did not apply {what} within {timeout:.0f}s")


def _label(action: Action) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in vars(action).items())
    return f"{type(action).__name__}({fields})"


def execute(actions: Sequence[Action], members: Sequence[Member], flavor: Flavor, credentials: Credentials,
            policy: Policy, before_action: Callable[[Action], None] | None = None) -> ActResult:
    return Executor(members, flavor, credentials, policy, before_action).execute(actions)


__all__ = ["ActResult", "ActionFailed", "Executor", "execute"]
