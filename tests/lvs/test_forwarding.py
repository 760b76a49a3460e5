"""Real traffic through IPVS as keepalived programs it from the file hakeeper renders: NAT, DR
and TUN, TCP and UDP, counted per real server (the scenarios: scenarios.catalog)."""

from __future__ import annotations

import pytest

from . import topology as topo

pytestmark = pytest.mark.lvs

FORWARD = {"nat": "Masq", "dr": "Route", "tun": "Tunnel"}
"""How ipvsadm -Ln names each lb_kind."""
CASES = [f"{forwarding}-{protocol}-rr" for forwarding in FORWARD for protocol in ("tcp", "udp")]


@pytest.mark.lvs(*CASES)
@pytest.mark.parametrize("name", CASES)
def test_round_robin_spreads_connections_evenly_over_the_real_servers(lvs, name):
    forwarding, protocol, _ = name.split("-")
    result = lvs(name)
    (service,) = result["ipvs"]
    port = topo.SERVICE_PORT if protocol == "tcp" else topo.UDP_PORT
    assert (service["proto"], service["vip"], service["scheduler"]) == (protocol.upper(), f"{topo.VIP}:{port}", "rr")
    assert [d["forward"] for d in service["dests"]] == [FORWARD[forwarding]] * 3
    servers = topo.NAT_SERVERS if forwarding == "nat" else topo.REAL_SERVERS
    # 30 connections (TCP) or datagrams from new source ports (UDP), each answered by the real
    # server's own name: every one got an answer, 10 per server
    assert result["totals"] == {name: 10 for name in servers}
