"""`hakeeper uninstall`'s pure decisions (uninstall/plan.py): which finalizer patch, which
(namespace, policy) pairs to release, which operator pods are left. The steps themselves run
against a real cluster in tests/e2e/test_uninstall.py."""

from __future__ import annotations

import pytest

from hakeeper.api.meta import (
    FINALIZER,
    KEDA_PAUSED_REPLICAS_ANNOTATION,
    ORIGINAL_REPLICAS_ANNOTATION,
    PAUSED_BY_ANNOTATION,
    SHED_BY_ANNOTATION,
)
from hakeeper.uninstall import plan


def _obj(finalizers: list[str] | None, version: str = "5") -> dict:
    meta: dict = {"name": "web", "namespace": "shop", "resourceVersion": version}
    if finalizers is not None:
        meta["finalizers"] = finalizers
    return {"metadata": meta}


def test_finalizer_patch_removes_only_hakeepers_on_the_version_read():
    assert plan.finalizer_patch(_obj([FINALIZER])) == {"metadata": {"resourceVersion": "5", "finalizers": []}}
    assert plan.finalizer_patch(_obj(["example.com/keep", FINALIZER, "other/x"], "9")) == {
        "metadata": {"resourceVersion": "9", "finalizers": ["example.com/keep", "other/x"]}}


@pytest.mark.parametrize("finalizers", [None, [], ["example.com/keep"]])
def test_no_patch_for_an_object_without_hakeepers_finalizer(finalizers):
    assert plan.finalizer_patch(_obj(finalizers)) is None


def _deployment(namespace: str, name: str, **annotations: str) -> dict:
    return {"metadata": {"namespace": namespace, "name": name, "annotations": annotations}, "spec": {"replicas": 0}}


def test_shed_by_names_each_namespace_and_policy_once_even_for_a_policy_gone():
    deployments = [
        _deployment("shop", "a", **{SHED_BY_ANNOTATION: "shop/peak", ORIGINAL_REPLICAS_ANNOTATION: "3"}),
        _deployment("shop", "b", **{SHED_BY_ANNOTATION: "shop/peak", ORIGINAL_REPLICAS_ANNOTATION: "1"}),
        _deployment("blog", "c", **{SHED_BY_ANNOTATION: "ops/global", ORIGINAL_REPLICAS_ANNOTATION: "2"}),
        _deployment("blog", "d"),  # never shed
        # a mark the restore could not write back is no mark (targets.shed_mark)
        _deployment("blog", "e", **{SHED_BY_ANNOTATION: "ops/other", ORIGINAL_REPLICAS_ANNOTATION: "-1"}),
    ]
    assert plan.shed_by(deployments) == [("blog", "ops/global"), ("shop", "shop/peak")]


def test_shed_by_includes_a_keda_pause_whose_deployment_is_no_longer_shed():
    scaled = [{"metadata": {"namespace": "jobs", "name": "so", "resourceVersion": "1",
                            "annotations": {KEDA_PAUSED_REPLICAS_ANNOTATION: "0", PAUSED_BY_ANNOTATION: "jobs/p"}},
               "spec": {"scaleTargetRef": {"name": "worker"}}},
              # paused by someone else: not hakeeper's to resume
              {"metadata": {"namespace": "jobs", "name": "mine", "resourceVersion": "1",
                            "annotations": {KEDA_PAUSED_REPLICAS_ANNOTATION: "2"}},
               "spec": {"scaleTargetRef": {"name": "other"}}}]
    assert plan.shed_by([], scaled) == [("jobs", "jobs/p")]


def test_terminating_operator_pods_still_count():
    pods = [{"metadata": {"name": "hakeeper-b", "deletionTimestamp": "2026-01-01T00:00:00Z"}},
            {"metadata": {"name": "hakeeper-a"}}]
    assert plan.pod_names(pods) == ["hakeeper-a", "hakeeper-b"]
    assert plan.pod_names([]) == []


def test_selector_of_the_operator_deployment():
    deployment = {"metadata": {"name": "hakeeper"}, "spec": {"selector": {"matchLabels": {
        "app.kubernetes.io/name": "hakeeper", "app.kubernetes.io/instance": "rel"}}}}
    assert plan.selector(deployment) == "app.kubernetes.io/instance=rel,app.kubernetes.io/name=hakeeper"
    deployment["spec"]["selector"]["matchExpressions"] = [{"key": "x", "operator": "Exists"}]
    with pytest.raises(ValueError, match="only a matchLabels selector"):
        plan.selector(deployment)


def test_stop_patch_scales_to_zero():
    assert plan.STOP_PATCH == {"spec": {"replicas": 0}}


def test_restore_event_names_the_deployment_and_says_why():
    deployment = {"metadata": {"namespace": "shop", "name": "batch", "uid": "u-1"}}
    event = plan.restore_event(deployment, "restored", "scaled shop/batch (tier batch) back to 3 replicas",
                               "2026-01-01T00:00:00.000Z")
    assert event["involvedObject"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "batch",
                                       "namespace": "shop", "uid": "u-1"}
    assert (event["type"], event["reason"]) == ("Normal", "Restored")
    assert event["message"] == "hakeeper uninstalled: scaled shop/batch (tier batch) back to 3 replicas"
    assert event["metadata"] == {"generateName": "batch.", "namespace": "shop"}
    released = plan.restore_event(deployment, "released", "kept", "2026-01-01T00:00:00.000Z")
    assert (released["type"], released["reason"]) == ("Warning", "Released")
