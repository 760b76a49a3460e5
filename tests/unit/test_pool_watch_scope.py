"""A pool's pass reads its balancer pods and the pods its slices name, not its namespace's pods
(issue 17, bench/scale: a thousand pools in one namespace copied a thousand pods at each pass)."""

from __future__ import annotations

from typing import Any

from hakeeper.api.meta import BALANCER_COMPONENT, COMPONENT_LABEL, POOL_LABEL
from hakeeper.loadbalancerpool.observe import pod_key, slice_pod_names


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop", "labels": labels}}


def test_a_balancer_pod_is_indexed_under_its_pool_and_any_other_under_its_name() -> None:
    balancer = pod("web-balancer-x", {POOL_LABEL: "web", COMPONENT_LABEL: BALANCER_COMPONENT})
    assert pod_key(balancer) == ("shop", BALANCER_COMPONENT, "web")
    assert pod_key(pod("app-1", {"app": "web"})) == ("shop", "app-1")
    # a pod of the pool that is not a balancer (none today) is found by name, as a backend would be
    assert pod_key(pod("web-other", {POOL_LABEL: "web"})) == ("shop", "web-other")


def test_the_pods_a_pool_reads_are_those_its_slices_name() -> None:
    slices = [{"endpoints": [{"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": "app-1"}},
                             {"addresses": ["10.0.0.2"], "targetRef": {"kind": "Node", "name": "n1"}},
                             {"addresses": ["10.0.0.3"]}]},
              {"endpoints": [{"addresses": ["10.0.0.4"], "targetRef": {"kind": "Pod", "name": "app-2"}}]},
              {"endpoints": None}]
    assert slice_pod_names(slices) == {"app-1", "app-2"}
