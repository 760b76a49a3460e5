"""kopf handlers for LoadBalancerPool: check the spec, and run one loop per pool.

A pool's pass (reconcile.py) needs the EndpointSlices of its backends, the backend pods
(weight annotations, labels) and its balancer pods (readiness, what their agents applied).
The watches keep them in kopf indexes; a change to any of them wakes the pools it
concerns, and the pass reads the indexes instead of listing the namespace's pods.
Bursts of events cost one pass; a missed one costs at most RESYNC_SECONDS.

The objects a pool owns (OWNED: its ConfigMap, Services, Deployment or DaemonSet, budget, RBAC)
are watched too: one deleted, or whose fields the operator applied someone changed, wakes its
pool, which applies it again (drift repair, as controller-runtime's Owns() does); unchanged ones
are not written again but after OBJECTS_MAX_AGE, a safety net for an event the watch missed.
"""

from __future__ import annotations

import concurrent.futures
import random
from collections.abc import Hashable, Mapping
from typing import Any

import kopf

from hakeeper.api import DEGRADATION_POLICY, LOAD_BALANCER_POOL
from hakeeper.api.conditions import ConditionType, PoolReason, get_condition
from hakeeper.api.events import CommonEvent, PoolEvent
from hakeeper.api.loadbalancerpool import DEFAULT_ALGORITHM, LoadBalancerPoolSpec
from hakeeper.api.meta import BALANCER_COMPONENT, POOL_LABEL, SERVICE_NAME_LABEL
from hakeeper.loadbalancerpool import request_classes
from hakeeper.loadbalancerpool.dns import status as dns_status
from hakeeper.loadbalancerpool.lvs.vrid import claim_of
from hakeeper.loadbalancerpool.notices import ConfigNotices
from hakeeper.loadbalancerpool.observe import Watched, backends_service_name, pod_key, slice_pod_names, trim_pod
from hakeeper.loadbalancerpool.reconcile import reconcile
from hakeeper.loadbalancerpool.status import split_brain_began
from hakeeper.loadbalancerpool.telemetry import PoolTelemetry
from hakeeper.platform import kube as kubeapi
from hakeeper.platform import loop, owned
from hakeeper.platform.spec import on_spec, parse_spec

GROUP, VERSION = LOAD_BALANCER_POOL.api_version.split("/")
PLURAL = LOAD_BALANCER_POOL.plural
RESYNC_SECONDS = 300.0
"""A pass at least this often: everything a pass reads is watched (slices, pods, pools, policies,
owned objects), so this only bounds what a missed event costs (33 passes a second at 1,000 pools
with the 30 s it was: bench/scale)."""
RESYNC_SPREAD = 0.5
"""The share of the resync period a pass's next one may come sooner (resync)."""
TLS_RESYNC_SECONDS = 30.0
"""A pool with TLS: its Secret is read at each pass and not watched (the operator may only get the
Secrets it is named), so a rotated certificate reaches the balancers within this."""
OBJECTS_MAX_AGE = 3600.0
"""A pool's owned objects are written when they change or drift (the OWNED watches), and again
after this many seconds unchanged (spread down to half of it): the safety net for a deletion the
watch did not report (kopf re-lists after an expired watch without reporting what went)."""
OWNED = (("", "v1", "configmaps"), ("", "v1", "services"), ("", "v1", "serviceaccounts"),
         ("apps", "v1", "deployments"), ("apps", "v1", "daemonsets"), ("policy", "v1", "poddisruptionbudgets"),
         ("rbac.authorization.k8s.io", "v1", "roles"), ("rbac.authorization.k8s.io", "v1", "rolebindings"))
"""(group, version, plural) of every kind a pool applies (objects.py, lvs/objects.py) but the
DNSEndpoint (its CRD may be missing; an engine dns pool applies it at every pass)."""
DNS_PUBLISH_RETRY_SECONDS = 5.0
"""Engine dns, while ExternalDNS has not read the pool's DNSEndpoint: how often the pass reads it
again (the operator does not watch DNSEndpoints: their CRD may be missing)."""
DNS_CRD_RETRY_SECONDS = 10.0
"""Engine dns, while ExternalDNS's CRD is missing: how often the pass tries the DNSEndpoint again."""
TLS_SECRET_RETRY_SECONDS = 5.0
"""While a pool's TLS Secret is refused: the operator may not watch Secrets (it only gets the one
named), so it reads it again this often, and a fixed Secret is served within seconds."""
WORKERS = 8
"""Threads for the pools' passes (Kubernetes writes: a pass holds one for a few ms). The operator's
threads stay under 64 at a thousand pools (bench/scale): 8 here, 8 per other kind, 8 probes."""
STATUS_MAX_AGE = OBJECTS_MAX_AGE
"""An unchanged status is written again after this many seconds (the StatusWriter's heartbeat; a
pool's status has no field that changes without a write): at the loop's 30 s default a thousand
idle pools wrote 33 statuses a second, and at 300 s every resync pass wrote one (3.3 a second)."""

LOOP = loop.Loop(kind=LOAD_BALANCER_POOL.kind, failure_reason=CommonEvent.RECONCILE_FAILED, retry=2.0, debounce=0.1,
                 executor=concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="loadbalancerpool"))
_wakeups = loop.Wakeups()
_telemetry: dict[tuple[str, str], PoolTelemetry] = {}


@on_spec(LOAD_BALANCER_POOL)
async def accept(body: kopf.Body, patch: kopf.Patch, namespace: str | None, name: str, **_: Any) -> None:
    parsed = parse_spec(LoadBalancerPoolSpec, body, patch)
    if parsed is None:
        return
    # engine dns has no algorithm: resolvers and clients choose among the records
    patch.status["algorithm"] = parsed.algorithm or DEFAULT_ALGORITHM.get(parsed.engine)
    _wakeups.wake((namespace, name))


@kopf.index("discovery.k8s.io", "v1", "endpointslices")
async def slices_by_service(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Hashable, Any]:
    service = (body.metadata.labels or {}).get(SERVICE_NAME_LABEL)
    if not service:
        # {} and not None: kopf keeps an object's earlier entries when its index function returns
        # None, so a slice that lost its label would stay indexed under its old Service
        return {}
    return {(namespace, service): {k: body.get(k) for k in ("addressType", "endpoints", "ports")}}


@kopf.index("", "v1", "pods")
async def pods_by_key(body: kopf.Body, **_: Any) -> dict[Hashable, Any]:
    """observe.pod_key: a pass takes its balancer pods and the pods its slices name, not every pod
    of its namespace (a thousand pools in one namespace copied a thousand pods at every pass)."""
    return {pod_key(body): trim_pod(body)}


@kopf.index(GROUP, VERSION, PLURAL)
async def vrrp_claims(body: kopf.Body, **_: Any) -> dict[Hashable, Any]:
    """lvs pools by (interface, virtualRouterID): who else runs that virtual router (lvs/vrid.py).
    A pool that stops claiming (its spec became invalid) returns {}: None would keep its old claim."""
    claimed = claim_of(body)
    return {} if claimed is None else {claimed[0]: claimed[1]}


@kopf.index(GROUP, VERSION, DEGRADATION_POLICY.plural)
async def refusals_by_pool(body: kopf.Body, **_: Any) -> dict[Hashable, Any]:
    return request_classes.index_entries(body)


_refusing: dict[tuple[str | None, str], dict[Hashable, Any]] = {}
"""Per DegradationPolicy, what its status refused last, by pool: a pool is woken when its part
changes (the policy writes its status every interval; most writes change nothing for the pools)."""


@kopf.on.event(GROUP, VERSION, DEGRADATION_POLICY.plural)
async def policy_changed(body: kopf.Body, namespace: str | None, name: str, type: str | None, **_: Any) -> None:
    now = {} if type == "DELETED" else request_classes.index_entries(body)
    before = _refusing.pop((namespace, name), {})
    for key in set(now) | set(before):
        if now.get(key) != before.get(key):
            _wakeups.wake(key)
    if now:
        _refusing[(namespace, name)] = now


@kopf.daemon(GROUP, VERSION, PLURAL, id="pool", cancellation_timeout=10)
async def run_pool(body: kopf.Body, namespace: str | None, name: str, stopped: kopf.DaemonStopped, logger: Any,
                   slices_by_service: kopf.Index[Any, Any] | None = None,
                   pods_by_key: kopf.Index[Any, Any] | None = None,
                   vrrp_claims: kopf.Index[Any, Any] | None = None,
                   refusals_by_pool: kopf.Index[Any, Any] | None = None, **_: Any) -> None:
    # kopf passes every index to every handler, by the name of the function that keeps it
    assert namespace is not None and slices_by_service is not None and pods_by_key is not None
    assert vrrp_claims is not None and refusals_by_pool is not None
    key = (namespace, name)
    wake = _wakeups.register(key)
    telemetry = _telemetry[key] = PoolTelemetry()
    writer = loop.StatusWriter(kubeapi.shared(), LOAD_BALANCER_POOL.kind, namespace, name, max_age=STATUS_MAX_AGE)
    applied = kubeapi.AppliedObjects(max_age=OBJECTS_MAX_AGE, spread=0.5)
    owned.OWNERS.register((LOAD_BALANCER_POOL.kind, namespace, name), applied, wake.set)
    notices = ConfigNotices()

    def step(snapshot: Mapping[str, Any], watched: Watched) -> loop.Outcome:
        try:
            spec = LoadBalancerPoolSpec.model_validate(snapshot["spec"])
        except ValueError:
            return loop.Outcome()  # the spec handler reported it; wait for a new spec
        outcome = reconcile(kubeapi.shared(), snapshot, spec, watched, applied)
        if spec.engine == "dns":
            events = [loop.Event.of(PoolEvent.INVALID_WEIGHT, warning) for warning in outcome.warnings]
            events += [loop.Event.of(reason, message)
                       for reason, message in dns_status.events(snapshot.get("status"), outcome.status)]
            published = get_condition(outcome.status.get("conditions"), ConditionType.PUBLISHED) or {}
            retry: dict[str, float] = {PoolReason.AWAITING_EXTERNAL_DNS: DNS_PUBLISH_RETRY_SECONDS,
                                       PoolReason.DNS_ENDPOINT_CRD_MISSING: DNS_CRD_RETRY_SECONDS}
            next_in = retry.get(str(published.get("reason")), RESYNC_SECONDS)
            return loop.Outcome(status=outcome.status, events=events, next_in=next_in)
        if outcome.refused is not None:  # a Warning when it starts, or its reason changes
            was = get_condition((snapshot.get("status") or {}).get("conditions"), ConditionType.READY) or {}
            posted = was.get("reason") == outcome.refused.reason and was.get("status") == "False"
            events = [] if posted else [loop.Event.of(PoolEvent(outcome.refused.reason), outcome.refused.message)]
            tls = outcome.refused.reason == PoolReason.TLS_SECRET_INVALID
            return loop.Outcome(status=outcome.status, events=events,
                                next_in=TLS_SECRET_RETRY_SECONDS if tls else resync(spec))
        events = [loop.Event.of(PoolEvent.INVALID_WEIGHT, warning) for warning in outcome.warnings]
        split = split_brain_began(snapshot.get("status"), outcome.status)
        if split is not None:
            events.append(loop.Event.of(PoolEvent.MULTIPLE_MASTERS, split))
        events += [loop.Event.of(reason, message)
                   for reason, message in request_classes.events(snapshot.get("status"), outcome.status)]
        if outcome.config_changed:
            ready = sum(b.state == "ready" for b in outcome.backends)
            notices.changed(f"config {outcome.config_hash}: {ready}/{len(outcome.backends)} backends ready")
        message, held = notices.take()
        if message is not None:
            events.insert(0, loop.Event.of(PoolEvent.CONFIG_CHANGED, message))
        return loop.Outcome(status=outcome.status, events=events,
                            next_in=resync(spec) if held is None else min(held, resync(spec)))

    rendered_slices: tuple[Any, ...] | None = None

    def watched(snapshot: Mapping[str, Any]) -> Watched:
        """Taken in the event loop, where kopf updates the indexes; the pass runs elsewhere."""
        nonlocal rendered_slices
        try:
            spec = LoadBalancerPoolSpec.model_validate(snapshot["spec"])
        except ValueError:
            return Watched()
        service = backends_service_name(name, spec)
        claimed = claim_of(snapshot)
        vrrp = None if claimed is None else claimed[0]
        selector = None if spec.backends is None else spec.backends.selector
        target_pools = frozenset(p.name for p in (spec.dns.pools or ())) if spec.dns is not None else frozenset()
        slices = tuple(slices_by_service.get((namespace, service), ()))
        if rendered_slices is not None and slices != rendered_slices:
            # the slice change is in this pass whether or not the slice handler has run yet: kopf
            # updates the index, then awaits before the handler, and a pass taken in between
            # rendered the change with no time to measure it from (a propagation then went
            # unmeasured: e2e test_monitoring, once). Marked now: at most that await late.
            telemetry.slices_changed()
        rendered_slices = slices
        names = slice_pod_names(slices)
        topics = frozenset({("slices", namespace, service), *(("pod", namespace, n) for n in names),
                            *(("pool", namespace, p) for p in target_pools)})
        _wakeups.watch(key, (service, selector, vrrp, target_pools, names), topics)
        pods = [p for n in sorted(names) for p in pods_by_key.get((namespace, n), ())]
        pods += pods_by_key.get((namespace, BALANCER_COMPONENT, name), ())
        return Watched(slices=slices, pods=tuple(pods),
                       vrrp_claims=tuple(vrrp_claims.get(vrrp, ())) if vrrp is not None else (),
                       refusals=tuple(refusals_by_pool.get((namespace, name), ())))

    try:
        await loop.run(LOOP, body, writer, step, wake, stopped, logger, observe=watched, telemetry=telemetry)
    finally:
        _wakeups.unregister(key)
        _telemetry.pop(key, None)
        owned.OWNERS.unregister((LOAD_BALANCER_POOL.kind, namespace, name))


def resync(spec: LoadBalancerPoolSpec) -> float:
    """Seconds to the pool's next pass when nothing wakes it: the period less up to a half, drawn
    at each pass, so pools created together (a thousand at the operator's start) do not all pass in
    the same second at every period after (jitter, as client-go's resync does not but its
    workqueue's rate limiter does)."""
    period = TLS_RESYNC_SECONDS if spec.tls is not None else RESYNC_SECONDS
    return period * (1.0 - RESYNC_SPREAD * random.random())


def _client_service_changed(owner: owned.OwnerKey, body: Mapping[str, Any], type_: str | None) -> None:
    # an engine dns pool publishing a pool reads its client Service's address (a load balancer's
    # ingress, written by the cloud's controller): wake it
    if owner[0] == LOAD_BALANCER_POOL.kind and body.get("kind") == "Service":
        _wakeups.wake_topic(("pool", owner[1], owner[2]))


owned.OWNERS.label(LOAD_BALANCER_POOL.kind, POOL_LABEL)
owned.OWNERS.hook(_client_service_changed)
owned.OWNERS.watch(OWNED)


@kopf.on.event("discovery.k8s.io", "v1", "endpointslices")
async def endpoint_slice_changed(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    service = (body.metadata.labels or {}).get(SERVICE_NAME_LABEL)
    if service:
        for key in _wakeups.wake_topic(("slices", namespace, service)):
            if key in _telemetry:
                _telemetry[key].slices_changed()


@kopf.on.event("", "v1", "pods")
async def pod_changed(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    labels = dict(body.metadata.labels or {})
    pool = labels.get(POOL_LABEL)
    if pool is not None:
        _wakeups.wake((namespace, pool))
        return
    # a backend pod: its weight annotation may have changed (readiness arrives via its slice).
    # Only the pools whose slices name it: a pod no slice names yet reaches a pool with the
    # slice that names it (waking every pool of the namespace for each pod event cost a pass per
    # pool per event: bench/scale)
    _wakeups.wake_topic(("pod", namespace, body.metadata.name))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def pool_changed(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
    # an engine dns pool publishes the pools it names while they are Ready: wake it when one
    # changes, appears or goes
    _wakeups.wake_topic(("pool", namespace, name))
    # a pool that takes, changes or gives up a virtual router (created, edited, deleted) decides
    # whether the other lvs pools claiming it may run. Wake them all: the event does not say which
    # router the pool held before an edit, and lvs pools are few (the index is updated before this)
    if (body.get("spec") or {}).get("engine") == "lvs":
        _wakeups.wake_where(lambda key, watched: watched[2] is not None)
