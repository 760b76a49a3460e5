"""KEDA ScaledObjects of shed Deployments: paused through KEDA's own annotation while shed (pure).

KEDA scales the Deployment a ScaledObject names in spec.scaleTargetRef itself (through an HPA
it owns, and to and from zero directly), so it would scale a shed Deployment straight back
up: to minReplicaCount, or as soon as a trigger fires. KEDA's documented way to stop it is
`autoscaling.keda.sh/paused-replicas: "<n>"` on the ScaledObject: KEDA scales the target to n
and stops autoscaling it until the annotation is removed
(https://keda.sh/docs/latest/concepts/scaling-deployments/#pause-autoscaling).

The rule: the ScaledObject of a Deployment this policy has shed (for real) carries
paused-replicas "0" and hakeeper.io/paused-by=<policy>; once the Deployment is no longer shed
by the policy, both annotations go, and KEDA scales it again. A ScaledObject someone else
paused (paused-replicas without the policy's mark) is left alone: that pause wins, and if it
holds replicas above 0 the Deployment is reported as a conflict (act.conflict_message).

Order, so the Deployment's annotations stay the one truth: shedding patches the Deployment
first, then pauses (paused first, KEDA could scale the Deployment to 0 before our patch, which
then fails on its resourceVersion and leaves nothing recording the original count); restoring
resumes first, then restores the replicas (resumed later, KEDA while still paused could put the
Deployment back to 0), and a resume that fails holds the restore until the next evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hakeeper.api.meta import KEDA_PAUSED_REPLICAS_ANNOTATION, PAUSED_BY_ANNOTATION
from hakeeper.degradationpolicy.targets import Outcome, Selection

Key = tuple[str, str]
"""(namespace, Deployment name)."""


@dataclass(frozen=True)
class ScaledObject:
    """A keda.sh/v1alpha1 ScaledObject that scales a Deployment, as far as shedding cares."""

    namespace: str
    name: str
    deployment: str
    resource_version: str
    paused_replicas: str | None = None
    """KEDA's paused-replicas annotation, whoever set it."""
    paused_by: str | None = None
    """The policy that paused it (hakeeper.io/paused-by), if one did."""

    @property
    def key(self) -> Key:
        return (self.namespace, self.deployment)

    def paused_by_others(self, policy: str) -> bool:
        return self.paused_replicas is not None and self.paused_by != policy

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def by_target(objects: Iterable[Mapping[str, Any]]) -> dict[Key, ScaledObject]:
    """(namespace, Deployment name) -> the ScaledObject scaling it. scaleTargetRef's kind defaults to
    Deployment and its apiVersion to apps/v1 (KEDA's ScaledObject specification); other kinds
    (StatefulSets, custom resources) are not shed and are skipped. KEDA's admission webhook refuses
    a second ScaledObject on one target, so there is at most one."""
    found = {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind", "Deployment") != "Deployment" or ref.get("apiVersion", "apps/v1") != "apps/v1":
            continue
        if not ref.get("name"):
            continue
        annotations = meta.get("annotations") or {}
        so = ScaledObject(meta.get("namespace", ""), meta.get("name", ""), ref["name"], meta.get("resourceVersion", ""),
                          annotations.get(KEDA_PAUSED_REPLICAS_ANNOTATION), annotations.get(PAUSED_BY_ANNOTATION))
        found[so.key] = so
    return found


def pause_patch(so: ScaledObject, policy: str) -> dict[str, Any]:
    """The JSON merge patch pausing KEDA at 0 replicas, on the version read (409 if it changed)."""
    return {"metadata": {"resourceVersion": so.resource_version,
                         "annotations": {KEDA_PAUSED_REPLICAS_ANNOTATION: "0", PAUSED_BY_ANNOTATION: policy}}}


def resume_patch(so: ScaledObject) -> dict[str, Any]:
    """The JSON merge patch removing the pause and the policy's mark."""
    return {"metadata": {"resourceVersion": so.resource_version,
                         "annotations": {KEDA_PAUSED_REPLICAS_ANNOTATION: None, PAUSED_BY_ANNOTATION: None}}}


def to_pause(so: ScaledObject | None) -> bool:
    """Whether shedding the ScaledObject's Deployment pauses it: not yet paused, by anyone."""
    return so is not None and so.paused_replicas is None


def to_resume(so: ScaledObject | None, policy: str) -> bool:
    """Whether restoring the ScaledObject's Deployment resumes it: this policy paused it."""
    return so is not None and so.paused_replicas is not None and so.paused_by == policy


def shed_after(selection: Selection, outcomes: Iterable[Outcome]) -> set[Key]:
    """The Deployments this policy has shed for real once this evaluation's outcomes are in."""
    keys = {t.key for t in selection.all_shed() if t.shed is not None and not t.shed.dry_run}
    for outcome in outcomes:
        if outcome.action == "shed":
            keys.add(outcome.target.key)
        elif outcome.action in ("restored", "released", "gone"):
            keys.discard(outcome.target.key)
    return keys


def sweep(policy: str, scaled: Mapping[Key, ScaledObject], shed: set[Key],
          handled: set[Key]) -> tuple[list[ScaledObject], list[ScaledObject]]:
    """(to pause, to resume) beyond what this evaluation's sheds and restores did (`handled`): a
    pause that failed before, a ScaledObject created on a Deployment already shed, or a paused
    one whose Deployment went (deleted, restored by hand, dropped from the policy)."""
    pause, resume = [], []
    for key, so in sorted(scaled.items()):
        if key in handled:
            continue
        if key in shed and to_pause(so):
            pause.append(so)
        elif key not in shed and to_resume(so, policy):
            resume.append(so)
    return pause, resume
