"""Pod IPs: addresses from a private range put on the loopback device.

Kubernetes refuses loopback addresses (127.0.0.0/8) in EndpointSlices, so pods cannot use
them. An address of any range added to `lo` is local to this machine just the same:
traffic to it never leaves the host. Adding one needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import socket
import subprocess
import threading

POD_CIDR = ipaddress.ip_network(os.environ.get("HAKEEPER_POD_CIDR", "10.244.0.0/16"))


class AddressError(RuntimeError):
    pass


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def listened_on(ip: str) -> bool:
    """Whether any TCP socket of this machine listens on exactly `ip` (/proc/net/tcp, state 0A)."""
    wanted = socket.inet_aton(ip)[::-1].hex().upper()  # the kernel prints the address in host order
    try:
        lines = pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1].startswith(wanted + ":") and line.split()[3] == "0A" for line in lines)


def present() -> set[str]:
    out = _ip("-4", "-o", "addr", "show", "dev", "lo").stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}


class Pool:
    """Hands out addresses no other process on this host has put on lo."""

    def __init__(self, network: ipaddress.IPv4Network = POD_CIDR):
        self._hosts = network.hosts()
        self._freed: list[str] = []
        self._lock = threading.Lock()
        self.claimed: set[str] = set()

    def claim(self) -> str:
        # Fresh addresses first, like a CNI that avoids quick reuse: a process of a deleted pod
        # that outlived it (or a client still talking to the old pod) must never meet a new pod
        # on the same address. Freed ones come back only when the range is used up.
        with self._lock:
            taken = present()
            while True:
                try:
                    ip = str(next(self._hosts))
                except StopIteration:
                    if not self._freed:
                        raise AddressError(f"no free address left in {POD_CIDR}") from None
                    ip = self._freed.pop(0)
                if ip not in taken and not listened_on(ip):
                    break
            result = _ip("addr", "add", f"{ip}/32", "dev", "lo")
            if result.returncode != 0:
                raise AddressError(f"cannot add pod address {ip} to lo (the node agent needs root): "
                                   f"{result.stderr.strip()}")
            self.claimed.add(ip)
            return ip

    def release(self, ip: str) -> None:
        with self._lock:
            _ip("addr", "del", f"{ip}/32", "dev", "lo")
            self.claimed.discard(ip)
            self._freed.append(ip)

    def release_all(self) -> None:
        for ip in list(self.claimed):
            self.release(ip)


def fence(network: ipaddress.IPv4Network) -> None:
    """Traffic to an address of the range that is not (or no longer) on lo fails at once.

    Without this, a packet to a released pod IP follows the default route off the machine,
    where something may even answer it.
    """
    result = _ip("route", "replace", "unreachable", str(network))
    if result.returncode != 0:
        raise AddressError(f"cannot fence {network} (the node agent needs root): {result.stderr.strip()}")


def unfence(network: ipaddress.IPv4Network) -> None:
    """Removes the fence when no address of the range is left on lo (another cluster may use it)."""
    if not any(ipaddress.ip_address(ip) in network for ip in present()):
        _ip("route", "del", "unreachable", str(network))
