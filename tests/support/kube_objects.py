"""Kubernetes objects the e2e tests create, as the dicts `kubectl apply` takes."""

from __future__ import annotations

from typing import Any

BACKEND_IMAGE = "ghcr.io/hakeeper/test-http-backend:1"  # images/test-http-backend


def backend_deployment(name: str, replicas: int, *, labels: dict[str, str] | None = None,
                       priority_class: str | None = None, grace_seconds: int = 5) -> dict[str, Any]:
    """A Deployment (apps/v1, no namespace: give it to `kubectl apply -n`) of the tests' HTTP
    backend: it answers with its pod's name on container port 8080 (named http) and is ready
    when /healthz answers (probed every second, unready after one failure).

    Its pods are labelled app=<name>, which is also its selector; `labels` go on the
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
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
            "spec": {"replicas": replicas, "selector": {"matchLabels": pod_labels},
                     "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec}}}
