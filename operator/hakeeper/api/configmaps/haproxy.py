"""The HAProxy balancer ConfigMap: its two files, the servers.json format, the hashes, and
how the agent fills the structure with the servers for the file on disk (pure).

- ``haproxy.cfg``: the *structure*, with a fixed number of server slots (``s1`` .. ``sN``)
  as placeholders in maintenance (see loadbalancerpool/haproxy/config.py for why).
- ``servers.json``: which backend sits in which slot, with its address, weight and state;
  the agent applies it through the runtime API, without a reload.
- ``weighting.json`` (weighting mode Latency only): how the agent moves the weights by the
  servers' response times (api/configmaps/weighting.py); read by the agent, no reload.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence

CONFIG_FILE = "haproxy.cfg"
SERVERS_FILE = "servers.json"
WEIGHTING_FILE = "weighting.json"
REFUSED_FILE = "refused-classes.json"
"""Request classes the balancers refuse (a JSON list of names); only in pools with requestClasses.
Applied through the runtime API: outside the structure hash, inside the config hash."""
REFUSED_ACL_FILE = "refused-classes.acl"
"""The ACL file haproxy.cfg reads the refused classes from (one name a line), in the run directory."""
BACKEND = "servers"
"""The backend section that holds the server slots."""
STRUCTURE_ENV = "HAKEEPER_STRUCTURE"
"""Set in the file on disk; `show env` on the runtime API tells which structure a worker runs."""
STATES = ("ready", "draining", "down")
_SERVER_LINE = re.compile(
    r"^(?P<indent>\s+)server (?P<name>s(?P<slot>[0-9]+)) (?P<address>\S+)(?P<disabled> disabled)?"
    r" weight (?P<weight>[0-9]+)(?P<rest>.*)$"
)


class ConfigError(ValueError):
    """The spec or the backends cannot be turned into a configuration."""


@dataclasses.dataclass(frozen=True)
class SlotEntry:
    """One line of servers.json."""

    slot: int
    name: str
    address: str
    port: int
    weight: int
    state: str

    @property
    def server(self) -> str:
        return server_name(self.slot)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def structure_hash(cfg: str) -> str:
    return _digest(cfg)


def config_hash(files: Mapping[str, str]) -> str:
    # weighting.json and refused-classes.json count only where they exist (Latency pools, pools
    # with request classes), so every other pool's hash is what it always was
    hashed = {k: files.get(k, "") for k in (CONFIG_FILE, SERVERS_FILE)}
    hashed.update({k: files[k] for k in (WEIGHTING_FILE, REFUSED_FILE) if k in files})
    return _digest(json.dumps(hashed, sort_keys=True))


_CLASS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def refused_json(names: Sequence[str]) -> str:
    """The refused-classes.json of the ConfigMap: the names, sorted, once each."""
    return json.dumps(sorted(set(names))) + "\n"


def parse_refused(text: str | None) -> tuple[str, ...]:
    """refused-classes.json back into names, each checked to be a class name (a DNS label)."""
    try:
        raw = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{REFUSED_FILE} is not JSON: {exc}") from None
    if not isinstance(raw, list) or not all(isinstance(n, str) and _CLASS_NAME.fullmatch(n) for n in raw):
        raise ConfigError(f"{REFUSED_FILE} must be a list of request class names")
    return tuple(sorted(set(raw)))


def refused_acl_text(names: Sequence[str]) -> str:
    """The ACL file HAProxy loads at start: one refused class a line (empty: none refused)."""
    return "".join(f"{n}\n" for n in sorted(set(names)))


def refused_acl_path(cfg: str) -> str | None:
    """The refused classes' ACL file named in haproxy.cfg, or None (a pool without classes)."""
    match = re.search(rf"-f (\S+/{re.escape(REFUSED_ACL_FILE)}) }}", cfg)
    return match[1] if match else None


def servers_json(entries: Sequence[SlotEntry]) -> str:
    return json.dumps([dataclasses.asdict(e) for e in sorted(entries, key=lambda e: e.slot)], indent=1) + "\n"


def parse_servers(text: str) -> list[SlotEntry]:
    """servers.json back into entries, checked as strictly as render checks backends."""
    try:
        raw = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{SERVERS_FILE} is not JSON: {exc}") from None
    if not isinstance(raw, list):
        raise ConfigError(f"{SERVERS_FILE} must be a list")
    entries = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {f.name for f in dataclasses.fields(SlotEntry)}:
            raise ConfigError(f"{SERVERS_FILE}: bad entry {item!r}")
        entry = SlotEntry(**item)
        check_entry(entry)
        entries.append(entry)
    if len({e.slot for e in entries}) != len(entries):
        raise ConfigError(f"{SERVERS_FILE}: a slot is used twice")
    return sorted(entries, key=lambda e: e.slot)


def fill(cfg: str, entries: Sequence[SlotEntry]) -> str:
    """haproxy.cfg with every slot line set to its servers.json entry.

    A ready backend is enabled; a draining or down one starts in maintenance (the agent
    moves it to drain through the runtime API right after); an empty slot stays the
    disabled placeholder.
    """
    by_slot = {e.slot: e for e in entries}
    slots_in_cfg = set()
    out = []
    for line in cfg.splitlines(keepends=True):
        match = _SERVER_LINE.match(line.rstrip("\n"))
        if match:
            slot = int(match["slot"])
            slots_in_cfg.add(slot)
            entry = by_slot.get(slot)
            if entry is not None:
                line = server_line(match["indent"], entry.slot, entry.address, entry.port, entry.weight,
                                    enabled=entry.state == "ready") + match["rest"] + "\n"
        out.append(line)
    missing = sorted(set(by_slot) - slots_in_cfg)
    if missing:
        raise ConfigError(f"{SERVERS_FILE} uses slots the configuration does not have: {missing}")
    return "".join(out)


def on_disk(cfg: str, entries: Sequence[SlotEntry]) -> str:
    """The file the agent writes for HAProxy: the structure, filled, marked with its hash.

    The mark is an environment variable of the worker, so the agent can ask a running
    HAProxy which structure it loaded, even after the agent itself restarted.
    """
    filled = fill(cfg, entries)
    marker = f"    setenv {STRUCTURE_ENV} {structure_hash(cfg)}\n"
    lines = filled.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.strip() == "global":
            return "".join(lines[: index + 1] + [marker] + lines[index + 1:])
    raise ConfigError(f"{CONFIG_FILE} has no global section")


def disk_structure(text: str | None) -> str | None:
    """The structure hash marked in a file written by `on_disk`."""
    match = re.search(rf"^\s+setenv {STRUCTURE_ENV} (\S+)$", text or "", re.MULTILINE)
    return match[1] if match else None


def state_file_path(cfg: str) -> str | None:
    match = re.search(r"^\s+server-state-file (\S+)$", cfg, re.MULTILINE)
    return match[1] if match else None


def slot_count(cfg: str) -> int:
    return sum(1 for line in cfg.splitlines() if _SERVER_LINE.match(line))


def check_entry(entry: SlotEntry) -> None:
    if not isinstance(entry.slot, int) or entry.slot < 1:
        raise ConfigError(f"bad slot {entry.slot!r}")
    if not isinstance(entry.name, str) or not entry.name:
        raise ConfigError(f"slot {entry.slot}: bad backend name {entry.name!r}")
    try:
        ipaddress.ip_address(entry.address)
    except (ValueError, TypeError):
        raise ConfigError(f"backend {entry.name}: {entry.address!r} is not an IP address") from None
    if not isinstance(entry.port, int) or not 1 <= entry.port <= 65535:
        raise ConfigError(f"backend {entry.name}: bad port {entry.port!r}")
    if not isinstance(entry.weight, int) or not 0 <= entry.weight <= 256:
        raise ConfigError(f"backend {entry.name}: weight {entry.weight!r} is not from 0 to 256")
    if entry.state not in STATES:
        raise ConfigError(f"backend {entry.name}: state {entry.state!r} is not one of {', '.join(STATES)}")


def host_port(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def server_line(indent: str, slot: int, address: str, port: int, weight: int, *, enabled: bool) -> str:
    state = "" if enabled else " disabled"
    return f"{indent}server {server_name(slot)} {host_port(address, port)}{state} weight {weight}"


def server_name(slot: int) -> str:
    """The HAProxy server name of a slot."""
    return f"s{slot}"
