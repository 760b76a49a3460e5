"""Reading what a policy decides on: Deployments, PriorityClasses, HPAs, KEDA ScaledObjects, its Secrets.

Objects are read as plain JSON (as the API serves them, camelCase) so the pure modules see
exactly what `kubectl get -o json` shows.
"""

from __future__ import annotations

import base64
from typing import Any

from hakeeper.platform.kube import ApiError, Kube


class SecretMissing(Exception):
    pass


class ClusterReader:
    """The reads of one evaluation; every method raises platform.kube.ApiError."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def deployments(self, namespace: str) -> list[dict[str, Any]]:
        return self.kube.list("Deployment", namespace)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get("Deployment", namespace, name)

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        """A namespace's labels; None when there is no such namespace."""
        namespace = self.kube.get("Namespace", None, name)
        return None if namespace is None else dict(namespace["metadata"].get("labels") or {})

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
