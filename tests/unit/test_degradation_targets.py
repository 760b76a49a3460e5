"""Which Deployments fall into which tier, and which are never touched."""

from __future__ import annotations

import pytest

from hakeeper.api.common import LabelSelector
from hakeeper.api.degradationpolicy import DegradationPolicySpec
from hakeeper.degradationpolicy.targets import Shed, default_priority, matches, pod_priority, select

from ..integration.prometheus_support import deployment

CLASSES = {"batch-low": 100, "standard": 1000, "important": 100000}


def spec(**overrides) -> DegradationPolicySpec:
    base = {"prometheus": {"url": "http://p:9090"},
            "triggers": [{"name": "t", "query": "q", "threshold": 1}],
            "tiers": [{"name": "low", "priority": 1, "maxPodPriority": 100},
                      {"name": "mid", "priority": 2, "maxPodPriority": 1000},
                      {"name": "labelled", "priority": 3, "selector": {"matchLabels": {"shed": "ok"}}}],
            "maxShedFraction": 1.0}
    base.update(overrides)
    return DegradationPolicySpec.model_validate(base)


def names(selection):
    return {t.name: [d.name for d in t.running] for t in selection.tiers}


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "x"}, False),
])
def test_label_selector_semantics(selector, labels, expected):
    assert matches(LabelSelector.model_validate(selector), labels) is expected


def test_tiers_by_pod_priority_class_take_the_lowest_matching_tier():
    fleet = [deployment("crawler", 2, priority_class="batch-low"),
             deployment("search", 2, priority_class="standard"),
             deployment("payments", 2, priority_class="important"),
             deployment("plain", 2),  # no class: the global default (0)
             deployment("tagged", 2, {"shed": "ok"}, priority_class="important")]
    selection = select(spec(), "shop/p", ["shop"], fleet, CLASSES, 0)
    assert names(selection) == {"low": ["plain", "crawler"], "mid": ["search"], "labelled": ["tagged"]}


def test_the_global_default_priority_class_counts_for_pods_without_one():
    classes = [{"metadata": {"name": "default"}, "value": 5000, "globalDefault": True},
               {"metadata": {"name": "x"}, "value": 1}]
    assert default_priority(classes) == 5000
    assert default_priority([]) == 0
    selection = select(spec(), "shop/p", ["shop"], [deployment("plain", 1)], CLASSES, 5000)
    assert names(selection) == {"low": [], "mid": [], "labelled": []}


def test_an_unknown_priority_class_selects_nothing_and_system_classes_rank_above_everything():
    assert pod_priority(deployment("x", 1, priority_class="gone"), CLASSES, 0) is None
    assert pod_priority(deployment("x", 1, priority_class="system-cluster-critical"), CLASSES, 0) == 2_000_000_000


@pytest.mark.parametrize(("labels", "priority_class", "why"), [
    ({"shed": "ok", "hakeeper.io/protected": "true"}, None, "labelled hakeeper.io/protected=true"),
    ({"shed": "ok", "app.kubernetes.io/part-of": "hakeeper"}, None, "run by hakeeper itself"),
    ({"shed": "ok", "app.kubernetes.io/managed-by": "hakeeper"}, None, "run by hakeeper itself"),
    ({"shed": "ok"}, "system-node-critical", "its pods run at system priority 2000000000"),
    ({"shed": "ok", "team": "payments"}, None, "matches spec.protect[0]"),
])
def test_protected_and_core_deployments_are_never_candidates(labels, priority_class, why):
    policy = spec(protect=[{"matchLabels": {"team": "payments"}}])
    selection = select(policy, "shop/p", ["shop"], [deployment("x", 2, labels, priority_class=priority_class)],
                       CLASSES, 0)
    assert all(not t.running for t in selection.tiers)
    assert selection.skipped == (("shop/x", why),)


def test_unselected_deployments_are_core_but_count_in_the_workload():
    fleet = [deployment("tagged", 2, {"shed": "ok"}), deployment("web", 3, {"app": "web"}, priority_class="important"),
             deployment("idle", 0, {"shed": "ok"})]
    selection = select(spec(), "shop/p", ["shop"], fleet, CLASSES, 10**6)
    assert names(selection)["labelled"] == ["tagged"]
    assert selection.workload == 2 and selection.budget == 2  # idle (0 replicas) counts for nothing
    assert select(spec(maxShedFraction=0.5), "shop/p", ["shop"], fleet, CLASSES, 10**6).budget == 1


def _shed(d, policy="shop/p", original=3, tier="labelled"):
    d["metadata"]["annotations"] = {"hakeeper.io/original-replicas": str(original), "hakeeper.io/shed-by": policy,
                                    "hakeeper.io/shed-tier": tier, "hakeeper.io/shed-since": "t"}
    d["spec"]["replicas"] = 0
    return d


def test_shed_marks_sort_into_shed_orphans_and_other_policies():
    fleet = [_shed(deployment("mine", 2, {"shed": "ok"})),
             _shed(deployment("theirs", 2, {"shed": "ok"}), policy="shop/other"),
             _shed(deployment("unlabelled", 2, {"app": "x"}), original=4),
             _shed(deployment("elsewhere", 2, {"shed": "ok"}, namespace="old"))]
    selection = select(spec(), "shop/p", ["shop"], fleet, CLASSES, 10**6)
    labelled = next(t for t in selection.tiers if t.name == "labelled")
    assert [t.name for t in labelled.shed] == ["mine"] and labelled.shed[0].shed.original_replicas == 3
    assert sorted(t.name for t in selection.orphans) == ["elsewhere", "unlabelled"]
    assert ("shop/theirs", "shed by policy shop/other") in selection.skipped
    assert selection.shed_count == 3


def test_dry_run_uses_its_own_marks_and_holds_real_ones():
    fleet = [_shed(deployment("real", 2, {"shed": "ok"})), deployment("would", 2, {"shed": "ok"}),
             deployment("idle-now", 0, {"shed": "ok"})]
    marks = {("shop", "would"): Shed("shop/p", 2, "labelled", "t", dry_run=True),
             ("shop", "idle-now"): Shed("shop/p", 2, "labelled", "t", dry_run=True)}
    selection = select(spec(dryRun=True), "shop/p", ["shop"], fleet, CLASSES, 10**6, marks)
    labelled = next(t for t in selection.tiers if t.name == "labelled")
    assert [t.name for t in labelled.shed] == ["would"] and labelled.shed[0].shed.dry_run
    assert [t.name for t in selection.held] == ["real"]
    # without dryRun the dry marks mean nothing
    plain = select(spec(), "shop/p", ["shop"], fleet, CLASSES, 10**6, marks)
    assert [t.name for t in next(t for t in plain.tiers if t.name == "labelled").running] == ["would"]
