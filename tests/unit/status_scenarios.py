"""Inputs for the status builders' regression tests (test_status_wire.py), and what the API
server makes of a status patch.

The builders' output is compared by what the API server *stores* after the operator's JSON
merge patch (RFC 7396): a null deletes a field, an array is replaced whole, and a null inside
an object the schema does not mark nullable is pruned. Two patches that store the same status
are the same to every reader (kubectl, the e2e tests, the operator after a restart).
"""

from __future__ import annotations

import copy
from typing import Any

from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.status import BalancerPod
from hakeeper.replicateddatabase.clustering import LoopMemory, StepResult
from hakeeper.replicateddatabase.clustering.memory import Switchover

from ..integration.prometheus_support import merge_patch


def pruned(value: Any) -> Any:
    """Drops the nulls the API server prunes (no status field is nullable)."""
    if isinstance(value, dict):
        return {k: pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def stored(previous: dict[str, Any] | None, patch: dict[str, Any]) -> dict[str, Any]:
    """The status the API server keeps after `patch` lands on `previous`."""
    return pruned(merge_patch(previous or {}, patch))


def defaulted(value: Any, schema: dict[str, Any]) -> Any:
    """`value` with the defaults of its structural schema filled in, as the API server serves it."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = defaulted(out[name], sub)
        return out
    if isinstance(value, list) and "items" in schema:
        return [defaulted(v, schema["items"]) for v in value]
    return value


def served(kind: Any, status: dict[str, Any]) -> dict[str, Any]:
    """The status as the API server serves it: stored, with the CRD's defaults (kind: api.kinds.Kind)."""
    from hakeeper.api.crdgen import schema_of

    return defaulted(status, schema_of(kind.status))


# -- LoadBalancerPool -----------------------------------------------------------------------------
BACKENDS = [Backend("a", "127.0.10.1", 80), Backend("b", "127.0.10.2", 80, state="down")]
LATENCY_REPORT = ('[{"backend":"a","base":1,"weight":100,"percent":100,"latencyMs":1.0},'
                  '{"backend":"b","base":1,"weight":12,"percent":12,"latencyMs":51.3}]')
POOL_STEPS: list[tuple[str, dict[str, Any]]] = [
    # (name, pool_status keyword arguments); each step's previous status is the one before
    ("serving", {"generation": 4, "algorithm": "roundrobin", "backends": BACKENDS, "config_hash": "h1",
                 "balancers": [BalancerPod("p2", False, None), BalancerPod("p1", True, "h1")], "now": "t1"}),
    ("stale", {"generation": 4, "algorithm": "roundrobin", "backends": BACKENDS, "config_hash": "h2",
               "balancers": [BalancerPod("p1", True, "h2"), BalancerPod("p2", True, "h1")], "now": "t2"}),
    ("no-backends", {"generation": 5, "algorithm": "leastconn", "backends": [], "config_hash": "h2",
                     "balancers": [BalancerPod("p1", True, "h2")], "now": "t3"}),
    ("none-ready", {"generation": 5, "algorithm": "leastconn", "backends": [BACKENDS[1]], "config_hash": "h2",
                    "balancers": [BalancerPod("p1", True, "h2")], "now": "t4"}),
    ("no-balancer", {"generation": 5, "algorithm": "leastconn", "backends": BACKENDS, "config_hash": "h2",
                     "balancers": [], "now": "t5"}),
    # weighting mode Latency: the weights of the first ready balancer that reported them
    ("latency-weights", {"generation": 6, "algorithm": "roundrobin", "backends": BACKENDS, "config_hash": "h3",
                         "balancers": [BalancerPod("p1", True, "h3", effective_weights=LATENCY_REPORT)],
                         "now": "t6", "latency": True}),
    ("static-again", {"generation": 7, "algorithm": "roundrobin", "backends": BACKENDS, "config_hash": "h4",
                      "balancers": [BalancerPod("p1", True, "h4", effective_weights=LATENCY_REPORT)],
                      "now": "t7", "latency": False}),
]
LVS_STEPS: list[tuple[str, dict[str, Any]]] = [
    ("master", {"generation": 1, "algorithm": "wlc", "backends": BACKENDS, "config_hash": "k1",
                "balancers": [BalancerPod("edge-b", True, "k1", "MASTER", "node-b", "available"),
                              BalancerPod("edge-a", True, "k1", "BACKUP", "node-a", "available")], "now": "t1"}),
    ("no-ipvs", {"generation": 1, "algorithm": "wlc", "backends": BACKENDS, "config_hash": "k1",
                 "balancers": [BalancerPod("edge-a", False, None, "FAULT", "node-a", "missing"),
                               BalancerPod("edge-b", True, "k1", "BACKUP", "node-b", "available")], "now": "t2"}),
    ("two-masters", {"generation": 2, "algorithm": "wlc", "backends": BACKENDS, "config_hash": "k2",
                     "balancers": [BalancerPod("edge-a", True, "k2", "master", None, "available"),
                                   BalancerPod("edge-b", True, "k2", "MASTER", "node-b", "available")], "now": "t3"}),
]


# -- ReplicatedDatabase ---------------------------------------------------------------------------
def member(name: str, role: str, reachable: bool = True, read_only: bool | None = True, lag: float | None = 0.0,
           gtid: str | None = "0-1-10", errant: bool = False, message: str | None = None) -> dict[str, Any]:
    """One StepResult.members entry (api.replicateddatabase.MemberStatus fields, snake_case); a
    reachable replica without errant transactions or a message is serving."""
    return {"name": name, "role": role, "reachable": reachable, "read_only": read_only, "lag_seconds": lag,
            "gtid": gtid, "errant": errant, "message": message,
            "serving": role == "replica" and reachable and not errant and message is None}


def step(state: str, reason: str, primary: str | None, members: list[dict[str, Any]], memory: LoopMemory, *,
         available: bool, healthy: bool, failing: bool = False, history: dict[str, Any] | None = None) -> StepResult:
    return StepResult(state=state, reason=reason, primary=primary, members=members, events=[], history=history,
                      memory=memory, available=available, healthy=healthy, failover_in_progress=failing,
                      replicating=sum(1 for m in members if m["serving"]))


T = 1_700_000_000.0
RDB_STEPS: list[tuple[str, int, StepResult, str]] = [
    # (name, generation, step result, now); each step's previous status is the one before
    ("initializing", 1, step("Initializing", "no primary yet", None,
                             [member(f"db-{i}", "unknown", reachable=False, read_only=None, lag=None, gtid=None,
                                     message="unreachable: connection refused") for i in range(3)],
                             LoopMemory(last_state="Initializing", last_notes=("Bootstrap",)),
                             available=False, healthy=False), "2023-11-14T22:13:20Z"),
    ("healthy", 1, step("Healthy", "all members replicate from the primary", "db-0",
                        [member("db-0", "primary", read_only=False, lag=None), member("db-1", "replica"),
                         member("db-2", "replica", lag=1.5, gtid="")],
                        LoopMemory(lease_expires=T + 2.25, last_state="Healthy", last_lag={"db-1": 0.0, "db-2": 1.5}),
                        available=True, healthy=True), "2023-11-14T22:13:21Z"),
    ("failing", 2, step("Failed", "primary db-0 lost: 3 failed probes", "db-0",
                        [member("db-0", "unknown", reachable=False, read_only=None, lag=None, gtid=None,
                                message="unreachable: timed out"), member("db-1", "replica"),
                         member("db-2", "replica", lag=1.5)],
                        LoopMemory(probe_failures=3, failing_since=T + 10.125, lease_expires=T + 2.25,
                                   last_state="Failed", last_lag={"db-1": 0.0, "db-2": 1.5},
                                   last_notes=("FailoverStarted",)),
                        available=False, healthy=False, failing=True), "2023-11-14T22:13:33Z"),
    ("failed-over", 2, step("Degraded", "failover from db-0 to db-1 completed", "db-1",
                            [member("db-0", "unknown", reachable=False, read_only=None, lag=None, gtid=None,
                                    message="unreachable: timed out"),
                             member("db-1", "primary", read_only=False, lag=None, gtid="0-1-10,0-2-1"),
                             member("db-2", "replica", errant=True, message="has transactions the primary lacks")],
                            LoopMemory(last_failover=T + 14.5, lease_expires=T + 16.5, last_state="Failed",
                                       errant={"db-2": "0-3-4"}, last_lag={"db-1": 0.0, "db-2": 1.5}),
                            available=True, healthy=False,
                            history={"time": "2023-11-14T22:13:34Z", "kind": "failover", "from_member": "db-0",
                                     "to_member": "db-1", "reason": "primary db-0 lost: 3 failed probes",
                                     "duration_seconds": 4.375}), "2023-11-14T22:13:34Z"),
    ("switching", 3, step("Switching", "switchover to db-0 requested", "db-1",
                          [member("db-0", "replica"), member("db-1", "primary", read_only=False, lag=None),
                           member("db-2", "replica")],
                          LoopMemory(last_failover=T + 14.5, lease_expires=T + 40.0, last_state="Switching",
                                     switchover=Switchover("db-0", "db-1", T + 39.0),
                                     last_notes=("SwitchoverStarted",)),
                          available=True, healthy=False, failing=True), "2023-11-14T22:14:00Z"),
    ("switched-over", 3, step("Healthy", "switchover from db-1 to db-0 completed", "db-0",
                              [member("db-0", "primary", read_only=False, lag=None), member("db-1", "replica"),
                               member("db-2", "replica")],
                              LoopMemory(last_failover=T + 14.5, lease_expires=T + 42.0, last_state="Switching"),
                              available=True, healthy=True,
                              history={"time": "2023-11-14T22:14:01Z", "kind": "switchover", "from_member": "db-1",
                                       "to_member": "db-0", "reason": "switchover to db-0 requested",
                                       "duration_seconds": None}), "2023-11-14T22:14:01Z"),
]


RDB_SPEC = ReplicatedDatabaseSpec()
"""Three members, semi-sync waiting for one replica: Ready needs one replica replicating."""


def rdb_body(generation: int, status: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "ReplicatedDatabase",
            "metadata": {"name": "db", "namespace": "shop", "generation": generation}, "status": status}


# -- DegradationPolicy ------------------------------------------------------------------------------
def policy_run(dry_run: bool = False) -> list[tuple[dict[str, Any], list[tuple[str, str, str]]]]:
    """A policy through Pending, Degraded (with a conflict), metrics unavailable, Recovering and
    Normal again: each evaluation's stored status and its Events (type, reason, message)."""
    from hakeeper.degradationpolicy.decide import Memory, Reading

    from .test_degradation_state import Scripted, shop, spec

    fleet = shop()
    evaluator = Scripted(fleet)
    policy_spec = spec(dryRun=True) if dry_run else spec()
    body: dict[str, Any] = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy",
                            "metadata": {"name": "peak", "namespace": "shop", "generation": 1},
                            "spec": policy_spec.wire(), "status": {}}
    memory = Memory()
    out = []
    script: list[tuple[float, float | None, str]] = [
        (0, 12, "value"), (1, 12, "value"), (3, 12, "value"), (4, 12, "value"), (5, 8, "value"),
        (6, None, "unavailable"), (7, None, "no-data"), (8, float("inf"), "value"), (9, 1, "value"),
        (13, 1, "value"), (15, 1, "value"), (17, 1, "value"), (19, 1, "value"),
    ]
    for t, value, outcome in script:
        if t == 5 and not dry_run:
            fleet.scale("batch-a", 5, manager="argocd-controller")
        evaluator.reading = {"load": Reading(outcome, value, "" if outcome == "value" else "scripted")}
        result = evaluator.evaluate(body, policy_spec, memory, now=T + t)
        memory = result.memory
        body["status"] = stored(body["status"], result.status)
        out.append((body["status"], [(e.type, e.reason, e.message) for e in result.events]))
    return out
