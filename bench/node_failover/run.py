"""sysbench through a ReplicatedDatabase's `-primary` Service on the real node, during a failover
and a switchover: what an application that nobody here wrote sees.

The local one-node cluster (hack/localcluster, as the e2e tier starts it), the chart installed
with helm; per flavor (MariaDB 10.11, MySQL 9.7) a 3-member ReplicatedDatabase exactly like the
e2e test's (tests/e2e/test_database_failover._database: probeInterval 1s, failureThreshold 3,
durability Lossless). Debian's sysbench 1.0.20 (`oltp_read_write`, 4 tables of 10000 rows,
4 threads, `--mysql-ignore-errors=all`, a report every second) logs in as the generated
application account (user `app`, no SUPER) to the `-primary` Service's cluster IP, which this
host reaches through kube-proxy, and runs all along while:

1. baseline: nothing happens for two 10 s windows after a 10 s warm-up;
2. failover: the primary's server is SIGKILLed each time the kubelet restarts it (the e2e
   test's crash loop) until the operator has promoted another member;
3. switchover: once all members replicate again, `hakeeper.io/switchover-to=<a replica>`;
4. only when sysbench has not committed again `--recover-timeout` s after an event: its
   sessions sit on a member that is no longer the primary (read-only: every write fails with
   error 1290, none of them is a lost connection, so sysbench never reconnects). The bench then
   kills app's sessions on the other members (as root), which the operator does not do, and
   measures from there.

Per event, from sysbench's per-second lines: the median tps over the 10 s before it; the first
second without a commit after it and the first second with commits after that ("commits
again", measured from the event to the end of that second: 1 s resolution); errors and
reconnects from the event until then; the median tps over the 10 s after that; and the
operator's own view (status.history[0]: kind, from -> to, durationSeconds). The baseline row is
the second quiet window against the first: how much tps varies with nothing happening.

sysbench 1.0.20 linked with libmariadb (Debian's) crashes (SIGSEGV) in its own reconnect after a
lost connection (akopytov/sysbench#527): it runs with reconnect_shim.c preloaded, which does
what the pending fix does (see the file); --unpatched-sysbench runs it as shipped.

    .venv/bin/python bench/node_failover/run.py [--flavors mariadb,mysql] [--window 10]
        [--recover-timeout 60] [--cluster-state DIR] [--unpatched-sysbench]

Needs root (the local node), the tools (hack/build-tools.sh) and the images (hack/imagebuild,
built when missing); installs Debian's sysbench (and gcc, for the shim) when missing.
--cluster-state DIR uses a cluster already started by `python -m localcluster up --state-dir
DIR` (`make cluster-up`) and leaves it running.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import pathlib
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT / "hack"), str(ROOT)]

import pymysql

from tests.e2e.conftest import OPERATOR_NAMESPACE, Cluster
from tests.e2e.test_database_failover import _condition, _database, _pod_ip, _slice_addresses, _status
from tests.support.polling import poll
from tests.support.tools import tools_bin

LABEL = {"mariadb": "MariaDB 10.11", "mysql": "MySQL 9.7"}
# sysbench 1.0.20: "[ 12s ] thds: 4 tps: 80.00 qps: 1600.00 (r/w/o: ...) lat (ms,95%): 87.56 err/s: 0.00 reconn/s: 0.00"
REPORT = re.compile(r"^\[ (\d+)s \] thds: \d+ tps: ([\d.]+) qps: ([\d.]+) .* err/s:? ([\d.]+) reconn/s:? ([\d.]+)")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def apt_install(*packages: str) -> None:
    """As `make debs` does: only what is missing, without recommends."""
    log(f"installing {' '.join(packages)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def client_library() -> str:
    """The MySQL client library sysbench is linked with, and its Debian version."""
    libs = subprocess.run(["ldd", shutil.which("sysbench")], capture_output=True, text=True).stdout
    name = next((w for line in libs.splitlines() for w in line.split() if re.match(r"lib(mariadb|mysqlclient)\.so", w)),
                "?")
    package = {"libmariadb.so.3": "libmariadb3"}.get(name)
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True,
                             text=True).stdout if package else ""
    return f"{name} ({package} {version})" if package else name


def build_shim(workdir: pathlib.Path) -> pathlib.Path:
    if not shutil.which("cc"):
        apt_install("gcc", "libc6-dev")
    shim = workdir / "reconnect_shim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(shim), str(HERE / "reconnect_shim.c"), "-ldl"],
                   check=True)
    return shim


@dataclass
class Second:
    end: float  # monotonic time the report line arrived: the second it covers ends then
    tps: float
    qps: float
    errors: float
    reconnects: float

    @property
    def start(self) -> float:
        return self.end - 1


class Sysbench:
    """`sysbench oltp_read_write ... run` in the background; its per-second reports as they come,
    every line of its output also in `log_path`."""

    def __init__(self, options: list[str], seconds: int, log_path: pathlib.Path, preload: pathlib.Path | None):
        self.seconds: list[Second] = []
        self.other: list[str] = []  # every line that is not a report: warnings, FATAL errors
        self.log = open(log_path, "w")
        env = {**os.environ, **({"LD_PRELOAD": str(preload)} if preload else {})}
        self.proc = subprocess.Popen(
            ["sysbench", "oltp_read_write", *options, f"--time={seconds}", "--report-interval=1",
             "--mysql-ignore-errors=all", "run"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.log.write(line)
            match = REPORT.match(line)
            if match:
                self.seconds.append(Second(time.monotonic(), *(float(g) for g in match.groups()[1:])))
            elif line.strip():
                self.other.append(line.rstrip())

    def running(self) -> bool:
        return self.proc.poll() is None

    def exit(self) -> str:
        """How it ended, when it ended on its own."""
        rc = self.proc.returncode
        if rc is None or rc == -signal.SIGTERM:
            return ""
        return f"sysbench exited on its own: {signal.Signals(-rc).name if rc < 0 else f'rc {rc}'}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        self.log.close()


def within(seconds: list[Second], start: float, end: float) -> list[Second]:
    """The seconds that lie inside [start, end] (0.1 s slack for the report line's own delay)."""
    return [s for s in seconds if s.start >= start - 0.1 and s.end <= end + 0.1]


def median_tps(seconds: list[Second], start: float, end: float) -> float | None:
    tps = [s.tps for s in within(seconds, start, end)]
    return statistics.median(tps) if tps else None


def outage(seconds: list[Second], at: float, stopped_already: bool = False) -> tuple[Second | None, Second | None]:
    """(the first second without a commit that started after `at`, the first second with commits
    after that); None where there is none yet. Seconds that started before `at` are left out:
    they may hold commits from before the event. With `stopped_already` (nothing committed up to
    the event), the second the event fell in is the first without a commit, and any commit in it
    came after the event."""
    if stopped_already:
        stopped = next((s for s in seconds if s.end > at), None)
    else:
        stopped = next((s for s in seconds if s.start >= at - 0.1 and s.tps == 0), None)
    if stopped is None:
        return None, None
    return stopped, next((s for s in seconds if s.start >= stopped.start - 0.1 and s.tps > 0), None)


@dataclass
class Row:
    what: str
    before: float | None
    after: float | None = None
    errors: float = 0
    reconnects: float = 0
    commits_again: str = ""
    operator: str = ""
    recovered: bool = True

    def cells(self) -> list[str]:
        number = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        ratio = f"{self.after / self.before:.2f}" if self.before and self.after is not None else "-"
        return [self.what, number(self.before), number(self.after), ratio, f"{self.errors:.0f}",
                f"{self.reconnects:.0f}", self.commits_again, self.operator]


class Bench:
    """One flavor: its database, its sysbench run and the events; rows() for the table."""

    def __init__(self, cluster: Cluster, flavor: str, args: argparse.Namespace, workdir: pathlib.Path,
                 shim: pathlib.Path | None):
        self.cluster, self.flavor, self.args, self.shim = cluster, flavor, args, shim
        self.namespace = f"bench-{flavor}-{secrets.token_hex(2)}"
        self.log_path = workdir / f"sysbench-{flavor}.log"
        self.notes: list[str] = []

    def status(self) -> dict:
        return _status(self.cluster, self.namespace, "db")

    def history_len(self) -> int:
        return len(self.status().get("history") or [])

    def healthy(self, timeout: float) -> dict | None:
        with contextlib.suppress(AssertionError):
            return poll(lambda: (lambda s: s if _condition(s, "Healthy") else None)(self.status()), timeout,
                        what="all members replicating", interval=1)
        return None

    def secret(self, key: str) -> str:
        data = self.cluster.get("secret", "db-credentials", "-n", self.namespace)["data"]
        return base64.b64decode(data[key]).decode()

    def root(self, member: str) -> pymysql.Connection:
        return pymysql.connect(host=_pod_ip(self.cluster, self.namespace, member), user="root",
                               password=self.secret("root-password"), connect_timeout=5, autocommit=True)

    def database(self) -> str:
        """Creates the ReplicatedDatabase and sysbench's schema; the -primary Service's cluster IP."""
        c = self.cluster
        c.kubectl("create", "namespace", self.namespace)
        c.apply(_database("db", self.flavor), "-n", self.namespace)
        started = time.monotonic()
        c.kubectl("wait", "--for=condition=Ready", "--timeout=300s", "-n", self.namespace, "rdb/db", timeout=320)
        status = self.healthy(240)
        assert status, f"{self.flavor}: not Healthy: {self.status()}"
        primary = status["currentPrimary"]
        log(f"{self.flavor}: Ready and Healthy in {time.monotonic() - started:.0f}s, primary {primary}")
        # the Service follows the role label through the EndpointSlice controller, a moment later
        poll(lambda: _slice_addresses(c, self.namespace, "db-primary") == {_pod_ip(c, self.namespace, primary)},
             60, what="the -primary Service on the primary")
        service_ip = c.get("service", "db-primary", "-n", self.namespace)["spec"]["clusterIP"]

        def connect():
            try:
                return pymysql.connect(host=service_ip, user="app", password=self.secret("application-password"),
                                       connect_timeout=5)
            except pymysql.err.OperationalError as error:
                if error.args[0] != 2003:  # only "can't connect" is kube-proxy's lag
                    raise
                return None

        with poll(connect, 30, what="kube-proxy routing the -primary Service") as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE sbtest")
        return service_ip

    def connection_types(self) -> str:
        """How app's sessions reached the server, as MySQL's performance_schema saw them."""
        with self.root(self.status()["currentPrimary"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT CONNECTION_TYPE, COUNT(*) FROM performance_schema.threads "
                        "WHERE PROCESSLIST_USER = 'app' GROUP BY 1")
            sessions = ", ".join(f"{n} over {kind}" for kind, n in cur.fetchall())
            cur.execute("SELECT DISTINCT plugin FROM mysql.user WHERE user = 'app'")
            plugins = ", ".join(row[0] for row in cur.fetchall())
        return f"the primary saw sysbench's sessions: {sessions}; user app authenticates with {plugins}"

    def write_error(self, member: str) -> str:
        """What a write as user app on `member` gets: what sysbench's sessions there get."""
        try:
            with pymysql.connect(host=_pod_ip(self.cluster, self.namespace, member), user="app",
                                 password=self.secret("application-password"), database="sbtest",
                                 connect_timeout=5) as conn, conn.cursor() as cur:
                cur.execute("UPDATE sbtest1 SET k = k WHERE id = 1")
                conn.commit()
            return "no error"
        except pymysql.err.MySQLError as error:
            return f"error {error.args[0]}" + (f" ({error.args[1]})" if len(error.args) > 1 else "")

    def sessions(self, member: str, kill: bool = False) -> int:
        """How many sessions user app has on `member`; with `kill`, KILL CONNECTION of each."""
        with self.root(member) as conn, conn.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'")
            ids = [row[0] for row in cur.fetchall()]
            for session in ids if kill else []:
                with contextlib.suppress(pymysql.err.OperationalError):  # it ended meanwhile
                    cur.execute(f"KILL CONNECTION {int(session)}")
        return len(ids)

    def event(self, bench: Sysbench, what: str, at: float, history_len: int | None,
              done: Callable[[], bool], stopped_already: bool = False) -> Row:
        """The row for an event that happened at `at` (its before-window ends there): waits for
        `done()` (the operator's part) and for sysbench to commit again after it stopped (or for
        5 s without stopping), at most --recover-timeout s, then for the window after it."""
        window, deadline = self.args.window, at + self.args.recover_timeout
        operator_done = False
        while time.monotonic() < deadline and bench.running():
            operator_done = operator_done or done()
            stopped, again = outage(bench.seconds, at, stopped_already)
            if operator_done and (again or (stopped is None and time.monotonic() > at + 5)):
                break
            time.sleep(0.5)
        stopped, again = outage(bench.seconds, at, stopped_already)
        if not bench.running():
            commits_again, until = bench.exit() or "sysbench stopped", None
        elif stopped is None:
            commits_again, until = "never stopped", at + 5
        elif again is None:
            commits_again, until = f"not within {self.args.recover_timeout:.0f} s", None
        else:
            commits_again, until = f"{again.end - at:.1f} s", again.end
            if not stopped_already:
                commits_again += f" (none for {again.start - stopped.start:.0f} s)"
        if until is not None:
            poll(lambda: any(s.end >= until + window - 0.1 for s in bench.seconds) or not bench.running(),
                 window + 10, what="the window after the event", interval=0.5)
        span = within(bench.seconds, at, until if until is not None else time.monotonic())
        operator = "-"
        if history_len is not None:
            history = self.status().get("history") or []
            operator = "no history entry"
            if len(history) > history_len:
                h = history[0]
                operator = f"{h['kind']} {h.get('from')} -> {h['to']} in {h.get('durationSeconds')} s"
        row = Row(what, median_tps(bench.seconds, at - window, at),
                  median_tps(bench.seconds, until, until + window) if until is not None else None,
                  sum(s.errors for s in span), sum(s.reconnects for s in span), commits_again, operator,
                  recovered=until is not None)
        log(f"{self.flavor}: {' | '.join(row.cells())}")
        return row

    def rows(self) -> list[Row]:
        c, args, window = self.cluster, self.args, self.args.window
        try:
            service_ip = self.database()
            options = ["--db-driver=mysql", f"--mysql-host={service_ip}", "--mysql-port=3306", "--mysql-user=app",
                       f"--mysql-password={self.secret('application-password')}", "--mysql-db=sbtest",
                       f"--tables={args.tables}", f"--table-size={args.table_size}", f"--threads={args.threads}"]
            prepare = subprocess.run(["sysbench", "oltp_read_write", *options, "prepare"], capture_output=True,
                                     text=True, timeout=300)
            if prepare.returncode != 0:
                raise RuntimeError(f"sysbench prepare failed:\n{prepare.stdout[-2000:]}\n{prepare.stderr[-2000:]}")
            bench = Sysbench(options, 3600, self.log_path, self.shim)
            try:
                return self._events(bench, window)
            finally:
                bench.stop()
                fatal = [line for line in bench.other if "FATAL" in line or "ALERT" in line]
                if fatal:
                    self.notes.append("sysbench said: " + " | ".join(fatal[:3]))
                log(f"{self.flavor}: sysbench's output in {self.log_path}")
        finally:
            c.kubectl("delete", "namespace", self.namespace, "--wait=true", "--timeout=120s", check=False, timeout=150)

    def _events(self, bench: Sysbench, window: float) -> list[Row]:
        c = self.cluster
        poll(lambda: bench.seconds or not bench.running(), 60, what="sysbench's first report")
        if not bench.running():
            raise RuntimeError("sysbench stopped:\n" + "\n".join(bench.other[-20:]))
        if self.flavor == "mysql":
            self.notes.append(self.connection_types())
        quiet = bench.seconds[0].start + self.args.warmup + window  # the two quiet windows meet here
        time.sleep(max(0.0, quiet + window - time.monotonic()))
        rows = [Row("no event (baseline): 2nd quiet window vs 1st", median_tps(bench.seconds, quiet - window, quiet),
                    median_tps(bench.seconds, quiet, quiet + window),
                    sum(s.errors for s in within(bench.seconds, quiet, quiet + window)),
                    sum(s.reconnects for s in within(bench.seconds, quiet, quiet + window)))]

        # the failover: SIGKILL of the server each time the kubelet restarts it (its back-off
        # grows from 10 s), so that the same primary cannot simply come back
        old, history_len = self.status()["currentPrimary"], self.history_len()
        log(f"{self.flavor}: kill -9 of {old}'s server, again at each restart, until another member is promoted")
        at = time.monotonic()
        promoted = lambda: self.status().get("currentPrimary") not in (old, None)  # noqa: E731
        if not c.crash_loop(self.namespace, old, self.flavor, promoted, 90):
            self.notes.append(f"no failover within 90 s of the first kill of {old}")
        rows.append(self.event(bench, f"failover: kill -9 {old} (crash loop)", at, history_len, promoted))
        self.unstick(bench, rows, "the failover")
        if not bench.running():
            return rows

        # the switchover, once every member replicates again (a killed MySQL primary holding
        # binlogged but unacknowledged writes may stay out as errant: then without it)
        if not self.healthy(150):
            members = {m["name"]: m.get("role") for m in self.status().get("members") or []}
            self.notes.append(f"not Healthy 150 s after the failover ({members}): switchover without it")
        time.sleep(window)
        status = self.status()
        old, history_len = status["currentPrimary"], len(status.get("history") or [])
        target = next((m["name"] for m in status.get("members") or [] if m["name"] != old and m.get("serving")), None)
        if target is None:
            self.notes.append("no serving replica to switch over to")
            return rows
        log(f"{self.flavor}: switchover {old} -> {target} by annotation")
        at = time.monotonic()
        c.kubectl("annotate", "rdb", "db", "-n", self.namespace, f"hakeeper.io/switchover-to={target}")
        rows.append(self.event(bench, f"switchover: {old} -> {target} (annotation)", at, history_len,
                               lambda: self.status().get("currentPrimary") == target))
        self.unstick(bench, rows, "the switchover")
        return rows

    def unstick(self, bench: Sysbench, rows: list[Row], event: str) -> None:
        """When sysbench did not commit again after `event` (rows[-1]): its sessions are on a
        member that is no longer the primary (the demoted one, or a crashed primary restarted
        read-only before the Service moved), where every write fails (error 1290) and nothing
        makes them reconnect. The bench closes them, as the operator could, and measures from there."""
        if rows[-1].recovered or not bench.running():
            return
        status = self.status()
        stuck = {}
        for member in (m["name"] for m in status.get("members") or [] if m["name"] != status["currentPrimary"]):
            with contextlib.suppress(pymysql.err.OperationalError):  # a member that is down has no session
                if self.sessions(member):
                    stuck[member] = self.write_error(member)
        killed = {member: self.sessions(member, kill=True) for member in stuck}
        errors = "; ".join(f"{m}: {e}" for m, e in stuck.items())
        where = ", ".join(f"{n} on {m}" for m, n in killed.items() if n) or "none found"
        # reconnects since the event mean the sessions were closed (a fence) but came back to
        # the same member: through the -primary Service before it had moved
        again = f"; sysbench's {rows[-1].reconnects:.0f} reconnect(s) since {event} landed there" \
            if rows[-1].reconnects else ""
        self.notes.append(f"{self.args.recover_timeout:.0f} s after {event} sysbench's sessions were still on a "
                          f"member that is not the primary ({where}; a write there as app gets {errors}{again}): "
                          "the bench killed them")
        at = time.monotonic()
        row = self.event(bench, f"bench: KILL app's sessions ({where})", at, None, lambda: True, stopped_already=True)
        row.before = rows[-1].before  # the rate before the event, not the outage
        rows.append(row)


def table(flavor: str, rows: list[Row], notes: list[str], window: float) -> str:
    header = ["event", f"tps before (median {window:.0f} s)", f"tps after (median {window:.0f} s)", "after/before",
              "errors", "reconnects", "commits again after the event", "operator (status.history[0])"]
    lines = [f"\n{LABEL[flavor]}\n", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    if notes:
        lines += [""] + [f"- {n}" for n in notes if n]
    return "\n".join(lines)


class _StateNode:
    """The node of a cluster started by `python -m localcluster up --state-dir DIR`: enough of
    localcluster.node.Node for Cluster.kill_container (a container's host PID)."""

    def __init__(self, state: pathlib.Path):
        self.socket = state / "node" / "containerd" / "containerd.sock"

    def container_pid(self, container_id: str) -> int:
        out = subprocess.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", "tasks", "ls"],
                             capture_output=True, text=True, check=True).stdout
        for line in out.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == container_id.removeprefix("containerd://"):
                return int(fields[1])
        raise LookupError(f"container {container_id} has no running task")


def bench(cluster: Cluster, args: argparse.Namespace, workdir: pathlib.Path, shim: pathlib.Path | None) -> None:
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
    # one operator replica, as the e2e tier installs it
    cluster.helm("upgrade", "--install", "hakeeper", str(ROOT / "charts/hakeeper"), "--namespace",
                 OPERATOR_NAMESPACE, "--create-namespace", "--set", "replicaCount=1", "--wait", "--timeout", "5m")
    try:
        for flavor in args.flavors.split(","):
            one = Bench(cluster, flavor, args, workdir, shim)
            rows = one.rows()
            print(table(flavor, rows, one.notes, args.window), flush=True)
    finally:
        if not args.cluster_state:  # a cluster of one's own keeps its operator
            cluster.helm("uninstall", "hakeeper", "--namespace", OPERATOR_NAMESPACE, "--wait", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavors", default="mariadb,mysql")
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--window", type=float, default=10, help="seconds of tps before and after each event")
    parser.add_argument("--recover-timeout", type=float, default=60,
                        help="seconds after an event to wait for commits again")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tables", type=int, default=4)
    parser.add_argument("--table-size", type=int, default=10000)
    parser.add_argument("--cluster-state", type=pathlib.Path, help="a running `localcluster up` state dir")
    parser.add_argument("--unpatched-sysbench", action="store_true",
                        help="run sysbench without reconnect_shim.so (it crashes at the first lost connection)")
    args = parser.parse_args()
    started = time.monotonic()
    if not shutil.which("sysbench"):
        apt_install("sysbench")
    version = subprocess.run(["sysbench", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="hakeeper-bench-node-failover-"))
    shim = None if args.unpatched_sysbench else build_shim(workdir)
    print(f"{version} (Debian), linked with {client_library()}"
          f"{'' if shim else ', as shipped'}{', with reconnect_shim.c preloaded' if shim else ''}: "
          f"`sysbench oltp_read_write --tables={args.tables} --table-size={args.table_size} --threads={args.threads} "
          f"--report-interval=1 --mysql-ignore-errors=all`, to the -primary Service's cluster IP:3306 as user app, "
          "plain TCP (--mysql-ssl off, its default)", flush=True)
    bin_dir = tools_bin()
    if args.cluster_state:
        bench(Cluster(args.cluster_state / "kubeconfig", bin_dir, _StateNode(args.cluster_state)), args, workdir, shim)
    else:
        from localcluster.pytest_support import cluster_session

        with cluster_session(bin_dir) as local:
            log(f"local cluster up in {local.startup_seconds:.0f}s")
            bench(Cluster(local.kubeconfig, bin_dir, local.node), args, workdir, shim)
    print(f"\n(run took {time.monotonic() - started:.0f}s; sysbench's output in {workdir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
