"""One pass over a HAProxy pool: observe, render, apply, report (the act step).

Everything decided here comes from pure functions (backends_from, render, the object
builders, pool_status); this module only reads the cluster and writes to it, and is safe
to run again after a crash at any line: every write is a server-side apply of the whole
desired object.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from hakeeper.api.loadbalancerpool import DEFAULT_ALGORITHM, LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.haproxy.config import previous_slots, render
from hakeeper.loadbalancerpool.lvs.config import render as render_keepalived
from hakeeper.platform import apply as kube
from hakeeper.loadbalancerpool.lvs import objects as lvs_objects
from hakeeper.loadbalancerpool import objects
from hakeeper.loadbalancerpool.backends import Backend, backends_from, invalid_weight_annotations, matches
from hakeeper.loadbalancerpool.status import BalancerPod, pool_status
from hakeeper.api.meta import BALANCER_COMPONENT, COMPONENT_LABEL, CONFIG_HASH_ANNOTATION, IPVS_ANNOTATION, POOL_LABEL, VRRP_STATE_ANNOTATION

DEFAULT_AGENT_IMAGE = "ghcr.io/hakeeper/hakeeper:0.1.0"


def agent_image(spec: LoadBalancerPoolSpec) -> str:
    return spec.balancer.agent_image or os.environ.get("HAKEEPER_AGENT_IMAGE") or DEFAULT_AGENT_IMAGE


@dataclasses.dataclass
class Outcome:
    status: dict[str, Any]
    config_hash: str
    config_changed: bool
    backends: list[Backend]
    warnings: list[str]


def backends_service_name(pool: str, spec: LoadBalancerPoolSpec) -> str:
    return spec.backends.service or objects.names(pool)["backends_service"]


def observe_backends(core: client.CoreV1Api, discovery: client.DiscoveryV1Api, pool: str, namespace: str,
                     spec: LoadBalancerPoolSpec) -> tuple[list[Backend], list[dict[str, Any]]]:
    service = backends_service_name(pool, spec)
    slices = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}", _preload_content=False)
    slices = json.loads(slices.data)["items"]
    pods_raw = json.loads(core.list_namespaced_pod(namespace, _preload_content=False).data)["items"]
    pods = {p["metadata"]["name"]: p for p in pods_raw}
    backends = backends_from(spec.backends, slices, pods)
    if spec.backends.selector is not None and spec.backends.selector.match_expressions:
        # the headless Service selects by matchLabels only; the expressions are applied here
        keep = {name for name, pod in pods.items()
                if matches(spec.backends.selector, pod["metadata"].get("labels") or {})}
        backends = [b for b in backends if b.name in keep]
    selected = [pods[b.name] for b in backends if b.name in pods]
    return backends, selected


def current_config(core: client.CoreV1Api, pool: str, namespace: str) -> dict[str, str] | None:
    try:
        cm = core.read_namespaced_config_map(objects.names(pool)["configmap"], namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return cm.data or {}


def observe_balancers(core: client.CoreV1Api, pool: str, namespace: str) -> list[BalancerPod]:
    selector = f"{POOL_LABEL}={pool},{COMPONENT_LABEL}={BALANCER_COMPONENT}"
    pods = json.loads(core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False).data)
    out = []
    for pod in pods["items"]:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        annotations = meta.get("annotations") or {}
        out.append(BalancerPod(meta["name"], ready, annotations.get(objects.APPLIED_HASH_ANNOTATION),
                               annotations.get(VRRP_STATE_ANNOTATION), (pod.get("spec") or {}).get("nodeName"),
                               annotations.get(IPVS_ANNOTATION)))
    return out


def reconcile(api: client.ApiClient, body: Mapping[str, Any], spec: LoadBalancerPoolSpec) -> Outcome:
    return (reconcile_lvs if spec.engine == "lvs" else reconcile_haproxy)(api, body, spec)


def reconcile_lvs(api: client.ApiClient, body: Mapping[str, Any], spec: LoadBalancerPoolSpec) -> Outcome:
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    meta = body["metadata"]
    pool, namespace = meta["name"], meta["namespace"]
    owner = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": meta}
    backends, selected_pods = observe_backends(core, discovery, pool, namespace, spec)
    balancers = observe_balancers(core, pool, namespace)
    # the balancer nodes rank the VRRP priorities; the password stays in its Secret (the agent
    # reads it from a mounted volume), so the ConfigMap never holds it
    nodes = sorted({b.node for b in balancers if b.node})
    rendered = render_keepalived(pool, spec, backends, nodes=nodes)
    desired = [
        *objects.agent_rbac(pool, namespace, configmap=lvs_objects.configmap_name(pool)),
        lvs_objects.config_map(pool, namespace, rendered.files, rendered.config_hash),
        objects.backends_service(pool, namespace, spec),
        lvs_objects.daemonset(pool, namespace, spec),
    ]
    before = (body.get("status") or {}).get("configHash")
    kube.apply_all(api, [kube.owned_by(o, owner) for o in desired if o is not None])
    status = pool_status(body.get("status"), meta.get("generation"), spec.algorithm or DEFAULT_ALGORITHM["lvs"],
                         backends, rendered.config_hash, balancers)
    masters = sorted(b.node or b.name for b in balancers if (b.vrrp_state or "").upper() == "MASTER")
    status["virtualIPHolder"] = ",".join(masters) if masters else None
    return Outcome(status, rendered.config_hash, before != rendered.config_hash, backends,
                   invalid_weight_annotations(selected_pods))


def reconcile_haproxy(api: client.ApiClient, body: Mapping[str, Any], spec: LoadBalancerPoolSpec) -> Outcome:
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    meta = body["metadata"]
    pool, namespace = meta["name"], meta["namespace"]
    owner = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": meta}

    backends, selected_pods = observe_backends(core, discovery, pool, namespace, spec)
    # the slots of the last render: a backend keeps its server slot, so no reload is needed
    rendered = render(pool, spec, backends, previous_slots(current_config(core, pool, namespace)))
    config_map = objects.config_map(pool, namespace, rendered.files)
    config_map["metadata"]["annotations"] = {CONFIG_HASH_ANNOTATION: rendered.config_hash}
    desired = [
        *objects.agent_rbac(pool, namespace),
        config_map,
        objects.backends_service(pool, namespace, spec),
        objects.client_service(pool, namespace, spec),
        objects.deployment(pool, namespace, spec, agent_image(spec), rendered.structure_hash),
        objects.pod_disruption_budget(pool, namespace, spec),
    ]
    before = (body.get("status") or {}).get("configHash")
    kube.apply_all(api, [kube.owned_by(o, owner) for o in desired if o is not None])
    if objects.pod_disruption_budget(pool, namespace, spec) is None:
        kube.delete(api, {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                          "metadata": {"name": objects.names(pool)["pdb"], "namespace": namespace}})

    balancers = observe_balancers(core, pool, namespace)
    status = pool_status(body.get("status"), meta.get("generation"),
                         spec.algorithm or DEFAULT_ALGORITHM[spec.engine], backends, rendered.config_hash, balancers)
    return Outcome(status, rendered.config_hash, before != rendered.config_hash, backends,
                   invalid_weight_annotations(selected_pods))
