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
