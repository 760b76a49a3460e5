"""What a pool's pass sees of its surroundings, from the watches (pure).

The operator's watches keep kopf indexes of EndpointSlices (by namespace and Service) and
of pods (trimmed to what a pool reads: see `trim_pod`; keyed by `pod_key`: a balancer pod under
its pool, any other by its name). A pass gets a `Watched` copy of the entries it needs (its
balancer pods and the pods its slices name), taken in the event loop, and works on it alone:
it lists nothing from the API server, and reads nothing of the pods it has no use for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from hakeeper.api.conditions import pod_ready, pod_terminating
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.api.meta import (
    APPLIED_HASH_ANNOTATION,
    BALANCER_COMPONENT,
    COMPONENT_LABEL,
    EFFECTIVE_WEIGHTS_ANNOTATION,
    IPVS_ANNOTATION,
    POOL_LABEL,
    RELOADS_ANNOTATION,
    VRRP_STATE_ANNOTATION,
)
from hakeeper.loadbalancerpool import objects
from hakeeper.loadbalancerpool.backends import Backend, backends_from, matches
from hakeeper.loadbalancerpool.lvs.vrid import VrrpClaim
from hakeeper.loadbalancerpool.status import BalancerPod


@dataclasses.dataclass(frozen=True)
class Watched:
    """The EndpointSlices of the pool's backend Service, the pods of its namespace, and (engine
    lvs) every pool's claim on the pool's virtual router (lvs/vrid.py)."""

    slices: tuple[Mapping[str, Any], ...] = ()
    pods: tuple[Mapping[str, Any], ...] = ()
    vrrp_claims: tuple[VrrpClaim, ...] = ()
    refusals: tuple[Any, ...] = ()
    """The DegradationPolicies' refusals for this pool (request_classes.index_entries' values)."""


def trim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a pod a pool reads (labels, annotations, readiness, node), for the index:
    a cluster's pods are many, their specs are large."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return {
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations", "deletionTimestamp")
                     if k in meta},
        "spec": {"nodeName": (pod.get("spec") or {}).get("nodeName")},
        "status": {"conditions": [{"type": c.get("type"), "status": c.get("status")}
                                  for c in status.get("conditions") or []],
                   "podIP": status.get("podIP")},
    }


def pod_key(pod: Mapping[str, Any]) -> tuple[str | None, ...]:
    """The pod index's key: (namespace, BALANCER_COMPONENT, pool) for a pool's balancer pod,
    (namespace, name) for any other pod (a backend is found by the name its slice gives)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(COMPONENT_LABEL) == BALANCER_COMPONENT and labels.get(POOL_LABEL):
        return (meta.get("namespace"), BALANCER_COMPONENT, labels[POOL_LABEL])
    return (meta.get("namespace"), meta.get("name"))


def slice_pod_names(slices: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The names of the pods the slices' endpoints refer to (targetRef of kind Pod)."""
    return frozenset(ref["name"] for s in slices for e in s.get("endpoints") or []
                     if (ref := e.get("targetRef") or {}).get("kind") == "Pod" and ref.get("name"))


def backends_service_name(pool: str, spec: LoadBalancerPoolSpec) -> str | None:
    """The Service whose EndpointSlices give the backends; None for a pool without backends (engine
    dns over dns.pools)."""
    if spec.backends is None:
        return None
    return spec.backends.service or objects.names(pool)["backends_service"]


def observe_backends(watched: Watched, pool: str,
                     spec: LoadBalancerPoolSpec) -> tuple[list[Backend], list[Mapping[str, Any]]]:
    """The pool's backends, and the pods behind them (for their weight annotations); none for a pool
    without backends (engine dns over dns.pools)."""
    if spec.backends is None:
        return [], []
    pods = {p["metadata"]["name"]: p for p in watched.pods}
    backends = backends_from(spec.backends, watched.slices, pods)
    if spec.backends.selector is not None and spec.backends.selector.match_expressions:
        # the headless Service selects by matchLabels only; the expressions are applied here
        keep = {name for name, pod in pods.items()
                if matches(spec.backends.selector, pod["metadata"].get("labels") or {})}
        backends = [b for b in backends if b.name in keep]
    selected = [pods[b.name] for b in backends if b.name in pods]
    return backends, selected


def observe_balancers(watched: Watched, pool: str) -> list[BalancerPod]:
    """The pool's running balancer pods: readiness, and what their agents reported."""
    out = []
    for pod in balancer_pods(watched.pods, pool):
        meta = pod["metadata"]
        ready = pod_ready(pod)
        annotations = meta.get("annotations") or {}
        reloads = annotations.get(RELOADS_ANNOTATION)
        out.append(BalancerPod(meta["name"], ready, annotations.get(APPLIED_HASH_ANNOTATION),
                               annotations.get(VRRP_STATE_ANNOTATION), (pod.get("spec") or {}).get("nodeName"),
                               annotations.get(IPVS_ANNOTATION),
                               reloads=int(reloads) if reloads and reloads.isdigit() else None,
                               ip=(pod.get("status") or {}).get("podIP"),
                               effective_weights=annotations.get(EFFECTIVE_WEIGHTS_ANNOTATION)))
    return sorted(out, key=lambda b: b.name)


def balancer_pods(pods: Iterable[Mapping[str, Any]], pool: str) -> list[Mapping[str, Any]]:
    """The pool's balancer pods that are not terminating."""
    return [p for p in pods
            if (p["metadata"].get("labels") or {}).get(POOL_LABEL) == pool
            and (p["metadata"].get("labels") or {}).get(COMPONENT_LABEL) == BALANCER_COMPONENT
            and not pod_terminating(p)]
