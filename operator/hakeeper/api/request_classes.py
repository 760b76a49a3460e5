"""Request priority classes of an HAProxy pool (`spec.requestClasses`) and how a refused class is
answered (`spec.requestRefusal`).

A request belongs to the first class whose `match` it satisfies, else to `defaultRequestClass`.
Within one match every given criterion must hold (headers, path prefix, method, source CIDR); within
one criterion any listed value does. The class orders HAProxy's queue (`set-priority-class`) and
lets a DegradationPolicy tier refuse it at the balancer (api/degradationpolicy.py
`tiers[].requestClasses`). Every string here is written into haproxy.cfg, so each field's pattern
lists the characters it may hold (loadbalancerpool/haproxy/request_classes.py checks them again).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from hakeeper.api.common import DURATION_PATTERN, Model, StatusModel, allowed_characters, cel, duration_rules

CLASS_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
HEADER_NAME_PATTERN = r"^[A-Za-z0-9-]+$"
HEADER_VALUE_PATTERN = r"^[A-Za-z0-9_.:/+=@~*-]+$"
"""A header value as one haproxy.cfg word: no space, quote, '#', '$', backslash; no ',' either,
since `req.hdr()` splits a header's value at commas and would never see it whole."""
PATH_PREFIX_PATTERN = r"^/[A-Za-z0-9/%._~:@+=;*&-]*$"
"""A path prefix as one haproxy.cfg word: starts with /; no space, quote, '#', '$', '?' (the path
HAProxy matches has no query), backslash or braces. Percent-encode anything else."""
METHOD_PATTERN = r"^[A-Z]+$"
CIDR_PATTERN = (r"^(((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])"
                r"(/([0-9]|[12][0-9]|3[0-2]))?"
                r"|[0-9a-fA-F:]*:[0-9a-fA-F:]*(/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))?)$")
"""An IPv4 address or network (10.0.0.0/8), or an IPv6 one in its hex-and-colon form (fd00::/8). The
IPv6 form is checked loosely here and exactly by the renderer (Python's ipaddress)."""
PRIORITY_LIMIT = 2047
"""HAProxy's `set-priority-class` takes -2047..2047 (HAProxy 2.6 manual, 4.2 http-request
set-priority-class); the class is rendered as minus the priority, since HAProxy serves the
lowest class first."""
LONGEST_RETRY_AFTER = "24h"

ClassName = Annotated[str, Field(min_length=1, max_length=63, pattern=CLASS_NAME_PATTERN, json_schema_extra=(
    allowed_characters(CLASS_NAME_PATTERN, "a request class name is a DNS label: lowercase letters, digits and "
                       "'-', starting and ending with a letter or digit (it is written into haproxy.cfg)")))]
HeaderName = Annotated[str, Field(max_length=64, pattern=HEADER_NAME_PATTERN, json_schema_extra=allowed_characters(
    HEADER_NAME_PATTERN, "must be an HTTP header name: letters, digits and '-' only (it is written into haproxy.cfg)"))]
HeaderValue = Annotated[str, Field(min_length=1, max_length=128, pattern=HEADER_VALUE_PATTERN,
                                   json_schema_extra=allowed_characters(
    HEADER_VALUE_PATTERN, "a header value to match may hold letters, digits and _ . : / + = @ ~ * - only (no space, "
    "quote or comma: it is written into haproxy.cfg, and HAProxy splits header values at commas)"))]
PathPrefix = Annotated[str, Field(max_length=256, pattern=PATH_PREFIX_PATTERN, json_schema_extra=allowed_characters(
    PATH_PREFIX_PATTERN, "a path prefix starts with / and may hold letters, digits and / % . _ ~ : @ + = ; * & - only "
    "(no query, no space or quote: percent-encode anything else; it is written into haproxy.cfg)"))]
Method = Annotated[str, Field(min_length=1, max_length=32, pattern=METHOD_PATTERN, json_schema_extra=allowed_characters(
    METHOD_PATTERN, "an HTTP method is upper-case letters only, e.g. GET, POST, PROPFIND"))]
Cidr = Annotated[str, Field(max_length=43, pattern=CIDR_PATTERN, json_schema_extra=allowed_characters(
    CIDR_PATTERN, "must be an IP address or network, e.g. 10.0.0.0/8, 192.168.1.7 or fd00::/8"))]


class HeaderMatch(Model):
    """A request header equal (exactly, case-sensitive) to one of the values."""

    name: HeaderName
    values: list[HeaderValue] = Field(min_length=1, max_length=16)


class RequestClassMatch(Model):
    """What a request must show to belong to the class: every given criterion, any of its values."""

    headers: list[HeaderMatch] = Field(default_factory=list, max_length=8)
    """Each header must carry one of its values."""
    path_prefixes: list[PathPrefix] = Field(default_factory=list, max_length=16)
    """The path (without the query) starts with one of these."""
    methods: list[Method] = Field(default_factory=list, max_length=16)
    source_cidrs: list[Cidr] = Field(default_factory=list, max_length=32, alias="sourceCIDRs")
    """The client address (as the balancer sees it: behind a NAT, the NAT's) lies in one of these."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("size(self.headers) + size(self.pathPrefixes) + size(self.methods) + size(self.sourceCIDRs) > 0",
                    "a match needs at least one of headers, pathPrefixes, methods or sourceCIDRs"),
            ]
        }
    )


class RequestClass(Model):
    """A named class of requests with a priority (higher: more important, served first from a queue)."""

    name: ClassName
    priority: int = Field(default=0, ge=-PRIORITY_LIMIT, le=PRIORITY_LIMIT)
    """From -2047 to 2047; when the servers are at server.maxconn, queued requests of a higher
    priority are served first (HAProxy's set-priority-class)."""
    match: RequestClassMatch | None = None
    """Which requests belong to it. Only the default class may go without one."""


class RequestRefusal(Model):
    """How the balancers answer a request of a class a DegradationPolicy refuses."""

    status: Literal[503, 429] = 503
    retry_after: str = Field(default="10s", pattern=DURATION_PATTERN, max_length=32, json_schema_extra=duration_rules(
        LONGEST_RETRY_AFTER, " (a client should be told to retry within a day)"))
    """The Retry-After header: longer than 0s, at most 24h, sent in whole seconds (rounded up)."""


REQUEST_CLASS_RULES = (
    cel("size(self.requestClasses) == 0 || (self.engine == 'haproxy' && (!has(self.mode) || self.mode == 'http'))",
        "requestClasses need engine haproxy with mode http (the classes read HTTP requests)"),
    cel("self.requestClasses.all(a, self.requestClasses.exists_one(b, b.name == a.name))",
        "each request class needs a name of its own", ".requestClasses"),
    cel("has(self.defaultRequestClass) == (size(self.requestClasses) > 0)",
        "defaultRequestClass is required with requestClasses and valid with them only"),
    cel("!has(self.defaultRequestClass) || self.requestClasses.exists(c, c.name == self.defaultRequestClass)",
        "defaultRequestClass must name one of requestClasses"),
    cel("self.requestClasses.all(c, has(c.match) || (has(self.defaultRequestClass) "
        "&& c.name == self.defaultRequestClass))",
        "a request class other than defaultRequestClass needs a match", ".requestClasses"),
    cel("!has(self.requestRefusal) || size(self.requestClasses) > 0",
        "requestRefusal applies to pools with requestClasses only"),
)
"""CEL rules on the pool's spec (LoadBalancerPoolSpec appends them)."""


class RefusedRequestClass(StatusModel):
    """A class the pool's balancers refuse (pool status), and the DegradationPolicies that refuse it."""

    name: str
    policies: list[str] = Field(default_factory=list)
    """namespace/name of each DegradationPolicy whose shed tier names the class."""
    since: str = ""
    """When the earliest of them began refusing it (RFC 3339)."""
