"""A ReplicatedDatabase on Kubernetes: its objects, its members, the role labels, its status.

The clustering decisions are the clustering loop's; this module gathers what the loop needs from the
cluster (members and their pod IPs, credentials, the remembered state) and carries out what
it decided on the Kubernetes side. Order matters for crash safety: the new primary and the
loop's memory are written to the status before the role label moves, so an operator that
dies in between finds the decision on restart and only has to move the label.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from hakeeper.api.conditions import DatabaseReason
from hakeeper.api.meta import FORCE_FAILOVER_ANNOTATION, ROLE_LABEL, SWITCHOVER_ANNOTATION
from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec
from hakeeper.platform.kube import Kube, owned_by
from hakeeper.replicateddatabase import objects
from hakeeper.replicateddatabase import status as status_
from hakeeper.replicateddatabase.clustering import Credentials, LoopMemory, Member, StepResult
from hakeeper.replicateddatabase.clustering.classify import ANY_REPLICA


class CredentialsMissing(RuntimeError):
    """The credentials Secret, or one of its keys, is missing (Ready=False, this reason)."""

    reason = DatabaseReason.CREDENTIALS_MISSING


class CredentialsInvalid(CredentialsMissing):
    """A password the servers' init file cannot hold: a line break or a NUL (the server reads
    the file a line at a time)."""

    reason = DatabaseReason.CREDENTIALS_INVALID


def ensure_objects(kube: Kube, body: Mapping[str, Any], spec: ReplicatedDatabaseSpec) -> None:
    meta = body["metadata"]
    db, namespace = meta["name"], meta["namespace"]
    owner = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": meta}
    if spec.credentials.secret_name is None and kube.get("Secret", namespace, objects.names(db)["credentials"]) is None:
        # generated once; never rewritten (the passwords live in the datadirs too)
        kube.create(owned_by(objects.credentials_secret(db, namespace), owner))
    desired = [objects.config_map(db, namespace, spec), *objects.services(db, namespace, spec),
               objects.statefulset(db, namespace, spec, secret_name(db, spec)),
               objects.pod_disruption_budget(db, namespace, spec)]
    kube.apply_all([owned_by(o, owner) for o in desired if o is not None])


def secret_name(db: str, spec: ReplicatedDatabaseSpec) -> str:
    return spec.credentials.secret_name or objects.names(db)["credentials"]


def credentials(kube: Kube, db: str, namespace: str, spec: ReplicatedDatabaseSpec) -> Credentials:
    """The passwords from the database's Secret; CredentialsMissing when it or a key is missing,
    CredentialsInvalid when a password has a line break or NUL (quotes and backslashes are fine:
    the init script escapes them)."""
    name = secret_name(db, spec)
    secret = kube.get("Secret", namespace, name)
    if secret is None:
        raise CredentialsMissing(f"secret {name} not found")
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    missing = [k for k in objects.PASSWORD_KEYS if not data.get(k)]
    if missing:
        raise CredentialsMissing(f"secret {name} lacks {', '.join(missing)}")
    unfit = [k for k in objects.PASSWORD_KEYS if any(c in data[k] for c in "\r\n\0")]
    if unfit:
        raise CredentialsInvalid(f"secret {name}: {', '.join(unfit)} has a line break or NUL, which the servers' "
                                 "init file cannot hold; set a password without one")
    return Credentials(root_password=data["root-password"], replication_password=data["replication-password"],
                       operator_password=data["operator-password"], replication_user=objects.REPLICATION_USER,
                       operator_user=objects.OPERATOR_USER)


def members(kube: Kube, db: str, namespace: str, spec: ReplicatedDatabaseSpec) -> tuple[
        list[Member], dict[str, dict[str, Any]]]:
    """Members in ordinal order, each at its pod IP (or its stable DNS name while it has none)."""
    selector = ",".join(f"{k}={v}" for k, v in objects.selector(db).items())
    pods = {p["metadata"]["name"]: p for p in kube.list("Pod", namespace, label_selector=selector)}
    out = []
    for ordinal in range(spec.replicas):
        name = f"{db}-{ordinal}"
        pod = pods.get(name)
        ip = ((pod or {}).get("status") or {}).get("podIP")
        # no IP: the probe fails, which is the truth; the member stays in the list so a lost
        # primary is counted as failing rather than forgotten
        out.append(Member(name=name, host=ip or f"{name}.{objects.names(db)['headless']}.{namespace}.svc",
                          port=3306))
    return out, pods


def switchover_request(body: Mapping[str, Any], db: str, spec: ReplicatedDatabaseSpec,
                       pods: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[str, str] | None:
    """(request id, target member) of a switchover asked for and not yet carried out.

    Asked for by the annotation, by spec.switchover.targetMember, or by the deletion of the
    current primary's pod (a drain, a rollout, `kubectl delete pod`): then to the best replica
    (classify.ANY_REPLICA), while the pod's preStop hook keeps its server up."""
    primary = (body.get("status") or {}).get("currentPrimary")
    primary_pod = (pods or {}).get(primary or "") or {}
    annotated = ((body["metadata"].get("annotations") or {}).get(SWITCHOVER_ANNOTATION) or "").strip()
    if annotated:
        target = annotated if annotated.startswith(f"{db}-") else f"{db}-{annotated}"
        request = f"annotation:{target}"
    elif spec.switchover.target_member is not None:
        target = f"{db}-{spec.switchover.target_member}"
        request = f"spec:{body['metadata'].get('generation')}:{target}"
    elif primary_pod.get("metadata", {}).get("deletionTimestamp"):
        target = ANY_REPLICA
        request = f"terminating:{primary_pod['metadata'].get('uid')}"
    else:
        return None
    if request == (body.get("status") or {}).get("handledSwitchover"):
        return None
    return request, target


def memory_of(status: Mapping[str, Any] | None) -> LoopMemory | None:
    """The loop's memory from the status (status.memory_of: status.loop, or 0.1.0's loopMemory)."""
    return status_.memory_of(status)


def role_labels(kube: Kube, namespace: str, pods: Mapping[str, Mapping[str, Any]],
                result: StepResult) -> list[str]:
    """Moves the role label to match the step; returns the pods changed."""
    changed = []
    for member in result.members:
        pod = pods.get(member["name"])
        if pod is None:
            continue
        # only a serving replica takes reads: one that stopped, lags or is errant leaves -replicas
        want = {"primary": "primary", "replica": "replica" if member.get("serving") else None}.get(member["role"])
        if member["role"] == "primary" and member["name"] != result.primary:
            want = None
        have = (pod["metadata"].get("labels") or {}).get(ROLE_LABEL)
        if have != want:
            kube.patch("Pod", namespace, member["name"], {"metadata": {"labels": {ROLE_LABEL: want}}})
            changed.append(member["name"])
    return changed


def status_of(body: Mapping[str, Any], spec: ReplicatedDatabaseSpec, result: StepResult,
              now_iso: str) -> dict[str, Any]:
    """The status patch after one step (status.status_model, as StatusModel.patch writes it)."""
    needed = status_.replicas_needed(spec.replicas, spec.semi_sync.enabled, spec.semi_sync.wait_for_replica_count)
    return status_.status_model(body, result, now_iso, needed).patch()


def force_request(body: Mapping[str, Any], db: str) -> str | None:
    """The member a person names in the force-failover annotation (a name or an ordinal), or None."""
    annotated = ((body["metadata"].get("annotations") or {}).get(FORCE_FAILOVER_ANNOTATION) or "").strip()
    if not annotated:
        return None
    return annotated if annotated.startswith(f"{db}-") else f"{db}-{annotated}"


def handled_switchover(body: Mapping[str, Any], request: tuple[str, str] | None,
                       result: StepResult) -> tuple[bool, str | None]:
    """(write it, the value) of status.handledSwitchover after a step: the request once its
    switchover completed; cleared once an annotation request it names is gone, so that asking
    again for the same member is a new request (field fault f: it was ignored forever)."""
    if request and result.history and result.history["kind"] == "switchover":
        return True, request[0]
    handled = (body.get("status") or {}).get("handledSwitchover") or ""
    annotated = ((body["metadata"].get("annotations") or {}).get(SWITCHOVER_ANNOTATION) or "").strip()
    if handled.startswith("annotation:") and not annotated:
        return True, None
    return False, None
