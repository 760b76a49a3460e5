"""Reading what a policy decides on: Deployments, PriorityClasses, HPAs, its Secrets.

Objects are read as plain JSON (as the API serves them, camelCase) so the pure modules see
exactly what `kubectl get -o json` shows.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kubernetes import client


class SecretMissing(Exception):
    pass


def _items(response: Any, api_version: str, kind: str) -> list[dict[str, Any]]:
    items = json.loads(response.data)["items"]
    for item in items:  # list items come without their type
        item.setdefault("apiVersion", api_version)
        item.setdefault("kind", kind)
    return items


class ClusterReader:
    def __init__(self, api: client.ApiClient):
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.scheduling = client.SchedulingV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)

    def deployments(self, namespace: str) -> list[dict[str, Any]]:
        return _items(self.apps.list_namespaced_deployment(namespace, _preload_content=False), "apps/v1", "Deployment")

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = self.apps.read_namespaced_deployment(name, namespace, _preload_content=False)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return {"apiVersion": "apps/v1", "kind": "Deployment", **json.loads(response.data)}

    def priority_classes(self) -> list[dict[str, Any]]:
        return _items(self.scheduling.list_priority_class(_preload_content=False),
                      "scheduling.k8s.io/v1", "PriorityClass")

    def hpas(self, namespace: str) -> list[dict[str, Any]]:
        return _items(self.autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace, _preload_content=False),
                      "autoscaling/v2", "HorizontalPodAutoscaler")

    def secret_key(self, namespace: str, name: str, key: str) -> str:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except client.ApiException as error:
            if error.status == 404:
                raise SecretMissing(f"Secret {namespace}/{name} not found") from None
            raise
        data = secret.data or {}
        if key not in data:
            raise SecretMissing(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode().strip()
