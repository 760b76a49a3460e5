"""The keepalived balancer ConfigMap: its files, its hash, and how the agent on each node
turns the rendered file into that node's own (pure).

The rendered ``keepalived.conf`` carries the *base* priority and, when the VRRP password
comes from a Secret, PASSWORD_PLACEHOLDER; ``priorities.json`` maps node names to their
priorities. ``for_node`` puts in the node's priority and the password (see
loadbalancerpool/lvs/config.py for the rendering side).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

CONFIG_FILE = "keepalived.conf"


PRIORITIES_FILE = "priorities.json"


PASSWORD_PLACEHOLDER = "@VRRPPW@"
"""Eight characters, so that a file still holding it passes ``keepalived -t``; the agent
refuses to apply a file that still holds it (see agent.py)."""


MAX_PASSWORD = 8
"""VRRP PASS authentication carries 8 bytes; keepalived truncates longer ones (and warns)."""


PASSWORD_PATTERN = re.compile(r"[A-Za-z0-9_.,:;+=*%^&()\[\]<>|/?~@-]{1,8}")
"""Used with fullmatch: with match, a "$" matched before a final newline, and "abc\n" reached
the auth_pass line, breaking it."""


_PRIORITY_LINE = re.compile(r"^(?P<indent>\s+)priority [0-9]+$", re.M)


class ConfigError(ValueError):
    """The spec or the backends cannot be turned into a keepalived configuration."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_hash(files: Mapping[str, str]) -> str:
    return _digest(json.dumps({k: files.get(k, "") for k in (CONFIG_FILE, PRIORITIES_FILE)}, sort_keys=True))


def node_priority(files: Mapping[str, str], node: str, base: int) -> int:
    """This node's priority from priorities.json; without that file, the base priority."""
    raw = files.get(PRIORITIES_FILE)
    if not raw:
        return base
    try:
        table = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{PRIORITIES_FILE} is not JSON") from None
    if not isinstance(table, dict) or not all(isinstance(v, int) for v in table.values()):
        raise ConfigError(f"{PRIORITIES_FILE} must map node names to numbers")
    if node in table:
        return int(table[node])
    return max(1, min(table.values(), default=base + 1) - 1)


def base_priority(text: str) -> int:
    found = [m.group(0) for m in _PRIORITY_LINE.finditer(text)]
    if len(found) != 1:
        raise ConfigError(f"{CONFIG_FILE} must have exactly one priority line")
    return int(found[0].split()[-1])


def for_node(text: str, priority: int, password: str | None = None) -> str:
    """The file as this node runs it: its own priority, and the password from the Secret."""
    if not 1 <= priority <= 254:
        raise ConfigError(f"priority {priority} is not 1..254")
    base_priority(text)  # exactly one priority line
    text = _PRIORITY_LINE.sub(lambda m: f"{m.group('indent')}priority {priority}", text)
    if PASSWORD_PLACEHOLDER in text:
        if password is None:
            raise ConfigError("the configuration asks for the VRRP password from a Secret, and none was given "
                              "(--auth-password-file)")
        if not PASSWORD_PATTERN.fullmatch(password):
            raise ConfigError(f"the VRRP password must be 1 to {MAX_PASSWORD} characters: letters, digits or "
                              "_.,:;+=*%^&()[]<>|/?~@-")
        text = text.replace(f"auth_pass {PASSWORD_PLACEHOLDER}", f"auth_pass {password}")
    return text
