"""The chart's ValidatingAdmissionPolicy: a balancer agent patches only its own pod, and there
only its report annotations (templates/agent-policy.yaml).

The policy's CEL is evaluated offline (tests/support/admission_policy.py) on requests shaped as
the API server's: a merge patch of the pod is an UPDATE whose object is the patched pod and
whose oldObject the stored one. The e2e tier sends the same requests to a real API server
(tests/e2e/test_agent_policy.py).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hakeeper.api.meta import (
    APPLIED_HASH_ANNOTATION,
    EFFECTIVE_WEIGHTS_ANNOTATION,
    IPVS_ANNOTATION,
    RELOADS_ANNOTATION,
    VRRP_STATE_ANNOTATION,
)
from hakeeper.loadbalancerpool import objects as pool_objects
from hakeeper.loadbalancerpool.lvs import objects as lvs_objects

from ..support.admission_policy import admit, matches
from .test_chart import one, render

HAPROXY_POD = "web-haproxy-5d8f9c7b6-x2x9q"
KEEPALIVED_POD = "web-keepalived-7hq2m"
AGENT = "system:serviceaccount:shop:web-agent"


def policy() -> dict[str, Any]:
    return one(render(), "ValidatingAdmissionPolicy")


def pod(name: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "uid": "u-" + name, "resourceVersion": "7",
                         "labels": {"hakeeper.io/pool": "web", "role": "replica"},
                         "annotations": {"hakeeper.io/pod-spec": "abc", APPLIED_HASH_ANNOTATION: "old"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-haproxy-5d8f9c7b6",
                                              "uid": "rs", "controller": True}], **meta},
            "spec": {"serviceAccountName": "web-agent", "containers": [{"name": "haproxy", "image": "haproxy:2.6"}]}}


def merge(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch, as the API server applies `application/merge-patch+json`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(old) if isinstance(old, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def request(name: str, *, user: str = AGENT, bound: str | None = HAPROXY_POD, operation: str = "UPDATE",
            namespace: str = "shop", subresource: str = "") -> dict[str, Any]:
    extra = {"authentication.kubernetes.io/pod-name": [bound],
             "authentication.kubernetes.io/pod-uid": ["u-" + bound]} if bound else {}
    out: dict[str, Any] = {"operation": operation, "namespace": namespace, "name": name,
                           "userInfo": {"username": user, "groups": ["system:serviceaccounts"], "extra": extra}}
    if subresource:
        out["subResource"] = subresource  # absent for the pod itself, as the API server gives it
    return out


def patch_pod(name: str, patch: dict[str, Any], **req: Any) -> str | None:
    old = pod(name)
    return admit(policy(), request(name, **req), merge(old, patch), old)


def test_the_chart_binds_the_policy_to_deny():
    docs = render()
    binding = one(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy()["metadata"]["name"], "validationActions": ["Deny"]}
    assert policy()["spec"]["failurePolicy"] == "Fail"
    off = render("agentPolicy.enabled=false")
    assert not [d for d in off if d["kind"].startswith("ValidatingAdmissionPolicy")]


def test_the_policy_knows_agents_by_the_names_the_operator_gives():
    from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec

    # <pool>-agent is the ServiceAccount; its pods are the Deployment's <pool>-haproxy-<hash>-<id>
    # and the DaemonSet's <pool>-keepalived-<id>
    assert pool_objects.names("web")["serviceaccount"] == "web-agent"
    spec = LoadBalancerPoolSpec.model_validate({"backends": {"selector": {"matchLabels": {"app": "w"}}, "port": 80}})
    assert pool_objects.deployment("web", "shop", spec, "img", "h")["metadata"]["name"] == "web-haproxy"
    lvs = LoadBalancerPoolSpec.model_validate({
        "engine": "lvs", "backends": {"selector": {"matchLabels": {"app": "w"}}, "port": 80},
        "lvs": {"virtualIP": "10.0.0.1", "port": 80, "vrrp": {"virtualRouterID": 5, "interface": "eth0"}}})
    assert lvs_objects.daemonset("web", "shop", lvs)["metadata"]["name"] == "web-keepalived"


def test_the_report_annotations_are_exactly_what_the_agents_write():
    variables = {v["name"]: v["expression"] for v in policy()["spec"]["variables"]}
    listed = {part.strip(" '[]\n") for part in variables["reportAnnotations"].split(",")}
    assert listed == {APPLIED_HASH_ANNOTATION, RELOADS_ANNOTATION, VRRP_STATE_ANNOTATION, IPVS_ANNOTATION,
                      EFFECTIVE_WEIGHTS_ANNOTATION}


@pytest.mark.parametrize("resource,operation", [("pods", "UPDATE"), ("pods", "CREATE"), ("pods", "DELETE"),
                                                ("pods/status", "UPDATE"), ("pods/eviction", "CREATE"),
                                                ("pods/ephemeralcontainers", "UPDATE")])
def test_every_write_to_pods_is_matched(resource, operation):
    assert matches(policy(), resource=resource, operation=operation)


@pytest.mark.parametrize("bound", [HAPROXY_POD, KEEPALIVED_POD], ids=["haproxy", "keepalived"])
@pytest.mark.parametrize("report", [
    {APPLIED_HASH_ANNOTATION: "new", RELOADS_ANNOTATION: "3"},
    {EFFECTIVE_WEIGHTS_ANNOTATION: '[{"backend":"web-0","base":1,"weight":40,"percent":40,"latencyMs":51.0}]'},
    {VRRP_STATE_ANNOTATION: "MASTER", IPVS_ANNOTATION: "available", APPLIED_HASH_ANNOTATION: "new"},
    {APPLIED_HASH_ANNOTATION: None},  # a report removed
    {APPLIED_HASH_ANNOTATION: "old"},  # unchanged
], ids=["haproxy-report", "latency-weights-report", "keepalived-report", "removed", "unchanged"])
def test_an_agent_reports_on_its_own_pod(bound, report):
    assert patch_pod(bound, {"metadata": {"annotations": report}}, bound=bound) is None


def test_a_long_pools_pod_names_cut_to_58_characters_before_their_suffix_are_known():
    pool = "p" * 55  # names.SimpleNameGenerator: generateName cut to 58, then 5 random characters
    agent = f"system:serviceaccount:shop:{pool}-agent"
    for generate_name in (f"{pool}-haproxy-5d8f9c7b6-", f"{pool}-keepalived-"):
        bound = generate_name[:58] + "x2x9q"
        assert patch_pod("x", {"metadata": {"labels": {"role": "primary"}}}, user=agent, bound=bound) is not None
        assert patch_pod(bound, {"metadata": {"annotations": {APPLIED_HASH_ANNOTATION: "n"}}},
                         user=agent, bound=bound) is None


def test_an_agent_may_not_relabel_another_pod():
    message = patch_pod("x", {"metadata": {"labels": {"role": "primary"}}})
    assert message == (f"balancer agent shop/web-agent may only patch its own pod {HAPROXY_POD}, "
                       "not UPDATE pods shop/x")


def test_an_agent_may_not_annotate_another_pod_not_even_its_reports():
    other = "web-haproxy-5d8f9c7b6-zzzzz"  # the same pool's other balancer
    message = patch_pod(other, {"metadata": {"annotations": {APPLIED_HASH_ANNOTATION: "forged"}}})
    assert message is not None and f"not UPDATE pods shop/{other}" in message


def test_a_pod_of_the_same_name_in_another_namespace_is_another_pod():
    message = patch_pod(HAPROXY_POD, {"metadata": {"annotations": {APPLIED_HASH_ANNOTATION: "n"}}}, namespace="bank")
    assert message is not None and f"not UPDATE pods bank/{HAPROXY_POD}" in message


def test_an_agent_may_not_change_its_own_labels():
    message = patch_pod(HAPROXY_POD, {"metadata": {"labels": {"role": "primary"}}})
    assert message == f"balancer agent shop/web-agent may not change the labels of its pod {HAPROXY_POD}"
    assert patch_pod(HAPROXY_POD, {"metadata": {"labels": {"role": None}}}) is not None  # nor remove one


def test_an_agent_may_change_no_other_annotation_and_is_told_which():
    message = patch_pod(HAPROXY_POD, {"metadata": {"annotations": {"hakeeper.io/weight": "100", "hakeeper.io/pod-spec": None,
                                                                   APPLIED_HASH_ANNOTATION: "ok"}}})
    assert message is not None
    assert message.startswith("balancer agent shop/web-agent may change only the annotations hakeeper.io/applied-hash, "
                              "hakeeper.io/reloads, hakeeper.io/vrrp-state, hakeeper.io/ipvs, "
                              "hakeeper.io/effective-weights of its pod ")
    assert message.endswith("not hakeeper.io/weight, hakeeper.io/pod-spec")


@pytest.mark.parametrize("patch", [
    {"spec": {"containers": [{"name": "haproxy", "image": "evil"}]}},
    {"metadata": {"finalizers": ["example.com/keep"]}},
    {"metadata": {"ownerReferences": None}},
], ids=["image", "finalizer", "orphaned"])
def test_an_agent_may_not_change_its_pods_spec_owners_or_finalizers(patch):
    message = patch_pod(HAPROXY_POD, patch)
    assert message == (f"balancer agent shop/web-agent may not change the spec, owner references or "
                       f"finalizers of its pod {HAPROXY_POD}")


@pytest.mark.parametrize("operation,subresource,obj", [("DELETE", "", None), ("UPDATE", "status", "pod"),
                                                        ("CREATE", "eviction", {"kind": "Eviction"})])
def test_an_agent_may_not_delete_evict_or_touch_a_subresource_of_its_own_pod(operation, subresource, obj):
    old = pod(HAPROXY_POD)
    message = admit(policy(), request(HAPROXY_POD, operation=operation, subresource=subresource),
                    old if obj == "pod" else obj, old)
    assert message is not None and message.startswith(
        f"balancer agent shop/web-agent may only patch its own pod {HAPROXY_POD}, not {operation} pods")


@pytest.mark.parametrize("user,bound", [
    ("system:serviceaccount:hakeeper-system:hakeeper", None),  # the operator
    ("system:serviceaccount:shop:web-agent", None),  # no pod-bound token: not the agents' projected one
    ("system:serviceaccount:shop:web-agent", "x"),  # bound to a pod that is no balancer of pool web
    ("system:serviceaccount:shop:datadog-agent", "datadog-agent-abcde"),  # someone else's *-agent
    ("system:serviceaccount:shop:web-agent", "db-haproxy-1-2"),  # another pool's balancer
    ("admin", None),
], ids=["operator", "unbound", "not-a-balancer", "other-agent", "other-pool", "user"])
def test_others_are_left_alone(user, bound):
    assert patch_pod("x", {"metadata": {"labels": {"role": "primary"}}}, user=user, bound=bound) is None
