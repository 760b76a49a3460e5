"""From EndpointSlices and pods to the list of backends a balancer serves (pure)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from hakeeper.api.common import LabelSelector
from hakeeper.api.loadbalancerpool import Backends
from hakeeper.api.meta import WEIGHT_ANNOTATION

State = Literal["ready", "draining", "down"]
DEFAULT_WEIGHT = 1
BACKEND_PORT_NAME = "backend"


@dataclasses.dataclass(frozen=True, order=True)
class Backend:
    name: str
    """The pod's name (or address:port when the endpoint has no pod)."""
    address: str
    port: int
    weight: int = DEFAULT_WEIGHT
    state: State = "ready"


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def annotated_weight(raw: Any) -> int | None:
    """The weight an annotation value gives, or None when it is not a number from 0 to 256.

    ASCII digits only, and the same reading for applying and for reporting: int() alone
    also takes " 3", "+3", "1_0" and other scripts' digits ("٣"), and raises on
    "²" (a digit to str.isdigit) and on strings of more than 4300 digits.
    """
    if not isinstance(raw, str) or not re.fullmatch(r"[0-9]{1,3}", raw):
        return None
    weight = int(raw)
    return weight if weight <= 256 else None


def weight_of(spec: Backends, pod: Mapping[str, Any] | None) -> int:
    """The pod annotation wins over the weight rules; a bad annotation falls back to the rules."""
    meta = (pod or {}).get("metadata", {})
    weight = annotated_weight((meta.get("annotations") or {}).get(WEIGHT_ANNOTATION))
    if weight is not None:
        return weight
    labels = meta.get("labels") or {}
    for rule in spec.weight_rules:
        if matches(rule.selector, labels):
            return rule.weight
    return DEFAULT_WEIGHT


def invalid_weight_annotations(pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """Pods whose weight annotation is not a number from 0 to 256 (reported, not applied)."""
    bad = []
    for pod in pods:
        meta = pod.get("metadata", {})
        raw = (meta.get("annotations") or {}).get(WEIGHT_ANNOTATION)
        if raw is None:
            continue
        if annotated_weight(raw) is None:
            bad.append(f"{meta.get('name')}: {WEIGHT_ANNOTATION}={raw!r} is not a number from 0 to 256")
    return sorted(bad)


def _slice_port(slice_: Mapping[str, Any], wanted: int | str) -> int | None:
    ports = slice_.get("ports") or []
    if isinstance(wanted, int):
        return wanted
    for port in ports:
        if port.get("name") in (wanted, BACKEND_PORT_NAME) and port.get("port"):
            return int(port["port"])
    return None


def _state(conditions: Mapping[str, Any]) -> State | None:
    ready = conditions.get("ready")
    serving = conditions.get("serving", ready)
    terminating = conditions.get("terminating", False)
    if terminating:
        # still serving while terminating: let open connections finish, send no new ones
        return "draining" if serving else None
    return "ready" if ready in (True, None) else "down"


def backends_from(
    spec: Backends,
    slices: Iterable[Mapping[str, Any]],
    pods: Mapping[str, Mapping[str, Any]],
) -> list[Backend]:
    """Every endpoint of the slices as a backend, sorted, each address and each name once.

    `pods` maps pod names to pod objects, for weights; an endpoint whose pod is gone
    from the map keeps the rule-based weight.
    """
    found: dict[tuple[str, int], Backend] = {}
    for slice_ in slices:
        if slice_.get("addressType", "IPv4") != "IPv4":
            continue
        port = _slice_port(slice_, spec.port)
        if port is None:
            continue
        for endpoint in slice_.get("endpoints") or []:
            state = _state(endpoint.get("conditions") or {})
            if state is None:
                continue
            ref = endpoint.get("targetRef") or {}
            pod_name = ref.get("name") if ref.get("kind") == "Pod" else None
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            # The API: an endpoint's addresses "are all assumed to be fungible and clients may
            # choose to only use the first element". Taking each would make one pod two
            # backends of the same name, which the renderer refuses (found by the fuzz tests).
            address = addresses[0]
            name = pod_name or f"{address}-{port}"
            backend = Backend(name=name, address=address, port=port,
                              weight=weight_of(spec, pods.get(pod_name) if pod_name else None), state=state)
            key = (address, port)
            # the same endpoint can sit in two slices while they are being rebalanced
            if key not in found or _rank(backend.state) < _rank(found[key].state):
                found[key] = backend
    # One backend per name, the best placed: server slots are keyed by name, and slices that
    # catch up with a pod recreated under its old name can show it at two addresses.
    by_name: dict[str, Backend] = {}
    for backend in sorted(found.values(), key=lambda b: (_rank(b.state), b)):
        by_name.setdefault(backend.name, backend)
    backends = sorted(by_name.values())
    if not any(b.state == "ready" for b in backends):
        # nothing ready, but terminating endpoints still serve (a rollout of a single pod, a
        # scale-down to zero under way): send to them rather than answer 503, as kube-proxy
        # does (KEP-1669, "Proxy Terminating Endpoints")
        backends = [dataclasses.replace(b, state="ready") if b.state == "draining" else b for b in backends]
    return backends


def _rank(state: State) -> int:
    return {"ready": 0, "draining": 1, "down": 2}[state]


def count(backends: Iterable[Backend]) -> dict[str, int]:
    backends = list(backends)
    return {"total": len(backends), "ready": sum(b.state == "ready" for b in backends)}
