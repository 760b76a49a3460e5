"""HAProxy's runtime API: read the running servers, plan the commands that bring them to
servers.json, send them; and hitless reloads through the master CLI.

`plan` and the parsers are pure; the rest talks to unix sockets. One command per
connection: the socket answers and closes, so a reply can never be mistaken for the
next command's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import re
import socket
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.configmaps.haproxy import SlotEntry

# srv_admin_state bits (HAProxy's enum srv_admin): forced/inherited/resolution maintenance,
# forced/inherited drain. The "maintenance from the configuration" bit (0x04) is kept by
# HAProxy after a `disabled` server is set ready, so it does not mean maintenance by itself.
T = TypeVar("T")
ADMIN_MAINT = 0x01 | 0x02 | 0x20
ADMIN_DRAIN = 0x08 | 0x10
CHECK_CONFIGURED = 0x02
"""srv_check_state: the server has a health check (HAProxy's CHK_ST_CONFIGURED)."""
OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}
_OK_REPLIES = ("IP changed from", "no need to change", "port changed from")
_SLOT = re.compile(r"^s([0-9]+)$")


class RuntimeApiError(RuntimeError):
    """HAProxy refused a command, or its socket did not answer."""


class ReloadFailed(RuntimeApiError):
    """The master could not start a worker with the new configuration; the old one still runs."""


@dataclasses.dataclass(frozen=True)
class ServerState:
    """One row of `show servers state`."""

    backend: str
    name: str
    id: int
    address: str
    port: int
    op_state: int
    admin_state: int
    weight: int
    """The current (user-set) weight."""
    initial_weight: int
    check_health: int
    check_state: int = 0

    @property
    def checked(self) -> bool:
        """The server has a health check (pools with healthCheck type none have none)."""
        return bool(self.check_state & CHECK_CONFIGURED)

    @property
    def maint(self) -> bool:
        return bool(self.admin_state & ADMIN_MAINT)

    @property
    def draining(self) -> bool:
        return bool(self.admin_state & ADMIN_DRAIN) and not self.maint

    @property
    def admin(self) -> str:
        """maint, drain or ready: the states `set server ... state` sets."""
        return "maint" if self.maint else "drain" if self.draining else "ready"

    @property
    def up(self) -> bool:
        """Taking new requests: running (health checks pass) and in neither maint nor drain."""
        return self.op_state == 2 and self.admin == "ready"

    @property
    def slot(self) -> int | None:
        match = _SLOT.match(self.name)
        return int(match[1]) if match else None


@dataclasses.dataclass(frozen=True)
class Processes:
    """`show proc` of the master CLI."""

    master_pid: int
    reloads: int
    failed_reloads: int
    workers: tuple[int, ...]
    old_workers: tuple[int, ...]


# -- pure: parsing and planning -----------------------------------------------------------

def parse_servers_state(text: str) -> list[ServerState]:
    """Rows of `show servers state` (format version 1), by the column names of its header."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1":
        raise RuntimeApiError(f"unexpected `show servers state` reply: {text[:200]!r}")
    columns: list[str] = []
    rows = []
    for line in lines[1:]:
        if line.startswith("#"):
            columns = line.lstrip("# ").split()
            continue
        values = dict(zip(columns, line.split(), strict=False))  # later HAProxy versions append columns
        try:
            rows.append(ServerState(
                backend=values["be_name"], name=values["srv_name"], id=int(values["srv_id"]),
                address=values["srv_addr"], port=int(values["srv_port"]),
                op_state=int(values["srv_op_state"]), admin_state=int(values["srv_admin_state"]),
                weight=int(values["srv_uweight"]), initial_weight=int(values["srv_iweight"]),
                check_health=int(values["srv_check_health"]), check_state=int(values.get("srv_check_state", 0)),
            ))
        except (KeyError, ValueError) as exc:
            raise RuntimeApiError(f"unexpected `show servers state` row {line!r}: {exc}") from None
    return rows


def parse_proc(text: str) -> Processes:
    section = "master"
    master_pid = reloads = failed = None
    workers: list[int] = []
    old: list[int] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#<PID>"):
            continue
        if line.startswith("#"):
            section = line.lstrip("# ").strip()
            continue
        fields = line.split()
        if fields[1] == "master":
            master_pid, reloads = int(fields[0]), int(fields[2])
            match = re.search(r"\[failed: ([0-9]+)\]", line)
            failed = int(match[1]) if match else 0
        elif fields[1] == "worker":
            (workers if section == "workers" else old).append(int(fields[0]))
    if master_pid is None or reloads is None or failed is None:
        raise RuntimeApiError(f"unexpected `show proc` reply: {text[:200]!r}")
    return Processes(master_pid, reloads, failed, tuple(workers), tuple(old))


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def plan(current: Sequence[ServerState], desired: Sequence[SlotEntry], backend: str = configmap.BACKEND) -> list[str]:
    """The runtime commands that turn the running slots into `desired` (servers.json).

    Slots that come up go first and slots that go away last, so capacity never dips
    below the smaller of before and after. A slot never changes its address while it
    takes traffic: it goes to maintenance first. Health-check results are HAProxy's own
    business and are not touched: a slot that is ready but failing its checks stays out.
    One exception: a checked slot leaving maintenance (a new backend in it, or one back from
    down) is marked down first, so that it takes traffic only once its checks pass (`rise`
    of them); HAProxy would otherwise send to it at once, up to `fall` failed checks long.
    """
    running = {s.name: s for s in current if s.backend == backend}
    wanted = {e.server: e for e in desired}
    missing = sorted(set(wanted) - set(running), key=lambda n: int(n[1:]))
    if missing:
        raise RuntimeApiError(f"servers.json uses slots the running configuration lacks: {', '.join(missing)}")
    first: list[str] = []
    middle: list[str] = []
    last: list[str] = []
    for name in sorted(running, key=lambda n: (running[n].slot or 0, n)):
        server = running[name]
        target = f"{backend}/{name}"
        entry = wanted.get(name)
        if entry is None:
            if server.slot is not None and not server.maint:
                last.append(f"set server {target} state maint")
            continue
        commands = []
        state = server.admin
        if not (_same_address(server.address, entry.address) and server.port == entry.port):
            if state != "maint":
                commands.append(f"set server {target} state maint")
                state = "maint"
            commands.append(f"set server {target} addr {entry.address} port {entry.port}")
        if server.weight != entry.weight:
            commands.append(f"set weight {target} {entry.weight}")
        final = {"ready": "ready", "draining": "drain", "down": "maint"}[entry.state]
        if final != state:
            if state == "maint" and server.checked:
                # leaving maintenance resets the check verdict to barely up (health = rise): the
                # slot goes to drain (no new request) first, is marked down there, and only then
                # made ready, so its checks bring it up
                commands += [f"set server {target} state drain", f"set server {target} health down"]
                state = "drain"
            if final != state:
                commands.append(f"set server {target} state {final}")
        (first if final == "ready" else middle if final == "drain" else last).extend(commands)
    return first + middle + last


def state_file(show_output: str, desired: Sequence[SlotEntry], backend: str = configmap.BACKEND) -> str:
    """`show servers state` cut down to the slots whose backend stays where it is.

    HAProxy restores the port (though not the address) and the admin state of every row
    of the state file, even when the new configuration gives the slot another backend;
    so a row survives only if its slot keeps the same address and port. What it carries
    over is the health-check verdict: a backend that was failing stays out after a reload
    instead of taking traffic until its checks fail again.
    """
    wanted = {e.server: e for e in desired}
    kept = []
    columns: list[str] = []
    for line in show_output.splitlines():
        if not line.strip():
            continue
        if line.strip() == "1" or line.startswith("#"):
            if line.startswith("#"):
                columns = line.lstrip("# ").split()
            kept.append(line)
            continue
        values = dict(zip(columns, line.split(), strict=False))  # later HAProxy versions append columns
        entry = wanted.get(values.get("srv_name", ""))
        if (values.get("be_name") == backend and entry is not None
                and _same_address(values.get("srv_addr", ""), entry.address)
                and values.get("srv_port") == str(entry.port)):
            kept.append(line)
    if not kept:
        kept = ["1"]
    return "\n".join(kept) + "\n"


# -- I/O ----------------------------------------------------------------------------------

def command(path: str, line: str, timeout: float = 5.0) -> str:
    """Send one command to a HAProxy unix socket (runtime API or master CLI); its reply."""
    if "\n" in line or ";" in line:
        raise ValueError(f"one command at a time: {line!r}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(line.encode() + b"\n")
            # the master CLI waits for more commands until it sees the end of input
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            raise RuntimeApiError(f"{path}: {line!r}: {exc}") from exc
    return b"".join(chunks).decode(errors="replace")


def alive(path: str) -> bool:
    try:
        command(path, "show info", timeout=1.0)
    except RuntimeApiError:
        return False
    return True


def show_servers_state(path: str, backend: str = configmap.BACKEND) -> tuple[list[ServerState], str]:
    """The parsed rows, and the raw reply (the state file is written from it)."""
    text = command(path, f"show servers state {backend}")
    return parse_servers_state(text), text


def show_info(path: str) -> dict[str, str]:
    info = {}
    for line in command(path, "show info").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def running_structure(path: str) -> str | None:
    """The structure hash the running worker was started with (see configmap.on_disk)."""
    reply = command(path, f"show env {configmap.STRUCTURE_ENV}").strip()
    name, sep, value = reply.partition("=")
    return value if sep and name == configmap.STRUCTURE_ENV and value else None


def show_proc(master: str) -> Processes:
    return parse_proc(command(master, "show proc"))


def apply(path: str, commands: Sequence[str]) -> None:
    """Send the commands in order; stop at the first refusal (later ones may depend on it)."""
    for line in commands:
        reply = command(path, line).strip()
        if reply and not reply.startswith(_OK_REPLIES):
            raise RuntimeApiError(f"HAProxy refused {line!r}: {reply}")


def reload(master: str, admin: str, timeout: float = 15.0) -> int:
    """Hitless reload through the master CLI; the new worker's pid once it answers.

    The master re-executes itself and starts a worker with the configuration on disk; the
    listening sockets pass from the old worker to the new one (`expose-fd listeners`), so
    no connection is refused. The old worker finishes the requests it has and exits.
    HAProxy 2.6 does not report the outcome on the CLI connection, so it is read from
    `show proc`: a new worker, or one more failed reload.
    """
    deadline = time.monotonic() + timeout
    before = _retrying(lambda: show_proc(master), deadline)
    with contextlib.suppress(RuntimeApiError):  # the master may drop the connection as it re-executes itself
        command(master, "reload")
    new_pid = None
    while time.monotonic() < deadline:
        try:
            if new_pid is None:
                now = show_proc(master)
                if now.failed_reloads > before.failed_reloads:
                    raise ReloadFailed("HAProxy refused the new configuration; the previous one is still serving")
                fresh = set(now.workers) - set(before.workers)
                if now.reloads > before.reloads and fresh:
                    new_pid = max(fresh)
            if new_pid is not None and show_info(admin).get("Pid") == str(new_pid):
                return new_pid
        except ReloadFailed:
            raise
        except RuntimeApiError:
            pass  # sockets come back while the master re-executes and the worker starts
        time.sleep(0.02)
    raise RuntimeApiError(f"no new HAProxy worker answered within {timeout:.0f}s of the reload")


def _retrying(call: Callable[[], T], deadline: float) -> T:
    """call() until it answers: the master CLI refuses connections for a few milliseconds
    after a worker starts (seen on 2.6 right after startup)."""
    while True:
        try:
            return call()
        except RuntimeApiError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
