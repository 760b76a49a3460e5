"""The patches a shed and a restore send, and what a conflict says."""

from __future__ import annotations

from hakeeper.degradationpolicy.act import Scaler, conflict_message, hpas_by_target, restore_patch, shed_patch
from hakeeper.degradationpolicy.targets import Target

from ..integration.prometheus_support import Fleet, deployment


def test_shed_is_one_patch_with_the_original_count_and_a_precondition():
    d = deployment("batch", 3)
    d["metadata"]["resourceVersion"] = "41"
    assert shed_patch(d, "shop/peak", "batch", "2030-01-01T00:00:00.000Z") == {
        "metadata": {"resourceVersion": "41", "annotations": {
            "hakeeper.io/original-replicas": "3", "hakeeper.io/shed-by": "shop/peak",
            "hakeeper.io/shed-tier": "batch", "hakeeper.io/shed-since": "2030-01-01T00:00:00.000Z"}},
        "spec": {"replicas": 0}}


def test_restore_sets_the_remembered_count_or_only_unmarks_when_something_else_runs_it():
    d = deployment("batch", 0)
    d["metadata"]["annotations"] = {"hakeeper.io/original-replicas": "3", "hakeeper.io/shed-by": "shop/peak"}
    body = restore_patch(d)
    assert body["spec"] == {"replicas": 3}
    assert body["metadata"]["annotations"] == {
        "hakeeper.io/original-replicas": None, "hakeeper.io/shed-by": None, "hakeeper.io/shed-tier": None,
        "hakeeper.io/shed-since": None}
    d["spec"]["replicas"] = 5
    assert "spec" not in restore_patch(d)


def test_a_stale_read_is_refused_and_a_marked_deployment_is_never_shed_twice():
    fleet = Fleet(deployment("batch", 3))
    scaler = Scaler(fleet.patch)
    target = Target("shop", "batch", "batch", 1, 0, 3)
    read = fleet.deployment("shop", "batch")
    fleet.scale("batch", 4)  # changed after the read
    assert scaler.shed(target, read, "shop/p", "t").action == "changed"
    assert fleet.replicas("batch") == 4
    fresh = fleet.deployment("shop", "batch")
    assert scaler.shed(target, fresh, "shop/p", "t").action == "shed"
    marked = fleet.deployment("shop", "batch")
    marked["spec"]["replicas"] = 2
    assert scaler.shed(target, marked, "shop/p", "t").action == "changed"
    assert fleet.annotations("batch")["hakeeper.io/original-replicas"] == "4"
    assert scaler.shed(Target("shop", "gone", "batch", 1, 0, 3), deployment("gone", 1), "shop/p", "t").action == "gone"


def test_conflict_names_the_manager_and_the_hpa():
    d = deployment("batch", 4)
    d["metadata"]["managedFields"] = [
        {"manager": "hakeeper", "operation": "Update", "time": "2030-01-01T00:00:02Z",
         "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "time": "2030-01-01T00:00:01Z",
         "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "kubectl", "operation": "Update", "time": "2030-01-01T00:00:03Z",
         "fieldsV1": {"f:metadata": {}}}]
    text = conflict_message(d, "batch-hpa")
    assert text.startswith("scaled back to 4 replicas by kube-controller-manager (Update at 2030-01-01T00:00:01Z)")
    assert "HorizontalPodAutoscaler batch-hpa targets it" in text
    assert "by someone else" in conflict_message(deployment("x", 1), None)


def test_hpas_are_found_by_their_scale_target():
    hpas = [{"metadata": {"namespace": "shop", "name": "h1"}, "spec": {"scaleTargetRef": {"kind": "Deployment",
                                                                                          "name": "batch"}}},
            {"metadata": {"namespace": "shop", "name": "h2"}, "spec": {"scaleTargetRef": {"kind": "StatefulSet",
                                                                                          "name": "db"}}}]
    assert hpas_by_target(hpas) == {("shop", "batch"): "h1"}

