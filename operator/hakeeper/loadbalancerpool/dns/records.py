"""The DNSEndpoint of an engine dns pool (pure builder).

One A record set: spec.dns.hostname -> the published addresses, sorted, each once, with the
pool's TTL. ExternalDNS's crd source merges the endpoints of a name and drops repeated targets
(endpoint.MergeEndpoints sorts and compacts them), and a DNS server keeps one copy of identical
records in an RRset (RFC 2181 section 5; RFC 2136 section 3.4.2.2 ignores an added duplicate):
a weight cannot be expressed by repeating an address, so it is not tried.

With dns.weightProperty (a provider with weighted records, e.g. aws/weight for Route 53), each
target is its own endpoint, told apart by its setIdentifier (the target's name), and carries
its weight in that provider-specific property: the provider answers in proportion.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from hakeeper.api import externaldns
from hakeeper.api.loadbalancerpool import Dns
from hakeeper.api.meta import INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, NAME_LABEL, POOL_LABEL
from hakeeper.loadbalancerpool.dns.targets import Target

AWS_LARGEST_WEIGHT = 255


def name(pool: str) -> str:
    """The pool's DNSEndpoint is named after it."""
    return pool


def labels(pool: str) -> dict[str, str]:
    return {NAME_LABEL: "dns", INSTANCE_LABEL: pool, MANAGED_BY_LABEL: MANAGED_BY, POOL_LABEL: pool}


def endpoints(dns: Dns, targets: Sequence[Target]) -> list[dict[str, Any]]:
    """spec.endpoints of the DNSEndpoint for the published targets (targets.published); empty
    when there is none."""
    if not targets:
        return []
    base = {"dnsName": dns.hostname, "recordType": externaldns.RECORD_TYPE_A, "recordTTL": dns.ttl}
    if dns.weight_property is None:
        addresses = sorted({t.address for t in targets if t.address}, key=_ip_key)
        return [{**base, "targets": addresses}]
    return [{**base, "setIdentifier": t.name, "targets": [t.address],
             "providerSpecific": [{"name": dns.weight_property, "value": str(min(t.weight, AWS_LARGEST_WEIGHT))}]}
            for t in sorted(targets, key=lambda t: t.name) if t.address]


def dns_endpoint(pool: str, namespace: str, dns: Dns, targets: Sequence[Target]) -> dict[str, Any] | None:
    """The DNSEndpoint (externaldns.k8s.io/v1alpha1) carrying the published targets, or None when
    there is none to publish (the pool then deletes it)."""
    found = endpoints(dns, targets)
    if not found:
        return None
    return {"apiVersion": externaldns.API_VERSION, "kind": externaldns.KIND,
            "metadata": {"name": name(pool), "namespace": namespace, "labels": labels(pool)},
            "spec": {"endpoints": found}}


def records_hash(found: list[dict[str, Any]]) -> str:
    """12 hex digits over the endpoints: the pool's status.configHash for engine dns."""
    return hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:12]


def _ip_key(address: str) -> tuple[int, ...]:
    return tuple(int(part) for part in address.split("."))
