"""Request classes refused by a DegradationPolicy's tiers: the state machine (through a whole
evaluation on Deployments in memory), the policy's status and Events, and the pool's side (what
it refuses from the policies' status, its status entry and Events)."""

from __future__ import annotations

from typing import Any

from hakeeper.api.degradationpolicy import RefusedRequestClasses
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.degradationpolicy.status import degraded, memory_from_status
from hakeeper.loadbalancerpool import request_classes as pool_classes

from ..integration.prometheus_support import Fleet, deployment
from .test_degradation_state import Policy, spec

CLASSES_ONLY = {"name": "bulk-traffic", "priority": 5, "requestClasses": [{"pool": "web", "classes": ["low"]}]}
BATCH = {"name": "batch", "priority": 10, "selector": {"matchLabels": {"tier": "batch"}},
         "requestClasses": [{"pool": "web", "classes": ["batch", "no-such-class"]}]}
REPORTS = {"name": "reports", "priority": 20, "selector": {"matchLabels": {"tier": "reports"}}}


def fleet() -> Fleet:
    f = Fleet(deployment("batch-a", 3, {"tier": "batch"}), deployment("reports", 4, {"tier": "reports"}),
              deployment("checkout", 5, {"tier": "core"}))
    f.pools[("shop", "web")] = ["high", "low", "batch"]
    return f


def refused(status: dict[str, Any]) -> list[tuple[str, str, list[str], list[str]]]:
    return [(e["tier"], e["pool"], e["classes"], e.get("unknown", [])) for e in status["refusedRequestClasses"]]


def test_a_tier_of_classes_only_is_refused_first_and_selects_no_deployment() -> None:
    f = fleet()
    policy = Policy(f, spec(tiers=[CLASSES_ONLY, BATCH, REPORTS]))
    policy.run(0, 2, 12)
    assert refused(policy.at(2.9, 12)) == []  # `for` (3s) not yet over
    status = policy.at(3, 12)
    # the lowest tier goes first, alone: its classes, no Deployment (the tier has no selector: it
    # must not select every Deployment, as a tier without selector and maxPodPriority would)
    assert refused(status) == [("bulk-traffic", "web", ["low"], [])]
    assert f.replicas("batch-a") == 3 and f.replicas("checkout") == 5
    assert status["state"] == "Degraded" and "refusing the request classes of tier bulk-traffic" in status["message"]
    assert "RequestClassesRefused" in policy.reasons()
    # one interval later the next tier: its Deployments and its classes together; a class the
    # pool lacks is reported (unknown) with a Warning, not fatal
    status = policy.at(4, 12)
    assert f.replicas("batch-a") == 0 and f.replicas("reports") == 4 and f.replicas("checkout") == 5
    assert refused(status) == [("bulk-traffic", "web", ["low"], []),
                               ("batch", "web", ["batch", "no-such-class"], ["no-such-class"])]
    assert policy.reasons().count("RequestClassesRefused") == 2 and "RequestClassUnknown" in policy.reasons()


def test_restore_lets_the_classes_through_tier_by_tier_after_the_cooldown() -> None:
    f = fleet()
    policy = Policy(f, spec(tiers=[CLASSES_ONLY, BATCH, REPORTS]))
    policy.run(0, 5, 12)  # three steps: every tier
    assert [e[0] for e in refused(policy.body["status"])] == ["bulk-traffic", "batch"] and f.replicas("reports") == 0
    policy.run(6, 9, 2)  # recovered; cooldown 4s
    status = policy.at(10, 2)  # restore (highest priority first): reports
    assert f.replicas("reports") == 4 and len(refused(status)) == 2
    status = policy.at(12, 2)  # batch: its Deployment and its classes
    assert f.replicas("batch-a") == 3 and refused(status) == [("bulk-traffic", "web", ["low"], [])]
    assert status["state"] == "Recovering"  # classes still refused: not Normal yet
    status = policy.at(14, 2)
    assert refused(status) == [] and status["state"] == "Normal"
    assert policy.reasons().count("RequestClassesRestored") == 2


def test_mode_all_refuses_every_tier_at_once_and_the_memory_survives_a_restart() -> None:
    f = fleet()
    policy = Policy(f, spec(tiers=[CLASSES_ONLY, BATCH, REPORTS], mode="all"))
    status = policy.run(0, 3, 12) or policy.body["status"]
    assert [e[0] for e in refused(status)] == ["bulk-traffic", "batch"] and f.replicas("reports") == 0
    # an operator restarted: the refused tiers and since when come back from the status
    memory = memory_from_status(status)
    assert set(memory.refused) == {"bulk-traffic", "batch"}


def test_a_tier_removed_from_the_spec_refuses_nothing_any_more() -> None:
    f = fleet()
    policy = Policy(f, spec(tiers=[CLASSES_ONLY, REPORTS]))
    policy.run(0, 3, 12)
    assert refused(policy.body["status"])
    policy.spec = spec(tiers=[REPORTS])
    assert refused(policy.at(4, 12)) == []


def test_a_missing_pool_names_every_class_unknown_and_an_unreadable_one_none() -> None:
    f = fleet()
    f.pools.clear()
    policy = Policy(f, spec(tiers=[CLASSES_ONLY, REPORTS]))
    policy.run(0, 3, 12)
    assert refused(policy.body["status"]) == [("bulk-traffic", "web", ["low"], ["low"])]
    # a failed read of the pool does not stop the evaluation, nor the refusal (the pool filters)
    f.pools_unreadable = True
    f.pools[("shop", "web")] = ["low"]
    policy2 = Policy(f, spec(tiers=[CLASSES_ONLY, REPORTS]), name="other")
    policy2.run(0, 3, 12)
    assert refused(policy2.body["status"]) == [("bulk-traffic", "web", ["low"], [])]


def test_dry_run_reports_refusals_the_pools_ignore() -> None:
    f = fleet()
    policy = Policy(f, spec(tiers=[CLASSES_ONLY, REPORTS], dryRun=True))
    policy.run(0, 3, 12)
    entry = policy.body["status"]["refusedRequestClasses"][0]
    assert entry["dryRun"] is True
    assert pool_classes.index_entries({**policy.body, "status": policy.body["status"]}) == {}


# -- the pool's side ------------------------------------------------------------------------

POOL = LoadBalancerPoolSpec.model_validate({
    "backends": {"service": "web", "port": 80}, "defaultRequestClass": "low",
    "requestClasses": [{"name": "high", "match": {"methods": ["GET"]}}, {"name": "low"}, {"name": "batch"}]})


def policy_body(name: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": name}, "status": {"refusedRequestClasses": entries}}


def test_the_pool_refuses_the_classes_it_defines_by_every_policy() -> None:
    a = pool_classes.index_entries(policy_body("a", [
        {"pool": "web", "tier": "t", "classes": ["low"], "since": "2026-01-01T00:00:02.000Z"},
        {"pool": "other", "tier": "t", "classes": ["low"], "since": "2026-01-01T00:00:02.000Z"}]))
    b = pool_classes.index_entries(policy_body("b", [
        {"pool": "web", "tier": "u", "classes": ["low", "batch", "gold"], "since": "2026-01-01T00:00:01.000Z"}]))
    assert a is not None and b is not None and set(a) == {("shop", "web"), ("shop", "other")}
    got = pool_classes.refused(POOL, [a[("shop", "web")], b[("shop", "web")]])
    assert [(r.name, r.policies, r.since) for r in got] == [
        ("batch", ["shop/b"], "2026-01-01T00:00:01.000Z"),
        ("low", ["shop/a", "shop/b"], "2026-01-01T00:00:01.000Z")]  # gold: the pool has none
    assert pool_classes.refused(POOL, []) == []


def test_pool_events_when_the_refused_set_changes() -> None:
    before = {"refusedRequestClasses": [{"name": "batch", "policies": ["shop/b"], "since": "x"}]}
    after = {"refusedRequestClasses": [{"name": "low", "policies": ["shop/a"], "since": "y"}]}
    assert pool_classes.events(before, after) == [
        ("RequestClassesRefused", "refusing request classes low (DegradationPolicy shop/a)"),
        ("RequestClassesRestored", "request classes batch served again")]
    assert pool_classes.events(after, after) == []
    assert pool_classes.events(after, {"backends": {}}) == []  # a pool without classes


def test_a_policy_that_stops_refusing_leaves_the_kopf_index() -> None:
    """kopf keeps an object's old index values when the index function returns None (seen on the
    e2e cluster: the pool went on refusing after the policy restored); an empty mapping clears them."""
    from kopf._core.actions.execution import Outcome
    from kopf._core.engines.indexing import OperatorIndexer, OperatorIndexers

    def index_after(second: object) -> list:
        indexers = OperatorIndexers()
        indexers["refusals"] = OperatorIndexer()  # type: ignore[index]
        body = {"metadata": {"namespace": "shop", "name": "a", "uid": "u1"}}
        refusing = pool_classes.index_entries(policy_body("a", [{"pool": "web", "tier": "t", "classes": ["low"]}]))
        indexers.replace(body, {"refusals": Outcome(final=True, result=refusing)})  # type: ignore[arg-type,dict-item]
        indexers.replace(body, {"refusals": Outcome(final=True, result=second)})  # type: ignore[arg-type,dict-item]
        return list(indexers["refusals"].index.get(("shop", "web"), ()))  # type: ignore[index]

    assert index_after(None) != []  # the control: kopf's behaviour with None
    assert index_after(pool_classes.index_entries(policy_body("a", []))) == []


def test_degraded_says_so_when_a_tier_only_refuses_request_classes():
    """The Degraded condition counted Deployments only: a tier of classes left it False,
    "no Deployment is shed", while the balancers turned clients away."""
    refusing = RefusedRequestClasses(pool="web", classes=["batch"], tier="classes", since="2026-11-30T07:00:00Z")
    verdict = degraded([], [], [refusing])
    assert verdict.status and verdict.message == "request classes refused on pool web in tier classes"
    # the controls: nothing refused, a dry run's refusal, and only classes the pool lacks
    assert not degraded([], []).status
    dry = refusing.model_copy(update={"dry_run": True})
    assert not degraded([], [], [dry]).status and "dryRun" in degraded([], [], [dry]).message
    unknown = refusing.model_copy(update={"unknown": ["batch"]})
    assert not degraded([], [], [unknown]).status
