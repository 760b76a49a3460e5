"""What `hakeeper uninstall` does, decided from what it read (pure: objects in, patches out).

Objects are plain JSON as the API server serves them (`kubectl get -o json`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hakeeper.api.events import PolicyEvent
from hakeeper.api.meta import FINALIZER
from hakeeper.degradationpolicy import keda
from hakeeper.degradationpolicy.targets import shed_mark

STOP_PATCH: dict[str, Any] = {"spec": {"replicas": 0}}
"""The merge patch that stops the operator: its Deployment at 0 replicas, so no replica re-sheds
a Deployment or puts a finalizer back while the uninstall runs, and none outlives its RBAC."""


def finalizer_patch(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON merge patch removing hakeeper's finalizer (api.meta.FINALIZER) and keeping any
    other, or None when the object does not carry it. A merge patch replaces a list whole, so it
    carries the resourceVersion read: it fails with 409 rather than drop a finalizer that
    someone added meanwhile."""
    meta = obj.get("metadata") or {}
    finalizers = list(meta.get("finalizers") or [])
    if FINALIZER not in finalizers:
        return None
    return {"metadata": {"resourceVersion": meta.get("resourceVersion"),
                         "finalizers": [f for f in finalizers if f != FINALIZER]}}


def shed_by(deployments: Iterable[Mapping[str, Any]],
            scaled_objects: Iterable[Mapping[str, Any]] = ()) -> list[tuple[str, str]]:
    """The (namespace, policy) pairs to release, sorted: each Deployment carrying a valid shed
    mark (degradationpolicy.targets.shed_mark) names the policy (namespace/name) that shed it, and
    each KEDA ScaledObject carrying hakeeper.io/paused-by names the policy that paused it. The
    policy itself may be gone: a Deployment it left shed is restored all the same."""
    found = set()
    for deployment in deployments:
        mark = shed_mark(deployment)
        if mark is not None:
            found.add((deployment["metadata"]["namespace"], mark.policy))
    for so in keda.by_target(scaled_objects).values():
        if so.paused_by is not None:
            found.add((so.namespace, so.paused_by))
    return sorted(found)


def pod_names(pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """The operator pods still there, terminating ones included: a terminating pod still acts
    until its process exits, and needs its RBAC until then."""
    return sorted(p["metadata"]["name"] for p in pods)


def selector(deployment: Mapping[str, Any]) -> str:
    """The label selector (the `labelSelector` query parameter) of a Deployment's pods, from
    its spec.selector.matchLabels; ValueError for a Deployment selecting with matchExpressions
    (the chart's does not)."""
    spec_selector = (deployment.get("spec") or {}).get("selector") or {}
    if spec_selector.get("matchExpressions") or not spec_selector.get("matchLabels"):
        raise ValueError(f"Deployment {deployment['metadata']['name']}: only a matchLabels selector is supported")
    return ",".join(f"{key}={value}" for key, value in sorted(spec_selector["matchLabels"].items()))


EVENT_SOURCE = "hakeeper-uninstall"


def restore_event(deployment: Mapping[str, Any], action: str, message: str, now: str) -> dict[str, Any]:
    """The core/v1 Event telling a Deployment's owner that the uninstall restored it (`action`
    "restored") or only removed its shed mark ("released": something else had scaled it up),
    as the operator's own restore does (api.events.PolicyEvent); `now` is an RFC 3339 time."""
    meta = deployment["metadata"]
    reason = PolicyEvent.RESTORED if action == "restored" else PolicyEvent.RELEASED
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid")},
        "reason": str(reason), "type": str(PolicyEvent.type_of(reason)),
        "message": f"hakeeper uninstalled: {message}"[:1024],
        "source": {"component": EVENT_SOURCE}, "reportingComponent": EVENT_SOURCE,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
