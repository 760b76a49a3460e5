"""Carry the SourceIP stick table of a balancer across a reload.

A pool with SourceIP affinity and an algorithm of its own keeps each client on its backend in
the stick table of the `servers` backend (loadbalancerpool/haproxy/config.py), shared with the
other replicas through a `peers` section. HAProxy's own handover on reload, the old worker
pushing its table to the new one through the local peer (configuration manual 3.5), did not
happen with Debian's HAProxy 2.6.12 here (the old worker never connected: strace), and when
every replica reloads at once (a structural change reaches them all) no peer is left to
resync from. So the agent does it: `show table` before the reload, and after it
`set table ... data.server_id` for every client the new worker does not know yet (one it
placed in between keeps its new backend). Server ids are the slot numbers, which a reload
keeps (slots.py). The entries' expiry restarts.

`parse_table` and `restore_commands` are pure; `dump` and `restore` talk to the runtime API.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.api.configmaps import haproxy as configmap

log = logging.getLogger("hakeeper.agent")
TABLE = configmap.BACKEND
"""A backend's stick table is named after the backend."""
_ENTRY = re.compile(r"^0x[0-9a-fA-F]+: key=(?P<key>[0-9A-Fa-f:.]+) .*?\bserver_id=(?P<id>\d+)\b")


def in_use(cfg: str) -> bool:
    """Whether a configuration (haproxy.cfg) keeps a stick table."""
    return any(line.strip().startswith("stick-table ") for line in cfg.splitlines())


def parse_table(text: str) -> dict[str, int]:
    """Client address -> server id, from `show table <name>` (HAProxy management guide 9.3):
    a header line, then `0x...: key=<address> use=.. exp=.. server_id=<id> server_key=<name>`.
    Lines of another shape (a "No such table" reply, entries without a server) give nothing."""
    entries = {}
    for line in text.splitlines():
        match = _ENTRY.match(line.strip())
        if match and int(match["id"]) > 0:
            entries[match["key"]] = int(match["id"])
    return entries


def restore_commands(saved: Mapping[str, int], current: Mapping[str, int], table: str = TABLE) -> list[str]:
    """The `set table` commands that put back the saved entries the new worker lacks."""
    return [f"set table {table} key {key} data.server_id {server_id}"
            for key, server_id in sorted(saved.items()) if key not in current]


def dump(admin: str, table: str = TABLE) -> dict[str, int]:
    """The running worker's table ({} when it has none)."""
    return parse_table(runtime.command(admin, f"show table {table}"))


def restore(admin: str, saved: Mapping[str, int], table: str = TABLE) -> int:
    """Puts the saved entries into the (new) worker's table; how many. A refusal is logged, not
    raised: the reload is done, and the clients not restored are placed anew."""
    if not saved:
        return 0
    commands = restore_commands(saved, dump(admin, table), table)
    try:
        runtime.apply(admin, commands)
    except runtime.RuntimeApiError as exc:
        log.warning("stick table not fully restored after the reload: %s", exc)
        return 0
    return len(commands)
