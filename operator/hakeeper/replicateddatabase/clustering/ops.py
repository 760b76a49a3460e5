"""The loop's only way to the servers: the Ops interface and PyMySQLOps, its pymysql implementation.

This is the one module of the package that imports pymysql. observe reads the servers' answers
into MemberStates (pure); loop.Cluster probes through Ops.gather and act.Executor acts through
the rest, so the unit tier runs the whole loop against an in-memory Ops
(tests/unit/fake_mysql.py: MOCO's pattern, its dbop.Operator and the clustering mock) and the
integration tier runs it against real servers through PyMySQLOps.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import pymysql
import pymysql.connections
import pymysql.cursors

from hakeeper.replicateddatabase.clustering import lease
from hakeeper.replicateddatabase.clustering.flavor import Flavor, Statement
from hakeeper.replicateddatabase.clustering.gtid import GtidSet
from hakeeper.replicateddatabase.clustering.members import Credentials, Member, MemberState
from hakeeper.replicateddatabase.clustering.observe import LEASE_EVENT, state_from
from hakeeper.replicateddatabase.clustering.policy import Policy

ACCESS_DENIED = 1045

Rows = list[dict[str, Any]]
"""One statement's result set: a dict per row, column name -> value."""


class Ops(Protocol):
    """What the loop does to members, one member per call.

    Calls for different members may run at the same time (the loop probes in parallel, the
    executor runs a Concurrently group in threads); calls for the same member never do.
    Failures are raised as exceptions (pymysql's, for PyMySQLOps), which describe() renders.
    """

    def gather(self, member: Member) -> MemberState:
        """Probe one member. Never raises: an unreachable member is a MemberState with
        reachable=False and the error text."""
        ...

    def run(self, member: Member, statements: Sequence[Statement],
            read_timeout: float | None = None) -> list[Rows]:
        """Run a flavor's statements in order in one session on `member`: one result set per
        statement (empty for statements without one). read_timeout: seconds one statement may
        block (None: the implementation's default). Raises on the first statement that fails."""
        ...

    def executed(self, member: Member) -> GtidSet:
        """Every transaction `member` has applied (the flavor's GTID set). Raises when unreachable."""
        ...

    def wait_for_executed(self, member: Member, position: str, timeout: float) -> bool:
        """Block until `member` has applied `position` (GtidSet.position_text()), at most
        `timeout` seconds: True when applied, False on the timeout. Raises when unreachable."""
        ...

    def monotonic(self) -> float:
        """Seconds on the clock the servers' leases run on (time.monotonic() for real servers).
        The executor takes the lease's renewal time and its action timings from it, so the
        expiry the loop remembers and the one the servers enforce are on one clock."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let `seconds` pass on that clock (a lease lapsing before a promotion)."""
        ...

    def close(self) -> None:
        """Release what run/executed/wait_for_executed kept open; the object stays usable."""
        ...


def _preferred_tls() -> ssl.SSLContext:
    """The context of pymysql's PREFERRED mode (TLS when the server offers it, no certificate
    check: pymysql's `_create_ssl_ctx({})`), built once: building it loads the system's CA
    bundle, a third of the operator's CPU when it was built for every probe (bench/scale)."""
    context = ssl.create_default_context()
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


PREFERRED_TLS = _preferred_tls()


class Connection(pymysql.connections.Connection):
    """pymysql's Connection, its PREFERRED mode on the one shared context (PREFERRED_TLS)."""

    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        return PREFERRED_TLS if not sslp else super()._create_ssl_ctx(sslp)


def connect(member: Member, credentials: Credentials, timeout: float) -> pymysql.Connection:
    """The operator account; root until the bootstrap has created it (a fresh member).

    timeout: connect/read/write timeout in seconds. Raises pymysql's errors (2003 unreachable,
    1045 when neither account is accepted)."""
    common = dict(host=member.host, port=member.port, connect_timeout=timeout, read_timeout=timeout,
                  write_timeout=timeout, autocommit=True, cursorclass=pymysql.cursors.DictCursor)
    try:
        return Connection(user=credentials.operator_user, password=credentials.operator_password, **common)
    except pymysql.err.OperationalError as exc:
        if exc.args[0] != ACCESS_DENIED:
            raise
    return Connection(user=credentials.root_user, password=credentials.root_password, **common)


def gather(member: Member, flavor: Flavor, credentials: Credentials, timeout: float = 1.0,
           lease_event: str = LEASE_EVENT) -> MemberState:
    """Probe one member over a connection of its own (timeout in seconds); never raises: an
    unreachable or failing member is a MemberState with reachable=False and the error.
    lease_event: the name of the lease event the member should have (lease.event_name)."""
    try:
        conn = connect(member, credentials, timeout)
    except Exception as exc:  # noqa: BLE001 - an unreachable member is an observation
        return MemberState(name=member.name, reachable=False, error=describe(exc))
    try:
        with conn.cursor() as cur:
            variables = _variables(cur, "SHOW GLOBAL VARIABLES", flavor.variables)
            status = _variables(cur, "SHOW GLOBAL STATUS", flavor.status_variables)
            cur.execute(flavor.replica_status_sql)
            row = cur.fetchone()
            cur.execute("SELECT COUNT(*) AS n FROM information_schema.EVENTS "
                        "WHERE EVENT_SCHEMA = 'hakeeper' AND EVENT_NAME = %s", (lease_event,))
            lease = bool((cur.fetchone() or {}).get("n"))
        return state_from(member.name, flavor, variables, status, row, lease)
    except Exception as exc:  # noqa: BLE001
        return MemberState(name=member.name, reachable=False, error=describe(exc))
    finally:
        conn.close()


def describe(exc: BaseException) -> str:
    """An error as one line for events and statuses: `errno: message` for a server's error,
    `Type: message` otherwise."""
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        return f"{exc.args[0]}: {exc.args[1]}"
    return f"{type(exc).__name__}: {exc}"


class PyMySQLOps:
    """Ops over pymysql. gather opens and closes a connection per probe; the other calls keep
    one connection per member until close(), and drop it when a call fails (a statement may
    have been cut off half-way; the next call reconnects)."""

    def __init__(self, flavor: Flavor, credentials: Credentials, policy: Policy) -> None:
        self.flavor, self.credentials, self.policy = flavor, credentials, policy
        self._conns: dict[str, pymysql.Connection] = {}

    def gather(self, member: Member) -> MemberState:
        """See Ops.gather; the probe's timeout is policy.probe_timeout."""
        return gather(member, self.flavor, self.credentials, self.policy.probe_timeout,
                      lease.event_name(self.policy))

    def _conn(self, member: Member, read_timeout: float | None = None) -> pymysql.Connection:
        conn = self._conns.get(member.name)
        if conn is None:
            conn = connect(member, self.credentials, self.policy.probe_timeout)
            self._conns[member.name] = conn
        # Waits and fences may legitimately block longer than a probe.
        conn._read_timeout = read_timeout or max(5.0, self.policy.probe_timeout)  # noqa: SLF001
        return conn

    @contextlib.contextmanager
    def _cursor(self, member: Member, read_timeout: float | None = None) -> Iterator[Any]:
        try:
            conn = self._conn(member, read_timeout)
            with conn.cursor() as cur:
                yield cur
        except Exception:
            self._conns.pop(member.name, None)
            raise

    def run(self, member: Member, statements: Sequence[Statement],
            read_timeout: float | None = None) -> list[Rows]:
        """See Ops.run; read_timeout defaults to max(5 s, the probe timeout)."""
        results = []
        with self._cursor(member, read_timeout) as cur:
            for sql, args in statements:
                cur.execute(sql, args)
                results.append(cur.fetchall())
        return results

    def executed(self, member: Member) -> GtidSet:
        """See Ops.executed."""
        with self._cursor(member) as cur:
            variables = _variables(cur, "SHOW GLOBAL VARIABLES", self.flavor.variables)
        return self.flavor.executed(variables)

    def wait_for_executed(self, member: Member, position: str, timeout: float) -> bool:
        """See Ops.wait_for_executed: the flavor's wait function, read timeout 5 s past its own."""
        sql, args = self.flavor.wait_for_executed(position, timeout)
        rows = self.run(member, [(sql, args)], read_timeout=timeout + 5)[0]
        value = next(iter(rows[0].values())) if rows else None
        return self.flavor.wait_succeeded(value)

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """time.sleep(seconds)."""
        time.sleep(seconds)

    def close(self) -> None:
        """Close every kept connection, ignoring errors (the member may be gone)."""
        for conn in self._conns.values():
            with contextlib.suppress(Exception):  # the member may be gone
                conn.close()
        self._conns.clear()


def _variables(cur: Any, statement: str, names: tuple[str, ...]) -> dict[str, str]:
    placeholders = ", ".join(["%s"] * len(names))
    cur.execute(f"{statement} WHERE Variable_name IN ({placeholders})", names)
    return {str(r["Variable_name"]).lower() if statement.endswith("VARIABLES") else str(r["Variable_name"]):
            str(r["Value"]) for r in cur.fetchall()}


__all__ = ["Ops", "PyMySQLOps", "Rows", "connect", "describe", "gather"]
