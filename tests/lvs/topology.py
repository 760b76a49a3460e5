"""The lvs tier's test network inside the VM: names and addresses the host (which renders the
keepalived files) and the guest (which builds the network) share. Standard library only.

    front bridge 10.0.1.0/24                          back bridge 10.0.2.0/24
    ┌ cl  client   eth0 10.0.1.50-57 (8 sources)      │
    ├ dA  director eth0 10.0.1.2 ─── eth1 10.0.2.2 ───┤ (+ 10.0.2.1: the NAT real servers' gateway)
    ├ dB  director eth0 10.0.1.3 ─── eth1 10.0.2.3 ───┤
    ├ r1..r3 DR/TUN real servers eth0 10.0.1.11-13    ├ n1..n3 NAT real servers eth0 10.0.2.11-13,
    │   VIP on lo, arp_ignore=1, arp_announce=2,      │   default route via 10.0.2.1
    │   tunl0 (ipip) up, rp_filter off                │

The VIP 10.0.1.100 is on the front side, held by the VRRP master. DR needs the real servers on
the directors' segment, and NAT needs the real servers' replies to go back through the director,
so NAT real servers sit behind the directors on their own segment with no other way out.
"""

from __future__ import annotations

VIP = "10.0.1.100"
INTERFACE = "eth0"
"""The directors' front interface: VRRP, the VIP and the sync daemon."""
DIRECTORS = {"dA": ("10.0.1.2", "10.0.2.2"), "dB": ("10.0.1.3", "10.0.2.3")}
"""Director namespace -> (front address, back address). dA sorts first: it gets the base priority."""
NAT_GATEWAY = "10.0.2.1"
"""On dA's back side: the NAT real servers' default route."""
CLIENT = "cl"
CLIENT_ADDRESSES = [f"10.0.1.{50 + i}" for i in range(8)]
REAL_SERVERS = {"r1": "10.0.1.11", "r2": "10.0.1.12", "r3": "10.0.1.13"}
"""DR and TUN real servers (front segment)."""
NAT_SERVERS = {"n1": "10.0.2.11", "n2": "10.0.2.12", "n3": "10.0.2.13"}
"""NAT real servers (back segment)."""
SERVICE_PORT = 80
"""The virtual server's TCP port; DR and TUN real servers listen on it too (they cannot map ports)."""
NAT_PORT = 8080
"""The NAT real servers' TCP port: NAT maps SERVICE_PORT to it."""
UDP_PORT = 5353
"""UDP: the virtual server's port and every real server's."""
