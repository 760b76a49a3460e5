"""Real mariadbd instances for the integration tests and the failover benchmark.

Each instance has its own datadir, unix socket and log in a temporary directory, listens on
its own address (127.0.40.N:3306 by default) and runs with the settings the operator owns
(hakeeper.replicateddatabase.clustering.flavor.MariaDB.server_settings) plus small memory settings. One datadir is
initialised once per process and copied, since mariadb-install-db takes seconds.

An instance may run inside a network namespace reached through a veth pair, so a test can
cut its network while the process keeps running (see NetnsLink).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from hakeeper.replicateddatabase.clustering import Cluster, Credentials, LoopMemory, Member, Policy, StepResult
from hakeeper.replicateddatabase.clustering.flavor import MariaDB, flavor_for

from ..support import writer
from ..support.netns import add_namespace, delete_namespace, ip
from ..support.polling import poll

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
ROOT_PASSWORD = "root-secret"
REPLICATION_PASSWORD = "repl-secret"
OPERATOR_PASSWORD = "operator-secret"
APP_USER, APP_PASSWORD = "app", "app-secret"

# Small footprint: three instances on two cores next to other test suites.
SMALL = {
    "innodb_buffer_pool_size": "32M",
    "innodb_log_file_size": "16M",
    "performance_schema": "OFF",
    "max_connections": "100",
    "thread_cache_size": "8",
    "key_buffer_size": "1M",
    "table_open_cache": "200",
}

_template_lock = threading.Lock()
_background: list = []  # LoopDriver and Writer threads to stop at teardown
_template_dir: Path | None = None


def _template() -> Path:
    """One initialised datadir per process, copied for every instance."""
    global _template_dir
    with _template_lock:
        if _template_dir is None:
            base = Path(tempfile.mkdtemp(prefix="hk-mariadb-template-"))
            atexit.register(shutil.rmtree, base, True)
            data = base / "data"
            subprocess.run(
                [INSTALL_DB, "--no-defaults", f"--datadir={data}", "--user=root",
                 "--auth-root-authentication-method=normal", "--skip-test-db",
                 "--innodb-log-file-size=16M", "--innodb-buffer-pool-size=32M"],
                check=True, capture_output=True, timeout=120)
            _template_dir = data
        return _template_dir


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


@dataclass
class Instance(ServerProcess):
    index: int
    host: str
    base: Path
    port: int = 3306
    netns: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    process: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"db-{self.index}"

    @property
    def server_id(self) -> int:
        return self.index + 1

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def socket(self) -> str:
        return str(self.base / "mysqld.sock")

    @property
    def log(self) -> Path:
        return self.base / "error.log"

    def prepare(self) -> None:
        if not self.datadir.exists():
            shutil.copytree(_template(), self.datadir)

    def command(self) -> list[str]:
        options = {
            **MariaDB().settings_for(self.policy, self.server_id),
            **SMALL,
            **self.settings,
            "datadir": str(self.datadir),
            "socket": self.socket,
            "pid_file": str(self.base / "mysqld.pid"),
            "log_error": str(self.log),
            "bind_address": self.host,
            "port": str(self.port),
            "user": "root",
        }
        args = [MARIADBD, "--no-defaults"] + [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        if self.netns:
            args = ["ip", "netns", "exec", self.netns] + args
        return args

    def start(self, timeout: float = 60) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} already running"
        self.prepare()
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        try:
            # the server refuses connections until it is up: any error means "not yet"
            poll(self._answers, timeout, what=f"{self.name} to accept connections", interval=0.05, ignore=Exception)
        except AssertionError:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"
            raise TimeoutError(f"{self.name} did not start; log tail:\n{tail}") from None

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; log tail:\n{tail}")
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
        return True

    def admin(self, **kwargs) -> pymysql.Connection:
        """root over the unix socket: reaches the server even when its network is cut."""
        return pymysql.connect(unix_socket=self.socket, user="root", password="", autocommit=True,
                               connect_timeout=2, read_timeout=kwargs.pop("read_timeout", 10), **kwargs)

    _root_connection = admin  # query() and value() go through the unix socket


def seed_users(instance: Instance) -> None:
    """What the image's entrypoint does: a root account reachable over TCP. Not binlogged,
    so every member starts with an empty GTID history."""
    with instance.admin() as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        # mariadb-install-db also makes password-less root@127.0.0.1/::1/<hostname>; the
        # more specific host would win over root@'%' for TCP clients.
        cur.execute("SELECT Host FROM mysql.user WHERE User = 'root' AND Host NOT IN ('localhost', '%')")
        for (host,) in cur.fetchall():
            cur.execute("DROP USER 'root'@%s", (host,))
        cur.execute("CREATE USER IF NOT EXISTS 'root'@'%%' IDENTIFIED BY %s", (ROOT_PASSWORD,))
        cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION")
        cur.execute("RESET MASTER")


class Members:
    """Database servers started in parallel; close() stops every one, whatever happened.

    Subclasses set `instances` (each with start(), kill() and a name) and `base` (their
    directory, removed by close())."""

    instances: list
    base: Path

    def _start_member(self, member: Any) -> None:
        member.start()

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
            self._start_member(member)
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


class Fleet(Members):
    """N mariadbd instances on loopback addresses (or in network namespaces), users seeded."""

    def __init__(self, count: int, prefix: str = "127.0.40", base: Path | None = None,
                 hosts: list[str] | None = None, netns: dict[int, str] | None = None,
                 settings: dict[str, str] | None = None, policy: Policy | None = None) -> None:
        self.base = base or Path(tempfile.mkdtemp(prefix="hk-mariadb-"))
        hosts = hosts or [f"{prefix}.{i + 1}" for i in range(count)]
        self.instances = [
            Instance(index=i, host=hosts[i], base=self.base / f"m{i}", netns=(netns or {}).get(i),
                     settings=dict(settings or {}), policy=policy or Policy(semi_sync=count > 1))
            for i in range(count)
        ]
        for inst in self.instances:
            inst.base.mkdir(parents=True, exist_ok=True)

    def _start_member(self, member: Instance) -> None:
        member.start()
        seed_users(member)


# --------------------------------------------------------------------- network namespace

class NetnsLink:
    """A network namespace joined to the host by a veth pair.

    Inside: `inner_ip` on the veth, routes to `host_net` (where the host-side instances
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

CREDENTIALS = Credentials(ROOT_PASSWORD, REPLICATION_PASSWORD, OPERATOR_PASSWORD)


@dataclass
class Observed:
    started: float
    ended: float
    result: StepResult


class LoopDriver:
    """Plays the controller: calls Cluster.step every probeInterval, persists primary and
    memory between steps, and publishes the primary's address the way the -primary Service
    would (writers look it up before each connection)."""

    def __init__(self, fleet: Fleet, policy: Policy, cluster: Cluster | None = None) -> None:
        self.fleet, self.policy = fleet, policy
        # a fleet may be of either flavor, with its own credentials (mysql_support.PodFleet)
        self.cluster = cluster or Cluster(getattr(fleet, "flavor", "mariadb"),
                                          getattr(fleet, "credentials", CREDENTIALS), policy)
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


def bootstrap(fleet: Fleet, policy: Policy) -> LoopDriver:
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


def stored_ids(instance: Instance) -> set[int]:
    return {int(r["id"]) for r in instance.query("SELECT id FROM hk.writes")}


def replica_status(instance: Instance) -> dict:
    rows = instance.query(flavor_for(getattr(instance, "flavor", "mariadb")).replica_status_sql)
    return rows[0] if rows else {}


def follows(fleet: Members, member: str, primary: str) -> bool:
    """`member` replicates from `primary` (both replication threads running) and is read-only;
    for a Fleet (MariaDB) or a PodFleet of either flavor. Raises pymysql errors when a server
    does not answer."""
    replica, source = fleet.by_name(member), fleet.by_name(primary)
    c = flavor_for(getattr(replica, "flavor", "mariadb")).columns
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


def fleet_fixture(count: int = 3, **kwargs) -> Iterator[Fleet]:
    """Body of the tests' fixtures: start N instances, stop every one (and every thread) afterwards."""
    fleet = Fleet(count, **kwargs)
    try:
        yield fleet.start()
    finally:
        stop_background()
        fleet.close()
