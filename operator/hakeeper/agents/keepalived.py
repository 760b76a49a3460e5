"""The balancer agent for engine lvs: `hakeeper agent keepalived`, next to keepalived on every
balancer node (a DaemonSet pod with host networking).

It follows the pool's ConfigMap (the HAProxy agent's watch and `Latest` box, reused) and:

1. turns the ConfigMap's keepalived.conf into this node's file (configmap.for_node: its own
   priority from priorities.json, the VRRP password from the mounted Secret);
2. writes it only after `keepalived -t` accepted it, so a refused configuration never
   replaces the one keepalived runs (and never reaches a restarting keepalived);
3. reloads keepalived with SIGHUP (pid from its pid file);
4. reports the applied hash (hakeeper.io/applied-hash), the VRRP state it sees
   (hakeeper.io/vrrp-state, see vrrp_state.py) and whether the node has IPVS
   (hakeeper.io/ipvs: keepalived cannot load the ip_vs module from a container, and exits
   when it is missing) as annotations of its pod.

`decide` is pure; `Agent` observes and acts.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import pathlib
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence

from hakeeper.agents import vrrp_state
from hakeeper.agents.loop import ConfigMapView, Report, add_source_arguments, read_text_or_none, serve
from hakeeper.api.configmaps import keepalived as configmap
from hakeeper.api.configmaps.keepalived import ConfigError
from hakeeper.api.meta import APPLIED_HASH_ANNOTATION, CONFIG_HASH_ANNOTATION, IPVS_ANNOTATION, VRRP_STATE_ANNOTATION

IPVS_PROC = "/proc/net/ip_vs"
"""Present while the ip_vs module is loaded (the pod has the node's network namespace)."""
KEEPALIVED = "keepalived"
FILES = (configmap.CONFIG_FILE, configmap.PRIORITIES_FILE)
"""The ConfigMap's files, as read from a --source-dir."""
log = logging.getLogger("hakeeper.agent.keepalived")



@dataclasses.dataclass(frozen=True)
class Desired:
    text: str
    """The file as this node runs it."""
    config_hash: str

    @classmethod
    def from_configmap(cls, cm: ConfigMapView, node: str, password: str | None) -> Desired:
        text = cm.data.get(configmap.CONFIG_FILE)
        if not text:
            raise ConfigError(f"the ConfigMap has no {configmap.CONFIG_FILE} yet")
        priority = configmap.node_priority(cm.data, node, configmap.base_priority(text))
        return cls(text=configmap.for_node(text, priority, password),
                   config_hash=cm.annotations.get(CONFIG_HASH_ANNOTATION) or configmap.config_hash(cm.data))


@dataclasses.dataclass(frozen=True)
class Observed:
    disk_text: str | None
    running: bool
    """keepalived's parent process (from the pid file) is alive."""
    state: str
    """MASTER, BACKUP or FAULT, as seen on the interface."""
    reported: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The annotations this agent last wrote."""
    refused: str | None = None
    """A file text keepalived -t refused (not tried again until the ConfigMap changes)."""
    applied: str | None = None
    """The config hash keepalived was last (re)loaded with, by this agent."""
    ipvs: bool = True
    """The node's kernel has IPVS (the ip_vs module is loaded)."""

    def facts(self) -> dict[str, str]:
        """What the agent reports of the node whatever else happens."""
        return {VRRP_STATE_ANNOTATION: self.state, IPVS_ANNOTATION: "available" if self.ipvs else "missing"}


@dataclasses.dataclass(frozen=True)
class Decision:
    write: str | None = None
    """New content for the file (tested with keepalived -t before it replaces the old one)."""
    reload: bool = False
    report: Mapping[str, str] = dataclasses.field(default_factory=dict)
    waiting: str | None = None

    @property
    def idle(self) -> bool:
        return self.write is None and not self.reload and not self.report


def decide(desired: Desired, observed: Observed) -> Decision:
    if observed.refused == desired.text:
        report = _changed(observed.facts(), observed.reported)
        return Decision(report=report, waiting="keepalived -t refused this configuration; the previous one "
                        "keeps running")
    write = desired.text if observed.disk_text != desired.text else None
    if not observed.running:
        # keepalived's container starts once the file is there and reads it itself
        report = _changed(observed.facts(), observed.reported)
        waiting = "keepalived is not running" + ("" if observed.ipvs else " (this node has no IPVS: load ip_vs)")
        return Decision(write=write, report=report, waiting=waiting)
    # a running keepalived loaded the file before this agent wrote it (or an older agent did):
    # reload once after a write, and once when this agent has not loaded it itself yet
    reload = write is not None or observed.applied != desired.config_hash
    wanted = observed.facts()
    if not reload:
        wanted[APPLIED_HASH_ANNOTATION] = desired.config_hash
    return Decision(write=write, reload=reload, report=_changed(wanted, observed.reported))


def _changed(wanted: Mapping[str, str], reported: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in wanted.items() if reported.get(k) != v}


# -- act ----------------------------------------------------------------------------------

class Refused(ConfigError):
    """keepalived -t found errors in the configuration."""


def config_test(path: str, keepalived: Sequence[str] = (KEEPALIVED,)) -> None:
    """keepalived -t exits 0 for a good file and 5 ("config error") for any error or warning it
    logs; it also exits 0 for a file that does not exist, so check that first."""
    if not os.path.isfile(path):
        raise Refused(f"{path} does not exist")
    result = subprocess.run([*keepalived, "-t", "-f", path], capture_output=True, text=True, timeout=30,
                            check=False)
    if result.returncode != 0:
        raise Refused(f"keepalived -t exited {result.returncode}: {(result.stderr + result.stdout).strip()}")


def write_tested(path: str, text: str, keepalived: Sequence[str] = (KEEPALIVED,)) -> None:
    """Test a temporary file next to `path`, then rename it over `path` (atomic)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".conf")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # it may hold the VRRP password
        config_test(tmp, keepalived)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_pid(pid_file: str) -> int | None:
    try:
        pid = int(pathlib.Path(pid_file).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's (only when the agent runs unprivileged)
    return pid


class Agent:
    def __init__(self, config_path: str, pid_file: str, node: str, report: Report, *,
                 password: str | None = None, keepalived: Sequence[str] = (KEEPALIVED,),
                 ipvs_proc: str = IPVS_PROC) -> None:
        self.ipvs_proc = ipvs_proc
        self.config_path = config_path
        self.pid_file = pid_file
        self.node = node
        self.report = report
        self.password = password
        self.keepalived = tuple(keepalived)
        self.reported: dict[str, str] = {}
        self.refused: str | None = None
        self.applied: str | None = None
        self.applied_pid: int | None = None
        self.reloads = 0

    def observe(self, desired: Desired) -> Observed:
        disk_text = read_text_or_none(self.config_path)
        pid = read_pid(self.pid_file)
        if pid is not None and pid != self.applied_pid:
            # a keepalived started after our last reload read the file on disk by itself
            self.applied = None if disk_text != desired.text else desired.config_hash
            self.applied_pid = pid
        state = vrrp_state.observe(desired.text, running=pid is not None)
        return Observed(disk_text=disk_text, running=pid is not None, state=state, reported=dict(self.reported),
                        refused=self.refused, applied=self.applied, ipvs=os.path.exists(self.ipvs_proc))

    def act(self, decision: Decision, desired: Desired) -> None:
        if decision.write is not None:
            try:
                write_tested(self.config_path, decision.write, self.keepalived)
            except Refused:
                self.refused = desired.text
                raise
            self.refused = None
            log.info("wrote %s (config %s)", self.config_path, desired.config_hash)
        if decision.reload:
            pid = read_pid(self.pid_file)
            if pid is None:
                raise RuntimeError(f"keepalived is gone (pid file {self.pid_file})")
            os.kill(pid, signal.SIGHUP)
            self.applied, self.applied_pid = desired.config_hash, pid
            self.reloads += 1
            log.info("reloaded keepalived (pid %d) with config %s", pid, desired.config_hash)
        if decision.report:
            self.report(decision.report)
            self.reported.update(decision.report)
            log.info("reported %s", ", ".join(f"{k}={v}" for k, v in sorted(decision.report.items())))

    def step(self, cm: ConfigMapView) -> Decision:
        desired = Desired.from_configmap(cm, self.node, self.password)
        decision = decide(desired, self.observe(desired))
        self.act(decision, desired)
        return decision

    def converge(self, cm: ConfigMapView, max_steps: int = 4) -> Decision:
        decision = Decision()
        for _ in range(max_steps):
            decision = self.step(cm)
            if decision.idle or decision.waiting:
                return decision
        return decision


# -- reporting ----------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hakeeper agent keepalived", description="Keep the local keepalived in step "
                                "with the pool's ConfigMap (keepalived -t, then SIGHUP) and report its VRRP state.")
    add_source_arguments(p, "the applied hash and the VRRP state")
    p.add_argument("--node", default=os.environ.get("NODE_NAME"),
                   help="this node's name, for its priority (default: $NODE_NAME)")
    p.add_argument("--config", default="/etc/keepalived/keepalived.conf", help="where keepalived reads its file")
    p.add_argument("--pid-file", default="/run/keepalived/keepalived.pid",
                   help="keepalived's (parent) pid file, for SIGHUP")
    p.add_argument("--auth-password-file", help="the VRRP password (the Secret of vrrp.authSecretRef, mounted)")
    p.add_argument("--keepalived", default=KEEPALIVED, help="the keepalived binary (for keepalived -t)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.node:
        parser().error("--node required (or NODE_NAME in the environment)")
    password = None
    if args.auth_password_file:
        password = pathlib.Path(args.auth_password_file).read_text().strip("\n")

    def build(report: Report) -> Agent:
        return Agent(args.config, args.pid_file, args.node, report, password=password,
                     keepalived=(args.keepalived,))

    # look every second: the VRRP state changes without any ConfigMap change
    return serve(args, build, FILES, parser(), resync=1.0, retry=1.0)


if __name__ == "__main__":
    raise SystemExit(main())
