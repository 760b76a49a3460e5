"""Rolling a new pod template out to a database's members: replicas first, then one switchover,
then the old primary (pure: decide only; the pass evicts and asks for the switchover).

The StatefulSet's updateStrategy is OnDelete, so its controller never restarts a member by
itself: a new image, new resources or a new `spec.config` (the pod template carries the
my.cnf's hash) makes a new revision (status.updateRevision) and each pod keeps the revision it
was made from (its `controller-revision-hash` label) until this module has it evicted. The
order is MOCO's and CloudNativePG's: a restart of a replica costs nothing but that replica; the
primary's restart would cost a failover, so the primary is first switched over to a replica
that already runs the new template, and restarted last as a replica. One member at a time, and
only while the others serve: a rollout never takes more than one member away, and a rollout
whose new template does not start stops there (status.rollout says which member it waits for).

A member whose server is not serving (stopped, crash-looping, errant) is restarted first: the
new template may be what it needs, and its restart takes nothing away from the clients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hakeeper.api.conditions import pod_ready, pod_terminating

REVISION_LABEL = "controller-revision-hash"
"""The label the StatefulSet controller puts on each pod: the revision it was made from."""

Action = Literal["restart", "switchover", "wait", "none"]


@dataclass(frozen=True)
class RolloutDecision:
    """What the rollout does next.

    action: "none" (every member runs `revision`, or there is no StatefulSet yet), "restart"
    (evict `member`'s pod; the StatefulSet controller makes it again from the new template),
    "switchover" (switch the primary, `member`, over to the best replica: every replica runs
    the new template), or "wait" (`reason` says for what).
    outdated: the members whose pod runs an older revision, in ordinal order.
    """

    action: Action
    revision: str | None
    outdated: tuple[str, ...] = ()
    member: str | None = None
    reason: str = ""

    @property
    def request_id(self) -> str:
        """The switchover request this decision stands for (status.handledSwitchover records it
        once carried out, so it is asked for once per revision and primary)."""
        return f"rollout:{self.revision}:{self.member}"


def decide(statefulset: Mapping[str, Any] | None, pods: Mapping[str, Mapping[str, Any]],
           members: Sequence[Mapping[str, Any]], primary: str | None, *, busy: bool = False) -> RolloutDecision:
    """The next rollout step.

    statefulset: the StatefulSet as read from the API (None when it does not exist yet);
    pods: its pods by name; members: the last step's status.members entries (name, role,
    serving, message) in ordinal order; primary: the recorded primary; busy: a failover or
    switchover is under way (the rollout waits for it).
    """
    revision = ((statefulset or {}).get("status") or {}).get("updateRevision")
    if not revision:
        return RolloutDecision("none", None)
    names = [m["name"] for m in members]
    outdated = tuple(n for n in names if n in pods
                     and (pods[n]["metadata"].get("labels") or {}).get(REVISION_LABEL) != revision)
    if not outdated:
        return RolloutDecision("none", revision)

    def wait(reason: str) -> RolloutDecision:
        return RolloutDecision("wait", revision, outdated, reason=reason)

    if primary is None:
        return wait("no primary yet")
    if busy:
        return wait("a failover or switchover is under way")
    missing = [n for n in names if n not in pods]
    if missing:
        return wait(f"{', '.join(missing)} has no pod yet")
    terminating = [n for n in names if pod_terminating(pods[n])]
    if terminating:
        return wait(f"{', '.join(terminating)} is stopping")
    if len(names) == 1:
        return RolloutDecision("restart", revision, outdated, outdated[0], "the only member: restarted in place")
    by_name = {m["name"]: m for m in members}

    def serving(name: str) -> bool:
        m = by_name[name]
        fit = m.get("serving") if name != primary else m.get("role") == "primary"
        return bool(fit) and pod_ready(pods[name])

    not_serving = [n for n in names if not serving(n)]
    replicas = [n for n in outdated if n != primary]
    # a replica that does not serve first: it takes nothing away (but never two members away)
    for name in replicas:
        if name in not_serving and not_serving == [name]:
            return RolloutDecision("restart", revision, outdated, name,
                                   f"{name} is not serving; restarted first")
    if not_serving:
        why = "; ".join(f"{n}: {by_name[n].get('message') or 'not ready'}" for n in not_serving)
        return wait(f"waiting for {', '.join(not_serving)} to serve ({why})")
    if replicas:
        # the highest ordinal first, as the StatefulSet controller would
        name = replicas[-1]
        return RolloutDecision("restart", revision, outdated, name, f"replica {name} restarted with the new template")
    return RolloutDecision("switchover", revision, outdated, primary,
                           f"every replica runs the new template: switching over from {primary}")
