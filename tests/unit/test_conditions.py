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
