"""The agent's part of request priority classes: keep the refused classes' ACL, on disk and in the
running HAProxy, equal to the ConfigMap's refused-classes.json, with no reload.

- the file (``refused-classes.acl``, path from haproxy.cfg) is what a starting or reloading
  HAProxy loads; it is written before haproxy.cfg, since HAProxy refuses a configuration whose
  ``-f`` file does not exist;
- the running worker's copy is changed with `add acl` / `del acl` on the runtime API (HAProxy 2.6
  management guide, 9.3): `plan` is pure, `observe` reads `show acl <file>`.

A pool without request classes has neither the file in its ConfigMap nor the ACL in haproxy.cfg:
every function here then does nothing.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence

from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.api.configmaps import haproxy as configmap


@dataclasses.dataclass(frozen=True)
class Refusals:
    """What the ConfigMap asks: the ACL file's path (None: the pool has no classes) and the classes."""

    path: str | None = None
    classes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return configmap.refused_acl_text(self.classes)

    @classmethod
    def from_data(cls, cfg: str, data: Mapping[str, str]) -> Refusals:
        """From the ConfigMap's data; raises ConfigError on a malformed refused-classes.json."""
        path = configmap.refused_acl_path(cfg)
        if path is None:
            return cls()
        return cls(path=path, classes=configmap.parse_refused(data.get(configmap.REFUSED_FILE)))


def parse_show_acl(text: str) -> list[str]:
    """The values of `show acl <file>`: one `<entry id> <value>` a line."""
    values = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].startswith("0x"):
            values.append(fields[1])
        elif line.strip():
            raise runtime.RuntimeApiError(f"unexpected `show acl` line: {line!r}")
    return values


def plan(running: Sequence[str], desired: Refusals) -> list[str]:
    """Runtime commands that make the running ACL hold exactly the desired classes.

    Removals last, so that a class moving in and out of the set is never briefly let through by
    a half-applied plan; a value held twice (`add acl` does not deduplicate) is deleted (which
    removes every copy) and added once again.
    """
    if desired.path is None:
        return []
    held = Counter(running)
    wanted = set(desired.classes)
    adds = [f"add acl {desired.path} {name}" for name in sorted(wanted) if held[name] != 1]
    dels = [f"del acl {desired.path} {name}" for name in sorted(held) if name not in wanted or held[name] > 1]
    # a duplicated wanted name: delete first, then add, or the add would be undone
    dup = [f"del acl {desired.path} {name}" for name in sorted(wanted) if held[name] > 1]
    dels = [d for d in dels if d not in dup]
    return dup + adds + dels


def show(admin_socket: str, path: str) -> list[str]:
    """The running worker's ACL values (an ACL file the worker does not know answers an error)."""
    reply = runtime.command(admin_socket, f"show acl {path}")
    if reply.strip().startswith("Unknown"):
        raise runtime.RuntimeApiError(f"HAProxy does not know the ACL {path}: {reply.strip()}")
    return parse_show_acl(reply)
