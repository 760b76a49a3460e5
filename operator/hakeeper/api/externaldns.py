"""ExternalDNS's DNSEndpoint, as an engine dns pool writes it: the names of the kind and of the
fields the operator fills (pure).

The kind and its CRD are ExternalDNS's (https://github.com/kubernetes-sigs/external-dns,
config/crd/standard/dnsendpoints.externaldns.k8s.io.yaml; source/crd.go reads it with
`--source=crd`), not hakeeper's: the chart does not install it. A pool publishes one DNSEndpoint;
ExternalDNS writes its status.observedGeneration when its crd source has read a generation.
"""

from __future__ import annotations

GROUP = "externaldns.k8s.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DNSEndpoint"
PLURAL = "dnsendpoints"
CRD_NAME = f"{PLURAL}.{GROUP}"

RECORD_TYPE_A = "A"
"""spec.endpoints[].recordType of the pool's records: IPv4 addresses (the backends and the pools'
addresses the operator reads are IPv4: backends.py takes IPv4 EndpointSlices only)."""

AWS_WEIGHT = "aws/weight"
"""The provider-specific property of ExternalDNS's AWS provider (Route 53 weighted records) that
carries a record's weight, 0..255 (provider/aws/aws.go, providerSpecificWeight). The example of
dns.weightProperty; the operator writes whatever property the spec names."""
