"""A pod's status as the API shows it, from what the node agent knows of its containers (pure)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Phase = Literal["waiting", "running", "terminated"]


@dataclasses.dataclass
class ContainerState:
    name: str
    image: str
    phase: Phase = "waiting"
    reason: str = "ContainerCreating"
    message: str = ""
    pid: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    last_termination: dict[str, Any] | None = None
    init: bool = False
    sidecar: bool = False

    def wire(self) -> dict[str, Any]:
        if self.phase == "running":
            state: dict[str, Any] = {"running": {"startedAt": self.started_at}}
        elif self.phase == "terminated":
            state = {"terminated": {"exitCode": self.exit_code, "reason": self.reason,
                                    "startedAt": self.started_at, "finishedAt": self.finished_at}}
        else:
            state = {"waiting": {"reason": self.reason, **({"message": self.message} if self.message else {})}}
        out = {
            "name": self.name, "image": self.image, "imageID": "", "ready": self.ready,
            "started": self.started, "restartCount": self.restart_count, "state": state,
            "lastState": {"terminated": self.last_termination} if self.last_termination else {},
        }
        if self.pid is not None:
            out["containerID"] = f"local://{self.pid}"
        return out


def _condition(kind: str, ok: bool, reason: str | None, previous: dict[str, dict], now: str) -> dict[str, Any]:
    status = "True" if ok else "False"
    old = previous.get(kind)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now
    out = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason and not ok:
        out["reason"] = reason
    return out


def pod_status(containers: list[ContainerState], *, pod_ip: str | None, host_ip: str, start_time: str,
               restart_policy: str, previous_conditions: list[dict] | None, now: str) -> dict[str, Any]:
    init = [c for c in containers if c.init]
    main = [c for c in containers if not c.init]
    initialized = all(c.phase == "terminated" and c.exit_code == 0 for c in init if not c.sidecar) and all(
        c.started for c in init if c.sidecar)
    all_ready = bool(main) and all(c.ready for c in main) and all(c.ready for c in init if c.sidecar)
    done = bool(main) and all(c.phase == "terminated" for c in main) and restart_policy != "Always"
    if done:
        failed = any(c.exit_code for c in main)
        phase = "Failed" if failed else "Succeeded"
    elif initialized and any(c.phase == "running" or c.restart_count for c in main):
        phase = "Running"
    else:
        phase = "Pending"
    previous = {c["type"]: c for c in previous_conditions or []}
    conditions = [
        _condition("PodReadyToStartContainers", pod_ip is not None, None, previous, now),
        _condition("Initialized", initialized, "ContainersNotInitialized", previous, now),
        _condition("ContainersReady", all_ready, "ContainersNotReady", previous, now),
        _condition("Ready", all_ready and not done, "ContainersNotReady", previous, now),
        _condition("PodScheduled", True, None, previous, now),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [c.wire() for c in main],
        "initContainerStatuses": [c.wire() for c in init],
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status


def without_times(status: dict[str, Any]) -> dict[str, Any]:
    """The status minus probe timestamps: a patch is sent only when this changes."""
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if k != "lastProbeTime"} for c in status.get("conditions", [])]
    return out
