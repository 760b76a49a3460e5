"""Request classes a DegradationPolicy refuses at the balancers (pure).

A tier names pools' request classes (`tiers[].requestClasses: [{pool, classes}]`). While the tier
is shed its classes are refused: the policy lists them in `status.refusedRequestClasses`, which the
pools read (loadbalancerpool/request_classes.py) and their balancers apply through the runtime API.

Shedding order (decide.py calls `refuse_step` when a shed step is due): with mode all, every tier's
classes at once; staged, the lowest tier not yet shed goes next, whether it holds Deployments,
classes or both: a tier of classes only below the lowest tier with running Deployments is a step of
its own; otherwise the classes of every tier up to that one are refused along with its Deployments.
Restoring takes one tier per restore.interval, its Deployments and its classes together
(decide._restore_step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from hakeeper.api.degradationpolicy import DegradationPolicySpec, RefusedRequestClasses, Tier
from hakeeper.degradationpolicy.targets import Selection


def class_tiers(spec: DegradationPolicySpec) -> list[Tier]:
    """Tiers naming request classes, lowest priority first."""
    return sorted((t for t in spec.tiers if t.request_classes), key=lambda t: t.priority)


def tier_names(spec: DegradationPolicySpec) -> set[str]:
    return {t.name for t in class_tiers(spec)}


def refuse_step(spec: DegradationPolicySpec, selection: Selection,
                refused: Mapping[str, float]) -> tuple[list[str], bool]:
    """The tiers whose classes to refuse at this shed step, and whether the step is theirs alone
    (no Deployment is shed at it: a tier of classes comes first)."""
    waiting = [t for t in class_tiers(spec) if t.name not in refused]
    if not waiting:
        return [], False
    if spec.mode == "all":
        return [t.name for t in waiting], False
    running = [t.priority for t in selection.tiers if t.running]
    if not running or waiting[0].priority < min(running):
        return [waiting[0].name], True
    return [t.name for t in waiting if t.priority <= min(running)], False


def entries(spec: DegradationPolicySpec, refused: Mapping[str, float], defined: Mapping[str, Iterable[str] | None],
            iso: Callable[[float], str | None], dry_run: bool = False) -> list[RefusedRequestClasses]:
    """The status entries: per refused tier and pool, the classes the tier names (what the pool
    refuses, of those it defines) and those the pool does not define (unknown). `defined`: pool
    name -> its classes (None: the pool is missing; absent: not read, e.g. the read failed, so
    nothing is called unknown). The pool filters the classes itself: a failed read here never
    keeps a class from being refused."""
    out = []
    for tier in class_tiers(spec):
        if tier.name not in refused:
            continue
        for named in tier.request_classes:
            known = set(defined.get(named.pool) or ()) if named.pool in defined else set(named.classes)
            out.append(RefusedRequestClasses(
                pool=named.pool, tier=tier.name, since=iso(refused[tier.name]) or "", dry_run=dry_run,
                classes=sorted(set(named.classes)), unknown=sorted(set(named.classes) - known)))
    return out


def refused_from_status(status: Mapping[str, object] | None) -> dict[str, str]:
    """Tier -> since (RFC 3339) from a status's refusedRequestClasses."""
    found: dict[str, str] = {}
    for e in (status or {}).get("refusedRequestClasses") or []:  # type: ignore[attr-defined]
        if isinstance(e, dict) and e.get("tier") and e.get("since"):
            found.setdefault(e["tier"], e["since"])
    return found

