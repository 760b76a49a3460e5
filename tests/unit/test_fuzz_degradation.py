"""Fuzzing the DegradationPolicy's decide step: random specs (from the CRD schema, hostile
values included) through the validation the operator uses, then sequences of evaluations
with random Prometheus answers, a clock that jumps (and sometimes steps back) and
Deployments carrying any annotations.

Each evaluation is the real one (cycle.Evaluator: select, decide, act, status) against
Deployments held in memory with the API server's merge-patch rules. Nothing may escape it,
and what it writes must be something the API server takes: a status without NaN or
infinities (JSON has none), replicas that are whole numbers from 0, a next wake-up in the
future.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from hakeeper.api.degradationpolicy import DegradationPolicySpec
from hakeeper.api.meta import (
    ORIGINAL_REPLICAS_ANNOTATION,
    SHED_BY_ANNOTATION,
    SHED_SINCE_ANNOTATION,
    SHED_TIER_ANNOTATION,
)
from hakeeper.degradationpolicy.act import Scaler
from hakeeper.degradationpolicy.cycle import Evaluator
from hakeeper.degradationpolicy.decide import Memory, Reading
from hakeeper.degradationpolicy.metrics import reading_from_result
from hakeeper.degradationpolicy.targets import shed_mark

from ..integration.prometheus_support import Fleet, deployment, merge_patch
from .fuzz_strategies import fuzz, hostile_text, judged, mostly, mutated, spec_strategy

T0 = 1_700_000_000.0
POLICY = "shop/peak"
TIER_LABELS = ["a", "b", "c"]



def _policy_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A spec from the schema with the CEL rules mostly kept, so that most unmutated specs are
    evaluated (a few are left to the rules on purpose)."""
    spec = draw(spec_strategy("DegradationPolicy", overrides={
        # tiers and namespaces the generated Deployments can fall into, so that things get shed
        "spec.tiers[].selector": st.builds(lambda v: {"matchLabels": {"tier": v}}, st.sampled_from(TIER_LABELS)),
        "spec.namespaces": st.sampled_from([[], ["shop"], ["shop", "other"]]),
        "spec.prometheus.url": st.just("http://prometheus:9090"),
        "spec.interval": st.sampled_from(["1s", "2s", "15s", "1m", "9999h"]),
        "spec.prometheus.timeout": st.sampled_from(["1s", "100ms"]),
        "spec.maxShedFraction": st.sampled_from([1.0, 0.5, 0.0]),
        "spec.triggers[].threshold": st.sampled_from([10.0, 0.5, -1e300, 1e300]),
        "spec.triggers[].recoverThreshold": st.sampled_from([5.0, 0.25, 20.0]),
        # short enough that a dozen evaluations see restores too
        "spec.restore.cooldown": st.sampled_from(["100ms", "1s", "30s", "5m"]),
        "spec.restore.interval": st.sampled_from(["1s", "10s", "1m"]),
        "spec.triggers[].for": st.sampled_from(["1s", "100ms", "30s", "2m"]),
    }))
    prometheus = spec["prometheus"]
    prometheus.setdefault("timeout", "1s")  # the default 5s would outlast the short intervals
    if prometheus.get("insecureSkipVerify"):
        prometheus.pop("caSecretRef", None)
    for index, tier in enumerate(spec["tiers"]):
        tier["name"] = f"t{index}"  # a list map: names are keys
        tier["priority"] = tier["priority"] // 64 * 16 + index  # each its own
        if "selector" not in tier and "maxPodPriority" not in tier:
            tier["selector"] = {"matchLabels": {"tier": TIER_LABELS[index % len(TIER_LABELS)]}}
    for index, trigger in enumerate(spec["triggers"]):
        trigger["name"] = f"q{index}"
        trigger.setdefault("for", draw(st.sampled_from(["1s", "100ms", "30s"])))  # not the 1m default
        if "recoverThreshold" in trigger:
            low, high = sorted((trigger["recoverThreshold"], trigger["threshold"]))
            upward = trigger.get("operator", ">") in (">", ">=")
            trigger["recoverThreshold"], trigger["threshold"] = (low, high) if upward else (high, low)
    return spec


policy_specs = mutated(st.composite(_policy_valid)(), most=1)

sample_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["NaN", "+Inf", "-Inf", "1e309", "-0", "0", "12", "1e-320", " 5", "0x1p3", "5_0"]),
    hostile_text)
# a plain low or high value (alternating by parity: sampled_from leans to its first element)
plain = st.integers(0, 99).map(lambda n: [0, "0"] if n % 2 else [0, "1e9"])
answers = mostly(plain, st.one_of(
    # what Prometheus' query API answers in data.result, for each result type
    st.tuples(st.floats(0, 2e9), sample_values).map(list),  # scalar
    st.lists(st.fixed_dictionaries({"metric": st.dictionaries(st.sampled_from(["job", "__name__"]), st.text(max_size=5),
                                                              max_size=2),
                                    "value": st.tuples(st.floats(0, 2e9), sample_values).map(list)}),
             max_size=3),  # vector
    st.lists(st.fixed_dictionaries({"metric": st.just({}), "values": st.lists(
        st.tuples(st.floats(0, 2e9), sample_values).map(list), max_size=2)}), min_size=1, max_size=2),  # matrix
    st.just("unavailable"),  # Prometheus unreachable: PrometheusSource's own Reading
    # not Prometheus' shapes (a proxy, a broken exporter): series that are no object, lack
    # `value`, or whose `value` is no [time, value] pair; metrics.py must read them as unavailable
    st.lists(st.one_of(st.none(), st.just([]), hostile_text, st.integers(), st.lists(st.integers(), max_size=3),
                       st.fixed_dictionaries({}, optional={
                           "metric": st.one_of(st.none(), st.just({}), st.lists(st.integers(), max_size=2)),
                           "value": st.one_of(st.none(), st.lists(sample_values, max_size=3), sample_values),
                           "histogram": st.just([0, {"count": "1"}])})),
             min_size=1, max_size=3),
), odds=2)  # half the time a plain low or high value, so that runs shed and restore
annotation_values = mostly(st.one_of(st.integers(-2, 6), st.sampled_from([2**31, 10**30])).map(str), hostile_text)


@st.composite
def deployments(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for name in draw(st.lists(st.sampled_from(["a1", "a2", "b1", "c1", "core"]), unique=True, min_size=1, max_size=5)):
        labels = {"tier": draw(st.sampled_from([*TIER_LABELS, "core"]))}
        if draw(st.integers(0, 5)) == 5:  # (the draws lean to 0)
            labels["hakeeper.io/protected"] = "true"
        d = deployment(name, draw(mostly(st.integers(1, 5), st.just(0))), labels,
                       namespace=draw(mostly(st.just("shop"), st.just("other"))))
        if draw(st.integers(0, 3)) == 3:  # shed before: by this policy or another, annotations of any kind
            d["metadata"]["annotations"] = {
                SHED_BY_ANNOTATION: draw(st.sampled_from([POLICY, "shop/other", ""])),
                ORIGINAL_REPLICAS_ANNOTATION: draw(annotation_values),
                SHED_TIER_ANNOTATION: draw(st.sampled_from(TIER_LABELS + [""])),
                SHED_SINCE_ANNOTATION: draw(st.sampled_from(["2023-11-14T22:13:20.000Z", "", "yesterday"]))}
        out.append(d)
    return out


class Scripted(Evaluator):
    """The real evaluation; the readings come from the fuzzed answers through metrics.py."""

    def __init__(self, fleet: Fleet):
        super().__init__(fleet, Scaler(fleet.patch))
        self.answers: dict[str, Any] = {}

    def readings(self, spec, body):
        readings = {name: Reading("unavailable", message="connection refused") if answer == "unavailable"
                    else reading_from_result(answer) for name, answer in self.answers.items()}
        return readings, (True, "Evaluating", "fuzzed")


@fuzz(120)
@given(spec=policy_specs, fleet_items=deployments(),
       runs=st.lists(st.tuples(mostly(st.floats(0.5, 3), st.one_of(st.floats(0, 120), st.sampled_from([0.0, -5.0, 1e7]))),
                               st.lists(answers, min_size=1, max_size=3), st.integers(1, 6)), min_size=2, max_size=6))
def test_fuzz_policy_evaluations_write_only_what_the_api_server_takes(spec, fleet_items, runs):
    model, why = judged("DegradationPolicy", "peak", spec, DegradationPolicySpec)
    if model is None:
        assert why.strip()
        event("refused by the schema, its rules or the model")
        return
    event("evaluated")
    fleet = Fleet(*fleet_items)
    evaluator = Scripted(fleet)
    body: dict[str, Any] = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy",
                            "metadata": {"name": "peak", "namespace": "shop", "generation": 1},
                            "spec": model.wire(), "status": {}}
    memory, now = Memory(), T0
    # runs of the same answers, so that a trigger holds long enough to fire and to recover
    steps = [(dt, answers) for dt, answers, repeat in runs for _ in range(repeat)]
    for dt, trigger_answers in steps:
        now += dt
        names = [t.name for t in model.triggers]
        evaluator.answers = {name: trigger_answers[i % len(trigger_answers)] for i, name in enumerate(names)}
        result = evaluator.evaluate(body, model, memory, now=now)
        json.dumps(result.status, allow_nan=False)  # the API server takes JSON, which has no NaN
        assert math.isfinite(result.due) and result.due > now, (result.due, now)
        for (_, name), item in fleet.items.items():
            replicas = item["spec"]["replicas"]
            assert isinstance(replicas, int) and replicas >= 0, (name, replicas)
        memory = result.memory
        body["status"] = merge_patch(body["status"], result.status)
    for _, _, patch in fleet.patches:
        event("shed" if patch.get("spec", {}).get("replicas") == 0 else
              "restored" if "spec" in patch else "unmarked")


# -- what the fuzzer found, one case each ----------------------------------------------------

def test_a_shed_mark_with_a_count_the_api_server_refuses_is_not_restored_to_it():
    # restored to spec.replicas -1 (or past int32): the API server refuses the patch, every time
    for original in ("-1", str(2**31), "9" * 30):
        d = deployment("a1", 0, {"tier": "a"})
        d["metadata"]["annotations"] = {SHED_BY_ANNOTATION: POLICY, ORIGINAL_REPLICAS_ANNOTATION: original,
                                        SHED_TIER_ANNOTATION: "t", SHED_SINCE_ANNOTATION: ""}
        assert shed_mark(d) is None, original
        d["metadata"]["annotations"][ORIGINAL_REPLICAS_ANNOTATION] = "3"
        assert shed_mark(d) is not None and shed_mark(d).original_replicas == 3
