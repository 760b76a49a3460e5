"""Which Deployments a policy may shed, tier by tier (pure: API objects in, a Selection out).

A Deployment belongs to the lowest-priority tier that selects it, by its labels and/or by
the PriorityClass value its pods run at. Whatever a tier does not select is core and never
touched; so is anything protected (spec.protect, the hakeeper.io/protected=true label, what
hakeeper itself runs, pods at a system priority).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hakeeper.api.common import LabelSelector
from hakeeper.api.degradationpolicy import DegradationPolicySpec, Tier
from hakeeper.api.meta import (
    MANAGED_BY_LABEL,
    ORIGINAL_REPLICAS_ANNOTATION,
    PART_OF_LABEL,
    PROTECTED_LABEL,
    SHED_BY_ANNOTATION,
    SHED_SINCE_ANNOTATION,
    SHED_TIER_ANNOTATION,
)

# PriorityClass values above one billion are reserved for the system (system-cluster-critical,
# system-node-critical): such pods are never shed, whatever a tier says.
SYSTEM_PRIORITY = 1_000_000_000
MAX_REPLICAS = 2**31 - 1
"""spec.replicas is an int32."""


@dataclass(frozen=True)
class Shed:
    """The mark a shed Deployment carries: who shed it, from how many replicas, when."""

    policy: str
    original_replicas: int
    tier: str
    since: str
    dry_run: bool = False


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    tier: str
    tier_priority: int
    pod_priority: int | None
    replicas: int
    shed: Shed | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def conflict(self) -> bool:
        """Shed by this policy, yet running again: someone else scaled it back up."""
        return self.shed is not None and not self.shed.dry_run and self.replicas > 0

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class TierTargets:
    name: str
    priority: int
    running: tuple[Target, ...] = ()
    """Candidates: running, not shed, not protected; lowest pod priority first."""
    shed: tuple[Target, ...] = ()


@dataclass(frozen=True)
class Selection:
    tiers: tuple[TierTargets, ...]
    """Lowest priority first: the shedding order."""
    orphans: tuple[Target, ...] = ()
    """Shed by this policy but no longer selected by it (tier gone, now protected, namespace
    dropped): they go back to their replicas whatever the triggers say."""
    held: tuple[Target, ...] = ()
    """Shed for real while dryRun is on: left as they are until dryRun is off or the policy goes."""
    skipped: tuple[tuple[str, str], ...] = ()
    """(namespace/name, why) for selected Deployments that are never touched."""
    workload: int = 0
    """Deployments running in the policy's namespaces, or shed by it: maxShedFraction's base."""
    budget: int = 0
    """How many of them may be shed at once."""

    @property
    def shed_count(self) -> int:
        return sum(len(t.shed) for t in self.tiers) + len(self.orphans) + len(self.held)

    def all_shed(self) -> tuple[Target, ...]:
        return tuple(t for tier in self.tiers for t in tier.shed) + self.orphans + self.held


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (NotIn and DoesNotExist match an absent key)."""
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        value = labels.get(req.key)
        ok = {
            "In": present and value in req.values,
            "NotIn": not present or value not in req.values,
            "Exists": present,
            "DoesNotExist": not present,
        }[req.operator]
        if not ok:
            return False
    return True


def pod_priority(deployment: Mapping[str, Any], classes: Mapping[str, int], default: int) -> int | None:
    """The priority the Deployment's pods get at admission; None when their class does not exist."""
    pod_spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
    class_name = pod_spec.get("priorityClassName")
    if class_name:
        if class_name not in classes and class_name.startswith("system-"):
            # only the system may create "system-" classes, and all of them rank above users'
            return 2 * SYSTEM_PRIORITY
        return classes.get(class_name)
    if pod_spec.get("priority") is not None:
        return int(pod_spec["priority"])
    return default


def default_priority(priority_classes: Iterable[Mapping[str, Any]]) -> int:
    """The globalDefault PriorityClass's value (the lowest, if several claim it), else 0."""
    defaults = [int(pc.get("value", 0)) for pc in priority_classes if pc.get("globalDefault")]
    return min(defaults) if defaults else 0


def shed_mark(deployment: Mapping[str, Any]) -> Shed | None:
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    if SHED_BY_ANNOTATION not in annotations or ORIGINAL_REPLICAS_ANNOTATION not in annotations:
        return None
    try:
        original = int(annotations[ORIGINAL_REPLICAS_ANNOTATION])
    except ValueError:
        return None
    if not 0 <= original <= MAX_REPLICAS:
        # a count the restore could not write back: the API server refuses spec.replicas -1 or
        # past int32, and the Deployment stayed at 0 with a failed restore each evaluation
        # (found with the fuzz test's harness); read as unmarked, like a count that is not a number
        return None
    return Shed(policy=annotations[SHED_BY_ANNOTATION], original_replicas=original,
                tier=annotations.get(SHED_TIER_ANNOTATION, ""), since=annotations.get(SHED_SINCE_ANNOTATION, ""))


def never_touched(labels: Mapping[str, str], priority: int | None, protect: Iterable[LabelSelector]) -> str | None:
    """Why a Deployment is off limits, or None."""
    if labels.get(PROTECTED_LABEL) == "true":
        return f"labelled {PROTECTED_LABEL}=true"
    if "hakeeper" in (labels.get(PART_OF_LABEL), labels.get(MANAGED_BY_LABEL)):
        return "run by hakeeper itself"
    if priority is not None and priority > SYSTEM_PRIORITY:
        return f"its pods run at system priority {priority}"
    for index, selector in enumerate(protect):
        if matches(selector, labels):
            return f"matches spec.protect[{index}]"
    return None


def tier_of(tiers: Iterable[Tier], labels: Mapping[str, str], priority: int | None) -> Tier | None:
    """The lowest-priority tier that selects these labels and pod priority."""
    for tier in sorted(tiers, key=lambda t: t.priority):
        if tier.selector is None and tier.max_pod_priority is None:
            continue  # a tier of request classes only selects no Deployment
        if tier.selector is not None and not matches(tier.selector, labels):
            continue
        if tier.max_pod_priority is not None and (priority is None or priority > tier.max_pod_priority):
            continue
        return tier
    return None


@dataclass
class _TierBuilder:
    tier: Tier
    running: list[Target] = field(default_factory=list)
    shed: list[Target] = field(default_factory=list)


def select(
    spec: DegradationPolicySpec,
    policy: str,
    namespaces: Iterable[str],
    deployments: Iterable[Mapping[str, Any]],
    classes: Mapping[str, int],
    default: int = 0,
    dry_marks: Mapping[tuple[str, str], Shed] | None = None,
) -> Selection:
    """Sorts the Deployments into the policy's tiers.

    policy: "namespace/name" of the policy, as written in the shed-by annotation.
    namespaces: where the policy may shed; Deployments from elsewhere (read because the
      policy shed them before its namespaces changed) can only be orphans.
    dry_marks: what an earlier dry run "shed" (from the status), used while dryRun is on.
    """
    covered = set(namespaces)
    builders = {t.name: _TierBuilder(t) for t in spec.tiers}
    orphans: list[Target] = []
    held: list[Target] = []
    skipped: list[tuple[str, str]] = []
    workload = 0
    for deployment in deployments:
        meta = deployment.get("metadata", {})
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        labels = meta.get("labels") or {}
        replicas = int(deployment.get("spec", {}).get("replicas", 1))
        priority = pod_priority(deployment, classes, default)
        real = shed_mark(deployment)
        if real is not None and real.policy != policy:
            skipped.append((f"{ns}/{name}", f"shed by policy {real.policy}"))
            continue
        if spec.dry_run and real is not None:
            held.append(Target(ns, name, real.tier, 0, priority, replicas, real))
            workload += 1
            continue
        mark = (dry_marks or {}).get((ns, name)) if spec.dry_run else real
        if mark is not None and mark.dry_run and replicas == 0:
            mark = None  # someone else switched it off meanwhile: nothing left to report
        if mark is None and replicas == 0:
            continue  # nothing to shed, nothing to count
        if ns in covered:
            workload += 1
        why_not = never_touched(labels, priority, spec.protect)
        tier = tier_of(spec.tiers, labels, priority) if ns in covered else None
        if mark is not None:
            if tier is None or why_not:
                orphans.append(Target(ns, name, mark.tier, 0, priority, replicas, mark))
            else:
                builders[tier.name].shed.append(Target(ns, name, tier.name, tier.priority, priority, replicas, mark))
        elif tier is not None:
            if why_not:
                skipped.append((f"{ns}/{name}", why_not))
            else:
                builders[tier.name].running.append(Target(ns, name, tier.name, tier.priority, priority, replicas))

    def by_priority(t: Target) -> tuple:
        return (t.pod_priority if t.pod_priority is not None else 0, t.namespace, t.name)

    tiers = tuple(
        TierTargets(b.tier.name, b.tier.priority, tuple(sorted(b.running, key=by_priority)),
                    tuple(sorted(b.shed, key=by_priority)))
        for b in sorted(builders.values(), key=lambda b: b.tier.priority)
    )
    budget = math.floor(spec.max_shed_fraction * workload + 1e-9)
    return Selection(tiers=tiers, orphans=tuple(sorted(orphans, key=by_priority)),
                     held=tuple(sorted(held, key=by_priority)), skipped=tuple(skipped),
                     workload=workload, budget=budget)


Action = Literal["shed", "restored", "released", "would-shed", "would-restore", "changed", "gone", "failed"]


@dataclass(frozen=True)
class Outcome:
    """What shedding or restoring one target did (act.Scaler), for the status and the Events."""

    target: Target
    action: Action
    message: str
    original_replicas: int | None = None
    deployment: Mapping[str, Any] | None = None
