"""Which VRRP state a node is in, as seen from outside keepalived (pure, plus one `ip` call).

The agent reads the state from the network, not from keepalived: MASTER when the virtual IP
sits on the instance's interface, BACKUP when it does not, FAULT when the interface is
missing or down (keepalived's own FAULT condition), and FAULT too when keepalived is not
running — a keepalived killed with -9 leaves the VIP on the interface, so an address alone
would call a dead node MASTER.

Why not a notify script writing a state file: a keepalived killed with -9 never runs it,
so the file would say MASTER forever; it needs a script, script security and a shared
directory in the pod; and an agent restarted in between misses transitions. The address on
the interface is what clients are routed by, it needs nothing from keepalived, and it is
right again at the next look.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, Literal

State = Literal["MASTER", "BACKUP", "FAULT"]

_INTERFACE_LINE = re.compile(r"^\s+interface (\S+)$", re.M)
_VIP_BLOCK = re.compile(r"virtual_ipaddress \{\n\s+(\S+)\n", re.M)


def instance_target(text: str) -> tuple[str, str]:
    """The interface and virtual IP of the configuration's vrrp_instance."""
    interface = _INTERFACE_LINE.search(text)
    vip = _VIP_BLOCK.search(text)
    if interface is None or vip is None:
        raise ValueError("the configuration has no vrrp_instance with an interface and a virtual IP")
    return interface.group(1), vip.group(1).split("/")[0]


def classify(running: bool, link: Mapping[str, Any] | None, vip: str) -> State:
    """`link`: the interface as `ip -j addr show dev IF` prints it (None: no such interface)."""
    if not running or link is None:
        return "FAULT"
    flags = link.get("flags") or []
    if "UP" not in flags or link.get("operstate") == "DOWN":
        return "FAULT"
    addresses = [a.get("local") for a in link.get("addr_info") or [] if a.get("family") == "inet"]
    return "MASTER" if vip in addresses else "BACKUP"


def read_link(interface: str, ip: Sequence[str] = ("ip",)) -> dict[str, Any] | None:
    result = subprocess.run([*ip, "-j", "addr", "show", "dev", interface], capture_output=True, text=True,
                            timeout=10, check=False)
    if result.returncode != 0:
        return None  # "Device does not exist"
    links = json.loads(result.stdout or "[]")
    return links[0] if links else None


def observe(text: str, running: bool) -> State:
    interface, vip = instance_target(text)
    return classify(running, read_link(interface) if running else None, vip)
