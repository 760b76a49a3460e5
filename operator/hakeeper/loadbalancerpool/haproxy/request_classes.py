"""Request priority classes in haproxy.cfg, and the refused-classes file of the ConfigMap (pure).

The frontend gives every request the name of its class in the variable `txn.hk_class`: one
`http-request set-var` per class, in the spec's order, each only while no class is set yet (first
match wins), then the default class. The class orders the backend queue (`set-priority-class`,
HAProxy serves the lowest first, so it is minus the priority), and a request whose class is in
the refused-classes ACL file is answered at once with the pool's refusal status and a Retry-After
header, before it reaches a backend or its queue.

The ACL file (``<run>/refused-classes.acl``, one class name a line) is written by the agent from
the ConfigMap's ``refused-classes.json`` and changed in a running HAProxy through the runtime API
(`add acl` / `del acl`): refusing or restoring a class is no reload. That file is not part of the
structure hash, so a change of what is refused never reloads; it is part of the config hash, so
the balancers report when they apply it.

HAProxy 2.6 manual: 4.2 `http-request set-var`, `set-priority-class`, `return`; 7.1 `-f` (patterns
from a file); management guide 9.3 `add acl`, `del acl`, `show acl`.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Sequence

from hakeeper.api.common import parse_duration
from hakeeper.api.configmaps.haproxy import REFUSED_ACL_FILE, ConfigError
from hakeeper.api.request_classes import (
    CLASS_NAME_PATTERN,
    HEADER_NAME_PATTERN,
    HEADER_VALUE_PATTERN,
    METHOD_PATTERN,
    PATH_PREFIX_PATTERN,
    PRIORITY_LIMIT,
    RequestClass,
    RequestRefusal,
)

CLASS_VARIABLE = "txn.hk_class"
_UNSET = f"!{{ var({CLASS_VARIABLE}) -m found }}"
_PATTERNS = {
    "class name": re.compile(CLASS_NAME_PATTERN),
    "header name": re.compile(HEADER_NAME_PATTERN),
    "header value": re.compile(HEADER_VALUE_PATTERN),
    "path prefix": re.compile(PATH_PREFIX_PATTERN),
    "method": re.compile(METHOD_PATTERN),
}


def acl_path(run_dir: str) -> str:
    """Where the refused classes' ACL file lives in the balancer pod (next to the sockets)."""
    return f"{run_dir.rstrip('/')}/{REFUSED_ACL_FILE}"


def check(classes: list[RequestClass], default: str | None, mode: str) -> None:
    """The CEL rules of api/request_classes.py again, and every string's characters, before a line
    is written (ConfigError names the field): the last line of defence for haproxy.cfg."""
    if not classes:
        if default is not None:
            raise ConfigError("defaultRequestClass is valid with requestClasses only")
        return
    if mode != "http":
        raise ConfigError("requestClasses need mode http (the classes read HTTP requests)")
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ConfigError("each request class needs a name of its own")
    if default not in names:
        raise ConfigError("defaultRequestClass must name one of requestClasses")
    for c in classes:
        _word(c.name, "class name")
        if not -PRIORITY_LIMIT <= c.priority <= PRIORITY_LIMIT:
            raise ConfigError(f"request class {c.name}: priority must be from -{PRIORITY_LIMIT} to {PRIORITY_LIMIT}")
        if c.match is None:
            if c.name != default:
                raise ConfigError(f"request class {c.name}: a class other than defaultRequestClass needs a match")
            continue
        m = c.match
        if not (m.headers or m.path_prefixes or m.methods or m.source_cidrs):
            raise ConfigError(f"request class {c.name}: a match needs at least one criterion")
        for header in m.headers:
            _word(header.name, "header name")
            for value in header.values:
                _word(value, "header value")
        for prefix in m.path_prefixes:
            _word(prefix, "path prefix")
        for method in m.methods:
            _word(method, "method")
        for cidr in m.source_cidrs:
            try:
                _network(cidr)
            except ConfigError as exc:
                raise ConfigError(f"requestClasses {c.name}: sourceCIDRs {exc}") from None


def _word(value: str, what: str) -> None:
    if not _PATTERNS[what].fullmatch(value):
        raise ConfigError(f"{what} {value!r} has characters HAProxy's configuration cannot carry")


def _network(cidr: str) -> str:
    try:
        return str(ipaddress.ip_network(cidr, strict=False))
    except ValueError:
        raise ConfigError(f"{cidr!r} is not an IP address or network") from None


def _conditions(c: RequestClass) -> list[str]:
    """The anonymous ACLs that all must hold for a request to be in class c (ANDed by HAProxy)."""
    assert c.match is not None
    m = c.match
    acls = [f"{{ req.hdr({h.name}) -m str {' '.join(h.values)} }}" for h in m.headers]
    if m.path_prefixes:
        acls.append(f"{{ path_beg {' '.join(m.path_prefixes)} }}")
    if m.methods:
        acls.append(f"{{ method {' '.join(m.methods)} }}")
    if m.source_cidrs:
        acls.append(f"{{ src {' '.join(_network(c) for c in m.source_cidrs)} }}")
    return acls


def retry_after_seconds(refusal: RequestRefusal) -> int:
    """The Retry-After header's value: whole seconds, rounded up."""
    return math.ceil(parse_duration(refusal.retry_after) - 1e-9)


def frontend_lines(classes: list[RequestClass], default: str | None, refusal: RequestRefusal | None,
                   run_dir: str) -> list[str]:
    """The frontend's lines (unindented) for the classes; none without classes."""
    if not classes or default is None:
        return []
    refusal = refusal or RequestRefusal()
    lines = [f"# request classes: first match wins, then {default}"]
    for c in classes:
        if c.match is not None:
            lines.append(f"http-request set-var({CLASS_VARIABLE}) str({c.name}) if {_UNSET} "
                         + " ".join(_conditions(c)))
    lines.append(f"http-request set-var({CLASS_VARIABLE}) str({default}) if {_UNSET}")
    for c in classes:
        if c.priority != 0:  # 0 is HAProxy's own default class
            lines.append(f"http-request set-priority-class int({-c.priority}) "
                         f"if {{ var({CLASS_VARIABLE}) -m str {c.name} }}")
    # the file holds the refused classes; the agent keeps it and the running ACL in step
    lines.append(f"http-request return status {refusal.status} hdr Retry-After {retry_after_seconds(refusal)} "
                 f"if {{ var({CLASS_VARIABLE}) -m str -f {acl_path(run_dir)} }}")
    return lines


def refused_for_pool(classes: Sequence[RequestClass], refused: Iterable[str]) -> list[str]:
    """The refused classes the pool defines, sorted (a name it does not define refuses nothing)."""
    defined = {c.name for c in classes}
    return sorted(set(refused) & defined)
