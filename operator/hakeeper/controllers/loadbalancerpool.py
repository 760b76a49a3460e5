"""Handlers for LoadBalancerPool: read the spec, call the domain, write the status."""

from __future__ import annotations

from ..api import LOAD_BALANCER_POOL
from ..api.loadbalancerpool import DEFAULT_ALGORITHM, LoadBalancerPoolSpec
from .spec import register_acceptance


def _status(spec: LoadBalancerPoolSpec) -> dict:
    return {"algorithm": spec.algorithm or DEFAULT_ALGORITHM[spec.engine]}


register_acceptance(LOAD_BALANCER_POOL, _status)
