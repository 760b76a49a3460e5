"""Network namespaces and links through iproute2's `ip` (needs root)."""

from __future__ import annotations

import json
import subprocess


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs `ip [-n NETNS] ARGS...` (iproute2), in namespace `netns` when given; output captured as text.

    Raises subprocess.CalledProcessError on a non-zero exit when `check` (the default), and
    subprocess.TimeoutExpired after 10 s.
    """
    prefix = ["-n", netns] if netns else []
    return subprocess.run(["ip", *prefix, *args], capture_output=True, text=True, timeout=10, check=check)


def add_namespace(name: str) -> None:
    """Creates network namespace `name` (`ip netns add`). Raises CalledProcessError when it exists."""
    ip("netns", "add", name)


def delete_namespace(name: str) -> None:
    """Deletes network namespace `name`, with the links inside it (and their veth peers
    outside); nothing happens when there is none."""
    ip("netns", "del", name, check=False)


def ipv4_addresses(device: str, netns: str | None = None) -> list[str]:
    """The IPv4 addresses (dotted quads, no prefix length) on `device` in `netns` (or the
    host's namespace); [] when the device or the namespace is not there."""
    done = ip("-j", "addr", "show", "dev", device, netns=netns, check=False)
    if done.returncode != 0:
        return []
    links = json.loads(done.stdout or "[]")
    return [a["local"] for link in links for a in link.get("addr_info", []) if a.get("family") == "inet"]
