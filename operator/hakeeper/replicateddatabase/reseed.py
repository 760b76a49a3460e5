"""Rebuilding a member from another member's data (pure: decide only; the pass acts).

A member that cannot rejoin by replication (it has errant transactions, or its source no longer
has the binary logs it needs: clustering.classify.reseed_reason) is rebuilt from a donor: the
serving replica that lags least, else the primary. One member at a time, never during a
failover, switchover or rollout, and only with spec.autoReseed or when a person names the member
in the annotation hakeeper.io/reseed; otherwise the ReseedRequired condition and an Event say
which member and how to start it. MOCO and CloudNativePG rebuild a replica the same way: a
physical copy of a healthy member, never a logical dump.

The record of a re-seed is the `<db>-reseed` ConfigMap, one key per member (Entry), which the
member's init container reads at its next start (objects.init_script):

- MySQL, phase `copy`: the member's own server runs CLONE INSTANCE ... DATA DIRECTORY into
  `<volume>/.reseed-<id>` while it keeps its old data (MySQL 9.7 Reference Manual, 7.6.6.4
  "Cloning to a Named Directory"); once the statement returned, phase `restart`.
- MariaDB: phase `restart` at once: the init container streams mariabackup from the donor's
  `backup` container into `.reseed-<id>` and prepares it (MariaDB's "mariadb-backup" pages,
  "Setting up a Replica with mariadb-backup").
- phase `restart`: the pod incarnation named in the entry (`pod`, its uid) is evicted; the init
  container of the next one moves the old datadir aside (to `errant-<id>` when it was errant:
  kept for a person, never deleted; else removed) and the copy in its place. Once the member
  serves again, the entry is removed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from hakeeper.api.conditions import DatabaseReason, Verdict, pod_ready, pod_terminating
from hakeeper.api.meta import RESEED_ANNOTATION
from hakeeper.api.replicateddatabase import ReseedStatus

Phase = Literal["copy", "restart"]
Action = Literal["none", "report", "begin", "copy", "copied", "restart", "complete", "fail", "wait"]

_VALUE = re.compile(r"^[A-Za-z0-9._:-]{1,253}$")
"""What an entry's values may hold: the init container reads them with sed, and the id ends up
in a directory name. Names, pod IPs, uids and RFC 3339 times fit."""


@dataclass(frozen=True)
class Entry:
    """One member's re-seed, as the `<db>-reseed` ConfigMap holds it under the member's name.

    id: names the copy's directory (`.reseed-<id>` on the member's volume) and the errant
    data's (`errant-<id>`); donor, host: the member copied from and its pod IP; keep: "errant"
    (the old data is kept) or "discard"; pod: the uid of the pod to restart; started: RFC 3339.
    """

    member: str
    id: str
    donor: str
    host: str
    phase: Phase
    keep: Literal["errant", "discard"]
    pod: str
    started: str

    def render(self) -> str:
        """`key=value` lines, what the init container reads (ValueError for a value that does
        not fit _VALUE: it would reach a shell script and a path)."""
        fields = {"id": self.id, "donor": self.donor, "host": self.host, "phase": self.phase, "keep": self.keep,
                  "pod": self.pod, "started": self.started}
        for key, value in fields.items():
            if not _VALUE.match(value):
                raise ValueError(f"reseed entry {key}={value!r} is not [A-Za-z0-9._:-]+")
        return "".join(f"{key}={value}\n" for key, value in fields.items())

    @classmethod
    def parse(cls, member: str, text: str) -> Entry | None:
        """The entry from its ConfigMap value; None when it is not one (a person edited it)."""
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        try:
            entry = cls(member=member, id=fields["id"], donor=fields["donor"], host=fields["host"],
                        phase=fields["phase"], keep=fields["keep"], pod=fields["pod"],  # type: ignore[arg-type]
                        started=fields["started"])
        except KeyError:
            return None
        if entry.phase not in ("copy", "restart") or entry.keep not in ("errant", "discard"):
            return None
        try:
            entry.render()
        except ValueError:
            return None
        return entry


def entries_of(config_map: Mapping[str, Any] | None) -> dict[str, Entry | None]:
    """The ConfigMap's entries by member (None for a value that is not an entry)."""
    data = (config_map or {}).get("data") or {}
    return {member: Entry.parse(member, text) for member, text in sorted(data.items())}


CopyState = Literal["running", "done", "failed"]
ERRANT = "it has transactions the primary lacks"
"""How clustering.classify.reseed_reason begins for an errant member."""


@dataclass(frozen=True)
class ReseedDecision:
    """What the re-seed does next.

    action: "none"; "report" (members need a re-seed that nobody approved: `required`);
    "begin" (write `entry`: a new re-seed); "copy" (start the MySQL clone `entry` describes);
    "copied" (the clone finished: write `entry`, now phase restart); "restart" (evict the pod
    `entry.pod`); "complete" (the member serves: remove its entry); "fail" (remove the entry,
    `reason` says why); "wait" (`reason` says for what).
    required: (member, why) for every member that must be rebuilt.
    """

    action: Action
    member: str | None = None
    entry: Entry | None = None
    reason: str = ""
    required: tuple[tuple[str, str], ...] = ()


INIT_FAILURES = 3
"""Failed starts of a re-seeded member's init container (the copy, its checks, the swap) after
which the re-seed is given up: the entry removed, the next start is from the member's own data."""


def init_failures(pod: Mapping[str, Any]) -> int:
    """How many times the pod's init container was restarted (Kubernetes restarts it only after
    it failed: restartCount in status.initContainerStatuses)."""
    statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
    return max((int(s.get("restartCount") or 0) for s in statuses), default=0)


def command(db: str, member: str) -> str:
    """The command a person runs to re-seed `member` (in the ReseedRequired condition)."""
    return f"kubectl annotate rdb {db} {RESEED_ANNOTATION}={member}"


def donor_for(members: Sequence[Mapping[str, Any]], recipient: str, primary: str | None) -> str | None:
    """The serving replica that lags least (ties: the highest ordinal, the one a rollout
    restarts first and so has the freshest pod), else the primary; None when neither serves."""
    replicas = [m for m in members if m["name"] not in (recipient, primary) and m.get("serving")]
    if replicas:
        return min(reversed(replicas), key=lambda m: m.get("lag_seconds") or 0.0)["name"]
    if primary is not None and any(m["name"] == primary and m.get("role") == "primary" for m in members):
        return primary
    return None


def decide(flavor: str, members: Sequence[Mapping[str, Any]], pods: Mapping[str, Mapping[str, Any]],
           hosts: Mapping[str, str], entries: Mapping[str, Entry | None], primary: str | None, *,
           auto: bool, requested: str | None, copies: Mapping[str, CopyState], busy: bool, new_id: str,
           now: str, restored: bool = False) -> ReseedDecision:
    """The next re-seed step.

    flavor: "mysql" or "mariadb"; members: the last step's status.members entries (name, role,
    serving, lag_seconds, reseed, reachable) in ordinal order; pods: the member pods by name;
    hosts: member name -> pod IP; entries: entries_of the ConfigMap; primary: the recorded
    primary; auto: spec.autoReseed; requested: the member the reseed annotation names; copies:
    the state of this process's clone of each member (absent: none runs, e.g. after a restart
    of the operator); busy: a failover, switchover or rollout is under way; new_id: the id a new
    re-seed gets; now: RFC 3339; restored: the database was created from a backup (spec.restore),
    so that a member whose source lacks the binary logs it needs is rebuilt without asking, as
    its new members must be (restore.py): it has nothing the primary lacks, nothing is lost. An
    errant member still waits for approval.
    """
    by_name = {m["name"]: m for m in members}
    required = tuple((m["name"], m["reseed"]) for m in members if m.get("reseed") and m["name"] != primary)
    for member, entry in entries.items():
        if entry is None or member not in by_name or member == primary:
            return ReseedDecision("fail", member, entry, f"{member}'s re-seed record is void (not an entry, "
                                  "no such member, or the primary)", required)
        return _continue(entry, by_name, pods, copies, required)
    if not required:
        return ReseedDecision("none")
    if busy:
        return ReseedDecision("wait", reason="a failover, switchover or rollout is under way", required=required)
    approved = [name for name, why in required
                if auto or name == requested or (restored and not why.startswith(ERRANT))]
    if not approved:
        return ReseedDecision("report", required=required)
    member = approved[0]
    donor = donor_for(members, member, primary)
    pod = pods.get(member)
    if donor is None or donor not in hosts:
        return ReseedDecision("wait", member, reason=f"no member serves to copy {member} from", required=required)
    if pod is None or pod_terminating(pod):
        return ReseedDecision("wait", member, reason=f"{member} has no running pod", required=required)
    if flavor == "mysql" and not (by_name[member].get("reachable") and pod_ready(pod)):
        # the member's own server runs the clone
        return ReseedDecision("wait", member, reason=f"{member}'s server must be up to clone", required=required)
    why = dict(required)[member]
    errant = why.startswith(ERRANT)
    entry = Entry(member=member, id=new_id, donor=donor, host=hosts[donor],
                  phase="copy" if flavor == "mysql" else "restart", keep="errant" if errant else "discard",
                  pod=str(pod["metadata"].get("uid") or ""), started=now)
    return ReseedDecision("begin", member, entry, f"{member} is rebuilt from {donor}'s data: {why}", required)


def _continue(entry: Entry, members: Mapping[str, Mapping[str, Any]], pods: Mapping[str, Mapping[str, Any]],
              copies: Mapping[str, CopyState], required: tuple[tuple[str, str], ...]) -> ReseedDecision:
    member = entry.member
    pod = pods.get(member)
    status = members[member]

    def decision(action: Action, reason: str, e: Entry = entry) -> ReseedDecision:
        return ReseedDecision(action, member, e, reason, required)

    if entry.phase == "copy":
        state = copies.get(member)
        if state is None:
            return decision("copy", f"{member} clones {entry.donor}'s data")
        if state == "running":
            return decision("wait", f"{member} is cloning {entry.donor}'s data")
        if state == "failed":
            return decision("fail", f"{member} could not clone {entry.donor}'s data")
        if pod is None:
            return decision("wait", f"{member} has no pod")
        return decision("copied", f"{member} holds a copy of {entry.donor}'s data; restarting it from the copy",
                        replace(entry, phase="restart", pod=str(pod["metadata"].get("uid") or "")))
    if pod is None or pod_terminating(pod):
        return decision("wait", f"{member} is restarting")
    if pod["metadata"].get("uid") == entry.pod:
        return decision("restart", f"{member} restarts from {entry.donor}'s data")
    if status.get("serving"):
        return decision("complete", f"{member} was rebuilt from {entry.donor}'s data and serves"
                        + (f"; its errant data is kept on its volume in errant-{entry.id}"
                           if entry.keep == "errant" else ""))
    if status.get("reachable") and status.get("reseed"):
        return decision("fail", f"{member} restarted but still cannot rejoin ({status['reseed']}); its init "
                        "container's log says why the copy was not used")
    donor = members.get(entry.donor) or {}
    if not status.get("reachable") and not (donor.get("serving") or donor.get("role") == "primary"):
        # MariaDB's init container copies from the donor: it retries in vain once the donor is gone
        return decision("fail", f"{entry.donor}, which {member} copies from, no longer serves")
    failures = init_failures(pod)
    if not status.get("reachable") and failures >= INIT_FAILURES:
        return decision("fail", f"{member}'s init container failed {failures} times starting from "
                        f"{entry.donor}'s data (kubectl logs {member} -c init); the member starts from its own "
                        "data again")
    return decision("wait", f"{member} is starting from {entry.donor}'s data")


def verdict(decision: ReseedDecision, db: str, auto: bool) -> Verdict:
    """The ReseedRequired condition: True while a member must be or is being rebuilt (reason
    Reseeding, or AwaitingApproval with the command that starts it), else False."""
    if decision.entry is not None and decision.action not in ("complete", "fail"):
        return Verdict(True, DatabaseReason.RESEEDING, decision.reason)
    if not decision.required:
        return Verdict(False, DatabaseReason.NO_RESEED_REQUIRED, "every member can rejoin by replication")
    needs = "; ".join(f"{member}: {why}" for member, why in decision.required)
    if auto or decision.action == "wait":
        return Verdict(True, DatabaseReason.RESEEDING, f"{needs}; {decision.reason or 'starting'}")
    commands = "; ".join(command(db, member) for member, _ in decision.required)
    return Verdict(True, DatabaseReason.AWAITING_APPROVAL,
                   f"{needs}. To rebuild it from a healthy member's data (errant data is kept on its volume): "
                   f"{commands} (or set spec.autoReseed: true)")


def status_of(decision: ReseedDecision) -> ReseedStatus | None:
    """status.reseed: the re-seed under way, None when none is."""
    entry = decision.entry
    if entry is None or decision.action in ("complete", "fail"):
        return None
    return ReseedStatus(member=entry.member, donor=entry.donor, started=entry.started,
                        phase="Copying" if entry.phase == "copy" else "Restarting")
