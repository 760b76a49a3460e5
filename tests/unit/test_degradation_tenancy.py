"""No confused deputy: a DegradationPolicy sheds outside its own namespace only where that
namespace opted in (shed-from.hakeeper.io/<policy namespace>=true) or the cluster admin trusts
the policy's namespace; a refused namespace is reported (status.refusedNamespaces, condition
NamespacesAllowed=False, a Warning Event) and nothing in it is touched."""

from __future__ import annotations

from typing import Any

from hakeeper.degradationpolicy.tenancy import ANY_NAMESPACE, admit, opt_in_label

from ..integration.prometheus_support import Fleet, deployment
from .test_degradation_state import Policy, spec

OPTED_IN = {opt_in_label("ops"): "true"}


def test_the_own_namespace_is_allowed_and_another_needs_its_opt_in_label():
    a = admit("ops", ["ops", "shop", "web", "gone"], {"ops": {}, "shop": OPTED_IN, "web": {"team": "web"},
                                                      "gone": None}, frozenset())
    assert a.allowed == ("ops", "shop")
    assert set(a.refused) == {"web", "gone"}
    assert "shed-from.hakeeper.io/ops=true" in a.refused["web"] and "degradationPolicy.trustedNamespaces" in a.refused["web"]
    assert a.refused["gone"] == "namespace not found"


def test_a_label_naming_another_policy_namespace_or_another_value_opts_nothing_in():
    labels = {"shop": {opt_in_label("dev"): "true"}, "web": {opt_in_label("ops"): "yes"}}
    assert admit("ops", ["shop", "web"], labels, frozenset()).allowed == ()


def test_a_trusted_policy_namespace_sheds_anywhere_but_never_in_a_protected_one():
    labels: dict[str, Any] = {"shop": {}, "kube-system": {"hakeeper.io/protected": "true"}}
    for trusted in (frozenset({"ops"}), frozenset({ANY_NAMESPACE})):
        a = admit("ops", ["shop", "kube-system"], labels, trusted)
        assert a.allowed == ("shop",) and "hakeeper.io/protected=true" in a.refused["kube-system"]
    assert admit("dev", ["shop"], labels, frozenset({"ops"})).allowed == ()
    # protected wins over being the policy's own namespace
    assert admit("kube-system", ["kube-system"], labels, frozenset()).allowed == ()


def _ops_policy(fleet: Fleet) -> Policy:
    policy = Policy(fleet, spec(namespaces=["ops", "shop"]))
    policy.body["metadata"]["namespace"] = "ops"
    return policy


def test_an_evaluation_sheds_nothing_in_a_namespace_that_did_not_opt_in_and_says_so():
    fleet = Fleet(deployment("batch-a", 3, {"tier": "batch"}, namespace="shop"),
                  deployment("batch-ops", 2, {"tier": "batch"}, namespace="ops"))
    policy = _ops_policy(fleet)
    policy.run(0, 6, 12)
    assert fleet.replicas("batch-a") == 3, "shed in a namespace that never opted in"
    assert fleet.replicas("batch-ops", namespace="ops") == 0  # the control: its own namespace is shed
    status = policy.body["status"]
    assert [r["namespace"] for r in status["refusedNamespaces"]] == ["shop"]
    allowed = next(c for c in status["conditions"] if c["type"] == "NamespacesAllowed")
    assert allowed["status"] == "False" and allowed["reason"] == "NamespaceRefused" and "shop" in allowed["message"]
    assert policy.reasons().count("NamespaceRefused") == 1, "posted once, not every evaluation"


def test_the_opt_in_label_lets_the_policy_shed_and_removing_it_restores_what_it_shed():
    fleet = Fleet(deployment("batch-a", 3, {"tier": "batch"}, namespace="shop"))
    fleet.namespace_label_sets["shop"] = dict(OPTED_IN)
    policy = _ops_policy(fleet)
    policy.run(0, 6, 12)
    assert fleet.replicas("batch-a") == 0
    assert policy.body["status"]["refusedNamespaces"] == []
    fleet.namespace_label_sets["shop"] = {}
    policy.at(7, 12)  # still breaching: the label, not the trigger, gives it back
    assert fleet.replicas("batch-a") == 3
    assert [r["namespace"] for r in policy.body["status"]["refusedNamespaces"]] == ["shop"]
