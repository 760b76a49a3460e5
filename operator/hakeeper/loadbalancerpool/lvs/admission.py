"""Whether a pool of engine lvs may run where and as it asks (pure): no confused deputy.

Engine lvs runs keepalived privileged on the node's network (it programs IPVS and moves the
virtual IP), a pod a namespace's tenant could never start themselves. So the operator starts it
only in namespaces the cluster admin allows, with images the cluster admin allows (the chart's
lvs.allowedNamespaces and lvs.allowedImages); the keepalived image hakeeper ships is always
allowed. Patterns are shell-style (`team-*`, `registry.example.com/keepalived:*`).
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from hakeeper.api.conditions import PoolReason, Verdict
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.lvs.objects import DEFAULT_KEEPALIVED_IMAGE


def _matches(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(value, pattern) for pattern in patterns)


def images_of(spec: LoadBalancerPoolSpec) -> list[str]:
    """The images the pool's keepalived DaemonSet runs: keepalived's, and the agent's (lvs/objects.py)."""
    image = spec.balancer.image or DEFAULT_KEEPALIVED_IMAGE
    return list(dict.fromkeys([image, spec.balancer.agent_image or image]))


def refusal(namespace: str, spec: LoadBalancerPoolSpec, allowed_namespaces: frozenset[str],
            allowed_images: frozenset[str]) -> Verdict | None:
    """None when the pool may run; otherwise Ready=False with reason EngineNotAllowed (the namespace)
    or ImageNotAllowed (an image), and what the cluster admin would change to allow it."""
    if not _matches(namespace, allowed_namespaces):
        return Verdict(False, PoolReason.ENGINE_NOT_ALLOWED,
                       f"engine lvs runs keepalived privileged on the nodes' network, and namespace {namespace} is "
                       "not one the cluster admin allows it in (chart value lvs.allowedNamespaces); nothing runs")
    refused = [image for image in images_of(spec)
               if image != DEFAULT_KEEPALIVED_IMAGE and not _matches(image, allowed_images)]
    if refused:
        return Verdict(False, PoolReason.IMAGE_NOT_ALLOWED,
                       f"engine lvs runs its pods privileged, and {', '.join(refused)} "
                       f"{'is' if len(refused) == 1 else 'are'} not an image the cluster admin allows (chart value "
                       f"lvs.allowedImages; {DEFAULT_KEEPALIVED_IMAGE} always is); nothing runs")
    return None
