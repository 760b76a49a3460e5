"""One pass over a pool: render, apply, report (the act step).

Everything decided here comes from pure functions (backends_from, render, the object
builders, pool_status); this module only reads the cluster and writes to it, and is safe
to run again after a crash at any line: every write is a server-side apply of the whole
desired object.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from typing import Any

from hakeeper.api import LOAD_BALANCER_POOL, externaldns
from hakeeper.api.conditions import Verdict
from hakeeper.api.loadbalancerpool import DEFAULT_ALGORITHM, LoadBalancerPoolSpec
from hakeeper.api.meta import CONFIG_HASH_ANNOTATION
from hakeeper.loadbalancerpool import objects
from hakeeper.loadbalancerpool import request_classes as classes
from hakeeper.loadbalancerpool.backends import Backend, invalid_weight_annotations
from hakeeper.loadbalancerpool.dns import records
from hakeeper.loadbalancerpool.dns import targets as dns_targets
from hakeeper.loadbalancerpool.dns.status import Endpoint, dns_status
from hakeeper.loadbalancerpool.haproxy import tls_secret
from hakeeper.loadbalancerpool.haproxy.config import previous_slots, render
from hakeeper.loadbalancerpool.lvs import objects as lvs_objects
from hakeeper.loadbalancerpool.lvs.admission import refusal
from hakeeper.loadbalancerpool.lvs.config import render as render_keepalived
from hakeeper.loadbalancerpool.lvs.vrid import claim_of, conflict
from hakeeper.loadbalancerpool.observe import Watched, observe_backends, observe_balancers
from hakeeper.loadbalancerpool.status import pool_status, refused_status
from hakeeper.platform.kube import ApiError, AppliedObjects, Kube, owned_by
from hakeeper.platform.settings import settings

DEFAULT_AGENT_IMAGE = "ghcr.io/hakeeper/hakeeper:0.1.0"


def agent_image(spec: LoadBalancerPoolSpec) -> str:
    return spec.balancer.agent_image or settings().agent_image or DEFAULT_AGENT_IMAGE


@dataclasses.dataclass
class Outcome:
    status: dict[str, Any]
    config_hash: str
    config_changed: bool
    backends: list[Backend]
    warnings: list[str]
    refused: Verdict | None = None
    """Set when the pool may not run at all (lvs/admission.py), or (haproxy) its TLS Secret cannot be
    served (haproxy/tls_secret.py): why, for the Warning Event."""


def current_config(kube: Kube, pool: str, namespace: str,
                   applied: AppliedObjects | None = None) -> dict[str, str] | None:
    """The data of the pool's ConfigMap as last written, or None before the first write: as this
    process applied it, else read from the API (the first pass after a start)."""
    name = objects.names(pool)["configmap"]
    cm = applied.get("ConfigMap", namespace, name) if applied is not None else None
    if cm is None:
        cm = kube.get("ConfigMap", namespace, name)
    return None if cm is None else cm.get("data") or {}


def _apply(kube: Kube, objs: Iterable[Mapping[str, Any] | None], applied: AppliedObjects | None) -> None:
    if applied is None:
        kube.apply_all(objs)
    else:
        kube.apply_changed(objs, applied, time.monotonic())


def target_pools(kube: Kube, namespace: str, spec: LoadBalancerPoolSpec) -> list[dns_targets.TargetPool]:
    """The pools of dns.pools as they are now, each with its client Service when it is of engine
    haproxy (the Service's address is what is published)."""
    assert spec.dns is not None and spec.dns.pools is not None
    found = []
    for named in spec.dns.pools:
        pool = kube.get(LOAD_BALANCER_POOL.kind, namespace, named.name)
        engine = ((pool or {}).get("spec") or {}).get("engine", "haproxy")
        service = kube.get("Service", namespace, dns_targets.service_name(named.name)) \
            if pool is not None and engine == "haproxy" else None
        found.append(dns_targets.TargetPool(named.name, named.weight, pool, service))
    return found


def publish(kube: Kube, pool: str, namespace: str, endpoint: Mapping[str, Any] | None,
            owner: Mapping[str, Any]) -> Endpoint:
    """Writes the pool's DNSEndpoint (server-side apply), or deletes it when there is nothing to
    publish. A 404 on the write means the cluster has no DNSEndpoint kind (ExternalDNS's CRD is not
    installed): said in the result, not raised, so the status can say it."""
    if endpoint is None:
        kube.delete({"apiVersion": externaldns.API_VERSION, "kind": externaldns.KIND,
                     "metadata": {"name": records.name(pool), "namespace": namespace}})
        return Endpoint()
    try:
        applied = kube.apply(owned_by(endpoint, owner))
    except ApiError as error:
        if error.not_found:
            return Endpoint(crd_missing=True)
        raise
    return Endpoint(generation=(applied.get("metadata") or {}).get("generation"),
                    observed_generation=(applied.get("status") or {}).get("observedGeneration"))


def reconcile_dns(kube: Kube, body: Mapping[str, Any], spec: LoadBalancerPoolSpec, watched: Watched,
                  applied: AppliedObjects | None = None) -> Outcome:
    """Engine dns: the targets (backends, or the pools of dns.pools), the DNSEndpoint of the
    published ones (dns/targets.py says which), the status. The DNSEndpoint is applied every pass:
    the answer carries ExternalDNS's observedGeneration, which the Published condition reads."""
    assert spec.dns is not None
    meta = body["metadata"]
    pool, namespace = meta["name"], meta["namespace"]
    owner = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": meta}
    backends: list[Backend] = []
    warnings: list[str] = []
    if spec.dns.pools is None:
        backends, selected_pods = observe_backends(watched, pool, spec)
        _apply(kube, [owned_by(o, owner) for o in [objects.backends_service(pool, namespace, spec)] if o], applied)
        found = dns_targets.backend_targets(backends)
        warnings = invalid_weight_annotations(selected_pods)
    else:
        found = [dns_targets.pool_target(t) for t in target_pools(kube, namespace, spec)]
    chosen = dns_targets.published(found)
    endpoint = records.dns_endpoint(pool, namespace, spec.dns, chosen)
    written = publish(kube, pool, namespace, endpoint, owner)
    config_hash = None if endpoint is None else records.records_hash(endpoint["spec"]["endpoints"])
    status = dns_status(body.get("status"), meta.get("generation"), spec.dns.hostname, found, chosen, written,
                        config_hash)
    before = (body.get("status") or {}).get("configHash")
    return Outcome(status, config_hash or "", before != config_hash, backends, warnings)


def reconcile(kube: Kube, body: Mapping[str, Any], spec: LoadBalancerPoolSpec, watched: Watched,
              applied: AppliedObjects | None = None) -> Outcome:
    """One pass; raises platform.kube.ApiError when a write fails (the loop retries). With
    `applied` (the pool loop's memory of its writes) only objects that changed are written, and
    the others once `applied.max_age` has passed; without it, every object every pass."""
    engines = {"lvs": reconcile_lvs, "dns": reconcile_dns}
    return engines.get(spec.engine, reconcile_haproxy)(kube, body, spec, watched, applied)


def reconcile_lvs(kube: Kube, body: Mapping[str, Any], spec: LoadBalancerPoolSpec, watched: Watched,
                  applied: AppliedObjects | None = None) -> Outcome:
    meta = body["metadata"]
    pool, namespace = meta["name"], meta["namespace"]
    owner = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": meta}
    config = settings()
    refused = refusal(namespace, spec, config.lvs_allowed_namespaces, config.lvs_allowed_images)
    claimed = claim_of(body)
    if refused is None and claimed is not None:
        refused = conflict(*claimed, watched.vrrp_claims)
    if refused is not None:
        # no privileged pod runs for it, including one started before the cluster admin's
        # values (or the pool's image) changed
        daemonset = lvs_objects.daemonset(pool, namespace, spec)
        if applied is not None:  # allowed again later, it must be written again although unchanged
            applied.forget("DaemonSet", namespace, daemonset["metadata"]["name"])
        kube.delete({"kind": "DaemonSet", "metadata": daemonset["metadata"]})
        return Outcome(refused_status(body.get("status"), meta.get("generation"), refused), "", False, [], [],
                       refused=refused)
    backends, selected_pods = observe_backends(watched, pool, spec)
    balancers = observe_balancers(watched, pool)
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
    _apply(kube, [owned_by(o, owner) for o in desired if o is not None], applied)
    status = pool_status(body.get("status"), meta.get("generation"), spec.algorithm or DEFAULT_ALGORITHM["lvs"],
                         backends, rendered.config_hash, balancers, lvs=True)
    return Outcome(status, rendered.config_hash, before != rendered.config_hash, backends,
                   invalid_weight_annotations(selected_pods))


def reconcile_haproxy(kube: Kube, body: Mapping[str, Any], spec: LoadBalancerPoolSpec,
                      watched: Watched, applied: AppliedObjects | None = None) -> Outcome:
    meta = body["metadata"]
    pool, namespace = meta["name"], meta["namespace"]
    owner = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": meta}
    tls_refused = None
    if spec.tls is not None:
        tls_refused = tls_secret.check(kube.get("Secret", namespace, spec.tls.secret_name), namespace,
                                       spec.tls.secret_name)
        deployment = kube.get("Deployment", namespace, objects.names(pool)["deployment"]) if tls_refused else None
        if tls_refused is not None and tls_secret.serving_secret(deployment) != spec.tls.secret_name:
            # not rolled to pods that cannot start or a configuration that cannot load (tls_secret.py)
            status = tls_secret.with_ready({"conditions": (body.get("status") or {}).get("conditions")},
                                           meta.get("generation"), tls_refused)
            return Outcome(status, "", False, [], [], refused=tls_refused)

    backends, selected_pods = observe_backends(watched, pool, spec)
    balancers = observe_balancers(watched, pool)
    refused = classes.refused(spec, watched.refusals)
    # the slots of the last render: a backend keeps its server slot, so no reload is needed;
    # the balancer replicas are the peers that share a SourceIP stick table (when there is one)
    peers = [(b.name, b.ip) for b in balancers if b.ip]
    rendered = render(pool, spec, backends, previous_slots(current_config(kube, pool, namespace, applied)),
                      peers=peers, refused=[r.name for r in refused])
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
    _apply(kube, [owned_by(o, owner) for o in desired if o is not None], applied)
    if objects.pod_disruption_budget(pool, namespace, spec) is None:
        # a budget of an earlier spec goes; the delete, like an apply, is repeated only past max_age
        absent = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "absent": True,
                  "metadata": {"name": objects.names(pool)["pdb"], "namespace": namespace}}
        now = time.monotonic()
        if applied is None or applied.due(absent, now):
            kube.delete(absent)
            if applied is not None:
                applied.record(absent, now)

    status = pool_status(body.get("status"), meta.get("generation"),
                         spec.algorithm or DEFAULT_ALGORITHM[spec.engine], backends, rendered.config_hash, balancers,
                         latency=spec.weighting.mode == "Latency")
    if tls_refused is not None:  # a broken rotation: the balancers keep their certificate
        status = tls_secret.with_ready(status, meta.get("generation"), tls_refused)
    if spec.request_classes or (body.get("status") or {}).get("refusedRequestClasses"):
        status["refusedRequestClasses"] = [r.model_dump(by_alias=True, mode="json") for r in refused]
    return Outcome(status, rendered.config_hash, before != rendered.config_hash, backends,
                   invalid_weight_annotations(selected_pods), refused=tls_refused)
