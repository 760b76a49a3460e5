"""Handlers for LoadBalancerPool: read the spec, call the domain, write the status.

Each pool (HAProxy or LVS) has a daemon that reconciles it whenever something it depends on
changes: its spec, the EndpointSlices of its backends, a backend pod's weight annotation,
or a balancer pod (its readiness, the config hash its agent applied). Watch events only
wake the daemon; the daemon always reads the current state, so bursts of events cost one
pass and a missed event costs at most one resync period.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import kopf

from hakeeper.api import LOAD_BALANCER_POOL
from hakeeper.api.common import LabelSelector
from hakeeper.api.loadbalancerpool import DEFAULT_ALGORITHM, LoadBalancerPoolSpec
from hakeeper.api.meta import POOL_LABEL
from hakeeper.loadbalancerpool.backends import matches
from hakeeper.loadbalancerpool.reconcile import backends_service_name, reconcile
from hakeeper.platform import kube as kubeapi
from hakeeper.platform.spec import parse_spec

GROUP, VERSION = LOAD_BALANCER_POOL.api_version.split("/")
PLURAL = LOAD_BALANCER_POOL.plural
RESYNC_SECONDS = 30.0
DEBOUNCE_SECONDS = 0.1
RETRY_SECONDS = 2.0
STOP_POLL_SECONDS = 0.5


@dataclasses.dataclass
class Watched:
    """What wakes one pool's daemon."""

    service: str
    selector: LabelSelector | None
    wake: threading.Event = dataclasses.field(default_factory=threading.Event)


_watched: dict[tuple[str, str], Watched] = {}
_lock = threading.Lock()


def _wake(namespace: str, predicate: Callable[[Watched], bool]) -> None:
    with _lock:
        targets = [w for (ns, _), w in _watched.items() if ns == namespace and predicate(w)]
    for watched in targets:
        watched.wake.set()


@kopf.on.resume(GROUP, VERSION, PLURAL, id="spec")
@kopf.on.create(GROUP, VERSION, PLURAL, id="spec")
@kopf.on.update(GROUP, VERSION, PLURAL, id="spec")
def accept(body: kopf.Body, patch: kopf.Patch, spec: kopf.Spec, namespace: str | None, name: str,
           **_: Any) -> None:
    assert namespace is not None, "a namespaced kind"
    parsed = parse_spec(LoadBalancerPoolSpec, body, patch)
    if parsed is None:
        return
    patch.status["algorithm"] = parsed.algorithm or DEFAULT_ALGORITHM[parsed.engine]
    with _lock:
        watched = _watched.get((namespace, name))
    if watched is not None:
        watched.wake.set()


@kopf.daemon(GROUP, VERSION, PLURAL, id="pool", cancellation_timeout=10)
def run_pool(body: kopf.Body, namespace: str | None, name: str, stopped: kopf.DaemonStopped, logger: Any,
             **_: Any) -> None:
    assert namespace is not None, "a namespaced kind"
    kube = kubeapi.shared()
    key = (namespace, name)
    watched = Watched(service="", selector=None)
    with _lock:
        _watched[key] = watched
    last_error = None
    try:
        while not stopped:
            watched.wake.clear()
            try:
                spec = LoadBalancerPoolSpec.model_validate(dict(body.get("spec") or {}))
            except ValueError:
                # the spec handler has set Ready=False with the reasons; wait for a new spec
                stopped.wait(RESYNC_SECONDS)
                continue
            watched.service = backends_service_name(name, spec)
            watched.selector = spec.backends.selector
            try:
                outcome = reconcile(kube, body, spec)
            except kubeapi.ApiError as error:
                message = str(error)
                if message != last_error:
                    kopf.warn(body, reason="ReconcileFailed", message=message)
                    last_error = message
                logger.warning("reconcile failed: %s", message)
                stopped.wait(RETRY_SECONDS)
                continue
            last_error = None
            if outcome.config_changed:
                ready = sum(b.state == "ready" for b in outcome.backends)
                kopf.info(body, reason="ConfigChanged",
                          message=f"config {outcome.config_hash}: {ready}/{len(outcome.backends)} backends ready")
            for warning in outcome.warnings:
                kopf.warn(body, reason="InvalidWeight", message=warning)
            kube.patch_status(LOAD_BALANCER_POOL.kind, namespace, name, outcome.status)
            if _wait_for_wake(watched.wake, stopped, RESYNC_SECONDS):
                stopped.wait(DEBOUNCE_SECONDS)  # let a burst of events land: one pass for all of them
    finally:
        with _lock:
            _watched.pop(key, None)


def _wait_for_wake(wake: threading.Event, stopped: kopf.DaemonStopped, timeout: float) -> bool:
    """Waits for a wake-up, but returns early when the operator stops (a sync daemon is not cancelled)."""
    deadline = time.monotonic() + timeout
    while not stopped and time.monotonic() < deadline:
        if wake.wait(min(STOP_POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
            return True
    return False


@kopf.on.event("discovery.k8s.io", "v1", "endpointslices")
def endpoint_slice_changed(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    assert namespace is not None, "a namespaced kind"
    service = (body.metadata.labels or {}).get("kubernetes.io/service-name")
    if service:
        _wake(namespace, lambda w: w.service == service)


@kopf.on.event("", "v1", "pods")
def pod_changed(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    assert namespace is not None, "a namespaced kind"
    labels = dict(body.metadata.labels or {})
    pool = labels.get(POOL_LABEL)
    if pool is not None:
        with _lock:
            watched = _watched.get((namespace, pool))
        if watched is not None:
            watched.wake.set()
        return
    # a backend pod: its weight annotation may have changed (readiness arrives via its slice)
    _wake(namespace, lambda w: w.selector is None or matches(w.selector, labels))
