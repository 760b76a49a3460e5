"""A database's status: the loop's memory as typed fields (status.loop), the upgrade from the
JSON string of 0.1.0, and the fingerprint the handler writes on."""

from __future__ import annotations

import json

from hakeeper.api.conditions import DatabaseReason, Verdict, get_condition
from hakeeper.api.replicateddatabase import ReplicatedDatabaseStatus
from hakeeper.replicateddatabase.clustering import LoopMemory
from hakeeper.replicateddatabase.clustering.memory import Switchover
from hakeeper.replicateddatabase.reconcile import memory_of, status_of
from hakeeper.replicateddatabase.status import loop_memory, loop_status, not_ready, status_fingerprint

from . import status_scenarios as s

T = s.T
MEMORY = LoopMemory(probe_failures=2, failing_since=T + 10.5, last_failover=T + 3.0,
                    last_lag={"db-2": 1.5, "db-1": 0.25}, errant={"db-2": "0-3-4"},
                    switchover=Switchover("db-1", "db-0", T + 7.0), lease_expires=T + 12.125,
                    last_state="Switching", last_notes=("FailoverSuppressed",))


def written(memory: LoopMemory, previous: dict | None = None) -> tuple[dict, dict]:
    """(the patch, the stored status) of a step that leaves `memory`."""
    name, generation, result, now = s.RDB_STEPS[1]
    result = type(result)(**{**result.__dict__, "memory": memory})
    patch = status_of(s.rdb_body(generation, previous or {}), s.RDB_SPEC, result, now)
    return patch, s.stored(previous, patch)


def test_the_memory_is_typed_status_fields() -> None:
    _, status = written(MEMORY)
    assert status["loop"] == {
        "probeFailures": 2, "failingSince": "2023-11-14T22:13:30.500Z", "lastFailover": "2023-11-14T22:13:23.000Z",
        "lastLag": [{"member": "db-1", "seconds": 0.25}, {"member": "db-2", "seconds": 1.5}],
        "errant": [{"member": "db-2", "gtids": "0-3-4"}],
        "switchover": {"target": "db-1", "source": "db-0", "started": "2023-11-14T22:13:27.000Z"},
        "leaseExpires": "2023-11-14T22:13:32.125Z", "lastState": "Switching", "lastNotes": ["FailoverSuppressed"]}
    assert "loopMemory" not in status
    ReplicatedDatabaseStatus.model_validate(status)  # the CRD's schema is the model's


def test_the_memory_survives_a_trip_through_the_status() -> None:
    _, status = written(MEMORY)
    assert memory_of(json.loads(json.dumps(status))) == MEMORY
    assert loop_memory(loop_status(LoopMemory())) == LoopMemory()


def test_times_keep_milliseconds() -> None:
    memory = LoopMemory(lease_expires=T + 0.1234567, failing_since=T + 5.0006)
    again = loop_memory(loop_status(memory))
    assert again.lease_expires == T + 0.123 and again.failing_since == T + 5.001


def test_forgotten_fields_are_removed_from_the_stored_status() -> None:
    """A merge patch merges objects: what the memory no longer holds must be sent as null, and
    the per-member lists replace the old ones whole."""
    _, before = written(MEMORY)
    _, after = written(LoopMemory(last_state="Healthy"), before)
    assert after["loop"] == {"probeFailures": 0, "lastLag": [], "errant": [], "lastState": "Healthy",
                             "lastNotes": []}
    assert memory_of(after) == LoopMemory(last_state="Healthy")


def test_an_operator_upgraded_from_0_1_0_resumes_from_loop_memory_and_removes_it() -> None:
    old = {"loopMemory": json.dumps({**MEMORY.to_dict(), "lease_expires": T + 12.125})}
    assert memory_of(old) == MEMORY
    patch, status = written(MEMORY, old)
    assert patch["loopMemory"] is None and "loopMemory" not in status
    assert memory_of(status) == MEMORY


def test_an_unreadable_memory_is_forgotten() -> None:
    assert memory_of(None) is None and memory_of({}) is None
    assert memory_of({"loopMemory": "{not json"}) is None
    assert memory_of({"loop": {"probeFailures": "many"}}) is None
    assert memory_of({"loop": {"probeFailures": 1, "aFieldOfALaterRelease": True}}) == LoopMemory(probe_failures=1)


def test_the_fingerprint_ignores_lease_renewals_and_transition_times_only() -> None:
    first, _ = written(MEMORY)
    renewed, _ = written(MEMORY.with_(lease_expires=T + 14.0))
    renewed["conditions"][0]["lastTransitionTime"] = "later"
    assert status_fingerprint(renewed) == status_fingerprint(first)
    counted, _ = written(MEMORY.with_(probe_failures=3))
    assert status_fingerprint(counted) != status_fingerprint(first)
    assert status_fingerprint({"handledSwitchover": "x", **first}) != status_fingerprint(first)


def test_missing_credentials_set_ready_false_and_nothing_else() -> None:
    _, previous = written(MEMORY)
    problem = Verdict(False, DatabaseReason.CREDENTIALS_MISSING, "secret db-credentials not found")
    patch = not_ready(previous, 1, problem, now="t9")
    assert set(patch) == {"conditions"}
    ready = get_condition(patch["conditions"], "Ready")
    assert (ready["status"], ready["reason"], ready["message"], ready["lastTransitionTime"]) == (
        "False", "CredentialsMissing", "secret db-credentials not found", "t9")
    assert [c["type"] for c in patch["conditions"]] == [c["type"] for c in previous["conditions"]]


def test_asking_again_for_a_switchover_to_the_same_member_is_a_new_request() -> None:
    """Field fault (f): a second annotation naming a member already switched to once was ignored forever."""
    from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec
    from hakeeper.replicateddatabase.reconcile import handled_switchover, switchover_request

    spec = ReplicatedDatabaseSpec()
    result = s.RDB_STEPS[-1][2]  # a completed switchover (to db-0)

    def body(annotation: str | None, handled: str | None) -> dict:
        meta = {"name": "db", "namespace": "shop", "generation": 3,
                "annotations": {"hakeeper.io/switchover-to": annotation} if annotation else {}}
        return {"metadata": meta, "status": {"currentPrimary": "db-1", "handledSwitchover": handled}}

    asked = body("db-0", None)
    request = switchover_request(asked, "db", spec)
    assert request == ("annotation:db-0", "db-0")
    assert handled_switchover(asked, request, result) == (True, "annotation:db-0")
    # the annotation is removed by the operator; the next pass forgets the handled request
    assert switchover_request(body(None, "annotation:db-0"), "db", spec) is None
    no_history = type(result)(**{**result.__dict__, "history": None})
    assert handled_switchover(body(None, "annotation:db-0"), None, no_history) == (True, None)
    # so the same member asked for again later is switched to again
    assert switchover_request(body("0", None), "db", spec) == ("annotation:db-0", "db-0")
    # while the annotation is still there (its removal failed), the request is not repeated
    assert switchover_request(body("db-0", "annotation:db-0"), "db", spec) is None
    assert handled_switchover(body("db-0", "annotation:db-0"), None, no_history) == (False, None)
