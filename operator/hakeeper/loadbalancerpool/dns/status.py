"""The status of an engine dns pool from its targets and its DNSEndpoint (pure).

Conditions: BackendsAvailable (targets.availability), Published (ExternalDNS has read the
DNSEndpoint's current generation: its crd source writes status.observedGeneration when it reads
one), and Ready: the first of these that fails, in this order: ExternalDNS's CRD is missing, a
pool of dns.pools cannot be published, no target is healthy (or none exists), ExternalDNS has not
read the records; else Serving.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from hakeeper.api.conditions import ConditionType, PoolReason, Verdict, get_condition, with_verdicts
from hakeeper.api.events import PoolEvent
from hakeeper.api.externaldns import CRD_NAME
from hakeeper.api.loadbalancerpool import BackendCount, DnsTargetStatus, LoadBalancerPoolStatus
from hakeeper.loadbalancerpool.dns.targets import Target, availability, candidates


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """The pool's DNSEndpoint as the last write left it."""

    crd_missing: bool = False
    """The cluster has no DNSEndpoint kind: the write answered 404."""
    generation: int | None = None
    """Its metadata.generation; None when the pool has none (nothing to publish)."""
    observed_generation: int | None = None
    """Its status.observedGeneration, written by ExternalDNS."""


def published_verdict(endpoint: Endpoint, hostname: str) -> Verdict:
    """Published: ExternalDNS has read the records (see the module's doc)."""
    if endpoint.crd_missing:
        return Verdict(False, PoolReason.DNS_ENDPOINT_CRD_MISSING,
                       f"the cluster has no DNSEndpoint kind: install ExternalDNS's CRD {CRD_NAME} (and run "
                       "ExternalDNS with --source=crd) for engine dns to publish records")
    if endpoint.generation is None:
        return Verdict(False, PoolReason.NO_RECORDS, f"no target to publish: {hostname} is not published")
    if endpoint.observed_generation == endpoint.generation:
        return Verdict(True, PoolReason.RECORDS_PUBLISHED,
                       f"ExternalDNS read generation {endpoint.generation} of the DNSEndpoint for {hostname}")
    return Verdict(False, PoolReason.AWAITING_EXTERNAL_DNS,
                   f"the DNSEndpoint for {hostname} is at generation {endpoint.generation}, and ExternalDNS has read "
                   f"{endpoint.observed_generation or 'none'}: is ExternalDNS running with --source=crd over this "
                   "namespace?")


def ready_verdict(targets: Sequence[Target], available: Verdict, published: Verdict, hostname: str,
                  addresses: Sequence[str]) -> Verdict:
    """Ready: the first failing of the CRD, the targets' problems, BackendsAvailable, Published."""
    if published.reason == PoolReason.DNS_ENDPOINT_CRD_MISSING:
        return published
    problems = [t.problem for t in targets if t.problem is not None]
    if problems:
        reason = problems[0][0]
        return Verdict(False, reason, "; ".join(message for _, message in problems)
                       + (f"; publishing the others ({', '.join(addresses)})" if addresses else ""))
    for verdict in (available, published):
        if not verdict.status:
            return verdict
    return Verdict(True, PoolReason.SERVING, f"{hostname} -> {', '.join(addresses)}")


def dns_status(previous: Mapping[str, Any] | None, generation: int | None, hostname: str,
               targets: Sequence[Target], published: Sequence[Target], endpoint: Endpoint, config_hash: str | None,
               now: str | None = None) -> dict[str, Any]:
    """The status of an engine dns pool as the merge patch of the status subresource
    (LoadBalancerPoolStatus): backends counts the candidate targets (total) and the healthy ones
    (ready); publishedAddresses and dnsTargets say what the record carries and why."""
    found = candidates(targets)
    if endpoint.crd_missing:
        published = []  # chosen, but nowhere to write them
    addresses = sorted({t.address for t in published if t.address}, key=lambda a: tuple(int(p) for p in a.split(".")))
    available = availability(list(targets))
    verdict = published_verdict(endpoint, hostname)
    ready = ready_verdict(targets, available, verdict, hostname, addresses)
    published_names = {t.name for t in published}
    status = LoadBalancerPoolStatus(
        observed_generation=generation,
        algorithm=None,
        config_hash=config_hash,
        backends=BackendCount(total=len(found), ready=sum(t.healthy for t in found)),
        balancers=[],
        published_addresses=addresses,
        dns_targets=[DnsTargetStatus(name=t.name, address=t.address, weight=t.weight, healthy=t.healthy,
                                     published=t.name in published_names)
                     for t in sorted(targets, key=lambda t: t.name)],
        conditions=with_verdicts((previous or {}).get("conditions"), [
            (ConditionType.BACKENDS_AVAILABLE, available), (ConditionType.PUBLISHED, verdict),
            (ConditionType.READY, ready)], generation, now),
    )
    return status.patch()


WARNED = (PoolReason.NO_HEALTHY_TARGETS, PoolReason.TARGET_POOL_MISSING, PoolReason.TARGET_POOL_UNADDRESSABLE,
          PoolReason.DNS_ENDPOINT_CRD_MISSING)
"""Ready reasons posted as a Warning Event (PoolEvent of the same name) when Ready takes them."""


def events(previous: Mapping[str, Any] | None, status: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(reason, message) of the Events a pass posts, from the status before and the one it writes
    (a dns_status patch): RecordsChanged when the published addresses change, and a Warning when
    Ready turns False with one of WARNED (once, not at every pass)."""
    out: list[tuple[str, str]] = []
    before = list((previous or {}).get("publishedAddresses") or [])
    now = list(status.get("publishedAddresses") or [])
    if before != now:
        out.append((PoolEvent.RECORDS_CHANGED, f"publishing {', '.join(now) or 'nothing'} (was "
                                               f"{', '.join(before) or 'nothing'})"))
    ready = get_condition(status.get("conditions"), ConditionType.READY) or {}
    was = get_condition((previous or {}).get("conditions"), ConditionType.READY) or {}
    if ready.get("status") == "False" and ready.get("reason") in WARNED and (
            was.get("status") != "False" or was.get("reason") != ready.get("reason")):
        out.append((PoolEvent(str(ready["reason"])), str(ready.get("message") or "")))
    return out
