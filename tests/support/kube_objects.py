"""Kubernetes objects the e2e tests create, as the dicts `kubectl apply` takes."""

from __future__ import annotations

from typing import Any

BACKEND_IMAGE = "ghcr.io/hakeeper/test-http-backend:1"  # images/test-http-backend
RESTRICTED_CONTAINER: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                        "runAsNonRoot": True}
"""What Pod Security Standards `restricted` asks of each container (the e2e namespaces enforce it)."""


def restricted(obj: dict[str, Any]) -> dict[str, Any]:
    """obj (a Pod, or a Deployment or any workload with a pod template; other objects are
    returned as they are), its pod given seccompProfile RuntimeDefault and runAsNonRoot and its
    containers RESTRICTED_CONTAINER, where they do not say already; the same object, changed."""
    spec = obj.get("spec") or {}
    pod = spec if "containers" in spec else (spec.get("template") or {}).get("spec")
    if pod is None:
        return obj
    pod_sc = pod.setdefault("securityContext", {})
    pod_sc.setdefault("runAsNonRoot", True)
    pod_sc.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        sc = container.setdefault("securityContext", {})
        for key, value in RESTRICTED_CONTAINER.items():
            sc.setdefault(key, value)
    return obj


def backend_deployment(name: str, replicas: int, *, labels: dict[str, str] | None = None,
                       priority_class: str | None = None, grace_seconds: int = 5) -> dict[str, Any]:
    """A Deployment (apps/v1, no namespace: give it to `kubectl apply -n`) of the tests' HTTP
    backend: it answers with its pod's name on container port 8080 (named http) and is ready
    when /healthz answers (probed every second, unready after one failure).

    Its pods pass Pod Security Standards `restricted` (the image runs as uid 65532) and are
    labelled app=<name>, which is also its selector; `labels` go on the
    Deployment's own metadata (what a DegradationPolicy tier selects on), `priority_class`
    becomes the pods' priorityClassName, `grace_seconds` their terminationGracePeriodSeconds.
    """
    pod_labels = {"app": name}
    pod_spec: dict[str, Any] = {"terminationGracePeriodSeconds": grace_seconds, "containers": [{
        "name": "web", "image": BACKEND_IMAGE, "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1,
                           "failureThreshold": 1},
    }]}
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    metadata: dict[str, Any] = {"name": name}
    if labels is not None:
        metadata["labels"] = labels
    return restricted({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
                       "spec": {"replicas": replicas, "selector": {"matchLabels": pod_labels},
                                "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec}}})
