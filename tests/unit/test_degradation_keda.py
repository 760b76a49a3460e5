"""KEDA ScaledObjects of shed Deployments: paused through KEDA's annotation while shed, resumed on
restore (keda.py), driven through whole evaluations on Deployments held in memory.

KEDA itself does not run here: keda_tick below does what KEDA's documentation says it does
(https://keda.sh/docs/latest/concepts/scaling-deployments/#pause-autoscaling): a ScaledObject
with paused-replicas holds its Deployment at that count, one without scales a Deployment at 0
back up to its minReplicaCount (here 1, as an active trigger would).
"""

from __future__ import annotations

import pytest

from hakeeper.api.conditions import get_condition
from hakeeper.api.meta import KEDA_PAUSED_REPLICAS_ANNOTATION, ORIGINAL_REPLICAS_ANNOTATION, PAUSED_BY_ANNOTATION
from hakeeper.degradationpolicy import keda
from hakeeper.degradationpolicy.act import Scaler
from hakeeper.degradationpolicy.observe import ClusterReader
from hakeeper.platform.kube import ApiError

from ..integration.prometheus_support import Fleet
from .test_degradation_state import Policy, replicas, shop, spec

PAUSED = {KEDA_PAUSED_REPLICAS_ANNOTATION: "0", PAUSED_BY_ANNOTATION: "shop/peak"}


def keda_tick(fleet: Fleet) -> None:
    """One pass of KEDA's controller over the fleet's ScaledObjects (see the module's docstring)."""
    for (ns, _), so in list(fleet.scaled.items()):
        target = so["spec"]["scaleTargetRef"]["name"]
        if (ns, target) not in fleet.items:
            continue
        paused = (so["metadata"].get("annotations") or {}).get(KEDA_PAUSED_REPLICAS_ANNOTATION)
        if paused is not None:
            if fleet.replicas(target, ns) != int(paused):
                fleet.scale(target, int(paused), ns, manager="keda")
        elif fleet.replicas(target, ns) == 0:
            fleet.scale(target, 1, ns, manager="keda")


def with_keda(fleet: Fleet, **overrides) -> Policy:
    policy = Policy(fleet, spec(**overrides))
    policy.evaluator.scaler = Scaler(fleet.patch, fleet.patch_scaled_object)
    return policy


def run(policy: Policy, start: float, end: float, value: float) -> None:
    """Evaluations one second apart, KEDA passing between them."""
    t = start
    while t <= end + 1e-9:
        policy.at(t, value)
        keda_tick(policy.fleet)
        t += 1


# -- the rule (pure) ------------------------------------------------------------------------------

def test_by_target_takes_deployments_only_with_keda_defaults():
    objs = [
        {"metadata": {"namespace": "shop", "name": "a", "resourceVersion": "1"},
         "spec": {"scaleTargetRef": {"name": "batch-a"}}},  # kind and apiVersion default to a Deployment
        {"metadata": {"namespace": "shop", "name": "b", "resourceVersion": "2",
                      "annotations": {KEDA_PAUSED_REPLICAS_ANNOTATION: "2"}},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "batch-b"}}},
        {"metadata": {"namespace": "shop", "name": "c", "resourceVersion": "3"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "batch-a"}}},
    ]
    found = keda.by_target(objs)
    assert found == {("shop", "batch-a"): keda.ScaledObject("shop", "a", "batch-a", "1"),
                     ("shop", "batch-b"): keda.ScaledObject("shop", "b", "batch-b", "2", "2")}
    assert found[("shop", "batch-b")].paused_by_others("shop/peak")


def test_pause_and_resume_patches_carry_the_version_read():
    so = keda.ScaledObject("shop", "a", "batch-a", "7")
    assert keda.pause_patch(so, "shop/peak") == {"metadata": {"resourceVersion": "7", "annotations": PAUSED}}
    assert keda.resume_patch(so) == {"metadata": {"resourceVersion": "7", "annotations": {
        KEDA_PAUSED_REPLICAS_ANNOTATION: None, PAUSED_BY_ANNOTATION: None}}}


def test_sweep_pauses_the_shed_resumes_its_own_and_leaves_others_pauses():
    mine = keda.ScaledObject("shop", "mine", "gone", "1", "0", "shop/peak")
    fresh = keda.ScaledObject("shop", "fresh", "batch-a", "1")
    theirs = keda.ScaledObject("shop", "theirs", "reports", "1", "3")
    other_policy = keda.ScaledObject("shop", "other", "checkout", "1", "0", "shop/other")
    handled = keda.ScaledObject("shop", "handled", "batch-b", "1")
    scaled = {so.key: so for so in (mine, fresh, theirs, other_policy, handled)}
    pause, resume = keda.sweep("shop/peak", scaled, shed={("shop", "batch-a"), ("shop", "reports"),
                                                          ("shop", "batch-b")}, handled={("shop", "batch-b")})
    assert (pause, resume) == ([fresh], [mine])


# -- whole evaluations ----------------------------------------------------------------------------

def test_a_keda_scaled_deployment_is_paused_while_shed_and_resumed_on_restore():
    fleet = shop()
    fleet.add_scaled_object("batch-a-so", "batch-a")
    writes: list[str] = []
    policy = with_keda(fleet)
    scaler = policy.evaluator.scaler
    scaler.patch = lambda ns, name, body: (writes.append(f"deployment {name}"), fleet.patch(ns, name, body))[1]
    scaler.patch_scaled_object = lambda ns, name, body: (writes.append(f"scaledobject {name}"),
                                                         fleet.patch_scaled_object(ns, name, body))[1]
    run(policy, 0, 6, 12)  # `for` is 3 s: batch shed at 3, KEDA passes after each evaluation
    assert fleet.scaled_annotations("batch-a-so") == PAUSED
    assert replicas(fleet)["batch-a"] == 0  # KEDA holds it at 0: no conflict
    assert writes[:2] == ["deployment batch-a", "scaledobject batch-a-so"]  # the mark first, then the pause
    assert get_condition(policy.last.status["conditions"], "Conflict")["status"] == "False"
    shed_event = next(e for e in policy.events if e.reason == "Shed" and "batch-a " in e.message + " ")
    assert "KEDA ScaledObject shop/batch-a-so paused at 0 replicas" in shed_event.message

    writes.clear()
    run(policy, 7, 20, 1)  # recovered: cooldown 4 s, a tier every 2 s
    assert replicas(fleet)["batch-a"] == 3
    assert fleet.scaled_annotations("batch-a-so") == {}
    assert ORIGINAL_REPLICAS_ANNOTATION not in fleet.annotations("batch-a")
    assert writes.index("scaledobject batch-a-so") < writes.index("deployment batch-a")  # resumed, then restored
    restored = next(e for e in policy.events if e.reason == "Restored" and "batch-a " in e.message + " ")
    assert "KEDA ScaledObject shop/batch-a-so resumed" in restored.message


def test_without_the_pause_keda_scales_it_back_and_that_is_a_conflict():
    """The control: what pausing prevents. KEDA (its tick) scales a shed Deployment whose
    ScaledObject nobody paused back up; the policy reports it and leaves it."""
    fleet = shop()
    fleet.add_scaled_object("batch-a-so", "batch-a")
    policy = Policy(fleet, spec())  # a Scaler that cannot patch ScaledObjects
    run(policy, 0, 5, 12)
    assert replicas(fleet)["batch-a"] == 1
    conflict = get_condition(policy.last.status["conditions"], "Conflict")
    assert conflict["status"] == "True"
    assert "scaled back to 1 replicas by keda" in conflict["message"]
    assert "KEDA ScaledObject shop/batch-a-so scales it" in conflict["message"]


def test_a_scaled_object_someone_else_paused_is_left_alone_and_reported():
    fleet = shop()
    fleet.add_scaled_object("batch-a-so", "batch-a", annotations={KEDA_PAUSED_REPLICAS_ANNOTATION: "2"})
    policy = with_keda(fleet)
    run(policy, 0, 5, 12)
    assert fleet.scaled_patches == []
    assert fleet.scaled_annotations("batch-a-so") == {KEDA_PAUSED_REPLICAS_ANNOTATION: "2"}
    assert replicas(fleet)["batch-a"] == 2  # their pause holds it at 2
    conflict = get_condition(policy.last.status["conditions"], "Conflict")
    assert "KEDA ScaledObject shop/batch-a-so holds it at 2 replicas (paused by someone else)" in conflict["message"]
    run(policy, 6, 20, 1)
    assert fleet.scaled_annotations("batch-a-so") == {KEDA_PAUSED_REPLICAS_ANNOTATION: "2"}  # never resumed by us


def test_a_failed_resume_holds_the_restore_until_the_next_evaluation():
    fleet = shop()
    fleet.add_scaled_object("batch-a-so", "batch-a")
    policy = with_keda(fleet)
    run(policy, 0, 6, 12)
    assert fleet.scaled_annotations("batch-a-so") == PAUSED
    failing = {"left": 1}
    real = fleet.patch_scaled_object

    def refuse_once(ns, name, body):
        if failing["left"]:
            failing["left"] -= 1
            raise ApiError(409, "Conflict")
        return real(ns, name, body)

    policy.evaluator.scaler.patch_scaled_object = refuse_once
    t = 7
    while failing["left"]:  # recovered: the restore comes after the 4 s cooldown, and its resume fails
        policy.at(t, 1)
        t += 1
        assert t < 20, "no restore was tried"
    # that evaluation left the Deployment shed, marked and paused: nothing restored under KEDA's pause
    assert replicas(fleet)["batch-a"] == 0
    assert fleet.annotations("batch-a")[ORIGINAL_REPLICAS_ANNOTATION] == "3"
    assert fleet.scaled_annotations("batch-a-so") == PAUSED
    assert "ScaleFailed" in policy.reasons()
    run(policy, t, t + 6, 1)
    assert replicas(fleet)["batch-a"] == 3 and fleet.scaled_annotations("batch-a-so") == {}


def test_a_scaled_object_created_after_the_shed_is_paused_and_one_whose_deployment_went_is_resumed():
    fleet = shop()
    policy = with_keda(fleet)
    run(policy, 0, 4, 12)
    assert replicas(fleet)["batch-a"] == 0
    fleet.add_scaled_object("late", "batch-a")
    run(policy, 5, 5, 12)
    assert fleet.scaled_annotations("late") == PAUSED
    del fleet.items[("shop", "batch-a")]  # deleted while shed
    run(policy, 6, 6, 12)
    assert fleet.scaled_annotations("late") == {}


def test_dry_run_pauses_nothing_and_says_it_would():
    fleet = shop()
    fleet.add_scaled_object("batch-a-so", "batch-a")
    policy = with_keda(fleet, dryRun=True)
    run(policy, 0, 4, 12)
    assert fleet.scaled_patches == []
    would = next(e for e in policy.events if e.reason == "WouldShed" and "batch-a " in e.message + " ")
    assert "and pause KEDA ScaledObject shop/batch-a-so" in would.message


def test_deleting_the_policy_resumes_what_it_paused():
    fleet = shop()
    fleet.add_scaled_object("batch-a-so", "batch-a")
    policy = with_keda(fleet)
    run(policy, 0, 4, 12)
    assert fleet.scaled_annotations("batch-a-so") == PAUSED
    outcomes = policy.evaluator.release_all(policy.body, policy.spec)
    assert {o.action for o in outcomes} == {"restored"}
    assert fleet.scaled_annotations("batch-a-so") == {} and replicas(fleet)["batch-a"] == 3


# -- reading ScaledObjects ------------------------------------------------------------------------

class ListOnly:
    def __init__(self, error: ApiError | None):
        self.error = error

    def list(self, kind, namespace=None, **_):
        assert kind == "ScaledObject"
        if self.error:
            raise self.error
        return [{"metadata": {"name": "x"}}]


def test_no_keda_installed_means_no_scaled_objects():
    assert ClusterReader(ListOnly(ApiError(404, "Not Found"))).scaled_objects("shop") == []
    assert ClusterReader(ListOnly(None)).scaled_objects("shop") == [{"metadata": {"name": "x"}}]
    with pytest.raises(ApiError):  # anything else is a failure to read, not an absence
        ClusterReader(ListOnly(ApiError(403, "Forbidden"))).scaled_objects("shop")
