"""The clustering loop's side of the database integration tests, for both flavors.

The members themselves are mysql_support.PodFleet: servers started from the images exactly
as the StatefulSet starts them (the shipped my.cnf, the init container's accounts). Here is
what plays around them:

- ServerProcess and Members: the bases of a member (a server process, root's queries to it)
  and of a fleet (started in parallel, stopped whatever happened);
- NetnsLink: a network namespace joined to the host by a veth pair, so a test can cut a
  member's network while its server keeps running;
- LoopDriver and bootstrap: the controller's part (Cluster.step every probeInterval, the
  primary and the loop's memory persisted between steps, the -primary Service's address);
- Writer: the application, and what it was told (stored_ids, replica_status, follows read
  what the servers have).

(The module's name is older than MySQL's support; bench/failover imports it too.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymysql

from hakeeper.replicateddatabase.clustering import Cluster, LoopMemory, Member, Policy, StepResult
from hakeeper.replicateddatabase.clustering.flavor import flavor_for

from ..support import writer
from ..support.netns import add_namespace, delete_namespace, ip

if TYPE_CHECKING:
    from .mysql_support import Pod, PodFleet

APP_USER, APP_PASSWORD = "app", "app-secret"

_background: list = []  # LoopDriver and Writer threads to stop at teardown


class ServerProcess:
    """A database server running as a child process (`process`), and root's queries to it
    over the connection the subclass opens (_root_connection)."""

    process: subprocess.Popen | None

    def _root_connection(self, **kwargs: Any) -> pymysql.Connection:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown, no flush; what a crashed node looks like (and what the e2e
        tier does to a container's process)."""
        if self.running:
            os.kill(self.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
            self.process.wait(timeout=30)  # type: ignore[union-attr]

    def stop(self) -> None:
        """SIGTERM, and kill -9 after 60 s."""
        if self.running:
            self.process.terminate()  # type: ignore[union-attr]
            try:
                self.process.wait(timeout=60)  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self.kill()

    def query(self, sql: str, args: tuple | None = None) -> list[dict]:
        """The rows of one statement as root, each a dict by column name."""
        with self._root_connection(cursorclass=pymysql.cursors.DictCursor) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def value(self, sql: str, args: tuple | None = None) -> object:
        """The first column of the first row of one statement as root; None for no rows."""
        rows = self.query(sql, args)
        return next(iter(rows[0].values())) if rows else None


class Members:
    """Database servers started in parallel; close() stops every one, whatever happened.

    Subclasses set `instances` (each with start(), kill() and a name) and `base` (their
    directory, removed by close())."""

    instances: list
    base: Path

    def start(self):
        self._errors: list[BaseException] = []
        threads = [threading.Thread(target=self._start_one, args=(m,)) for m in self.instances]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self._errors:
            raise self._errors[0]
        return self

    def _start_one(self, member: Any) -> None:
        try:
            member.start()
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._errors.append(exc)

    def __getitem__(self, index: int) -> Any:
        return self.instances[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.instances)

    def by_name(self, name: str) -> Any:
        return next(m for m in self.instances if m.name == name)

    def close(self) -> None:
        for member in self.instances:
            member.kill()
        shutil.rmtree(self.base, ignore_errors=True)


# --------------------------------------------------------------------- network namespace

class NetnsLink:
    """A network namespace joined to the host by a veth pair.

    Inside: `inner_ip` on the veth, routes to `host_net` (where the host-side members
    listen, on `lo`) through the veth. Outside: `outer_ip` on the veth. cut() downs the
    host side of the pair: both directions go silent (no reset), like a real partition.
    """

    def __init__(self, name: str, outer_ip: str, inner_ip: str, host_net: str, host_ips: list[str]) -> None:
        self.name, self.outer_ip, self.inner_ip = name, outer_ip, inner_ip
        self.host_net, self.host_ips = host_net, host_ips
        self.outer_dev, self.inner_dev = f"{name}-o", f"{name}-i"
        self.created = False

    def create(self) -> NetnsLink:
        self.destroy()
        add_namespace(self.name)
        self.created = True
        ip("link", "add", self.outer_dev, "type", "veth", "peer", "name", self.inner_dev)
        ip("link", "set", self.inner_dev, "netns", self.name)
        ip("addr", "add", f"{self.outer_ip}/30", "dev", self.outer_dev)
        ip("link", "set", self.outer_dev, "up")
        ip("addr", "add", f"{self.inner_ip}/30", "dev", self.inner_dev, netns=self.name)
        ip("link", "set", self.inner_dev, "up", netns=self.name)
        ip("link", "set", "lo", "up", netns=self.name)
        ip("route", "add", self.host_net, "via", self.outer_ip, netns=self.name)
        for addr in self.host_ips:
            ip("addr", "add", f"{addr}/32", "dev", "lo")
        return self

    def cut(self) -> None:
        ip("link", "set", self.outer_dev, "down")

    def heal(self) -> None:
        ip("link", "set", self.outer_dev, "up")

    def destroy(self) -> None:
        for addr in self.host_ips:
            ip("addr", "del", f"{addr}/32", "dev", "lo", check=False)
        ip("link", "del", self.outer_dev, check=False)
        delete_namespace(self.name)
        self.created = False


# ------------------------------------------------------------------- the loop, and a client

@dataclass
class Observed:
    started: float
    ended: float
    result: StepResult


class LoopDriver:
    """Plays the controller: calls Cluster.step every probeInterval, persists primary and
    memory between steps, and publishes the primary's address the way the -primary Service
    would (writers look it up before each connection)."""

    def __init__(self, fleet: PodFleet, policy: Policy, cluster: Cluster | None = None) -> None:
        self.fleet, self.policy = fleet, policy
        # the fleet's flavor, and the credentials its init container gave the accounts
        self.cluster = cluster or Cluster(fleet.flavor, fleet.credentials, policy)
        self.members = [Member(i.name, i.host, i.port) for i in fleet]
        self.primary: str | None = None
        self.memory = LoopMemory()
        self.switchover_target: str | None = None
        self.force_target: str | None = None
        """The force-failover annotation: dropped once a step used or ignored it."""
        self.observed: list[Observed] = []
        self.clock: Callable[[], float] = time.time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def last(self) -> StepResult:
        return self.observed[-1].result

    def primary_host(self) -> str | None:
        return self.fleet.by_name(self.primary).host if self.primary else None

    def step(self) -> StepResult:
        started = time.monotonic()
        result = self.cluster.step(self.members, self.primary, self.memory, now=self.clock(),
                                   switchover_target=self.switchover_target, force_target=self.force_target)
        # Persist first, then "move the label" (the Service): the controller's order.
        self.memory, self.primary = result.memory, result.primary
        if result.force is not None:
            self.force_target = None
        self.observed.append(Observed(started, time.monotonic(), result))
        return result

    def run_until(self, predicate: Callable[[StepResult], bool], timeout: float, what: str = "condition") -> StepResult:
        deadline = time.monotonic() + timeout
        while True:
            started = time.monotonic()
            result = self.step()
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"loop: timed out after {timeout}s waiting for {what}; last: {result.state} "
                                   f"{result.reason} error={result.error}")
            time.sleep(max(0.0, self.policy.probe_interval - (time.monotonic() - started)))

    # background mode: the daemon
    def start(self) -> LoopDriver:
        _background.append(self)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="loop", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                self.step()
                self._stop.wait(max(0.0, self.policy.probe_interval - (time.monotonic() - started)))
        except BaseException as exc:  # noqa: BLE001 - surfaced by wait()/stop()
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.error is not None:
            raise self.error

    def wait(self, predicate: Callable[[StepResult], bool], timeout: float, what: str = "condition") -> StepResult:
        """Background mode: wait for a step whose result satisfies predicate."""
        seen = len(self.observed)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            while seen < len(self.observed):
                result = self.observed[seen].result
                seen += 1
                if predicate(result):
                    return result
            time.sleep(0.02)
        last = self.observed[-1].result if self.observed else None
        raise TimeoutError(f"loop: timed out after {timeout}s waiting for {what}; last: "
                           f"{last and (last.state, last.reason, last.error)}")


def bootstrap(fleet: PodFleet, policy: Policy) -> LoopDriver:
    """A healthy cluster with an application schema and account (a client without SUPER or
    READ_ONLY ADMIN, so read_only applies to it)."""
    loop = LoopDriver(fleet, policy)
    loop.run_until(lambda r: r.state == "Healthy", 30, "a healthy new cluster")
    p = fleet.by_name(loop.primary)  # type: ignore[arg-type]
    for sql, args in [
        ("CREATE DATABASE IF NOT EXISTS hk", None),
        ("CREATE TABLE IF NOT EXISTS hk.writes (id BIGINT PRIMARY KEY, at DOUBLE NOT NULL)", None),
        ("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (APP_USER, APP_PASSWORD)),
        ("GRANT SELECT, INSERT ON hk.* TO %s@'%%'", (APP_USER,)),
    ]:
        p.query(sql, args)
    loop.run_until(lambda r: r.state == "Healthy" and all(
        i.value("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'hk'") == 1 for i in fleet),
        30, "the schema on every member")
    return loop


def app_connect(host: str, timeout: float = 1.0) -> pymysql.Connection:
    return pymysql.connect(host=host, user=APP_USER, password=APP_PASSWORD, autocommit=True,
                           connect_timeout=timeout, read_timeout=2 * timeout + 1, write_timeout=2 * timeout + 1)


class Writer(writer.Writer):
    """The application of this tier (tests.support.writer.Writer): INSERTs (id, now) into
    hk.writes as APP_USER, one id after another, against wherever endpoint() points (the
    -primary Service: LoopDriver.primary_host), `pause` seconds apart; stopped by
    stop_background() at the end of a test."""

    def __init__(self, endpoint: Callable[[], str | None], pause: float = 0.004) -> None:
        super().__init__(endpoint, app_connect, "INSERT INTO hk.writes (id, at) VALUES (%s, %s)",
                         params=lambda i: (i, time.time()), pause=pause)
        _background.append(self)


def stored_ids(member: ServerProcess) -> set[int]:
    return {int(r["id"]) for r in member.query("SELECT id FROM hk.writes")}


def replica_status(member: Pod) -> dict:
    """SHOW SLAVE STATUS (MariaDB) / SHOW REPLICA STATUS (MySQL): {} when not a replica."""
    rows = member.query(flavor_for(member.flavor).replica_status_sql)
    return rows[0] if rows else {}


def follows(fleet: Members, member: str, primary: str) -> bool:
    """`member` replicates from `primary` (both replication threads running) and is read-only,
    in the words of its flavor. Raises pymysql errors when a server does not answer."""
    replica, source = fleet.by_name(member), fleet.by_name(primary)
    c = flavor_for(replica.flavor).columns
    row = replica_status(replica)
    return (row.get(c.source_host) == source.host and row.get(c.io_running) == "Yes"
            and row.get(c.sql_running) == "Yes" and replica.value("SELECT @@read_only") == 1)


def stop_background() -> None:
    """Stop every loop and writer thread a test started, even when it failed half-way."""
    while _background:
        worker = _background.pop()
        try:
            worker.stop()
        except BaseException:  # noqa: BLE001 - the test already reported what went wrong
            pass
