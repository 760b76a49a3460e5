from hakeeper.api.conditions import get_condition
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.status import BalancerPod, pool_status

B = [Backend("a", "127.0.10.1", 80), Backend("b", "127.0.10.2", 80, state="down")]


def conds(backends, balancers, cfg="h1"):
    status = pool_status(None, 4, "roundrobin", backends, cfg, balancers, now="t")
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}, status


def test_ready_when_every_ready_balancer_runs_the_config_and_a_backend_is_up():
    c, status = conds(B, [BalancerPod("p1", True, "h1"), BalancerPod("p2", False, None)])
    assert c == {"BackendsAvailable": ("True", "BackendsReady"), "ConfigApplied": ("True", "Applied"),
                 "Ready": ("True", "Serving")}
    assert status["backends"] == {"total": 2, "ready": 1}
    assert status["observedGeneration"] == 4
    assert [b["pod"] for b in status["balancers"]] == ["p1", "p2"]


def test_a_stale_balancer_holds_config_applied_and_ready():
    c, status = conds(B, [BalancerPod("p1", True, "h1"), BalancerPod("p2", True, "h0")])
    assert c["ConfigApplied"] == ("False", "Applying") and c["Ready"] == ("False", "Applying")
    msg = get_condition(status["conditions"], "ConfigApplied")["message"]
    assert "1/2" in msg and "p2" in msg


def test_no_backends_and_no_ready_backends():
    c, _ = conds([], [BalancerPod("p1", True, "h1")])
    assert c["BackendsAvailable"] == ("False", "NoBackends") and c["Ready"] == ("False", "NoBackends")
    c, _ = conds([B[1]], [BalancerPod("p1", True, "h1")])
    assert c["BackendsAvailable"] == ("False", "NoReadyBackends")


def test_no_balancer_ready():
    c, _ = conds(B, [])
    assert c["Ready"] == ("False", "NoBalancerReady")


def test_two_vrrp_masters_at_once_are_a_split_brain_that_makes_the_pool_not_ready():
    """Issue 14 field fault f (second half): two nodes holding the virtual IP at once set
    VirtualIPUnique=False (MultipleMasters), Ready=False with it, and one Warning Event when it
    begins; one master, or none, is fine."""
    from hakeeper.loadbalancerpool.status import split_brain_began

    def balancers(*states: str) -> list[BalancerPod]:
        return [BalancerPod(name=f"edge-{i}", ready=True, applied_hash="h", vrrp_state=state, node=f"node-{i}")
                for i, state in enumerate(states)]

    backends = [Backend(name="a", address="10.0.0.1", port=80, weight=1, state="ready")]
    healthy = pool_status(None, 1, "wlc", backends, "h", balancers("MASTER", "BACKUP"), now="t0", lvs=True)
    split = pool_status(healthy, 1, "wlc", backends, "h", balancers("MASTER", "MASTER"), now="t1", lvs=True)
    conditions = {c["type"]: c for c in split["conditions"]}
    assert conditions["VirtualIPUnique"]["status"] == "False"
    assert conditions["VirtualIPUnique"]["reason"] == "MultipleMasters"
    assert "node-0, node-1" in conditions["VirtualIPUnique"]["message"]
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == "MultipleMasters"
    assert split["virtualIPHolder"] == "node-0,node-1"
    assert split_brain_began(healthy, split) is not None  # the Warning, once
    assert split_brain_began(split, split) is None
    assert {c["type"]: c["status"] for c in healthy["conditions"]}["VirtualIPUnique"] == "True"
    # haproxy pools have no such condition
    haproxy = pool_status(None, 1, "roundrobin", backends, "h", balancers(None, None), now="t0")
    assert "VirtualIPUnique" not in {c["type"] for c in haproxy["conditions"]}
