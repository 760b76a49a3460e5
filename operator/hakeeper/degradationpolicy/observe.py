"""Reading what a policy decides on: Deployments, PriorityClasses, HPAs, KEDA ScaledObjects, its Secrets.

Objects are read as plain JSON (as the API serves them, camelCase) so the pure modules see
exactly what `kubectl get -o json` shows.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from hakeeper.platform.kube import ApiError, Kube


class SecretMissing(Exception):
    pass


def trim_deployment(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a Deployment a policy reads, for the operator's index of them (a pass reads
    the index instead of listing its namespaces: bench/scale). Keeps the metadata a patch
    needs (resourceVersion: the precondition), the labels and annotations (tiers, shed marks),
    spec.replicas, the pod template's priority, and of managedFields only who set spec.replicas
    (act.replicas_manager)."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    managers = [{"manager": e.get("manager"), "operation": e.get("operation"), "time": e.get("time"),
                 "fieldsV1": {"f:spec": {"f:replicas": {}}}}
                for e in meta.get("managedFields") or []
                if "f:replicas" in (((e.get("fieldsV1") or {}).get("f:spec")) or {})]
    trimmed_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "labels", "annotations",
                                         "deletionTimestamp") if k in meta}
    if managers:
        trimmed_meta["managedFields"] = managers
    trimmed_spec: dict[str, Any] = {k: spec[k] for k in ("replicas",) if k in spec}
    template = {k: pod[k] for k in ("priorityClassName", "priority") if k in pod}
    if template:
        trimmed_spec["template"] = {"spec": template}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": trimmed_meta, "spec": trimmed_spec}


NAMESPACE_LABELS_SECONDS = 5.0
"""How long a namespace's labels, once read, answer every policy (a hundred policies in one
namespace read them once, not a hundred times, per interval: bench/scale). A label added or
removed is seen within this, plus the policy's interval."""


class ClusterReader:
    """The reads of one evaluation; every method raises platform.kube.ApiError. Thread-safe."""

    def __init__(self, kube: Kube, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.clock = clock
        self._namespaces: dict[str, tuple[float, dict[str, str] | None]] = {}
        self._lock = threading.Lock()

    def deployments(self, namespace: str) -> list[dict[str, Any]]:
        return self.kube.list("Deployment", namespace)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get("Deployment", namespace, name)

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        """A namespace's labels; None when there is no such namespace. Read at most once per
        NAMESPACE_LABELS_SECONDS."""
        with self._lock:
            cached = self._namespaces.get(name)
        if cached is not None and self.clock() - cached[0] < NAMESPACE_LABELS_SECONDS:
            return None if cached[1] is None else dict(cached[1])
        at = self.clock()
        namespace = self.kube.get("Namespace", None, name)
        labels = None if namespace is None else dict(namespace["metadata"].get("labels") or {})
        with self._lock:
            self._namespaces[name] = (at, labels)
        return None if labels is None else dict(labels)

    def pool_classes(self, namespace: str, name: str) -> list[str] | None:
        """The request class names a LoadBalancerPool defines; None when there is no such pool."""
        pool = self.kube.get("LoadBalancerPool", namespace, name)
        if pool is None:
            return None
        return [str(c.get("name")) for c in (pool.get("spec") or {}).get("requestClasses") or [] if isinstance(c, dict)]

    def priority_classes(self) -> list[dict[str, Any]]:
        return self.kube.list("PriorityClass")

    def hpas(self, namespace: str) -> list[dict[str, Any]]:
        return self.kube.list("HorizontalPodAutoscaler", namespace)

    def scaled_objects(self, namespace: str) -> list[dict[str, Any]]:
        """KEDA's ScaledObjects (keda.sh/v1alpha1); none where KEDA is not installed (the API server
        answers 404 for a resource no CRD defines)."""
        try:
            return self.kube.list("ScaledObject", namespace)
        except ApiError as error:
            if error.not_found:
                return []
            raise

    def secret_key(self, namespace: str, name: str, key: str) -> str:
        """A key of a Secret, decoded and stripped; SecretMissing when the Secret or the key is."""
        secret = self.kube.get("Secret", namespace, name)
        if secret is None:
            raise SecretMissing(f"Secret {namespace}/{name} not found")
        data = secret.get("data") or {}
        if key not in data:
            raise SecretMissing(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode().strip()
