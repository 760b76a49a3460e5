"""Handlers for ReplicatedDatabase: a daemon per database runs the clustering loop.

Every probeInterval: make sure the objects exist, gather the members' pod IPs and the
credentials, take one step of mysql.loop (gather, classify, plan, act), then write the
decision (primary, loop memory) to the status before moving the role label that the
`-primary` and `-replicas` Services select on, and post the step's Events.
"""

from __future__ import annotations

import json
import time
from typing import Any

import kopf

from hakeeper.api import REPLICATED_DATABASE
from hakeeper.api.common import parse_duration
from hakeeper.api.conditions import now_iso, set_condition
from hakeeper.api.meta import SWITCHOVER_ANNOTATION
from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec
from hakeeper.platform import kube as kubeapi
from hakeeper.platform.spec import mark, parse_spec
from hakeeper.replicateddatabase import reconcile
from hakeeper.replicateddatabase.clustering import Cluster, Policy

GROUP, VERSION = REPLICATED_DATABASE.api_version.split("/")
PLURAL = REPLICATED_DATABASE.plural
OBJECTS_EVERY_SECONDS = 30.0
RETRY_SECONDS = 2.0
STATUS_EVERY_SECONDS = 30.0


@kopf.on.resume(GROUP, VERSION, PLURAL, id="spec")
@kopf.on.create(GROUP, VERSION, PLURAL, id="spec")
@kopf.on.update(GROUP, VERSION, PLURAL, id="spec")
def accept(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    if parse_spec(ReplicatedDatabaseSpec, body, patch) is None:
        return
    if not (body.get("status") or {}).get("phase"):
        mark(body, patch, ready=False, reason="Initializing", message="starting the members",
             extra={"phase": "Initializing"})


@kopf.daemon(GROUP, VERSION, PLURAL, id="cluster", cancellation_timeout=15)
def run_cluster(body: kopf.Body, namespace: str | None, name: str, stopped: kopf.DaemonStopped, logger: Any,
                **_: Any) -> None:
    assert namespace is not None, "a namespaced kind"
    kube = kubeapi.shared()
    kind = REPLICATED_DATABASE.kind
    applied: tuple[int | None, float] = (None, 0.0)
    memory = reconcile.memory_of(body.get("status"))
    primary = (body.get("status") or {}).get("currentPrimary")
    history = list((body.get("status") or {}).get("history") or [])
    last_error = None
    written: tuple[str | None, float] = (None, 0.0)
    while not stopped:
        started = time.monotonic()
        try:
            spec = ReplicatedDatabaseSpec.model_validate(dict(body.get("spec") or {}))
        except ValueError:
            stopped.wait(RETRY_SECONDS)  # the spec handler reports it; wait for a new spec
            continue
        interval = parse_duration(spec.failover.probe_interval)
        try:
            generation = body["metadata"].get("generation")
            if applied[0] != generation or time.monotonic() - applied[1] > OBJECTS_EVERY_SECONDS:
                reconcile.ensure_objects(kube, body, spec)
                applied = (generation, time.monotonic())
            credentials = reconcile.credentials(kube, name, namespace, spec)
            members, pods = reconcile.members(kube, name, namespace, spec)
            cluster = Cluster(spec.flavor, credentials, Policy.from_spec(spec))
            request = reconcile.switchover_request(body, name, spec, pods)
            result = cluster.step(members, primary, memory, switchover_target=request[1] if request else None)
            status = reconcile.status_of({**body, "status": {**(body.get("status") or {}), "history": history}},
                                         result, now_iso())
            if request and result.history and result.history["kind"] == "switchover":
                # done: a later failover must not switch back to this target
                status["handledSwitchover"] = request[0]
            # the decision first: a crash after this line only leaves the label to move. Written
            # when something but the lease's expiry changed (losing that is safe: a failover
            # then waits one lease longer), or at least every STATUS_EVERY_SECONDS
            fingerprint = _fingerprint(status)
            if fingerprint != written[0] or time.monotonic() - written[1] > STATUS_EVERY_SECONDS:
                kube.patch_status(kind, namespace, name, status)
                written = (fingerprint, time.monotonic())
            memory, primary, history = result.memory, result.primary, status["history"]
            reconcile.role_labels(kube, namespace, pods, result)
            if status.get("handledSwitchover", "").startswith("annotation:"):
                kube.patch(kind, namespace, name, {"metadata": {"annotations": {SWITCHOVER_ANNOTATION: None}}})
            for reason, message in result.events:
                kind = "Warning" if reason in ("Failed", "Lost", "ErrantTransactions", "Degraded") else "Normal"
                kopf.event(body, type=kind, reason=reason, message=message)
            if result.error:
                logger.warning("step: %s", result.error)
            last_error = None
        except reconcile.CredentialsMissing as error:
            _report(kube, body, namespace, name, "CredentialsMissing", str(error))
        except kubeapi.ApiError as error:
            message = f"{error.status} {error.reason}"
            if message != last_error:
                kopf.warn(body, reason="ReconcileFailed", message=message)
                last_error = message
        stopped.wait(max(0.05, interval - (time.monotonic() - started)))


def _fingerprint(status: dict[str, Any]) -> str:
    memory = json.loads(status.get("loopMemory") or "{}")
    memory.pop("lease_expires", None)
    conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []]
    return json.dumps({**status, "loopMemory": memory, "conditions": conditions}, sort_keys=True, default=str)


def _report(kube: kubeapi.Kube, body: kopf.Body, namespace: str, name: str, reason: str,
            message: str) -> None:
    conditions = set_condition((body.get("status") or {}).get("conditions"), "Ready", False, reason, message,
                               body["metadata"].get("generation"))
    kube.patch_status(REPLICATED_DATABASE.kind, namespace, name, {"conditions": conditions})
