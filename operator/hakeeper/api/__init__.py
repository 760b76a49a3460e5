"""API models of hakeeper.io/v1alpha1: the only place field names are defined."""

from hakeeper.api.common import API_VERSION, GROUP, VERSION
from hakeeper.api.kinds import CATEGORY, DEGRADATION_POLICY, KINDS, LOAD_BALANCER_POOL, REPLICATED_DATABASE, Kind

__all__ = [
    "API_VERSION", "CATEGORY", "DEGRADATION_POLICY", "GROUP", "KINDS", "Kind",
    "LOAD_BALANCER_POOL", "REPLICATED_DATABASE", "VERSION",
]
