"""IPVS schedulers, weights and persistence as keepalived programs them from hakeeper's file,
with real connections, some from eight client addresses (scenarios.catalog)."""

from __future__ import annotations

import pytest

from . import topology as topo

pytestmark = pytest.mark.lvs


def the_service(result: dict) -> dict:
    (service,) = result["ipvs"]
    return service


def one_server_per_source(result: dict) -> dict[str, str]:
    """Source address -> the one real server that answered all its connections."""
    by_source = result["by_source"]
    assert len(by_source) == len(topo.CLIENT_ADDRESSES)
    for source, seen in by_source.items():
        assert len(seen) == 1, f"{source} was answered by {seen}"
    return {source: next(iter(seen)) for source, seen in by_source.items()}


@pytest.mark.lvs("nat-tcp-wrr")
def test_weighted_round_robin_follows_the_weights(lvs):
    result = lvs("nat-tcp-wrr")
    service = the_service(result)
    assert service["scheduler"] == "wrr"
    assert [d["weight"] for d in service["dests"]] == [3, 2, 1]
    # 36 connections over weights 3:2:1
    assert result["totals"] == {"n1": 18, "n2": 12, "n3": 6}


@pytest.mark.lvs("nat-tcp-lc")
def test_least_connection_sends_new_connections_away_from_the_busy_server(lvs):
    result = lvs("nat-tcp-lc")
    # six open connections spread two per server ...
    assert sorted(result["first"].count(name) for name in topo.NAT_SERVERS) == [2, 2, 2]
    # ... then all but the two of one server close: the next two go to the two idle servers,
    # where round robin would have sent one to the busy server (the 7th in its turn)
    kept = result["kept"]
    assert sorted(result["later"]) == sorted(name for name in topo.NAT_SERVERS if name != kept), result


@pytest.mark.lvs("dr-tcp-sh")
def test_source_hashing_keeps_each_client_address_on_one_server(lvs):
    result = lvs("dr-tcp-sh")
    assert the_service(result)["scheduler"] == "sh"
    chosen = one_server_per_source(result)
    assert len(set(chosen.values())) >= 2, chosen  # eight addresses do not all hash to one server


@pytest.mark.lvs("dr-tcp-mh")
def test_maglev_hashing_with_weights_keeps_each_client_address_on_one_server(lvs):
    result = lvs("dr-tcp-mh")
    service = the_service(result)
    assert service["scheduler"] == "mh"
    assert [d["weight"] for d in service["dests"]] == [3, 2, 1]
    chosen = one_server_per_source(result)
    assert len(set(chosen.values())) >= 2, chosen


@pytest.mark.lvs("nat-tcp-rr-persistent", "nat-tcp-rr")
def test_persistence_timeout_keeps_a_client_on_its_server_under_round_robin(lvs):
    result = lvs("nat-tcp-rr-persistent")
    assert "persistent 60" in the_service(result)["flags"]
    chosen = one_server_per_source(result)
    assert len(set(chosen.values())) >= 2, chosen
    # the control: the same scheduler without persistenceTimeout moves one client over every server
    assert len(lvs("nat-tcp-rr")["by_source"][topo.CLIENT_ADDRESSES[0]]) == 3
