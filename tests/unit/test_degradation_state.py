"""The policy's state machine, driven through a whole evaluation (select, decide, act, status)
on Deployments held in memory, with scripted trigger readings and a scripted clock."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hakeeper.api.conditions import get_condition
from hakeeper.api.degradationpolicy import DegradationPolicySpec
from hakeeper.api.meta import ORIGINAL_REPLICAS_ANNOTATION
from hakeeper.degradationpolicy.act import Scaler
from hakeeper.degradationpolicy.cycle import Evaluator
from hakeeper.degradationpolicy.decide import Memory, Reading
from hakeeper.degradationpolicy.status import memory_from_status

from ..integration.prometheus_support import Fleet, deployment

T0 = 1_700_000_000.0


def spec(**overrides: Any) -> DegradationPolicySpec:
    base: dict[str, Any] = {
        "prometheus": {"url": "http://prometheus:9090", "timeout": "1s"},
        "interval": "1s",
        "triggers": [{"name": "load", "query": "max(load)", "threshold": 10, "recoverThreshold": 6, "for": "3s"}],
        "tiers": [{"name": "batch", "priority": 10, "selector": {"matchLabels": {"tier": "batch"}}},
                  {"name": "reports", "priority": 20, "selector": {"matchLabels": {"tier": "reports"}}}],
        "restore": {"cooldown": "4s", "interval": "2s"},
        "maxShedFraction": 1.0,
    }
    base.update(overrides)
    return DegradationPolicySpec.model_validate(base)


def shop() -> Fleet:
    return Fleet(
        deployment("batch-a", 3, {"tier": "batch"}),
        deployment("batch-b", 2, {"tier": "batch"}),
        deployment("reports", 4, {"tier": "reports"}),
        deployment("checkout", 5, {"tier": "core"}),
    )


class Scripted(Evaluator):
    """The real evaluation, with the trigger readings a test dictates."""

    def __init__(self, fleet: Fleet):
        super().__init__(fleet, Scaler(fleet.patch))
        self.reading: dict[str, Reading] = {}

    def readings(self, spec, body):
        return dict(self.reading), (True, "Evaluating", "scripted")


class Policy:
    """One policy evaluated at the times a test chooses, its status carried over like the daemon does."""

    def __init__(self, fleet: Fleet, spec_: DegradationPolicySpec, name: str = "peak"):
        self.fleet = fleet
        self.spec = spec_
        self.evaluator = Scripted(fleet)
        self.body: dict[str, Any] = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy",
                                     "metadata": {"name": name, "namespace": "shop", "generation": 1},
                                     "spec": spec_.wire(), "status": {}}
        self.memory = Memory()
        self.events: list = []
        self.last = None

    def at(self, t: float, value: float | None = None, outcome: str | None = None, **values: float | None):
        readings = {"load": value, **values}
        self.evaluator.reading = {
            name: Reading(outcome or ("value" if v is not None else "no-data"), v,
                          "scripted" if outcome or v is None else "")
            for name, v in readings.items()}
        self.last = self.evaluator.evaluate(self.body, self.spec, self.memory, now=T0 + t)
        self.memory = self.last.memory
        self.body["status"] = {**self.body["status"], **self.last.status}
        self.events.extend(self.last.events)
        return self.last.status

    def run(self, start: float, end: float, value: float | None, step: float = 1.0, **kw: Any) -> None:
        t = start
        while t <= end + 1e-9:
            self.at(t, value, **kw)
            t += step

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]


def replicas(fleet: Fleet) -> dict[str, int]:
    return {name: fleet.replicas(name) for (_, name) in fleet.items}


def test_breaching_for_less_than_for_sheds_nothing_then_the_lowest_tier_goes():
    fleet = shop()
    policy = Policy(fleet, spec())
    assert policy.at(0, 12)["state"] == "Pending"
    policy.at(1, 12)
    assert policy.at(2.9, 12)["state"] == "Pending"
    assert replicas(fleet) == {"batch-a": 3, "batch-b": 2, "reports": 4, "checkout": 5}
    status = policy.at(3, 12)
    assert status["state"] == "Degraded"
    assert replicas(fleet) == {"batch-a": 0, "batch-b": 0, "reports": 4, "checkout": 5}
    assert fleet.annotations("batch-a")[ORIGINAL_REPLICAS_ANNOTATION] == "3"
    assert fleet.annotations("batch-a")["hakeeper.io/shed-by"] == "shop/peak"
    assert [(e["name"], e["tier"], e["originalReplicas"]) for e in status["shed"]] == [
        ("batch-a", "batch", 3), ("batch-b", "batch", 2)]
    assert status["shedCount"] == 2 and status["shedTiers"] == 1
    assert get_condition(status["conditions"], "Degraded")["status"] == "True"
    assert policy.reasons().count("Shed") == 2 and "Degraded" in policy.reasons()


def test_a_dip_below_the_threshold_restarts_the_for_window():
    fleet = shop()
    policy = Policy(fleet, spec())
    policy.run(0, 2, 12)
    policy.at(2.5, 5)  # recovered for a moment
    policy.run(3, 5, 12)
    assert fleet.replicas("batch-a") == 3
    policy.at(6, 12)  # 3 s after breaching again
    assert fleet.replicas("batch-a") == 0


def test_staged_sheds_the_next_tier_one_interval_later_only_while_the_trigger_still_breaches():
    fleet = shop()
    policy = Policy(fleet, spec())
    policy.run(0, 3, 12)
    assert fleet.replicas("reports") == 4
    policy.at(3.5, 12)  # sooner than one interval after the first tier
    assert fleet.replicas("reports") == 4
    policy.at(4, 8)  # between recoverThreshold and threshold: hold
    policy.at(5, 8)
    assert fleet.replicas("reports") == 4
    status = policy.at(6, 11)
    assert fleet.replicas("reports") == 0
    assert status["shedTiers"] == 2
    assert fleet.replicas("checkout") == 5  # core: no tier selects it
    assert policy.at(7, 15)["message"].endswith("nothing left to shed")


def test_mode_all_sheds_every_tier_at_once_within_max_targets_per_step():
    fleet = shop()
    policy = Policy(fleet, spec(mode="all", maxTargetsPerStep=2))
    policy.run(0, 3, 12)
    assert replicas(fleet) == {"batch-a": 0, "batch-b": 0, "reports": 4, "checkout": 5}
    policy.at(4, 12)
    assert replicas(fleet)["reports"] == 0


def test_recovery_restores_original_counts_after_the_cooldown_highest_priority_first():
    fleet = shop()
    policy = Policy(fleet, spec())
    policy.run(0, 4, 12)  # both tiers shed
    assert replicas(fleet) == {"batch-a": 0, "batch-b": 0, "reports": 0, "checkout": 5}
    status = policy.at(5, 3)  # recovered (below recoverThreshold 6)
    assert status["state"] == "Recovering"
    policy.run(6, 8.9, 3)
    assert replicas(fleet)["reports"] == 0  # cooldown 4 s not over yet
    assert policy.last.due == T0 + 9  # wakes exactly when the cooldown ends
    policy.at(9, 3)
    assert replicas(fleet) == {"batch-a": 0, "batch-b": 0, "reports": 4, "checkout": 5}  # highest priority first
    policy.at(10, 3)
    assert fleet.replicas("batch-a") == 0  # one tier per restore.interval (2 s)
    status = policy.at(11, 3)
    assert replicas(fleet) == {"batch-a": 3, "batch-b": 2, "reports": 4, "checkout": 5}
    assert ORIGINAL_REPLICAS_ANNOTATION not in fleet.annotations("batch-a")
    assert status["state"] == "Normal" and status["shed"] == [] and status["shedCount"] == 0
    assert policy.reasons().count("Restored") == 3
    assert get_condition(status["conditions"], "Degraded")["status"] == "False"


def test_lowest_priority_first_restore_order():
    fleet = shop()
    policy = Policy(fleet, spec(restore={"cooldown": "1s", "interval": "5s", "order": "LowestPriorityFirst"}))
    policy.run(0, 4, 12)
    policy.run(5, 6, 1)
    assert fleet.replicas("batch-a") == 3 and fleet.replicas("reports") == 0


def test_values_between_the_thresholds_change_nothing():
    fleet = shop()
    policy = Policy(fleet, spec())
    policy.run(0, 3, 12)
    shed_before = replicas(fleet)
    patches = len(fleet.patches)
    for t in range(4, 40):
        policy.at(t, 7 if t % 2 else 9.5)  # wobbling between 6 and 10
    assert replicas(fleet) == shed_before and len(fleet.patches) == patches
    assert policy.last.status["state"] == "Degraded"
    assert "holding" in policy.last.status["message"]


def test_no_data_and_unavailable_hold_by_default():
    fleet = shop()
    policy = Policy(fleet, spec())
    policy.run(0, 10, None)  # no data: never zero, never sheds
    policy.run(11, 20, None, outcome="unavailable")
    assert replicas(fleet)["batch-a"] == 3
    policy.run(21, 24, 12)
    assert replicas(fleet)["batch-a"] == 0
    policy.run(25, 60, None, outcome="unavailable")  # Prometheus gone while shed: hold
    assert replicas(fleet)["batch-a"] == 0
    status = policy.last.status
    metrics = get_condition(status["conditions"], "MetricsAvailable")
    assert metrics["status"] == "False" and metrics["reason"] == "Unavailable"
    assert status["state"] == "Degraded"
    assert "MetricsUnavailable" in policy.reasons()


def test_restore_on_no_data_counts_it_as_recovered():
    fleet = shop()
    policy = Policy(fleet, spec(onNoData="Restore", onMetricsUnavailable="Hold"))
    policy.run(0, 3, 12)
    policy.run(4, 7, None, outcome="unavailable")  # Hold for unavailable
    assert fleet.replicas("batch-a") == 0
    policy.run(8, 12, None)  # no data: Restore, after the cooldown
    assert fleet.replicas("batch-a") == 3


def test_a_gap_in_the_evaluations_starts_the_windows_again():
    fleet = shop()
    policy = Policy(fleet, spec())
    policy.run(0, 2, 12)
    policy.at(30, 12)  # the operator was away: 2 s of old evidence do not count
    assert fleet.replicas("batch-a") == 3
    assert policy.last.status["state"] == "Pending"
    policy.run(31, 33, 12)
    assert fleet.replicas("batch-a") == 0


def test_after_a_gap_only_recovered_values_restore():
    """A restarted operator forgets the firing trigger, yet between-threshold values or no data
    still hold what is shed: only a recovered trigger brings Deployments back."""
    fleet = shop()
    policy = Policy(fleet, spec())
    policy.run(0, 3, 12)
    policy.run(30, 40, 8)
    policy.run(41, 50, None)
    policy.run(51, 60, None, outcome="unavailable")
    assert fleet.replicas("batch-a") == 0
    assert policy.last.status["state"] == "Degraded"
    policy.run(61, 66, 2)
    assert fleet.replicas("batch-a") == 3


def test_max_shed_fraction_caps_what_is_off():
    fleet = shop()
    policy = Policy(fleet, spec(maxShedFraction=0.5, mode="all"))  # 4 running -> at most 2
    policy.run(0, 6, 12)
    assert sorted(n for n, r in replicas(fleet).items() if r == 0) == ["batch-a", "batch-b"]
    assert "maxShedFraction 0.5 allows 2 of 4" in policy.last.status["message"]


def test_max_targets_per_step_spreads_a_tier_over_evaluations():
    fleet = shop()
    policy = Policy(fleet, spec(maxTargetsPerStep=1))
    policy.run(0, 3, 12)
    assert replicas(fleet)["batch-a"] + replicas(fleet)["batch-b"] in (2, 3)
    policy.at(4, 12)
    assert replicas(fleet)["batch-a"] == replicas(fleet)["batch-b"] == 0
    assert fleet.replicas("reports") == 4  # the next tier waits for the current one


def test_something_else_scaling_a_shed_deployment_up_is_reported_not_fought():
    fleet = shop()
    policy = Policy(fleet, spec())
    policy.run(0, 3, 12)
    fleet.scale("batch-a", 5, manager="argocd-controller")
    status = policy.at(4, 12)
    conflict = get_condition(status["conditions"], "Conflict")
    assert conflict["status"] == "True" and "argocd-controller" in conflict["message"]
    entry = next(e for e in status["shed"] if e["name"] == "batch-a")
    assert "scaled back to 5 replicas by argocd-controller" in entry["conflict"]
    assert "Conflict" in policy.reasons()
    policy.run(5, 8, 12)
    assert fleet.replicas("batch-a") == 5  # not fought
    assert policy.reasons().count("Conflict") == 1  # said once
    policy.run(9, 20, 1)  # recovered: the shed mark goes, the other party's count stays
    assert fleet.replicas("batch-a") == 5 and fleet.replicas("batch-b") == 2
    assert ORIGINAL_REPLICAS_ANNOTATION not in fleet.annotations("batch-a")
    assert "Released" in policy.reasons()


def test_an_original_count_is_never_overwritten():
    fleet = shop()
    policy = Policy(fleet, spec())
    policy.run(0, 3, 12)
    # a lost status (e.g. the policy object was recreated): the annotations still tell
    policy.body["status"] = {}
    policy.memory = Memory()
    policy.run(10, 20, 12)
    assert fleet.annotations("batch-a")[ORIGINAL_REPLICAS_ANNOTATION] == "3"
    sheds = [p for p in fleet.patches if p[1] == "batch-a" and p[2].get("spec", {}).get("replicas") == 0]
    assert len(sheds) == 1
    policy.run(21, 40, 1)
    assert fleet.replicas("batch-a") == 3


def test_dry_run_changes_nothing_but_reports_what_it_would_do():
    fleet = shop()
    policy = Policy(fleet, spec(dryRun=True))
    policy.run(0, 4, 12)
    assert fleet.patches == []
    status = policy.last.status
    assert [(e["name"], e.get("dryRun")) for e in status["shed"]] == [
        ("batch-a", True), ("batch-b", True), ("reports", True)]
    assert status["shedCount"] == 0
    assert get_condition(status["conditions"], "Degraded")["reason"] == "DryRun"
    assert policy.reasons().count("WouldShed") == 3
    policy.run(5, 15, 1)
    assert fleet.patches == [] and policy.last.status["shed"] == []
    assert policy.reasons().count("WouldRestore") == 3


def test_a_deployment_no_longer_selected_is_restored_at_once():
    fleet = shop()
    policy = Policy(fleet, spec())
    policy.run(0, 3, 12)
    policy.spec = spec(tiers=[{"name": "reports", "priority": 20, "selector": {"matchLabels": {"tier": "reports"}}}])
    policy.at(4, 12)  # still firing; batch is no longer governed by the policy
    assert fleet.replicas("batch-a") == 3 and fleet.replicas("batch-b") == 2


def test_pending_wakes_when_for_elapses():
    fleet = shop()
    policy = Policy(fleet, spec(interval="10s", triggers=[
        {"name": "load", "query": "x", "threshold": 10, "for": "3s"}], restore={"cooldown": "1s"}))
    policy.at(0, 12)
    assert policy.last.due == T0 + 3
    policy.at(3, 12)
    assert fleet.replicas("batch-a") == 0
    assert policy.last.due == T0 + 13  # the next step one interval on


def test_memory_survives_a_round_trip_through_the_status():
    fleet = shop()
    policy = Policy(fleet, spec())
    policy.run(0, 3, 12)
    policy.at(3.5, 5)
    again = memory_from_status(policy.body["status"])
    assert again.triggers["load"].since == policy.memory.triggers["load"].since
    assert again.triggers["load"].condition == "Recovered"
    assert again.last_shed == policy.memory.last_shed and again.state == policy.memory.state


def test_several_triggers_restore_only_when_all_recovered():
    fleet = shop()
    two = spec(triggers=[{"name": "load", "query": "a", "threshold": 10, "for": "1s"},
                         {"name": "errors", "query": "b", "threshold": 5, "for": "1s"}])
    policy = Policy(fleet, two)
    policy.run(0, 1, 12, errors=0)
    assert fleet.replicas("batch-a") == 0
    policy.run(2, 20, 1, errors=7)  # load recovered, errors breaching: it fires too
    assert fleet.replicas("reports") == 0 and fleet.replicas("batch-a") == 0
    policy.run(21, 40, 1, errors=1)
    assert replicas(fleet) == {"batch-a": 3, "batch-b": 2, "reports": 4, "checkout": 5}


values = st.one_of(st.none(), st.floats(min_value=0, max_value=20))
steps = st.lists(st.tuples(st.floats(min_value=0.2, max_value=5), values), min_size=1, max_size=60)
ORIGINALS = {"batch-a": 3, "batch-b": 2, "reports": 4, "checkout": 5, "guarded": 2}


@settings(max_examples=150, deadline=None)
@given(steps=steps, dry_run=st.booleans(), mode=st.sampled_from(["staged", "all"]))
def test_invariants_hold_for_any_sequence_of_readings(steps, dry_run, mode):
    fleet = shop()
    fleet.items[("shop", "guarded")] = deployment("guarded", 2, {"tier": "batch", "hakeeper.io/protected": "true"})
    policy = Policy(fleet, spec(dryRun=dry_run, mode=mode))
    t, run_start, armed = 0.0, None, False
    for dt, value in steps:
        t += dt
        if dt > 3:  # longer than the gap allowance (2 intervals + the timeout): evidence forgotten
            run_start, armed = None, False
        if value is not None and value <= 6:
            run_start, armed = None, False
        elif value is not None and value > 10:
            run_start = t if run_start is None else run_start
            armed = armed or t - run_start >= 3 - 0.05
        else:
            run_start = None  # between the thresholds or no data: the run breaks, a fired trigger holds
        before = replicas(fleet)
        policy.at(t, value)
        after = replicas(fleet)
        if any(after[n] == 0 and before[n] > 0 for n in after):
            # nothing is shed unless the trigger breaches now and has breached for `for` since it last recovered
            assert armed and value is not None and value > 10
        assert after["checkout"] == 5 and after["guarded"] == 2
        for name, original in ORIGINALS.items():
            remembered = fleet.annotations(name).get(ORIGINAL_REPLICAS_ANNOTATION)
            assert remembered is None or int(remembered) == original
            assert after[name] in (0, original)
        if dry_run:
            assert fleet.patches == []
    for k in range(1, 30):  # long enough recovered: everything is back
        policy.at(t + k, 0.0)
    assert replicas(fleet) == ORIGINALS
    assert policy.last.status["state"] == "Normal"


def _unknown_keys(value: Any, model: type) -> list[str]:
    """Keys the status model (and so the CRD's status schema) does not define: the API server would prune them."""
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    unknown = [k for k in value if k not in fields]
    for key, item in value.items():
        field = fields.get(key)
        inner = getattr(field, "annotation", None) if field else None
        args = getattr(inner, "__args__", ())
        nested = next((a for a in args if isinstance(a, type) and hasattr(a, "model_fields")), None)
        if nested and isinstance(item, list):
            unknown += [u for entry in item for u in _unknown_keys(entry, nested)]
    return unknown


def test_every_status_field_written_is_in_the_schema():
    from hakeeper.api.degradationpolicy import DegradationPolicyStatus

    fleet = shop()
    fleet.hpa_list = [{"metadata": {"namespace": "shop", "name": "hpa"},
                       "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "batch-a"}}}]
    policy = Policy(fleet, spec())
    policy.run(0, 3, 12)
    fleet.scale("batch-b", 2)
    status = policy.at(4, float("inf"))
    assert [e.get("hpa") for e in status["shed"] if e["name"] == "batch-a"] == ["hpa"]
    assert any(e.get("conflict") for e in status["shed"])
    assert status["triggers"][0]["message"] == "value +inf" and "value" not in status["triggers"][0]
    assert _unknown_keys(status, DegradationPolicyStatus) == []
    DegradationPolicyStatus.model_validate(status)
