"""Server-side apply of the objects the operator owns.

One field manager (`hakeeper`) for every write, so GitOps tools can be told to ignore
exactly those fields, and `force` so the operator takes back a field someone changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kubernetes import client
from hakeeper.api.meta import FIELD_MANAGER


# kind → (API path prefix, plural); only the kinds the operator writes
_PATHS = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "DaemonSet": ("/apis/apps/v1", "daemonsets"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
}


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """The object with a controller reference to its owner, so deleting the owner deletes it."""
    meta = owner["metadata"]
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"],
           "controller": True, "blockOwnerDeletion": True}
    return {**obj, "metadata": {**obj["metadata"], "ownerReferences": [ref]}}


def path_of(obj: dict[str, Any]) -> str:
    prefix, plural = _PATHS[obj["kind"]]
    meta = obj["metadata"]
    return f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


def _request(api: client.ApiClient, method: str, path: str, body: Any = None,
             query: list[tuple[str, str]] | None = None, content_type: str = "application/json") -> Any:
    params = api.param_serialize(
        method, path, query_params=query or [], body=body, auth_settings=["BearerToken"],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
    )
    response = api.call_api(*params)
    data = response.read()
    if not 200 <= response.status < 300:
        raise client.ApiException(status=response.status, reason=response.reason, http_resp=response)
    return json.loads(data) if data else None


def apply(api: client.ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    return _request(api, "PATCH", path_of(obj), body=obj, content_type="application/apply-patch+yaml",
                    query=[("fieldManager", FIELD_MANAGER), ("force", "true")])


def apply_all(api: client.ApiClient, objs: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [apply(api, obj) for obj in objs if obj is not None]


def delete(api: client.ApiClient, obj: dict[str, Any]) -> bool:
    """Deletes if present; True when something was deleted."""
    try:
        _request(api, "DELETE", path_of(obj))
        return True
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
