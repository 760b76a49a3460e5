"""What a pool's balancers refuse, from the DegradationPolicies' status (pure).

A DegradationPolicy lists in `status.refusedRequestClasses` the pools (in its namespace) and
classes it refuses while a tier is shed (degradationpolicy/request_classes.py). The operator keeps
those entries in a kopf index keyed by (namespace, pool) (loadbalancerpool/handlers.py); the pool's
pass reads them here: the classes to refuse (rendered into refused-classes.json of its ConfigMap,
which the agents apply through the runtime API), its status entry `refusedRequestClasses`, and the
Events when the set changes. Entries of a dry run refuse nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from hakeeper.api.events import PoolEvent
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.api.request_classes import RefusedRequestClass


def index_entries(body: Mapping[str, Any]) -> dict[Hashable, Any]:
    """A DegradationPolicy's refusals, keyed by (namespace, pool), for the kopf index: per pool the
    policy (namespace/name), the classes and since when; empty when it refuses nothing. Empty, not
    None: kopf keeps an object's previous values when its index function returns None (kopf's
    OperatorIndexers.replace), so a policy that stopped refusing would go on refusing."""
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    found: dict[Hashable, Any] = {}
    for e in (body.get("status") or {}).get("refusedRequestClasses") or []:
        if not isinstance(e, Mapping) or e.get("dryRun") or not e.get("pool") or not e.get("classes"):
            continue
        found.setdefault((namespace, e["pool"]), []).append(
            {"policy": f"{namespace}/{name}", "classes": list(e["classes"]), "since": e.get("since")})
    return found


def refused(spec: LoadBalancerPoolSpec, entries: Iterable[Iterable[Mapping[str, Any]]]) -> list[RefusedRequestClass]:
    """The classes the pool defines that some policy refuses: by which policies, since the earliest.
    `entries`: the index's values for this pool (one list per policy object)."""
    defined = {c.name for c in spec.request_classes}
    by_class: dict[str, tuple[set[str], str]] = {}
    for group in entries:
        for e in group:
            for name in e.get("classes") or []:
                if name not in defined:
                    continue  # reported by the policy (unknown), refuses nothing
                policies, since = by_class.get(name, (set(), e.get("since") or ""))
                policies.add(e["policy"])
                since = min(since, e.get("since") or since) if since else (e.get("since") or "")
                by_class[name] = (policies, since)
    return [RefusedRequestClass(name=n, policies=sorted(p), since=s) for n, (p, s) in sorted(by_class.items())]


def events(previous: Mapping[str, Any] | None, status: Mapping[str, Any]) -> list[tuple[PoolEvent, str]]:
    """RequestClassesRefused for classes refused in `status` and not in `previous` (both pool
    statuses as dicts), RequestClassesRestored for the reverse: (reason, message)."""
    if "refusedRequestClasses" not in status:
        return []
    before = {e.get("name"): e for e in (previous or {}).get("refusedRequestClasses") or [] if isinstance(e, Mapping)}
    after = {e.name: e for e in (RefusedRequestClass.model_validate(x) for x in status["refusedRequestClasses"])}
    out = []
    new = sorted(set(after) - set(before))
    if new:
        by = sorted({p for n in new for p in after[n].policies})
        out.append((PoolEvent.REQUEST_CLASSES_REFUSED, f"refusing request classes {', '.join(new)} "
                    f"(DegradationPolicy {', '.join(by)})"))
    gone = sorted(n for n in set(before) - set(after) if n)
    if gone:
        out.append((PoolEvent.REQUEST_CLASSES_RESTORED, f"request classes {', '.join(gone)} served again"))
    return out
