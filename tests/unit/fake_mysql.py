"""An in-memory fleet of MySQL or MariaDB servers: the Ops the unit tier runs the clustering loop on.

    fleet = FakeFleet("mariadb", 3, policy)
    cluster = Cluster("mariadb", credentials, policy, ops=fleet)
    result = cluster.step(fleet.members, primary, memory, now=fleet.now)

runs the real gather -> classify -> plan -> act (MOCO's pattern: its clustering tests run the
manager against a mock dbop.Operator). The loop reaches the servers only through Ops, and the
fake answers in each flavor's own words: the variables, status and replica-status columns
observe.state_from reads, and the statements flavor.py and lease.py emit, interpreted.

What it simulates, where the loop's safety depends on it:
- GTIDs in each flavor's form, held in the package's gtid classes. MySQL: `uuid:n`, one
  gtid_executed set, auto-positioning (the source sends what the replica lacks). MariaDB:
  `domain-server_id-seq_no` under gtid_strict_mode (a replica refuses, with 1950, to binlog a
  seq_no not above its newest, and ignores its own server_id's; START SLAVE refuses, with
  1947/1948, a gtid_slave_pos behind the server's own binlog), gtid_binlog_state/_pos,
  gtid_slave_pos (where a replica asks to start, what MASTER_GTID_WAIT waits for; 1236 when
  the source's binlog lacks it), gtid_current_pos.
- A binlog per server, with replicated transactions in it (log_slave_updates); a replica's IO
  thread fetches into a relay log, its SQL thread applies it.
- read_only and (MySQL) super_read_only: clients are refused by either; the operator's own
  writes only by super_read_only (1290), as on the real servers.
- The replication source and the IO (Yes / Connecting / No) and SQL thread states, errors.
- Semi-sync: a commit on a source with semi-sync on is acknowledged when enough replicas
  registered as semi-sync (when their IO thread started) fetched it at commit time.
- The lease: its database, table and renewal (NOW(6) + INTERVAL), the event that, every
  second while event_scheduler is on, fences its server when writable with the lease lapsed
  (running the fence statements found in the event body) - the cut-off event only when no
  replica's dump thread is there or a commit has waited a second or more for its
  acknowledgement (dump threads outlive a partition, as on real servers) - DROP EVENT. The
  event runs at the worst moment of each second by default (lease_event_phase).
- Accounts: created by the bootstrap, replicated, and checked when an IO thread logs in.
- Crashes and restarts (back read-only, replication threads stopped, source-side semi-sync
  off: the server settings; optionally without its last transactions), partitions between
  servers and between the operator and a server.
- Time: a simulated clock (`now`); the executor's sleeps and waits advance it, the lease
  events fire on it; nothing waits for real time.

What it does not: any SQL but those statements (any other raises UnknownStatement, so a flavor
change cannot pass unnoticed); client data (a write is its GTID); replication as time passes
(replicas make progress when the test calls replicate(), or while the loop waits for them);
an IO thread that has not yet noticed a dead source (slave_net_timeout); a semi-sync commit
that gives up waiting (it stays unacknowledged: the pessimistic reading); binlog purging,
several domains or channels, connection loss in the middle of a statement list.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql

from hakeeper.replicateddatabase.clustering import lease
from hakeeper.replicateddatabase.clustering.flavor import Flavor, Statement, flavor_for
from hakeeper.replicateddatabase.clustering.gtid import GtidSet, MariaDBGtidList
from hakeeper.replicateddatabase.clustering.members import Member, MemberState
from hakeeper.replicateddatabase.clustering.observe import state_from
from hakeeper.replicateddatabase.clustering.ops import Rows, describe
from hakeeper.replicateddatabase.clustering.policy import Policy

EPOCH = 1_700_000_000.0
"""Where the simulated clock starts (epoch seconds, so history timestamps look like dates)."""
OPERATOR_SIDE = "main"
DOMAIN = 0


class UnknownStatement(BaseException):
    """A statement the fake does not simulate. A BaseException: the executor turns an Exception
    into a failed action, which a test could overlook; this ends the test."""


class SplitBrain(BaseException):
    """A statement would make a server writable while another running one (reachable or not)
    would acknowledge a client's commit (FakeFleet.acknowledging). A BaseException for the same
    reason as UnknownStatement."""


def _error(code: int, message: str) -> pymysql.err.OperationalError:
    # What pymysql raises for a server error, so describe() renders it as for real servers.
    return pymysql.err.OperationalError(code, message)


def _on(value: bool) -> str:
    return "ON" if value else "OFF"


@dataclass(frozen=True)
class Entry:
    """One binlogged transaction: its GTID, and an account it sets when applied
    (user, password, replace: ALTER USER replaces, CREATE USER IF NOT EXISTS does not)."""

    gtid: str
    account: tuple[str, str, bool] | None = None


@dataclass
class Channel:
    """A replica's connection to its source (CHANGE MASTER / CHANGE REPLICATION SOURCE)."""

    host: str
    port: int
    user: str
    password: str
    io: bool = False
    """The IO thread is started (it may still be connecting)."""
    sql: bool = False
    semi_sync: bool = False
    """Registered as a semi-sync replica: rpl_semi_sync_*_enabled was on when the IO thread started."""
    relay: list[Entry] = field(default_factory=list)
    """Fetched, not yet applied."""
    fetched: list[str] = field(default_factory=list)
    """Every GTID fetched on this channel (Retrieved_Gtid_Set / Gtid_IO_Pos)."""
    io_error: tuple[int, str] | None = None
    sql_error: tuple[int, str] | None = None


@dataclass
class FakeServer:
    """One simulated server. Tests read it, and set the knobs: fetch_paused (its IO thread
    fetches nothing: a slow link), apply_lags (its SQL thread applies only while the loop
    waits for it: a busy applier), apply_paused (it applies nothing, waited for or not: a
    delayed replica), lag_seconds (what Seconds_Behind reports while it replicates)."""

    member: Member
    server_id: int
    settings: dict[str, str]
    """What the StatefulSet starts it with (flavor.settings_for); a restart returns to these."""
    up: bool = True
    side: str = OPERATOR_SIDE
    """Servers on the same side of a partition reach each other; the operator is on OPERATOR_SIDE."""
    operator_link: bool = True
    read_only: bool = True
    super_read_only: bool = False
    event_scheduler: bool = False
    semi_sync_source: bool = False
    semi_sync_replica: bool = False
    semi_sync_timeout_ms: int = 10000
    semi_sync_wait_count: int = 1
    binlog: list[Entry] = field(default_factory=list)
    slave_pos: str = ""
    """MariaDB's gtid_slave_pos (one domain): the last replicated GTID applied."""
    accounts: dict[str, str] = field(default_factory=lambda: {"root": ""})
    schemas: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)
    events: dict[str, tuple[float, tuple[str, ...]]] = field(default_factory=dict)
    """Event name -> (created at, the fence statements of its body)."""
    lease_expires: float | None = None
    channel: Channel | None = None
    fetch_paused: bool = False
    apply_lags: bool = False
    apply_paused: bool = False
    lag_seconds: float = 0.0
    client_sessions: dict[int, str] = field(default_factory=dict)
    """Connected application sessions, id -> account, which a fence must kill; the processlist
    also shows a replica's dump thread (id 7) and a server thread (id 1), never to be killed."""
    killed_threads: list[int] = field(default_factory=list)
    """Ids KILLed that were no client session (a replica's dump thread, a server thread)."""
    waiting_since: float | None = None
    """When the oldest commit still waiting for its semi-sync acknowledgement began waiting
    (its client has no answer yet); None when none waits."""
    semi_sync_fallen_back: bool = False
    """A source whose commit waited out rpl_semi_sync_*_timeout: asynchronous (status OFF) until
    a semi-sync replica has caught up (MySQL 8.4 Reference Manual 19.4.10)."""

    @property
    def name(self) -> str:
        """The member's name."""
        return self.member.name

    @property
    def uuid(self) -> str:
        """server_uuid (MySQL), derived from server_id so runs are reproducible."""
        return f"{self.server_id:08x}-0000-4000-8000-{self.server_id:012x}"

    @property
    def writable(self) -> bool:
        """Running and accepting client writes."""
        return self.up and not self.read_only

    def gtids(self) -> list[str]:
        """The binlog's GTIDs, oldest first."""
        return [e.gtid for e in self.binlog]


class FakeFleet:
    """`size` simulated servers of `flavor` named db-0..db-N, fresh (no data, read-only, not
    replicating) with the settings flavor.settings_for(policy, 101 + ordinal) gives them.

    Implements clustering.ops.Ops for the loop, and offers tests the rest: write (a client's
    commit), inject (an administrator's local commit: how errant transactions are born),
    replicate, advance (the clock), crash/restart, partition/cut_operator/heal, and readings
    (server, writable, gtid_set, has_all, holds, follows). Thread-safe (the loop probes in threads)."""

    def __init__(self, flavor: str, size: int = 3, policy: Policy | None = None) -> None:
        self.flavor: Flavor = flavor_for(flavor)
        self.mysql = self.flavor.name == "mysql"
        self.policy = policy or Policy()
        self.now = EPOCH
        self.lease_event_phase = 0.999
        """Seconds into each second (after its creation) at which a server's lease event runs;
        0.999, the worst case: a lease that lapses just after a run is acted on ~1 s late."""
        self.members = [Member(f"db-{i}", f"10.0.40.{i + 1}") for i in range(size)]
        self.servers = {m.name: FakeServer(m, 101 + i, self.flavor.settings_for(self.policy, 101 + i))
                        for i, m in enumerate(self.members)}
        for s in self.servers.values():
            self._apply_settings(s)
        self.acknowledged: list[str] = []
        """GTIDs of client commits that were acknowledged, in order: what must never be lost."""
        self.transitions: list[tuple[float, str, bool]] = []
        """(time, server, writable) whenever a server's read_only changed."""
        self.log: list[tuple[float, str, str]] = []
        """(time, server, statement) of every statement run: what to print when a test fails."""
        self._sessions: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._handlers = self._statement_handlers()

    # ------------------------------------------------------------------ Ops
    def gather(self, member: Member) -> MemberState:
        """Ops.gather: the server's answers as observe.state_from reads them."""
        with self._lock:
            s = self.servers[member.name]
            if not self._operator_reaches(s):
                return MemberState(name=member.name, reachable=False, error=describe(self._unreachable(s)))
            return state_from(member.name, self.flavor, self._variables(s), self._status(s), self._replica_row(s),
                              lease.event_name(self.policy) in s.events)

    def run(self, member: Member, statements: Sequence[Statement], read_timeout: float | None = None) -> list[Rows]:
        """Ops.run: interpret the statements in a session of their own (kept until close() or a
        failure, as PyMySQLOps keeps its connection); read_timeout is ignored (nothing blocks).
        Raises pymysql's OperationalError for what a server refuses, UnknownStatement for what
        the fake does not know, SplitBrain when a second server would take writes."""
        with self._lock:
            s = self.servers[member.name]
            if not self._operator_reaches(s):
                self._sessions.pop(member.name, None)
                raise self._unreachable(s)
            session = self._sessions.setdefault(member.name, {"sql_log_bin": True})
            results = []
            try:
                for sql, args in statements:
                    results.append(self._execute(s, session, sql, tuple(args)))
            except pymysql.err.MySQLError:
                self._sessions.pop(member.name, None)
                raise
            return results

    def executed(self, member: Member) -> GtidSet:
        """Ops.executed."""
        with self._lock:
            s = self.servers[member.name]
            if not self._operator_reaches(s):
                raise self._unreachable(s)
            return self.gtid_set(member.name)

    def wait_for_executed(self, member: Member, position: str, timeout: float) -> bool:
        """Ops.wait_for_executed: the server's threads run while it waits (replication moves on,
        unless paused); when that is not enough the clock advances by `timeout`."""
        with self._lock:
            s = self.servers[member.name]
            if not self._operator_reaches(s):
                raise self._unreachable(s)
            self._fetch(s)
            self._apply(s, waited=True)
            if self._reached(s, position):
                return True
            self.advance(timeout)
            return False

    def monotonic(self) -> float:
        """Ops.monotonic: the simulated clock."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Ops.sleep: advance the simulated clock."""
        self.advance(seconds)

    def close(self) -> None:
        """Ops.close: the sessions end (user variables and sql_log_bin with them)."""
        with self._lock:
            self._sessions.clear()

    # ------------------------------------------------------------------ what tests do
    def server(self, name: str) -> FakeServer:
        """The simulated server `name` (KeyError for another name)."""
        return self.servers[name]

    def write(self, name: str, count: int = 1, wait_timeout: bool = False) -> list[str]:
        """`count` client commits on `name`; returns the GTIDs acknowledged (also appended to
        self.acknowledged). A commit semi-sync cannot get acknowledged stays in the server's
        binlog, unacknowledged (the client is still waiting) - unless wait_timeout: then the
        client waits out the semi-sync timeout (the clock advances), the server falls back to
        asynchronous replication and acknowledges it, and the following commits at once. Raises
        OperationalError 2003 when the server is down, 1290 when it is read-only."""
        with self._lock:
            s = self.servers[name]
            if not s.up:
                raise self._unreachable(s)
            if s.read_only:
                option = "super-read-only" if s.super_read_only else "read-only"
                raise _error(1290, f"The {self._product} server is running with the --{option} option so it "
                                   "cannot execute this statement")
            acked = []
            for _ in range(count):
                entry = self._commit(s)
                if self._acknowledged(s, entry):
                    acked.append(entry.gtid)
                    continue
                if s.waiting_since is None:
                    s.waiting_since = self.now  # its client waits for the acknowledgement
                if wait_timeout:
                    self.advance(s.semi_sync_timeout_ms / 1000)
                    if s.read_only:
                        break  # its lease event killed the waiting client and fenced the server
                    s.semi_sync_fallen_back = True
                    s.waiting_since = None
                    acked.append(entry.gtid)
            self.acknowledged += acked
            return acked

    def inject(self, name: str, count: int = 1) -> list[str]:
        """`count` local commits by an administrator on a running server, read-only or not: the
        GTIDs (of this server's own) that make a replica errant."""
        with self._lock:
            s = self.servers[name]
            assert s.up, f"{name} is down"
            return [self._commit(s).gtid for _ in range(count)]

    def replicate(self) -> None:
        """Every replica fetches what it can reach and applies it, unless paused or lagging; as
        many rounds as there are servers, so replicas of replicas catch up too."""
        with self._lock:
            for _ in range(len(self.servers) + 1):
                for s in self.servers.values():
                    self._fetch(s)
                    self._apply(s)
            for s in self.servers.values():
                caught_up = len(self._semi_sync_replicas(s, caught_up=True))
                if s.semi_sync_fallen_back and caught_up:
                    s.semi_sync_fallen_back = False  # a semi-sync replica caught up: synchronous again
                if s.waiting_since is not None and caught_up >= self._acks_needed(s):
                    s.waiting_since = None  # the waiting commits got their acknowledgements

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass: every running server's lease event runs once a second (at
        lease_event_phase into each second since its creation) and fences the server if it is
        writable and its lease has lapsed (or was never written) by then."""
        with self._lock:
            end = self.now + max(0.0, seconds)
            fires = []
            for s in self.servers.values():
                if not (s.up and s.event_scheduler and not s.read_only and "hakeeper.lease" in s.tables):
                    continue
                for created, fence, cut_off in s.events.values():
                    first = created + self.lease_event_phase
                    # the first run after now at which the lease has lapsed (expires > NOW(6) false,
                    # or no lease row); the epsilon keeps float noise from moving a run a second later
                    k = max(0, math.floor(self.now - first) + 1)
                    if s.lease_expires is not None:
                        k = max(k, math.ceil(s.lease_expires - first - 1e-9))
                    if cut_off and self._dump_connected(s):
                        # a replica is connected: only a commit waiting a second or more fences
                        if s.waiting_since is None:
                            continue
                        k = max(k, math.ceil(s.waiting_since + 1 - first - 1e-9))
                    if first + k <= end:
                        fires.append((first + k, s.name, fence))
            # fencing one server changes nothing for another: the order only dates the transitions
            for tick, name, fence in sorted(fires):
                self.now = tick
                self.servers[name].waiting_since = None  # KILL CONNECTION of every waiter
                for sql in fence:
                    self._execute(self.servers[name], {"sql_log_bin": True}, sql, ())
            self.now = end

    def crash(self, name: str) -> None:
        """kill -9: the server stops answering anyone; its data stays."""
        with self._lock:
            self.servers[name].up = False
            self.servers[name].waiting_since = None
            self._sessions.pop(name, None)

    def restart(self, name: str, lose_last: int = 0) -> None:
        """Start a crashed server with its settings: read-only, replication threads stopped
        (skip_slave_start), source-side semi-sync off. lose_last: transactions of its binlog's
        tail it comes back without (MariaDB's crash recovery cuts a tail whose engine commit
        was not durable)."""
        with self._lock:
            s = self.servers[name]
            assert not s.up, f"{name} is running"
            was_read_only = s.read_only
            if lose_last:
                del s.binlog[-lose_last:]
            s.up = True
            s.semi_sync_fallen_back = False
            self._apply_settings(s)
            if s.read_only and not was_read_only:
                self.transitions.append((self.now, name, False))
            if s.channel is not None:
                ch = s.channel
                ch.io = ch.sql = ch.semi_sync = False
                ch.io_error = ch.sql_error = None

    def partition(self, *names: str) -> None:
        """Cut `names` off from the operator and from every other server (they still reach each
        other and keep running)."""
        with self._lock:
            for name in names:
                self.servers[name].side = "island:" + ",".join(names)

    def cut_operator(self, name: str) -> None:
        """Only the operator loses `name`; the other servers still reach it."""
        with self._lock:
            self.servers[name].operator_link = False

    def heal(self) -> None:
        """Every link is back."""
        with self._lock:
            for s in self.servers.values():
                s.side, s.operator_link = OPERATOR_SIDE, True

    def acknowledging(self) -> list[str]:
        """Writable servers that would acknowledge a client's commit now: asynchronous ones, and
        semi-synchronous ones that enough registered replicas reach. A writable server cut off
        from its replicas is not one: its commits wait (and its lease event kills them)."""
        with self._lock:
            return [s.name for s in self.servers.values() if s.writable and (
                not s.semi_sync_source or s.semi_sync_fallen_back
                or len(self._semi_sync_replicas(s)) >= self._acks_needed(s))]

    def _semi_sync_replicas(self, s: FakeServer, caught_up: bool = False) -> list[FakeServer]:
        """The replicas registered as semi-sync at `s` whose IO thread reaches it (those that can
        acknowledge its commits); with caught_up, only those that fetched its whole binlog."""
        return [r for r in self.servers.values()
                if r is not s and r.channel is not None and r.channel.semi_sync and self._source(r) is s
                and self._io_state(r) == "Yes"
                and (not caught_up or set(s.gtids()) <= set(r.gtids()) | set(r.channel.fetched))]

    def _acks_needed(self, s: FakeServer) -> int:
        return s.semi_sync_wait_count if self.mysql else 1

    def writable(self) -> list[str]:
        """Running servers that accept client writes, partitioned or not."""
        with self._lock:
            return [s.name for s in self.servers.values() if s.writable]

    def gtid_set(self, name: str) -> GtidSet:
        """Everything `name` has applied, as the flavor reads it from the server's variables."""
        with self._lock:
            return self.flavor.executed(self._all_variables(self.servers[name]))

    def has_all(self, name: str, gtids: Iterable[str]) -> bool:
        """`name` has applied every one of `gtids`."""
        wanted = self.flavor.gtid_type.parse(",".join(gtids))  # type: ignore[attr-defined]
        return self.gtid_set(name).contains(wanted)

    def holds(self, name: str, gtids: Iterable[str]) -> bool:
        """`name` has applied or fetched every one of `gtids` (what a semi-sync ack promises)."""
        with self._lock:
            s = self.servers[name]
            fetched = ",".join(s.channel.fetched) if s.channel is not None else ""
            have = self.gtid_set(name).union(self.flavor.gtid_type.parse(fetched))  # type: ignore[attr-defined]
            return have.contains(self.flavor.gtid_type.parse(",".join(gtids)))  # type: ignore[attr-defined]

    def follows(self, name: str, source: str) -> bool:
        """`name` is read-only and replicates from `source` with both threads running."""
        with self._lock:
            s, src = self.servers[name], self.servers[source]
            ch = s.channel
            return (s.read_only and ch is not None and (ch.host, ch.port) == (src.member.host, src.member.port)
                    and self._io_state(s) == "Yes" and ch.sql)

    # ------------------------------------------------------------------ the servers' side
    @property
    def _product(self) -> str:
        return "MySQL" if self.mysql else "MariaDB"

    @property
    def _replica_word(self) -> str:
        return "REPLICA" if self.mysql else "SLAVE"

    @property
    def _semi(self) -> tuple[str, str]:
        return ("rpl_semi_sync_source", "rpl_semi_sync_replica") if self.mysql else (
            "rpl_semi_sync_master", "rpl_semi_sync_slave")

    def _apply_settings(self, s: FakeServer) -> None:
        source, replica = self._semi
        flags = s.settings
        s.read_only = flags.get("read_only") == "ON"
        s.super_read_only = flags.get("super_read_only") == "ON"
        s.event_scheduler = flags.get("event_scheduler") == "ON"
        s.semi_sync_source = flags.get(f"{source}_enabled") == "ON"
        s.semi_sync_replica = flags.get(f"{replica}_enabled") == "ON"
        s.semi_sync_timeout_ms = int(flags.get(f"{source}_timeout", "10000"))
        s.semi_sync_wait_count = int(flags.get("rpl_semi_sync_source_wait_for_replica_count", "1"))

    def _operator_reaches(self, s: FakeServer) -> bool:
        return s.up and s.operator_link and s.side == OPERATOR_SIDE

    def _linked(self, a: FakeServer, b: FakeServer) -> bool:
        return a.up and b.up and a.side == b.side

    def _unreachable(self, s: FakeServer) -> pymysql.err.OperationalError:
        return _error(2003, f"Can't connect to MySQL server on '{s.member.host}' (timed out)")

    def _source(self, s: FakeServer) -> FakeServer | None:
        ch = s.channel
        if ch is None:
            return None
        return next((o for o in self.servers.values() if (o.member.host, o.member.port) == (ch.host, ch.port)), None)

    def _dump_connected(self, s: FakeServer) -> bool:
        """A replica's connection shows on `s` (a dump thread): its IO thread was started at s
        and its server runs. A partition does not end it: the source notices a silent replica
        only when TCP gives up, minutes later."""
        return any(r is not s and r.up and r.channel is not None and r.channel.io and self._source(r) is s
                   for r in self.servers.values())

    def _io_state(self, s: FakeServer) -> str:
        ch = s.channel
        if ch is None or not ch.io:
            return "No"
        source = self._source(s)
        if source is None or not self._linked(s, source) or ch.io_error:
            return "Connecting"
        return "Yes"

    # GTIDs ---------------------------------------------------------------
    def _newest_seq(self, s: FakeServer) -> int:
        seqs = [int(g.split("-")[2]) for g in s.gtids() + ([s.slave_pos] if s.slave_pos else [])]
        return max(seqs, default=0)

    def _commit(self, s: FakeServer, account: tuple[str, str, bool] | None = None) -> Entry:
        if self.mysql:
            mine = [int(g.split(":")[-1]) for g in s.gtids() if g.startswith(s.uuid + ":")]
            gtid = f"{s.uuid}:{max(mine, default=0) + 1}"
        else:
            gtid = f"{DOMAIN}-{s.server_id}-{self._newest_seq(s) + 1}"
        entry = Entry(gtid, account)
        s.binlog.append(entry)
        return entry

    def _reached(self, s: FakeServer, position: str) -> bool:
        if not position:
            return True
        if self.mysql:
            return self.gtid_set(s.name).contains(self.flavor.gtid_type.parse(position))  # type: ignore[attr-defined]
        # MASTER_GTID_WAIT: gtid_slave_pos has the same or a higher seq_no in every domain given.
        have = MariaDBGtidList.parse(s.slave_pos).domain_positions()
        return all(have.get(d, (0, 0))[1] >= seq for d, (_, seq) in
                   MariaDBGtidList.parse(position).domain_positions().items())

    def _acknowledged(self, s: FakeServer, entry: Entry) -> bool:
        if not s.semi_sync_source or s.semi_sync_fallen_back:
            return True  # asynchronous: the client has its OK at once
        acks = 0
        for r in self.servers.values():
            if r is s or r.channel is None or not r.channel.semi_sync or self._source(r) is not s:
                continue
            self._fetch(r)
            acks += entry.gtid in r.channel.fetched
        return acks >= self._acks_needed(s)

    # replication -----------------------------------------------------------
    def _fetch(self, s: FakeServer) -> None:
        ch = s.channel
        if ch is None or not ch.io or not s.up or s.fetch_paused:
            return
        source = self._source(s)
        if source is None or not self._linked(s, source):
            return
        if source.accounts.get(ch.user) != ch.password:
            ch.io_error = (1045, (f"error connecting to master '{ch.user}@{ch.host}:{ch.port}' - retry-time: 1 "
                                  f"message: Access denied for user '{ch.user}'@'{s.member.host}' (using password: "
                                  "YES)"))
            return
        ch.io_error = None
        if self.mysql:
            have = set(s.gtids()) | set(ch.fetched)
            new = [e for e in source.binlog if e.gtid not in have]
        else:
            start = ch.fetched[-1] if ch.fetched else s.slave_pos
            theirs = source.gtids()
            if start and start not in theirs:
                ch.io, ch.semi_sync = False, False
                ch.io_error = (1236, ("Got fatal error 1236 from master when reading data from binary log: 'Error: "
                                      f"connecting slave requested to start from GTID {start}, which is not in the "
                                      "master's binlog'"))
                return
            new = source.binlog[theirs.index(start) + 1:] if start else list(source.binlog)
        ch.relay += new
        ch.fetched += [e.gtid for e in new]

    def _apply(self, s: FakeServer, waited: bool = False) -> None:
        ch = s.channel
        if ch is None or not ch.sql or not s.up or s.apply_paused or (s.apply_lags and not waited):
            return
        while ch.relay:
            entry = ch.relay[0]
            mine = s.gtids()
            # MySQL skips what it has; MariaDB ignores its own server_id's (replicate_same_server_id off)
            skip = entry.gtid in mine if self.mysql else entry.gtid.split("-")[1] == str(s.server_id)
            if not skip:
                if not self.mysql and int(entry.gtid.split("-")[2]) <= self._newest_seq(s):
                    ch.sql = False
                    ch.sql_error = (1950, (f"An attempt was made to binlog GTID {entry.gtid} which would create an "
                                           f"out-of-order sequence number with existing GTID {mine[-1]}, and gtid "
                                           "strict mode is enabled"))
                    return
                s.binlog.append(entry)
                if entry.account is not None:
                    user, password, replace = entry.account
                    if replace or user not in s.accounts:
                        s.accounts[user] = password
            if not self.mysql:
                s.slave_pos = entry.gtid
            ch.relay.pop(0)

    # what the server reports -------------------------------------------------
    def _all_variables(self, s: FakeServer) -> dict[str, str]:
        source, replica = self._semi
        out = {
            "server_id": str(s.server_id), "read_only": _on(s.read_only), "event_scheduler": _on(s.event_scheduler),
            f"{source}_enabled": _on(s.semi_sync_source), f"{replica}_enabled": _on(s.semi_sync_replica),
            f"{source}_timeout": str(s.semi_sync_timeout_ms),
        }
        gtids = ",".join(s.gtids())
        if self.mysql:
            out.update({"server_uuid": s.uuid, "super_read_only": _on(s.super_read_only),
                        "gtid_executed": str(self.flavor.gtid_type.parse(gtids)),  # type: ignore[attr-defined]
                        "rpl_semi_sync_source_wait_for_replica_count": str(s.semi_sync_wait_count)})
        else:
            state = MariaDBGtidList.parse(gtids)
            binlog_pos = state.position_text()
            own_last = bool(s.binlog) and s.binlog[-1].gtid.split("-")[1] == str(s.server_id)
            out.update({"gtid_binlog_state": str(state), "gtid_binlog_pos": binlog_pos, "gtid_slave_pos": s.slave_pos,
                        "gtid_current_pos": binlog_pos if own_last or not s.slave_pos else s.slave_pos})
        return out

    def _variables(self, s: FakeServer) -> dict[str, str]:
        return self._only(self._all_variables(s), self.flavor.variables, "variables")

    def _status(self, s: FakeServer) -> dict[str, str]:
        source, replica = (name.capitalize() for name in self._semi)
        clients = sum(1 for r in self.servers.values() if r.channel is not None and r.channel.semi_sync
                      and self._source(r) is s and self._io_state(r) == "Yes")
        registered = s.channel is not None and s.channel.semi_sync and self._io_state(s) == "Yes"
        return self._only({f"{source}_status": _on(s.semi_sync_source and not s.semi_sync_fallen_back),
                           f"{source}_clients": str(clients),
                           f"{replica}_status": _on(registered)}, self.flavor.status_variables, "status variables")

    def _only(self, values: dict[str, str], names: tuple[str, ...], what: str) -> dict[str, str]:
        missing = set(names) - set(values)
        if missing:
            raise UnknownStatement(f"the flavor reads {what} the fake does not simulate: {sorted(missing)}")
        return {k: values[k] for k in names}

    def _replica_row(self, s: FakeServer) -> dict[str, Any] | None:
        ch = s.channel
        if ch is None:
            return None
        c = self.flavor.columns
        io = self._io_state(s)
        io_error = ch.io_error
        if io == "Connecting" and io_error is None:
            io_error = (2003, f"error reconnecting to master '{ch.user}@{ch.host}:{ch.port}' - retry-time: 1")
        fetched = self.flavor.gtid_type.parse(",".join(ch.fetched))  # type: ignore[attr-defined]
        return {
            c.source_host: ch.host, c.source_port: ch.port, c.io_running: io, c.sql_running: "Yes" if ch.sql else "No",
            c.seconds_behind: s.lag_seconds if ch.sql and (io == "Yes" or ch.relay) else None,
            c.received: str(fetched) if self.mysql else fetched.position_text(),
            c.last_io_errno: io_error[0] if io_error else 0, c.last_io_error: io_error[1] if io_error else "",
            c.last_sql_errno: ch.sql_error[0] if ch.sql_error else 0,
            c.last_sql_error: ch.sql_error[1] if ch.sql_error else "",
        }

    # statements ---------------------------------------------------------------
    def _statement_handlers(self) -> list[tuple[re.Pattern[str], Callable[..., Rows | None]]]:
        word, (source, replica) = self._replica_word, self._semi
        table: list[tuple[str, Callable[..., Rows | None]]] = [
            ("SET SESSION sql_log_bin = {bit}", self._sql_log_bin),
            ("SET GLOBAL read_only = {onoff}", lambda s, session, m, args: self._set_read_only(s, m[1] == "ON")),
            (f"STOP {word}", lambda s, session, m, args: self._stop(s, io=True, sql=True)),
            (f"STOP {word} IO_THREAD", lambda s, session, m, args: self._stop(s, io=True, sql=False)),
            (f"START {word}", lambda s, session, m, args: self._start(s, io=True, sql=True)),
            (f"START {word} IO_THREAD", lambda s, session, m, args: self._start(s, io=True, sql=False)),
            (f"START {word} SQL_THREAD", lambda s, session, m, args: self._start(s, io=False, sql=True)),
            (f"RESET {word} ALL", self._reset),
            # the applier's position only (the CHANGE after it deletes the relay log anyway)
            (f"RESET {word}", lambda s, session, m, args: self._running(s)),
            ("CHANGE REPLICATION SOURCE TO {rest}" if self.mysql else "CHANGE MASTER TO {rest}", self._change),
            (f"SHOW {word} STATUS", self._show_replica_status),
            (f"SET GLOBAL {source}_enabled = {{onoff}}",
             lambda s, session, m, args: self._set_semi_sync_source(s, m[1] == "ON")),
            (f"SET GLOBAL {replica}_enabled = {{onoff}}",
             lambda s, session, m, args: setattr(s, "semi_sync_replica", m[1] == "ON")),
            (f"SET GLOBAL {source}_timeout = %s",
             lambda s, session, m, args: setattr(s, "semi_sync_timeout_ms", int(args[0]))),
            ("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", self._create_user),
            ("ALTER USER %s@'%%' IDENTIFIED BY %s", self._alter_user),
            ("GRANT REPLICATION SLAVE ON *.* TO %s@'%%'", self._grant),
            ("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", self._grant),
            ("CREATE DATABASE IF NOT EXISTS hakeeper", self._create_schema),
            (("CREATE TABLE IF NOT EXISTS hakeeper.lease (id TINYINT PRIMARY KEY, expires DATETIME(6) NOT NULL) "
              "ENGINE=InnoDB"), self._create_lease_table),
            ("CREATE EVENT IF NOT EXISTS hakeeper.{word} ON SCHEDULE EVERY 1 SECOND COMMENT {rest}",
             self._create_event),
            ("DROP EVENT IF EXISTS hakeeper.{word}", self._drop_event),
            ("SET GLOBAL event_scheduler = {onoff}",
             lambda s, session, m, args: setattr(s, "event_scheduler", m[1] == "ON")),
            ("REPLACE INTO hakeeper.lease (id, expires) VALUES (1, NOW(6) + INTERVAL %s MICROSECOND)", self._renew),
        ]
        if self.mysql:
            table += [
                ("SET GLOBAL super_read_only = {onoff}",
                 lambda s, session, m, args: self._set_super_read_only(s, m[1] == "ON")),
                ("SET @hakeeper_super_read_only = @@GLOBAL.super_read_only",
                 lambda s, session, m, args: session.update(saved_super_read_only=s.super_read_only)),
                ("SET GLOBAL super_read_only = @hakeeper_super_read_only", self._restore_super_read_only),
                ("SET GLOBAL rpl_semi_sync_source_wait_for_replica_count = %s",
                 lambda s, session, m, args: setattr(s, "semi_sync_wait_count", int(args[0]))),
            ]
        else:
            table.append(("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_current_pos", self._adopt_current_pos))
        table.append((self.flavor.sessions_sql()[0], lambda s, session, m, args: [
            {"id": i, "user": user, "command": "Sleep"} for i, user in sorted(s.client_sessions.items())]
            + [{"id": 7, "user": "repl", "command": "Binlog Dump GTID"}, {"id": 1, "user": "system user",
                                                                          "command": "Daemon"}]))
        table.append(("KILL CONNECTION %s", self._kill))
        return [(_pattern(template), handler) for template, handler in table]

    def _execute(self, s: FakeServer, session: dict[str, Any], sql: str, args: tuple[Any, ...]) -> Rows:
        try:
            sql % tuple("?" for _ in args)  # pymysql formats every statement run with args, () included
        except (TypeError, ValueError) as exc:
            raise UnknownStatement(f"{sql!r} with {len(args)} args would not format: {exc}") from None
        text = " ".join(sql.split())
        self.log.append((self.now, s.name, text))
        for pattern, handler in self._handlers:
            m = pattern.fullmatch(text)
            if m:
                return handler(s, session, m, args) or []
        raise UnknownStatement(f"{self.flavor.name}: {text[:300]!r}")

    def _show_replica_status(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> Rows:
        row = self._replica_row(s)
        return [row] if row is not None else []

    def _sql_log_bin(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        session["sql_log_bin"] = m[1] == "1"

    def _set_semi_sync_source(self, s: FakeServer, on: bool) -> None:
        s.semi_sync_source = on
        if not on:
            s.semi_sync_fallen_back = False  # switched off: switched on again, it starts synchronous

    def _set_read_only(self, s: FakeServer, on: bool) -> None:
        if on:
            self._set_writable(s, False)
        else:
            self._set_writable(s, True)
            s.super_read_only = False  # MySQL: read_only off takes super_read_only with it

    def _set_super_read_only(self, s: FakeServer, on: bool) -> None:
        s.super_read_only = on
        if on:
            self._set_writable(s, False)  # super_read_only on implies read_only on

    def _restore_super_read_only(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        if "saved_super_read_only" not in session:
            raise _error(1231, "Variable 'super_read_only' can't be set to the value of 'NULL'")
        self._set_super_read_only(s, session["saved_super_read_only"])

    def _set_writable(self, s: FakeServer, writable: bool) -> None:
        if writable and s.read_only:
            others = [name for name in self.acknowledging() if name != s.name]
            if others:
                raise SplitBrain(f"{s.name} opened for writes at {self.now - EPOCH:.2f}s while {others} acknowledge "
                                 "writes too")
        if s.read_only == writable:
            self.transitions.append((self.now, s.name, writable))
        s.read_only = not writable

    def _operator_write(self, s: FakeServer, session: dict[str, Any],
                        account: tuple[str, str, bool] | None = None) -> None:
        if s.super_read_only:
            raise _error(1290, "The MySQL server is running with the --super-read-only option so it cannot "
                               "execute this statement")
        if session.get("sql_log_bin", True):
            self._commit(s, account)

    def _stop(self, s: FakeServer, io: bool, sql: bool) -> None:
        ch = s.channel
        if ch is None:
            return  # a warning on the real servers
        if io:
            ch.io = ch.semi_sync = False
        if sql:
            ch.sql = False

    def _start(self, s: FakeServer, io: bool, sql: bool) -> None:
        ch = s.channel
        if ch is None:
            raise _error(1200, "The server is not configured as slave; fix in config file or with CHANGE MASTER TO")
        if io and not ch.io:
            if not self.mysql:
                self._check_slave_pos(s)
            ch.io, ch.io_error, ch.semi_sync = True, None, s.semi_sync_replica
        if sql and not ch.sql:
            ch.sql, ch.sql_error = True, None

    def _check_slave_pos(self, s: FakeServer) -> None:
        # gtid_strict_mode: replicating from gtid_slave_pos must not bypass the server's own binlog
        if not s.binlog:
            return
        newest = s.binlog[-1].gtid
        if not s.slave_pos:
            raise _error(1948, f"Specified value for @@gtid_slave_pos contains no value for replication domain "
                               f"{DOMAIN}. This conflicts with the binary log which contains GTID {newest}. If "
                               "MASTER_GTID_POS=CURRENT_POS is used, the binlog position will override the new value "
                               "of @@gtid_slave_pos")
        if int(newest.split("-")[2]) > int(s.slave_pos.split("-")[2]):
            raise _error(1947, f"Specified GTID {s.slave_pos} conflicts with the binary log which contains a more "
                               f"recent GTID {newest}. If MASTER_GTID_POS=CURRENT_POS is used, the binlog position "
                               "will override the new value of @@gtid_slave_pos")

    def _running(self, s: FakeServer) -> None:
        if s.channel is not None and (s.channel.io or s.channel.sql):
            raise _error(1198, f"This operation cannot be performed as you have a running slave ''; run STOP "
                               f"{self._replica_word} '' first")

    def _reset(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        self._running(s)
        s.channel = None

    def _change(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        self._running(s)
        prefix = "SOURCE" if self.mysql else "MASTER"
        values = list(args)
        options: dict[str, Any] = {}
        for option in m[1].split(", "):
            key, _, value = option.partition(" = ")
            options[key] = values.pop(0) if value == "%s" else value
        gtid = {"SOURCE_AUTO_POSITION": "1"} if self.mysql else {"MASTER_USE_GTID": "slave_pos"}
        known = {f"{prefix}_{k}" for k in ("HOST", "PORT", "USER", "PASSWORD", "CONNECT_RETRY", "HEARTBEAT_PERIOD")}
        known |= set(gtid) | ({"GET_SOURCE_PUBLIC_KEY"} if self.mysql else set())
        if set(options) - known or any(options.get(k) != v for k, v in gtid.items()):
            raise UnknownStatement(f"only GTID replication with these options is simulated: {options}")
        float(options[f"{prefix}_HEARTBEAT_PERIOD"])  # a plain decimal literal, or ValueError
        s.channel = Channel(str(options[f"{prefix}_HOST"]), int(options[f"{prefix}_PORT"]),
                            str(options[f"{prefix}_USER"]), str(options[f"{prefix}_PASSWORD"]))

    def _kill(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        if s.client_sessions.pop(int(args[0]), None) is None:
            s.killed_threads.append(int(args[0]))

    def _adopt_current_pos(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        self._running(s)
        s.slave_pos = self._all_variables(s)["gtid_current_pos"]

    def _create_user(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        user, password = args
        self._operator_write(s, session, (user, password, False))
        s.accounts.setdefault(user, password)

    def _alter_user(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        user, password = args
        if user not in s.accounts:
            raise _error(1396, f"Operation ALTER USER failed for '{user}'@'%'")
        self._operator_write(s, session, (user, password, True))
        s.accounts[user] = password

    def _grant(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        if args[0] not in s.accounts:
            raise _error(1410, "You are not allowed to create a user with GRANT")
        self._operator_write(s, session)

    def _create_schema(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        self._operator_write(s, session)
        s.schemas.add("hakeeper")

    def _create_lease_table(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        if "hakeeper" not in s.schemas:
            raise _error(1049, "Unknown database 'hakeeper'")
        self._operator_write(s, session)
        s.tables.add("hakeeper.lease")

    def _create_event(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        if "hakeeper" not in s.schemas:
            raise _error(1049, "Unknown database 'hakeeper'")
        body = m[2]
        lapsed = ("IF @@GLOBAL.read_only = 0 AND NOT EXISTS ( SELECT 1 FROM hakeeper.lease WHERE id = 1 AND "
                  "expires > NOW(6))")
        cut_off = (" AND ( NOT EXISTS (SELECT 1 FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog "
                   "Dump%%') OR EXISTS (SELECT 1 FROM information_schema.PROCESSLIST WHERE STATE LIKE 'Waiting for "
                   "semi-sync ACK%%' AND TIME >= 1))")
        when = {lapsed + " THEN": False, lapsed + cut_off + " THEN": True}
        checks = ("SELECT ID FROM information_schema.PROCESSLIST WHERE STATE LIKE 'Waiting for semi-sync ACK%%'",
                  "KILL CONNECTION waiter;")
        condition = next((c for c in when if c in body), None)
        fence = re.search(r"CLOSE waiters; (.*?) END IF; END$", body)
        if fence is None or condition is None or not all(c in body for c in checks):
            raise UnknownStatement(f"a lease event body the fake does not simulate: {body!r}")
        statements = tuple(part.strip() for part in fence[1].split(";") if part.strip())
        for sql in statements:
            if not any(p.fullmatch(sql) for p, _ in self._handlers):
                raise UnknownStatement(f"the lease event fences with {sql!r}")
        self._operator_write(s, session)
        s.events.setdefault(m[1], (self.now, statements, when[condition]))

    def _drop_event(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        self._operator_write(s, session)
        s.events.pop(m[1], None)

    def _renew(self, s: FakeServer, session: dict[str, Any], m: re.Match[str], args: tuple) -> None:
        if "hakeeper.lease" not in s.tables:
            raise _error(1146, "Table 'hakeeper.lease' doesn't exist")
        self._operator_write(s, session)
        s.lease_expires = self.now + int(args[0]) / 1_000_000


_SLOTS = {"{onoff}": "(ON|OFF)", "{bit}": "([01])", "{word}": r"(\w+)", "{rest}": "(.*)"}


def _pattern(template: str) -> re.Pattern[str]:
    """A statement template (whitespace folded; %s and %% as the flavor writes them) as a regex
    whose groups are the {slots}."""
    parts = re.split("(" + "|".join(re.escape(s) for s in _SLOTS) + ")", template)
    return re.compile("".join(_SLOTS.get(p, re.escape(p)) for p in parts), re.DOTALL)


__all__ = ["EPOCH", "Channel", "Entry", "FakeFleet", "FakeServer", "SplitBrain", "UnknownStatement"]
