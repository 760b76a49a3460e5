"""The wire contract of hakeeper.io/v1alpha1: the pydantic models (the CRD schemas), every
label and annotation (meta), conditions, the CRD generator, the API server's checks run
offline, and the balancer ConfigMaps' format. Pure: no I/O."""

from hakeeper.api.common import API_VERSION, GROUP, VERSION
from hakeeper.api.kinds import CATEGORY, DEGRADATION_POLICY, KINDS, LOAD_BALANCER_POOL, REPLICATED_DATABASE, Kind

__all__ = [
    "API_VERSION", "CATEGORY", "DEGRADATION_POLICY", "GROUP", "KINDS", "Kind",
    "LOAD_BALANCER_POOL", "REPLICATED_DATABASE", "VERSION",
]
