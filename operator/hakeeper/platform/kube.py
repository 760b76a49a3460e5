"""The operator's one way to the Kubernetes API: every read and write of every kind goes
through a `Kube`. Bodies in and out are plain dicts, the JSON the API server speaks.

Writes carry one field manager (api/meta.FIELD_MANAGER), so GitOps tools can be told to
ignore exactly those fields. Server-side apply uses `force`, so the operator takes back a
field someone changed (https://kubernetes.io/docs/reference/using-api/server-side-apply/).
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client, config

from hakeeper.api import KINDS, externaldns
from hakeeper.api.meta import FIELD_MANAGER

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
SHARED_POOL_SIZE = 64
"""Connections of the process's one Kube: every pool's and database's loop thread and the
DegradationPolicy workers share it."""


def applied_fields(obj: Mapping[str, Any]) -> bytes | None:
    """A digest of the set of fields FIELD_MANAGER owns by server-side apply in `obj` (the
    `fieldsV1` of its managedFields entry with operation Apply, no subresource), or None when it
    has none. A digest and not the set: a Deployment's is tens of kB as Python objects, and a
    thousand pools' owned objects kept 60 MB of them (bench/scale).

    Another writer who changes the value of such a field takes it from this set (an update, or an
    apply with force), and a field removed leaves it, so the set changes exactly when someone
    undid part of the operator's apply; fields the cluster adds (defaults, status, a controller's
    annotations) are not in it (https://kubernetes.io/docs/reference/using-api/server-side-apply/
    #field-management)."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or ():
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply" \
                and not entry.get("subresource"):
            canonical = json.dumps(entry.get("fieldsV1"), sort_keys=True, separators=(",", ":"))
            return hashlib.blake2b(canonical.encode(), digest_size=16).digest()
    return None


@dataclasses.dataclass
class AppliedObjects:
    """What one loop (a pool's, say) last applied, by kind, namespace and name: the object, when
    (monotonic seconds) and the fields the API server's answer says the operator owns. An endpoint
    change then writes the one object it changes (the pool's ConfigMap), not every object the pool
    owns (measured by bench/scale: each change sent its Service, ServiceAccount, Role, RoleBinding,
    Deployment and budget again).

    Drift: a watch of the owned kinds hands each event to `drifted`, which marks the object to be
    applied again when it was deleted or its owned fields changed (someone edited what the
    operator applied) — the way controller-runtime's Owns() requeues the owner. Past `max_age` an
    object is applied again although unchanged: a safety net for an event the watch missed (a
    re-list after an expired watch reports no deletion)."""

    max_age: float
    last: dict[tuple[str, str | None, str], tuple[str, float, bytes | None, int]] = dataclasses.field(
        default_factory=dict)
    """(kind, namespace, name) -> (the object as canonical JSON, when it was applied, the digest of
    the owned fields in the answer, the drift count when the apply was sent)."""
    spread: float = 0.0
    """Each object's age limit is max_age × (1 - spread × a fraction fixed by its key, in [0, 1)):
    objects applied together (a thousand pools at the operator's start) are not all applied again
    in the same second max_age later, nor at every max_age after (bench/scale saw such a wave of
    35 applies a second hold up the endpoint changes behind it)."""
    drifts: dict[tuple[str, str | None, str], int] = dataclasses.field(default_factory=dict)
    """How many times each object was seen drifted: an apply sent before the latest drift (its
    answer may come back after the event) does not count as its repair."""

    @staticmethod
    def key(obj: Mapping[str, Any]) -> tuple[str, str | None, str]:
        return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]

    def age_limit(self, key: tuple[str, str | None, str]) -> float:
        """Seconds after which this object is applied again although unchanged."""
        if not self.spread:
            return self.max_age
        fraction = int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:4], "big") / 2**32
        return self.max_age * (1.0 - self.spread * fraction)

    @staticmethod
    def canonical(obj: Mapping[str, Any]) -> str:
        """The form `due` compares and `record` keeps (JSON, keys sorted)."""
        return json.dumps(obj, sort_keys=True)

    def due(self, obj: Mapping[str, Any], now: float, canonical: str | None = None) -> bool:
        """Whether `obj` is to be sent: new, changed, drifted or aged. `canonical`: its
        canonical() when the caller has it already."""
        key = self.key(obj)
        seen = self.last.get(key)
        return (seen is None or seen[0] != (canonical or self.canonical(obj)) or now - seen[1] >= self.age_limit(key)
                or seen[3] != self.drifts.get(key, 0))

    def epoch(self, obj: Mapping[str, Any]) -> int:
        """The object's drift count, to read before sending its apply and give to `record`."""
        return self.drifts.get(self.key(obj), 0)

    def record(self, obj: Mapping[str, Any], now: float, answer: Mapping[str, Any] | None = None,
               epoch: int | None = None, canonical: str | None = None) -> None:
        """`obj` was applied at `now`; `answer` is the API server's answer (its managedFields),
        `epoch` the drift count read before the apply was sent (default: now's), `canonical` its
        canonical() when the caller has it."""
        key = self.key(obj)
        self.last[key] = (canonical or self.canonical(obj), now,
                          None if answer is None else applied_fields(answer),
                          self.drifts.get(key, 0) if epoch is None else epoch)

    def drifted(self, live: Mapping[str, Any], deleted: bool) -> bool:
        """Whether a watch event of an object this loop applied shows it deleted or its owned fields
        changed; if so it is due again (True). An object not applied by this process yet is not
        drifted: the loop's first pass applies everything. Call from one thread (the event loop)."""
        key = self.key(live)
        seen = self.last.get(key)
        if seen is None or (not deleted and (seen[2] is None or applied_fields(live) == seen[2])):
            return False
        self.drifts[key] = self.drifts.get(key, 0) + 1
        return True

    def drifts_pending(self) -> bool:
        """Whether an object drifted since its last apply was sent (`drifted` said so): the loop
        renders its objects again at once."""
        return any(seen[3] != self.drifts.get(key, 0) for key, seen in self.last.items())

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object as this process last applied it, or None."""
        seen = self.last.get((kind, namespace, name))
        return None if seen is None else json.loads(seen[0])

    def forget(self, kind: str, namespace: str | None, name: str) -> None:
        self.last.pop((kind, namespace, name), None)


@dataclasses.dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API: `/api/v1` or `/apis/<group>/<version>`, its plural."""

    prefix: str
    plural: str
    namespaced: bool = True


RESOURCES: dict[str, Resource] = {
    "ConfigMap": Resource("/api/v1", "configmaps"),
    "Event": Resource("/api/v1", "events"),  # kopf posts the operator's; `hakeeper uninstall` its own
    "Namespace": Resource("/api/v1", "namespaces", namespaced=False),
    "PersistentVolumeClaim": Resource("/api/v1", "persistentvolumeclaims"),  # a backup's volume target
    "Pod": Resource("/api/v1", "pods"),
    "Secret": Resource("/api/v1", "secrets"),
    "Service": Resource("/api/v1", "services"),
    "ServiceAccount": Resource("/api/v1", "serviceaccounts"),
    "DaemonSet": Resource("/apis/apps/v1", "daemonsets"),
    "Deployment": Resource("/apis/apps/v1", "deployments"),
    "StatefulSet": Resource("/apis/apps/v1", "statefulsets"),
    "CronJob": Resource("/apis/batch/v1", "cronjobs"),  # a database's scheduled backups
    "Job": Resource("/apis/batch/v1", "jobs"),  # their runs, read for their reports
    "EndpointSlice": Resource("/apis/discovery.k8s.io/v1", "endpointslices"),
    "HorizontalPodAutoscaler": Resource("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": Resource("/apis/policy/v1", "poddisruptionbudgets"),
    "PriorityClass": Resource("/apis/scheduling.k8s.io/v1", "priorityclasses", namespaced=False),
    "Role": Resource("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": Resource("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    # KEDA's, when installed (a DegradationPolicy pauses the ScaledObject of what it sheds)
    "ScaledObject": Resource("/apis/keda.sh/v1alpha1", "scaledobjects"),
    # ExternalDNS's, when installed (an engine dns pool publishes its records in one)
    externaldns.KIND: Resource(f"/apis/{externaldns.API_VERSION}", externaldns.PLURAL),
    **{k.kind: Resource(f"/apis/{k.api_version}", k.plural) for k in KINDS},
}
"""Every kind the operator reads or writes, and nothing else."""


class ApiError(Exception):
    """The API server answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"{status} {reason}: {body[:300]}" if body else f"{status} {reason}")
        self.status, self.reason, self.body = status, reason, body

    @property
    def not_found(self) -> bool:
        return self.status == 404


def owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> dict[str, Any]:
    """The object with a controller reference to its owner, so deleting the owner deletes it (pure)."""
    meta = owner["metadata"]
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"],
           "controller": True, "blockOwnerDeletion": True}
    return {**obj, "metadata": {**obj["metadata"], "ownerReferences": [ref]}}


def path(kind: str, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
    """The REST path of a collection or an object; KeyError for a kind not in RESOURCES."""
    resource = RESOURCES[kind]
    parts = [resource.prefix]
    if resource.namespaced and namespace is not None:
        parts += ["namespaces", namespace]
    parts.append(resource.plural)
    if name is not None:
        parts.append(name)
    if subresource is not None:
        parts.append(subresource)
    return "/".join(parts)


def _configuration(pool_size: int) -> client.Configuration:
    """From the pod's ServiceAccount, or else $KUBECONFIG / ~/.kube/config."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return configuration


class Kube:
    """A connection pool to the API server with the few verbs the operator uses.

    Thread-safe: size `pool_size` for the threads that share it. Every method raises
    ApiError for an error status, except where it says what it returns instead.
    """

    def __init__(self, pool_size: int = 8, api: client.ApiClient | None = None) -> None:
        self.api = api or client.ApiClient(_configuration(pool_size))

    def request(self, method: str, url: str, body: Any = None, query: Iterable[tuple[str, str]] = (),
                content_type: str = "application/json") -> Any:
        """One call; the decoded JSON answer (None when empty)."""
        params = self.api.param_serialize(
            method, url, query_params=list(query), body=body, auth_settings=["BearerToken"],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
        )
        try:
            response = self.api.call_api(*params)
        except client.ApiException as error:
            raise ApiError(error.status or 0, str(error.reason), str(error.body or "")) from None
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiError(response.status, str(response.reason), data.decode(errors="replace") if data else "")
        return json.loads(data) if data else None

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            found: dict[str, Any] = self.request("GET", path(kind, namespace, name))
            return found
        except ApiError as error:
            if error.not_found:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, *,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        """The items of a namespace (or of the cluster for namespace None), each with its kind set."""
        query = [("labelSelector", label_selector)] if label_selector else []
        answer = self.request("GET", path(kind, namespace), query=query)
        api_version = answer.get("apiVersion", "")
        return [{"apiVersion": api_version, "kind": kind, **item} for item in answer.get("items") or []]

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        created: dict[str, Any] = self.request("POST", path(obj["kind"], meta.get("namespace")), body=dict(obj),
                                               query=[("fieldManager", FIELD_MANAGER)])
        return created

    def patch(self, kind: str, namespace: str | None, name: str, body: Mapping[str, Any], *,
              subresource: str | None = None) -> dict[str, Any]:
        """A JSON merge patch (RFC 7396), as FIELD_MANAGER."""
        patched: dict[str, Any] = self.request("PATCH", path(kind, namespace, name, subresource), body=dict(body),
                                               query=[("fieldManager", FIELD_MANAGER)], content_type=MERGE_PATCH)
        return patched

    def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        """Merge-patches the status subresource; False when the object is gone."""
        try:
            self.patch(kind, namespace, name, {"status": dict(status)}, subresource="status")
            return True
        except ApiError as error:
            if error.not_found:
                return False
            raise

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of the whole object, forcing conflicts."""
        meta = obj["metadata"]
        applied: dict[str, Any] = self.request(
            "PATCH", path(obj["kind"], meta.get("namespace"), meta["name"]), body=dict(obj),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")], content_type=APPLY_PATCH)
        return applied

    def apply_all(self, objs: Iterable[Mapping[str, Any] | None]) -> builtins.list[dict[str, Any]]:
        return [self.apply(obj) for obj in objs if obj is not None]

    def apply_changed(self, objs: Iterable[Mapping[str, Any] | None], applied: AppliedObjects,
                      now: float) -> int:
        """Server-side apply of each object that differs from what `applied` says this process
        last applied, that drifted since (AppliedObjects.drifted), or whose last apply is
        `applied.max_age` seconds old or more; the count sent. A failed apply raises ApiError and
        leaves that object to be sent again."""
        sent = 0
        for obj in objs:
            if obj is None:
                continue
            canonical = applied.canonical(obj)
            if applied.due(obj, now, canonical):
                epoch = applied.epoch(obj)
                applied.record(obj, now, self.apply(obj), epoch, canonical)
                sent += 1
        return sent

    def delete(self, obj: Mapping[str, Any]) -> bool:
        """Deletes if present; True when something was deleted."""
        meta = obj["metadata"]
        try:
            self.request("DELETE", path(obj["kind"], meta.get("namespace"), meta["name"]))
            return True
        except ApiError as error:
            if error.not_found:
                return False
            raise

    def evict(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Evicts a pod through the Eviction API (policy/v1), which honours its
        PodDisruptionBudgets, as `kubectl drain` does; with `uid`, only that incarnation of the
        pod (a precondition). False when the API refuses now (429: a budget allows no
        disruption) or the pod is gone or was replaced (404, 409); ApiError otherwise.
        https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/"""
        body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction",
                                "metadata": {"name": name, "namespace": namespace}}
        if uid is not None:
            body["deleteOptions"] = {"preconditions": {"uid": uid}}
        try:
            self.request("POST", path("Pod", namespace, name, "eviction"), body=body)
            return True
        except ApiError as error:
            if error.status in (404, 409, 429):
                return False
            raise


_shared: Kube | None = None


def shared() -> Kube:
    """The process's one Kube, made on first use."""
    global _shared
    if _shared is None:
        _shared = Kube(SHARED_POOL_SIZE)
    return _shared
