"""A policy reads Deployments from the operator's index, not by listing (issue 17, bench/scale):
what it keeps of a Deployment decides as the whole one does, an evaluation given the index lists
nothing, and a namespace's labels are read once per NAMESPACE_LABELS_SECONDS for every policy."""

from __future__ import annotations

import socket
from typing import Any

from hakeeper.api.degradationpolicy import DegradationPolicySpec
from hakeeper.degradationpolicy.act import Scaler, conflict_message, restore_patch, shed_patch
from hakeeper.degradationpolicy.cycle import Evaluator
from hakeeper.degradationpolicy.decide import Memory
from hakeeper.degradationpolicy.handlers import watched
from hakeeper.degradationpolicy.observe import NAMESPACE_LABELS_SECONDS, ClusterReader, trim_deployment
from hakeeper.degradationpolicy.targets import pod_priority, shed_mark

from ..integration.prometheus_support import Fleet, deployment


def full_deployment() -> dict[str, Any]:
    d = deployment("batch", 4, {"tier": "batch"}, priority_class="low")
    d["metadata"]["annotations"] = {"hakeeper.io/original-replicas": "4", "hakeeper.io/shed-by": "shop/p",
                                    "hakeeper.io/shed-tier": "batch", "hakeeper.io/shed-since": "t"}
    d["metadata"]["managedFields"] = [
        {"manager": "kubectl", "operation": "Update", "time": "2030-01-01T00:00:01Z",
         "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}},
        {"manager": "kubectl", "operation": "Update", "time": "2030-01-01T00:00:03Z", "fieldsV1": {"f:metadata": {}}}]
    d["spec"]["selector"] = {"matchLabels": {"app": "batch"}}
    d["status"] = {"replicas": 4, "conditions": [{"type": "Available", "status": "True"}]}
    return d


def test_a_trimmed_deployment_decides_as_the_whole_one() -> None:
    full = full_deployment()
    trimmed = trim_deployment(full)
    assert "status" not in trimmed and "containers" not in str(trimmed)
    assert shed_patch(trimmed, "shop/p", "batch", "t") == shed_patch(full, "shop/p", "batch", "t")
    assert restore_patch(trimmed) == restore_patch(full)
    assert conflict_message(trimmed, "hpa") == conflict_message(full, "hpa")
    assert "kubectl (Update at 2030-01-01T00:00:01Z)" in conflict_message(trimmed, None)
    assert shed_mark(trimmed) == shed_mark(full) is not None
    assert pod_priority(trimmed, {"low": 5}, 0) == pod_priority(full, {"low": 5}, 0) == 5


class CountingFleet(Fleet):
    def __init__(self, *deployments: dict[str, Any]) -> None:
        super().__init__(*deployments)
        self.listed: list[str] = []

    def deployments(self, namespace: str) -> list[dict[str, Any]]:
        self.listed.append(namespace)
        return super().deployments(namespace)


def _policy() -> tuple[DegradationPolicySpec, dict[str, Any], list[dict[str, Any]]]:
    """A policy on a closed port (the readings are unavailable, the rest is decided), its body,
    and two Deployments of its namespace."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = DegradationPolicySpec.model_validate({
        "prometheus": {"url": f"http://127.0.0.1:{port}", "timeout": "1s"}, "interval": "1s",
        "triggers": [{"name": "load", "query": "max(load)", "threshold": 10}],
        "tiers": [{"name": "batch", "priority": 10, "selector": {"matchLabels": {"tier": "batch"}}}]})
    body = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy",
            "metadata": {"name": "peak", "namespace": "shop", "generation": 1}, "spec": spec.wire(), "status": {}}
    return spec, body, [deployment("batch-a", 3, {"tier": "batch"}), deployment("web", 2, {"tier": "core"})]


def test_an_evaluation_given_the_index_lists_nothing_and_decides_the_same() -> None:
    spec, body, items = _policy()
    listing = CountingFleet(*items)
    indexed = CountingFleet(*items)
    index = {"shop": [trim_deployment(d) for d in items]}
    listed = Evaluator(listing, Scaler(listing.patch)).evaluate(body, spec, Memory(), now=100.0)
    given = Evaluator(indexed, Scaler(indexed.patch)).evaluate(body, spec, Memory(), now=100.0,
                                                                 listed=watched(index, "shop", body))  # type: ignore[arg-type]
    assert listing.listed == ["shop"]  # the control: without the index it lists
    assert indexed.listed == []
    assert given.status == listed.status


class CountingKube:
    def __init__(self) -> None:
        self.gets = 0
        self.labels = {"team": "a"}

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.gets += 1
        return {"metadata": {"name": name, "labels": dict(self.labels)}}


def test_namespace_labels_are_read_once_per_window_for_every_policy() -> None:
    kube, now = CountingKube(), [0.0]
    reader = ClusterReader(kube, clock=lambda: now[0])  # type: ignore[arg-type]
    assert [reader.namespace_labels("shop") for _ in range(100)][-1] == {"team": "a"}
    assert kube.gets == 1
    kube.labels = {"team": "b"}
    now[0] = NAMESPACE_LABELS_SECONDS + 0.1
    assert reader.namespace_labels("shop") == {"team": "b"} and kube.gets == 2


def test_the_selection_is_reused_while_the_index_holds_the_same_deployments(monkeypatch) -> None:
    """bench/scale: a hundred policies selecting among a thousand Deployments at every evaluation.
    The same objects from the index give the same selection without sorting them again; a
    Deployment the watch replaced (its labels changed) is selected anew."""
    from hakeeper.degradationpolicy import cycle

    calls = []
    real = cycle.select
    monkeypatch.setattr(cycle, "select", lambda *a, **k: calls.append(1) or real(*a, **k))
    spec, body, items = _policy()
    fleet = CountingFleet(*items)
    evaluator = Evaluator(fleet, Scaler(fleet.patch))
    index = {"shop": [trim_deployment(d) for d in items]}

    def status() -> dict[str, Any]:
        return evaluator.evaluate(body, spec, Memory(), now=100.0,
                                  listed=watched(index, "shop", body)).status  # type: ignore[arg-type]

    first = status()
    assert status() == first and len(calls) == 1
    index["shop"][1] = trim_deployment(deployment("web", 2, {"tier": "batch"}))  # the watch saw it relabelled
    status()
    assert len(calls) == 2
    # the control: the same selection for the new objects equals a fresh one
    fresh = Evaluator(fleet, Scaler(fleet.patch)).evaluate(body, spec, Memory(), now=100.0,
                                                           listed=watched(index, "shop", body))  # type: ignore[arg-type]
    again = evaluator.evaluate(body, spec, Memory(), now=100.0, listed=watched(index, "shop", body))  # type: ignore[arg-type]
    assert again.status == fresh.status
