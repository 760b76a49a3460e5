"""keepalived's checkers as hakeeper renders them, acting on IPVS: a real server that fails its
check leaves the virtual server and returns once it passes; weight 0 (draining) keeps open
connections and takes no new ones (scenarios.catalog)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.lvs


def addresses(table: list[dict]) -> list[str]:
    (service,) = table
    return [d["address"] for d in service["dests"]]


@pytest.mark.lvs("nat-health-tcp", "nat-health-http")
@pytest.mark.parametrize("check", ["tcp", "http"])
def test_a_real_server_failing_its_check_leaves_ipvs_and_returns(lvs, check):
    result = lvs(f"nat-health-{check}")
    victim = "10.0.2.12:8080"
    assert victim in addresses(result["before"])
    # tcp: its listener closed; http: it answers 500 to the check (and still serves TCP)
    assert victim not in addresses(result["removed"]) and len(addresses(result["removed"])) == 2
    assert "n2" not in result["during"] and set(result["during"]) == {"n1", "n3"}
    assert victim in addresses(result["back"])
    assert "n2" in result["after"]


@pytest.mark.lvs("nat-drain")
def test_draining_at_weight_0_keeps_the_established_connection_and_takes_no_new_one(lvs):
    result = lvs("nat-drain")
    target = result["target"]
    (service,) = result["drained"]
    weights = {d["address"]: d["weight"] for d in service["dests"]}
    assert sorted(weights.values()) == [0, 1, 1]
    # the connection opened before the drain went on answering, from the same server
    assert result["error"] is None
    assert len(result["long"]) >= 11 and set(result["long"]) == {target}
    # new connections went to the other two
    assert target not in result["new"] and len(set(result["new"])) == 2
