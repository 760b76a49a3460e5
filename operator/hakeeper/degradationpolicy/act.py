"""Scaling Deployments down and back, remembering their replicas on the Deployment itself.

Shedding is one JSON merge patch that sets spec.replicas to 0 *and* writes the original
count (hakeeper.io/original-replicas) with who shed it, carrying the resourceVersion the
decision was made on: it applies whole or not at all, and fails with 409 when the
Deployment changed since it was read (the next evaluation decides again). A Deployment that
already carries the annotation is never shed again, so the original count is never
overwritten. Restoring sets exactly the remembered count and removes the annotations in one
patch; if something else has scaled the Deployment up meanwhile, its count is left alone and
only the annotations go. Every write uses the one field manager `hakeeper`.

An HPA on a shed Deployment pauses by itself (it does not scale a target at 0 replicas) and
resumes after the restore; nothing is written to it. A KEDA ScaledObject does not (KEDA scales
from zero itself): it is paused through KEDA's own annotation while its Deployment is shed
(keda.py says the rule and the order), with a second patcher for ScaledObjects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hakeeper.api.meta import (
    FIELD_MANAGER,
    ORIGINAL_REPLICAS_ANNOTATION,
    SHED_ANNOTATIONS,
    SHED_BY_ANNOTATION,
    SHED_SINCE_ANNOTATION,
    SHED_TIER_ANNOTATION,
)
from hakeeper.degradationpolicy.keda import ScaledObject, pause_patch, resume_patch
from hakeeper.degradationpolicy.targets import Action, Outcome, Target, shed_mark
from hakeeper.platform.kube import ApiError, Kube


def shed_patch(deployment: Mapping[str, Any], policy: str, tier: str, since: str) -> dict[str, Any]:
    meta = deployment["metadata"]
    return {
        "metadata": {
            "resourceVersion": meta["resourceVersion"],
            "annotations": {
                ORIGINAL_REPLICAS_ANNOTATION: str(deployment["spec"].get("replicas", 1)),
                SHED_BY_ANNOTATION: policy,
                SHED_TIER_ANNOTATION: tier,
                SHED_SINCE_ANNOTATION: since,
            },
        },
        "spec": {"replicas": 0},
    }


def restore_patch(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """Back to the remembered count, unless something else runs it already (then only unmark)."""
    mark = shed_mark(deployment)
    body: dict[str, Any] = {"metadata": {"resourceVersion": deployment["metadata"]["resourceVersion"],
                                         "annotations": {key: None for key in SHED_ANNOTATIONS}}}
    if mark is not None and deployment["spec"].get("replicas", 1) == 0:
        body["spec"] = {"replicas": mark.original_replicas}
    return body


def replicas_manager(deployment: Mapping[str, Any]) -> str | None:
    """The field manager that last set spec.replicas, when it is not hakeeper."""
    owners = []
    for entry in deployment.get("metadata", {}).get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        if "f:replicas" in (fields.get("f:spec") or {}) and entry.get("manager") != FIELD_MANAGER:
            owners.append((entry.get("time") or "", entry.get("manager") or "?", entry.get("operation") or ""))
    if not owners:
        return None
    time, manager, operation = max(owners)
    return f"{manager} ({operation}{' at ' + time if time else ''})"


def conflict_message(deployment: Mapping[str, Any], hpa: str | None, scaled: ScaledObject | None = None) -> str:
    replicas = deployment["spec"].get("replicas", 1)
    who = replicas_manager(deployment)
    text = f"scaled back to {replicas} replicas by {who or 'someone else'}"
    if hpa:
        text += f"; HorizontalPodAutoscaler {hpa} targets it"
    if scaled is not None and scaled.paused_replicas is not None and scaled.paused_by is None:
        text += f"; KEDA ScaledObject {scaled} holds it at {scaled.paused_replicas} replicas (paused by someone else)"
    elif scaled is not None:
        text += f"; KEDA ScaledObject {scaled} scales it"
    return text + "; left alone until the policy restores"


def hpas_by_target(hpas: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(namespace, Deployment name) -> the HPA scaling it."""
    found = {}
    for hpa in hpas:
        ref = hpa.get("spec", {}).get("scaleTargetRef", {})
        if ref.get("kind") == "Deployment":
            found[(hpa["metadata"]["namespace"], ref.get("name"))] = hpa["metadata"]["name"]
    return found


Patcher = Callable[[str, str, dict[str, Any]], Any]
"""(namespace, name, JSON merge patch) -> anything; raises platform.kube.ApiError."""


def cluster_patcher(kube: Kube) -> Patcher:
    """Merge-patches Deployments through the API server, as FIELD_MANAGER."""
    def patch(namespace: str, name: str, body: dict[str, Any]) -> Any:
        return kube.patch("Deployment", namespace, name, body)
    return patch


def cluster_scaled_object_patcher(kube: Kube) -> Patcher:
    """Merge-patches KEDA ScaledObjects (keda.sh/v1alpha1) through the API server, as FIELD_MANAGER."""
    def patch(namespace: str, name: str, body: dict[str, Any]) -> Any:
        return kube.patch("ScaledObject", namespace, name, body)
    return patch


class Scaler:
    """Sheds and restores Deployments through a patcher (the API server's apps/v1, as `hakeeper`),
    and pauses and resumes KEDA ScaledObjects through another (None: there is none to patch)."""

    def __init__(self, patch: Patcher, patch_scaled_object: Patcher | None = None) -> None:
        self.patch = patch
        self.patch_scaled_object = patch_scaled_object

    def _keda(self, so: ScaledObject, body: dict[str, Any]) -> str:
        """"" once patched, else why not (409: changed since read; the next evaluation tries again)."""
        if self.patch_scaled_object is None:
            return "no way to patch ScaledObjects here"
        try:
            self.patch_scaled_object(so.namespace, so.name, body)
            return ""
        except ApiError as error:
            if error.status == 409:
                return "changed since it was read"
            return str(error)

    def pause(self, so: ScaledObject, policy: str) -> str:
        """Pauses KEDA at 0 replicas for `policy`; "" or why it failed."""
        return self._keda(so, pause_patch(so, policy))

    def resume(self, so: ScaledObject) -> str:
        """Removes the pause (and the policy's mark); "" or why it failed."""
        return self._keda(so, resume_patch(so))

    def _patch(self, target: Target, body: dict[str, Any]) -> tuple[Action | None, str]:
        try:
            self.patch(target.namespace, target.name, body)
            return None, ""
        except ApiError as error:
            if error.status == 409:
                return "changed", "changed since it was read; decided again at the next evaluation"
            if error.status == 404:
                return "gone", "deleted meanwhile"
            return "failed", str(error)

    def shed(self, target: Target, deployment: Mapping[str, Any], policy: str, since: str) -> Outcome:
        if shed_mark(deployment) is not None:  # never overwrite a remembered count
            return Outcome(target, "changed", "already marked as shed", deployment=deployment)
        original = int(deployment["spec"].get("replicas", 1))
        failed, why = self._patch(target, shed_patch(deployment, policy, target.tier, since))
        if failed:
            return Outcome(target, failed, f"shedding {target}: {why}", deployment=deployment)
        return Outcome(target, "shed", f"scaled {target} (tier {target.tier}) from {original} to 0 replicas",
                       original, deployment)

    def restore(self, target: Target, deployment: Mapping[str, Any]) -> Outcome:
        mark = shed_mark(deployment)
        body = restore_patch(deployment)
        failed, why = self._patch(target, body)
        original = mark.original_replicas if mark else None
        if failed:
            return Outcome(target, failed, f"restoring {target}: {why}", original, deployment)
        if "spec" in body:
            return Outcome(target, "restored", f"scaled {target} (tier {target.tier}) back to "
                           f"{body['spec']['replicas']} replicas", original, deployment)
        running = deployment["spec"].get("replicas", 1)
        return Outcome(target, "released", f"{target} runs {running} replicas set by someone else; "
                       "kept them and removed the shed mark", original, deployment)
