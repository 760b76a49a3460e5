"""The balancer agent: `hakeeper agent haproxy`, a sidecar next to HAProxy in every balancer pod.

It follows the pool's ConfigMap through the API (a watch on that one object; a volume
mount would lag by up to a minute) and keeps the local HAProxy in step with it:

1. the file on disk is the ConfigMap's haproxy.cfg with servers.json filled into its slots
   (configmap.on_disk), so a HAProxy that starts or restarts serves the right backends at once;
2. when the structure changed, a hitless reload through the master CLI, after saving the
   servers' state (health verdicts) for the new worker;
3. servers.json through the runtime API (runtime.plan): add, remove, drain, weight — no reload;
   with weighting mode Latency (weighting.json) the weights are the base ones scaled by the
   servers' response times (haproxy_weighting), re-read every interval;
4. the ConfigMap's config hash into the pod's annotation hakeeper.io/applied-hash, so the
   operator can tell which balancers run which configuration.

`decide` is pure (what to do, given the ConfigMap and what is on disk and in HAProxy);
`Agent` observes and acts; the sources (Kubernetes watch, or a directory for tests and
offline use) only deliver ConfigMap snapshots into a `Latest` box, newest wins.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence

from hakeeper.agents import haproxy_request_classes as classes
from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.agents import haproxy_sticktable as sticktable
from hakeeper.agents import haproxy_weighting as weighting
from hakeeper.agents.haproxy_runtime import RuntimeApiError, ServerState
from hakeeper.agents.haproxy_tls import TlsSync
from hakeeper.agents.loop import ConfigMapView, Report, add_source_arguments, atomic_write, read_text_or_none, serve
from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.configmaps.haproxy import ConfigError, SlotEntry
from hakeeper.api.configmaps.weighting import WeightingParams, parse_weighting
from hakeeper.api.meta import (
    APPLIED_HASH_ANNOTATION,
    CONFIG_HASH_ANNOTATION,
    EFFECTIVE_WEIGHTS_ANNOTATION,
    RELOADS_ANNOTATION,
)

log = logging.getLogger("hakeeper.agent")
FILES = (configmap.CONFIG_FILE, configmap.SERVERS_FILE, configmap.WEIGHTING_FILE, configmap.REFUSED_FILE)
"""The ConfigMap's files, as read from a --source-dir."""


@dataclasses.dataclass(frozen=True)
class Desired:
    cfg: str
    servers: tuple[SlotEntry, ...]
    structure_hash: str
    config_hash: str
    disk_text: str
    state_file: str | None
    weighting: WeightingParams | None = None
    """weighting.json: latency-aware weights (None: the base weights as they are)."""
    refusals: classes.Refusals = classes.Refusals()
    """Request classes to refuse (a pool with classes only): the ACL file and the running ACL."""

    @classmethod
    def from_configmap(cls, cm: ConfigMapView) -> Desired:
        cfg = cm.data.get(configmap.CONFIG_FILE)
        if not cfg:
            raise ConfigError(f"the ConfigMap has no {configmap.CONFIG_FILE} yet")
        servers = tuple(configmap.parse_servers(cm.data.get(configmap.SERVERS_FILE, "[]")))
        return cls(
            cfg=cfg, servers=servers, structure_hash=configmap.structure_hash(cfg),
            # the operator annotates the hash it computed; the same function gives it otherwise
            config_hash=cm.annotations.get(CONFIG_HASH_ANNOTATION) or configmap.config_hash(cm.data),
            disk_text=configmap.on_disk(cfg, servers), state_file=configmap.state_file_path(cfg),
            weighting=parse_weighting(cm.data.get(configmap.WEIGHTING_FILE)),
            refusals=classes.Refusals.from_data(cfg, cm.data),
        )


@dataclasses.dataclass(frozen=True)
class Observed:
    disk_text: str | None
    """The configuration file as it is on disk (None: not written yet)."""
    running: bool
    """The runtime API answers."""
    structure: str | None = None
    """The structure hash the running worker loaded."""
    servers: tuple[ServerState, ...] = ()
    master: bool = False
    """The master CLI answers (needed to reload)."""
    reported: str | None = None
    """The config hash this agent last reported."""
    refused: str | None = None
    """A structure hash HAProxy refused to load (not retried until the structure changes)."""
    factors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """Latency weighting: each backend's factor of its base weight, by backend name."""
    weights_report: str | None = None
    """The effective-weights report the agent would send now."""
    weights_reported: str | None = None
    """The effective-weights report it last sent, and how many seconds ago."""
    weights_reported_age: float = 0.0
    recheck: float | None = None
    """Seconds until latency weighting reads the statistics again."""
    acl_disk: str | None = None
    """The refused classes' ACL file as it is on disk."""
    acl_running: tuple[str, ...] | None = None
    """The refused classes the running worker holds (None: not read, e.g. another structure runs)."""


@dataclasses.dataclass(frozen=True)
class Decision:
    write: str | None = None
    """New content for the configuration file."""
    reload: bool = False
    commands: tuple[str, ...] = ()
    report: str | None = None
    waiting: str | None = None
    """Why the configuration cannot be fully applied yet."""
    weights: str | None = None
    """Latency weighting: the effective weights to report (the pod annotation)."""
    recheck: float | None = None
    """Seconds after which the agent wants to look again (latency weighting's interval)."""
    acl_write: str | None = None
    """New content for the refused classes' ACL file (written before the configuration file)."""

    @property
    def idle(self) -> bool:
        return (self.write is None and self.acl_write is None and not self.reload and not self.commands
                and self.report is None and self.weights is None)


def decide(desired: Desired, observed: Observed) -> Decision:
    decision = _decide(desired, observed)
    refusals = desired.refusals
    if refusals.path is not None and observed.acl_disk != refusals.text:
        # whatever else happens: a HAProxy that starts or reloads reads the file
        decision = dataclasses.replace(decision, acl_write=refusals.text)
    return decision


def _decide(desired: Desired, observed: Observed) -> Decision:
    write = desired.disk_text if observed.disk_text != desired.disk_text else None
    if not observed.running:
        # first start: HAProxy's container starts once the file exists and reads the
        # servers from it; the runtime API is used once it answers
        return Decision(write=write, waiting="HAProxy is not running")
    if observed.structure != desired.structure_hash:
        if observed.refused == desired.structure_hash:
            # the agent put the last working file back; leave it there
            return Decision(waiting=f"HAProxy refused structure {desired.structure_hash}; "
                            "the previous one keeps serving")
        if not observed.master:
            return Decision(write=write, waiting="the structure changed but the master CLI does not answer")
        # servers are applied by the next pass, against the new worker
        return Decision(write=write, reload=True)
    servers: Sequence[SlotEntry] = desired.servers
    weights = None
    if desired.weighting is not None:
        # the base weights scaled by the latency factors: the one weight plan sets, so the
        # runtime weights and servers.json never undo each other
        servers = weighting.effective(servers, observed.factors)
        now, before = observed.weights_report, observed.weights_reported
        if now is not None and (weighting.report_key(now) != weighting.report_key(before)
                                or observed.weights_reported_age >= weighting.REPORT_REFRESH):
            weights = now
    commands = tuple(runtime.plan(observed.servers, servers))
    if observed.acl_running is not None:
        commands += tuple(classes.plan(observed.acl_running, desired.refusals))
    report = desired.config_hash if observed.reported != desired.config_hash else None
    return Decision(write=write, commands=commands, report=report, weights=weights, recheck=observed.recheck)


class Agent:
    """Observes the file and HAProxy, decides, acts. Not thread-safe: one loop drives it."""

    def __init__(self, config_path: str, admin_socket: str, master_socket: str,
                 report: Callable[[str], None], tls: TlsSync | None = None,
                 report_weights: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config_path = config_path
        self.tls = tls
        """The pool's certificate (spec.tls), kept in step before the configuration (haproxy_tls.py)."""
        self.admin_socket = admin_socket
        self.master_socket = master_socket
        self.report = report
        self.report_weights = report_weights
        self.clock = clock
        self.latency = weighting.Tracker()
        self.weights_reported: str | None = None
        self.weights_reported_at = float("-inf")
        self.reported: str | None = None
        self.refused: str | None = None
        self.last_good: str | None = None
        """A file on disk that the running worker was loaded from."""
        self.reloads = 0

    def observe(self, desired: Desired) -> Observed:
        disk_text = read_text_or_none(self.config_path)
        if not runtime.alive(self.admin_socket):
            acl_disk = read_text_or_none(desired.refusals.path) if desired.refusals.path else None
            return Observed(disk_text=disk_text, running=False, reported=self.reported, refused=self.refused,
                            acl_disk=acl_disk)
        structure = runtime.running_structure(self.admin_socket)
        if disk_text is not None and structure is not None and configmap.disk_structure(disk_text) == structure:
            self.last_good = disk_text
        servers, _ = runtime.show_servers_state(self.admin_socket)
        master = structure != desired.structure_hash and self._master_answers()
        now = self.clock()
        factors: dict[str, float] = {}
        weights_report = None
        if structure == desired.structure_hash or desired.weighting is None:
            try:
                factors = self.latency.observe(desired.weighting, desired.servers, self._show_stat, now)
            except (weighting.StatError, RuntimeApiError) as exc:
                # the weights stay as they are; the servers themselves are still applied
                log.warning("latency weighting: cannot read the statistics: %s", exc)
                factors = {name: s.factor for name, s in self.latency.state.items()}
            if desired.weighting is not None:
                weights_report = weighting.report(desired.servers, self.latency.state)
        acl_path = desired.refusals.path
        acl_disk = read_text_or_none(acl_path) if acl_path else None
        acl_running = (tuple(classes.show(self.admin_socket, acl_path))
                       if acl_path and structure == desired.structure_hash else None)
        return Observed(disk_text=disk_text, running=True, structure=structure, servers=tuple(servers),
                        master=master, reported=self.reported, refused=self.refused, factors=factors,
                        weights_report=weights_report, weights_reported=self.weights_reported,
                        weights_reported_age=now - self.weights_reported_at, recheck=self.latency.due_in(now),
                        acl_disk=acl_disk, acl_running=acl_running)

    def _show_stat(self) -> str:
        return runtime.command(self.admin_socket, f"show stat {configmap.BACKEND} 4 -1")

    def _master_answers(self) -> bool:
        try:
            runtime.show_proc(self.master_socket)
        except RuntimeApiError:
            return False
        return True

    def act(self, decision: Decision, desired: Desired) -> None:
        if decision.acl_write is not None and desired.refusals.path is not None:
            atomic_write(desired.refusals.path, decision.acl_write)
            log.info("wrote %s (refused request classes: %s)", desired.refusals.path,
                     ", ".join(desired.refusals.classes) or "none")
        if decision.write is not None:
            if desired.state_file and not os.path.exists(desired.state_file):
                atomic_write(desired.state_file, "1\n")  # an empty state, so HAProxy has nothing to warn about
            atomic_write(self.config_path, decision.write)
            log.info("wrote %s (structure %s, %d backends)", self.config_path, desired.structure_hash,
                     len(desired.servers))
        if decision.reload:
            self._save_state(desired)
            table = sticktable.dump(self.admin_socket)  # SourceIP clients: HAProxy 2.6 drops them here
            try:
                pid = runtime.reload(self.master_socket, self.admin_socket)
            except runtime.ReloadFailed:
                if self.last_good is not None:
                    # so that a restarting HAProxy comes back with what works, not with this
                    atomic_write(self.config_path, self.last_good)
                self.refused = desired.structure_hash
                raise
            self.reloads += 1
            log.info("reloaded HAProxy for structure %s: worker %d", desired.structure_hash, pid)
            if table and sticktable.in_use(desired.cfg):
                log.info("restored %d stick table entries", sticktable.restore(self.admin_socket, table))
        if decision.commands:
            runtime.apply(self.admin_socket, decision.commands)
            log.info("applied %d runtime commands: %s", len(decision.commands), "; ".join(decision.commands))
            self._save_state(desired)  # a restarting HAProxy picks up from here
        if decision.report is not None:
            self.report(decision.report)
            self.reported = decision.report
            log.info("applied config %s", decision.report)
        if decision.weights is not None:
            if self.report_weights is not None:
                self.report_weights(decision.weights)
            self.weights_reported, self.weights_reported_at = decision.weights, self.clock()
            log.info("effective weights %s", decision.weights)

    def _save_state(self, desired: Desired) -> None:
        if desired.state_file:
            _, raw = runtime.show_servers_state(self.admin_socket)
            atomic_write(desired.state_file, runtime.state_file(raw, desired.servers))

    def step(self, cm: ConfigMapView) -> Decision:
        desired = Desired.from_configmap(cm)
        if self.tls is not None:
            self.tls.sync()  # first: the configuration that binds the certificate finds its file
        decision = decide(desired, self.observe(desired))
        self.act(decision, desired)
        return decision

    def converge(self, cm: ConfigMapView, max_steps: int = 6) -> Decision:
        """Step until nothing is left to do (or only waiting); the last decision."""
        decision = Decision()
        for _ in range(max_steps):
            decision = self.step(cm)
            if decision.idle or (decision.waiting and decision.write is None):
                return decision
        return decision


# -- command line -------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hakeeper agent haproxy", description="Keep the local HAProxy in step "
                                "with the pool's ConfigMap: runtime API for servers, hitless reload for structure.")
    add_source_arguments(p, "the applied config hash")
    p.add_argument("--config", required=True, help="where HAProxy reads its configuration")
    p.add_argument("--socket", required=True, help="HAProxy's runtime API (stats socket, level admin)")
    p.add_argument("--master-socket", required=True, help="HAProxy's master CLI (for reloads)")
    p.add_argument("--tls-dir", help="the pool's TLS Secret volume (tls.crt, tls.key), with --tls-file")
    p.add_argument("--tls-file", help="the certificate file the configuration binds; kept equal to --tls-dir's "
                   "and rotated in the running HAProxy through the runtime API")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def build(report: Report) -> Agent:
        def applied(config_hash: str) -> None:
            report({APPLIED_HASH_ANNOTATION: config_hash, RELOADS_ANNOTATION: str(agent.reloads)})

        if bool(args.tls_dir) != bool(args.tls_file):
            parser().error("--tls-dir and --tls-file go together")
        tls = TlsSync(args.tls_dir, args.tls_file, args.socket) if args.tls_dir else None

        def weights(text: str) -> None:
            report({EFFECTIVE_WEIGHTS_ANNOTATION: text})

        agent = Agent(args.config, args.socket, args.master_socket, applied, tls=tls, report_weights=weights)
        return agent

    # re-check every 5 s (HAProxy may have restarted); every 0.25 s while waiting for it
    return serve(args, build, FILES, parser(), resync=5.0, retry=0.25)


if __name__ == "__main__":
    raise SystemExit(main())
