from hakeeper.api.conditions import get_condition, set_condition


def test_new_condition_is_appended():
    out = set_condition([], "Ready", True, "Ok", "fine", 3, now="t1")
    assert out == [{"type": "Ready", "status": "True", "reason": "Ok", "message": "fine",
                    "lastTransitionTime": "t1", "observedGeneration": 3}]


def test_transition_time_moves_only_when_status_changes():
    first = set_condition([], "Ready", True, "Ok", "fine", 1, now="t1")
    same = set_condition(first, "Ready", True, "StillOk", "fine again", 2, now="t2")
    assert get_condition(same, "Ready")["lastTransitionTime"] == "t1"
    assert get_condition(same, "Ready")["reason"] == "StillOk"
    assert get_condition(same, "Ready")["observedGeneration"] == 2
    flipped = set_condition(same, "Ready", False, "Broken", "down", 2, now="t3")
    assert get_condition(flipped, "Ready")["lastTransitionTime"] == "t3"
    assert get_condition(flipped, "Ready")["status"] == "False"


def test_other_conditions_are_kept():
    out = set_condition([{"type": "Available", "status": "True", "reason": "x", "lastTransitionTime": "t0"}],
                        "Ready", "Unknown", "Pending", "", None, now="t1")
    assert [c["type"] for c in out] == ["Available", "Ready"]


def test_conditions_are_models_until_written():
    from hakeeper.api.conditions import Verdict, find_condition, with_verdicts

    out = with_verdicts([{"type": "Ready", "status": "True", "reason": "Ok", "lastTransitionTime": "t0"}],
                        [("Available", Verdict(False, "NoPrimary", "none")), ("Ready", Verdict(False, "No", "x"))],
                        5, now="t1")
    ready = find_condition(out, "Ready")
    assert ready is not None and (ready.status, ready.last_transition_time, ready.observed_generation) == (
        "False", "t1", 5)
    assert [c.wire()["type"] for c in out] == ["Ready", "Available"]


def test_a_status_patch_sends_what_was_set_and_nulls_what_must_go():
    """RFC 7396: unset fields are left alone, None deletes (at the top and inside objects, which a
    merge patch merges), and arrays, replaced whole, carry no nulls."""
    from hakeeper.api.common import Condition
    from hakeeper.api.loadbalancerpool import BalancerPodStatus, LoadBalancerPoolStatus
    from hakeeper.api.replicateddatabase import LoopMemoryStatus, ReplicatedDatabaseStatus

    only_conditions = LoadBalancerPoolStatus(conditions=[Condition(type="Ready", status="True", reason="R",
                                                                   last_transition_time="t")])
    assert only_conditions.patch() == {"conditions": [{"type": "Ready", "status": "True", "reason": "R",
                                                       "message": "", "lastTransitionTime": "t"}]}
    cleared = LoadBalancerPoolStatus(virtual_ip_holder=None, balancers=[BalancerPodStatus(pod="p")])
    assert cleared.patch() == {"virtualIPHolder": None, "balancers": [{"pod": "p"}]}
    loop = ReplicatedDatabaseStatus(loop=LoopMemoryStatus(probe_failures=1)).patch()["loop"]
    assert loop["switchover"] is None and loop["leaseExpires"] is None and loop["probeFailures"] == 1


def test_condition_status_reads_a_status_as_the_api_returns_it() -> None:
    from hakeeper.api.conditions import condition_status

    status = {"conditions": [{"type": "Ready", "status": "True"}, {"type": "ConfigApplied", "status": "False"},
                             {"type": "Healthy", "status": "Unknown"}]}
    assert condition_status(status, "Ready") is True
    assert condition_status(status, "ConfigApplied") is False
    assert condition_status(status, "Healthy") is None and condition_status(status, "Available") is None
    assert condition_status({}, "Ready") is None
