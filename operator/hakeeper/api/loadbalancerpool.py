"""LoadBalancerPool: balancer pods (HAProxy, or keepalived/LVS) in front of backend pods, or DNS records
of healthy targets published through ExternalDNS (engine dns)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from hakeeper.api.common import (
    DURATION_PATTERN,
    BaseStatus,
    LabelSelector,
    Model,
    ObjectName,
    PositiveDuration,
    ResourceRequirements,
    SecretKeyRef,
    StatusModel,
    allowed_characters,
    cel,
    cel_string,
    duration_rules,
)
from hakeeper.api.request_classes import (
    REQUEST_CLASS_RULES,
    ClassName,
    RefusedRequestClass,
    RequestClass,
    RequestRefusal,
)
from hakeeper.api.weighting import LATENCY_RULES, EffectiveWeight, Weighting

HAPROXY_ALGORITHMS = ("roundrobin", "static-rr", "leastconn", "random", "source", "uri", "hdr")
LVS_ALGORITHMS = ("rr", "wrr", "lc", "wlc", "sh", "dh", "mh", "sed", "nq")
HASH_ALGORITHMS = ("source", "uri", "hdr")
DEFAULT_ALGORITHM = {"haproxy": "roundrobin", "lvs": "wlc"}
RETRY_ON = (
    "none", "conn-failure", "empty-response", "junk-response", "response-timeout",
    "0rtt-rejected", "404", "408", "425", "500", "501", "502", "503", "504",
    "all-retryable-errors",
)

# Strings written into haproxy.cfg or keepalived.conf: each field's pattern lists the characters
# it may hold, and its CEL rule says them in words. The renderers check them again
# (loadbalancerpool/haproxy/config.py, lvs/config.py) before a value reaches a file.
IPV4_PATTERN = r"^((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])$"
IPv4 = Annotated[str, Field(pattern=IPV4_PATTERN, max_length=15, json_schema_extra=allowed_characters(
    IPV4_PATTERN, "must be an IPv4 address: four numbers from 0 to 255 joined by dots, e.g. 10.0.0.100"))]
TOKEN_PATTERN = r"^[A-Za-z0-9_.-]+$"
"""A cookie or MySQL user name as haproxy.cfg carries it unquoted: no space, quote, '#' or '$'."""
HEADER_PATTERN = r"^[A-Za-z0-9-]+$"
HEALTH_PATH_PATTERN = r"^/[A-Za-z0-9/?&=:,;+@*%._~-]*$"
"""What both balancers can carry: no space, quote, '#' or '!' (comments in keepalived.conf), '$'
(variables in both), braces or backslash. Anything else can be percent-encoded."""
INTERFACE_PATTERN = r"^[a-zA-Z0-9_.:-]+$"
Port = Annotated[int, Field(ge=1, le=65535)]

# HAProxy keeps its timers as signed 32-bit counts of milliseconds (seconds for a cookie's
# maxidle): past them `haproxy -c` refuses the file, "timer overflow ... (maximum value is
# 2147483647 ms or ~24.8 days)". These fields are refused at apply rather than at reconcile.
HAPROXY_LONGEST_TIMER = "2147483647ms"
HAPROXY_LONGEST_MAX_IDLE = "2147483647s"
HAProxyTimer = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32, json_schema_extra=duration_rules(
    HAPROXY_LONGEST_TIMER, " (about 24.8 days): HAProxy's longest timer"))]
"""A period or timeout HAProxy alone reads (timeouts.*, server.slowstart): longer than 0s, at most 2147483647ms."""
HAProxyMaxIdle = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32, json_schema_extra=duration_rules(
    HAPROXY_LONGEST_MAX_IDLE, " (about 68 years): HAProxy's longest maxidle"))]
"""A cookie's maxidle, which HAProxy reads in seconds: longer than 0s, at most 2147483647s."""
# keepalived keeps a check's connect_timeout as 32-bit microseconds: past it `keepalived -t`
# refuses the file, "number '4500' outside range [0.000001, 4294.967295]". Its delay_loop (the
# interval) is 64-bit microseconds, longer than any duration CEL reads (about 292 years).
KEEPALIVED_LONGEST_TIMEOUT = "4294.967295s"
FRONTEND_PORT = 8080
"""The port the HAProxy balancer serves clients on inside its pod (loadbalancerpool/objects.py's
FRONTEND_PORT, which a unit test keeps equal); spec.service.port maps to it."""
PEERS_PORT = 10000
"""The port HAProxy's peers listen on inside a balancer pod: the replicas share their SourceIP
stick table over it (loadbalancerpool/haproxy/config.py)."""
PortName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=15)]
TLS_FRONTEND_PORT = 8443
"""The port the HAProxy balancer serves HTTPS on inside its pod (spec.tls); tls.port maps to it."""
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A Secret's name: a DNS-1123 subdomain (Kubernetes API conventions), at most 253 characters."""


class WeightRule(Model):
    """Backends whose pods match the selector get this weight (first matching rule wins)."""

    selector: LabelSelector
    weight: int = Field(ge=0, le=256)


class Backends(Model):
    """Which pods the pool balances to: pods by label selector, or a Service's endpoints."""

    selector: LabelSelector | None = None
    """Pods in the pool's namespace with these labels."""
    service: ObjectName | None = None
    """A Service in the pool's namespace; its EndpointSlices give the backends."""
    port: Port | PortName = Field(json_schema_extra={"x-kubernetes-int-or-string": True})
    """The backends' port: a number, or the name of a container port."""
    weight_rules: list[WeightRule] = Field(default_factory=list, max_length=32)
    """Weights by pod labels; the pod annotation hakeeper.io/weight overrides them."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.selector) != has(self.service)",
                    "backends need exactly one of selector (pods by label) or service (a Service's endpoints)",
                )
            ]
        }
    )


class HealthCheck(Model):
    """How the balancer decides a backend is up."""

    type: Literal["tcp", "http", "mysql", "none"] = "tcp"
    path: str | None = Field(default=None, pattern=HEALTH_PATH_PATTERN, max_length=1024, json_schema_extra=(
        allowed_characters(HEALTH_PATH_PATTERN, "must start with / and may hold letters, digits "
                           "and / ? & = : , ; + @ * % . _ ~ - only (percent-encode anything else, e.g. %20 for a "
                           "space): it is written into haproxy.cfg or keepalived.conf")))
    """HTTP path for type http (default /), with its query if any: starts with /; letters, digits and
    / ? & = : , ; + @ * % . _ ~ - (percent-encode anything else)."""
    expect_status: int | None = Field(default=None, ge=100, le=599)
    """Expected HTTP status for type http (default 200)."""
    mysql_user: str | None = Field(default=None, pattern=TOKEN_PATTERN, max_length=32, json_schema_extra=(
        allowed_characters(TOKEN_PATTERN, "may hold letters, digits, '_', '.' and '-' "
                           "only: it is written into haproxy.cfg")))
    """User for HAProxy's mysql-check (type mysql); it needs no password and no grants. Letters,
    digits, _ . - (at most 32)."""
    interval: PositiveDuration = "2s"
    """Time between two checks of a backend (longer than 0s)."""
    timeout: PositiveDuration = "1s"
    """How long one check may take (longer than 0s, at most interval)."""
    rise: int = Field(default=2, ge=1, le=100)
    """Consecutive successes before a backend is up."""
    fall: int = Field(default=3, ge=1, le=100)
    """Consecutive failures before a backend is down."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.type == 'http' || (!has(self.path) && !has(self.expectStatus))",
                    "path and expectStatus apply to http health checks only"),
                cel("self.type == 'mysql' || !has(self.mysqlUser)",
                    "mysqlUser applies to mysql health checks only"),
                cel("duration(self.timeout) <= duration(self.interval)",
                    "health check timeout must not be longer than its interval"),
            ]
        }
    )


class CookieAffinity(Model):
    name: str = Field(default="SERVERID", pattern=TOKEN_PATTERN, max_length=64, json_schema_extra=(
        allowed_characters(TOKEN_PATTERN, "may hold letters, digits, '_', '.' and '-' "
                           "only: it is written into haproxy.cfg")))
    """The cookie's name: letters, digits, _ . -"""
    mode: Literal["insert", "prefix"] = "insert"
    """insert: the balancer adds its own cookie; prefix: it prefixes the application's cookie."""
    max_idle: HAProxyMaxIdle | None = None
    """Forget the affinity after this long without a request (longer than 0s, at most
    2147483647s; leave it out to keep the affinity as long as the cookie lives)."""


class SessionAffinity(Model):
    """Keep a client on one backend: by source IP, or by a cookie naming the server."""

    type: Literal["None", "SourceIP", "Cookie"] = "None"
    cookie: CookieAffinity | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.type == 'Cookie' || !has(self.cookie)", "cookie settings apply to type Cookie only"),
                cel("!has(self.cookie) || self.cookie.mode == 'insert' || !has(self.cookie.maxIdle)",
                    "cookie.maxIdle applies to mode insert: HAProxy cannot expire a prefixed application cookie"),
            ]
        }
    )


class Timeouts(Model):
    """HAProxy's timeouts, each longer than 0s (HAProxy reads a zero timeout as none at all) and at
    most 2147483647ms (about 24.8 days, HAProxy's longest timer)."""

    connect: HAProxyTimer = "5s"
    """For a connection to a backend to be established."""
    client: HAProxyTimer = "50s"
    """Of inactivity on the client side."""
    server: HAProxyTimer = "50s"
    """Of inactivity on the backend side."""
    queue: HAProxyTimer = "30s"
    """In the queue for a free connection slot of a backend."""
    tunnel: HAProxyTimer | None = None
    """Of inactivity in both directions of a tunnel, in place of client and server: a mode tcp
    connection once established, a WebSocket after its upgrade (HAProxy "timeout tunnel"). Unset:
    client and server apply, and a long-lived connection idle for longer is closed."""
    hard_stop_after: HAProxyTimer = "60s"
    """How long the old worker keeps the connections it holds after a reload (a structural
    change) before they are closed (HAProxy "hard-stop-after"). Long-lived connections
    (WebSockets, database sessions in mode tcp) want it longer."""


class ServerOptions(Model):
    """Options applied to every backend server."""

    maxconn: int | None = Field(default=None, ge=1, le=1_000_000)
    slowstart: HAProxyTimer | None = None
    """Ramp a recovered server's weight up over this time (longer than 0s, at most 2147483647ms;
    leave it out for no ramp)."""


class Balancer(Model):
    """The balancer pods themselves."""

    replicas: int = Field(default=2, ge=1, le=16)
    image: str | None = Field(default=None, max_length=512)
    """Balancer image (default: the distribution's haproxy or keepalived image)."""
    agent_image: str | None = Field(default=None, max_length=512)
    """Image of the hakeeper agent sidecar (default: the operator's own image)."""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    node_selector: dict[str, str] = Field(default_factory=dict)
    metrics_port: Port = 8404
    """HAProxy's built-in Prometheus exporter; not 8080, the port the balancer serves clients on,
    nor 10000, where the balancers share their stick table."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                # haproxy -c accepts two frontends on one port and HAProxy starts with both
                # (SO_REUSEPORT): the kernel then hands about half the clients to the metrics 404
                cel(f"self.metricsPort != {FRONTEND_PORT}",
                    f"metricsPort must not be {FRONTEND_PORT}: the balancer serves clients on port {FRONTEND_PORT} "
                    "inside its pod (service.port maps to it)"),
                cel(f"self.metricsPort != {PEERS_PORT}",
                    f"metricsPort must not be {PEERS_PORT}: the balancers share their SourceIP stick table on port "
                    f"{PEERS_PORT} inside their pods"),
            ]
        }
    )


class PoolService(Model):
    """The Service clients use to reach the balancers (HAProxy engine)."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: Port = 80


class PoolTLS(Model):
    """TLS termination at the HAProxy balancer (engine haproxy, mode http)."""

    secret_name: str = Field(pattern=SECRET_NAME_PATTERN, max_length=253, json_schema_extra=allowed_characters(
        SECRET_NAME_PATTERN, "must be the name of a Secret in the pool's namespace: lowercase letters, digits, "
        "'-' and '.' (a DNS subdomain)"))
    """A Secret of type kubernetes.io/tls in the pool's namespace (tls.crt: the certificate, then
    its chain; tls.key: its private key), e.g. one cert-manager keeps. Replacing its contents
    takes effect without a reload or a dropped connection."""
    redirect_http: bool = Field(default=False, alias="redirectHTTP")
    """True: plain HTTP requests get a 308 redirect to HTTPS (same host, path and query, on
    tls.port); false: both serve."""
    port: Port = 443
    """The Service's HTTPS port (service.port stays plain HTTP)."""


class Vrrp(Model):
    """VRRP between balancer nodes; the master holds the virtual IP."""

    virtual_router_id: int = Field(alias="virtualRouterID", ge=1, le=255)
    priority: int = Field(default=100, ge=1, le=254)
    """Base priority; each further node gets one less, in node-name order."""
    advert_interval: int = Field(default=1, ge=1, le=255)
    """Seconds between advertisements; a backup takes over after about 3 missed ones."""
    interface: str = Field(default="eth0", pattern=INTERFACE_PATTERN, max_length=15, json_schema_extra=(
        allowed_characters(INTERFACE_PATTERN, "must be a network interface name: letters, digits, "
                           "'_', '.', ':' and '-' only (it is written into keepalived.conf)")))
    """The node's network interface that carries VRRP and the virtual IP (at most 15 characters)."""
    unicast_peers: list[IPv4] = Field(default_factory=list, max_length=16)
    """Peers' addresses, for networks that drop multicast."""
    auth_secret_ref: SecretKeyRef | None = None
    """VRRP PASS authentication; the password (max 8 characters) comes from this Secret."""
    preempt: bool = False
    """False: a recovered node does not take the virtual IP back."""


class Lvs(Model):
    """Settings of engine lvs: an IPVS virtual server managed by keepalived."""

    virtual_ip: IPv4 = Field(alias="virtualIP")
    port: Port
    protocol: Literal["TCP", "UDP"] = "TCP"
    forwarding: Literal["NAT", "DR", "TUN"] = "NAT"
    persistence_timeout: int | None = Field(default=None, ge=1, le=86400)
    """Seconds a client stays on its real server (source affinity)."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Nodes that run the balancers."""
    vrrp: Vrrp
    connection_sync: bool = False
    """True: the directors share IPVS's connection table (keepalived's lvs_sync_daemon on
    vrrp.interface: the VRRP master sends, the backups receive; UDP multicast 224.0.0.81, port
    8848), so connections established through the master go on after a failover. False: a
    failover resets them (the new master has no entry for them)."""


HOSTNAME_PATTERN = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
"""A fully qualified domain name of at least two labels, lowercase, without the final dot: RFC 1035
section 2.3.1's labels (letters, digits, '-', at most 63 each) as RFC 1123 section 2.1 relaxes them
(a label may start with a digit), a top-level label that starts with a letter (RFC 3696 section 2),
at most 253 characters in all (the field's maxLength)."""
DNS_LONGEST_TTL = 3600
DNS_DEFAULT_TTL = 30
PROVIDER_PROPERTY_PATTERN = r"^[a-z0-9]([-a-z0-9./]*[a-z0-9])?$"


class DnsPoolTarget(Model):
    """Another LoadBalancerPool of the namespace whose address the record carries while it is Ready:
    an lvs pool's virtualIP, a haproxy pool's Service address."""

    name: ObjectName
    weight: int = Field(default=1, ge=0, le=255)
    """0 takes the pool's address out of the answer (drain); otherwise see dns.weightProperty
    (at most 255, Route 53's largest weight)."""


class Dns(Model):
    """Settings of engine dns: one A record set, `hostname` -> the addresses of the healthy targets,
    published through ExternalDNS's DNSEndpoint (externaldns.k8s.io/v1alpha1), so through any DNS
    provider ExternalDNS supports."""

    hostname: str = Field(pattern=HOSTNAME_PATTERN, max_length=253, json_schema_extra=allowed_characters(
        HOSTNAME_PATTERN, "must be a fully qualified domain name without the final dot, e.g. www.example.com: "
        "lowercase letters, digits and '-' in labels of at most 63 characters joined by dots, at least two "
        "labels, the last starting with a letter"))
    """The record's name: a fully qualified domain name in a zone ExternalDNS manages (no final dot)."""
    ttl: int = Field(default=DNS_DEFAULT_TTL, ge=1, le=DNS_LONGEST_TTL)
    """Seconds resolvers may cache the answer: a target that fails leaves the answer within
    ExternalDNS's --interval plus this (for resolvers that honour it)."""
    pools: list[DnsPoolTarget] | None = Field(default=None, min_length=1, max_length=32, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})
    """Publish these pools' addresses instead of the pool's own backends (spec.backends)."""
    weight_property: str | None = Field(default=None, pattern=PROVIDER_PROPERTY_PATTERN, max_length=63,
                                        json_schema_extra=allowed_characters(
        PROVIDER_PROPERTY_PATTERN, "must be the name of an ExternalDNS provider-specific property, e.g. "
        "aws/weight: lowercase letters, digits, '-', '.' and '/'"))
    """For a provider with weighted records: the ExternalDNS provider-specific property that carries
    a target's weight (aws/weight for Route 53). Each target then becomes its own record with a set
    identifier. Unset (the default, and the only choice for a provider without weighting such as
    rfc2136): one record set of every target whose weight is above 0, each once."""


DNS_RULES = (
    cel("(self.engine == 'dns') == has(self.dns)",
        "engine dns needs spec.dns (hostname, and ttl or pools if wanted), and spec.dns is valid with engine dns only"),
    cel("self.engine == 'dns' || has(self.backends)", "engines haproxy and lvs need spec.backends"),
    cel("!has(self.dns) || has(self.backends) != has(self.dns.pools)",
        "engine dns publishes either its own backends (spec.backends) or other pools' addresses "
        "(spec.dns.pools): exactly one of them"),
)
"""CEL rules of engine dns on the pool's spec (LoadBalancerPoolSpec lists them)."""


class LoadBalancerPoolSpec(Model):
    engine: Literal["haproxy", "lvs", "dns"] = "haproxy"
    backends: Backends | None = None
    """The backend pods (engines haproxy and lvs: required; engine dns: either these or dns.pools)."""
    mode: Literal["http", "tcp", "redirect"] | None = None
    """HAProxy only: http (default), tcp, or redirect (answer 302 to the chosen server)."""
    algorithm: str | None = None
    """HAProxy: roundrobin (default), static-rr, leastconn, random, source, uri, hdr.
    LVS: rr, wrr, lc, wlc (default), sh, dh, mh, sed, nq."""
    hash_header: str | None = Field(default=None, pattern=HEADER_PATTERN, max_length=64, json_schema_extra=(
        allowed_characters(HEADER_PATTERN, "must be an HTTP header name: letters, digits and '-' only "
                           "(it is written into haproxy.cfg)")))
    """The header hashed by algorithm hdr: letters, digits and -."""
    hash_type: Literal["map-based", "consistent"] | None = None
    """consistent: adding or removing a server moves few clients (hash algorithms only)."""
    health_check: HealthCheck = Field(default_factory=HealthCheck)
    session_affinity: SessionAffinity = Field(default_factory=SessionAffinity)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retries: int = Field(default=3, ge=0, le=100)
    redispatch: bool = True
    """Retry a failed connection on another server."""
    retry_on: list[Literal[RETRY_ON]] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=16, json_schema_extra={
            # a set: the API server refuses a condition given twice ("Duplicate value")
            "x-kubernetes-list-type": "set",
            "x-kubernetes-validations": [
                # HAProxy: "'retry-on' 'none' keyword only usable alone"
                cel("!('none' in self) || size(self) == 1",
                    "none (retry on no condition) cannot be combined with other conditions"),
            ]})
    """HAProxy's retry-on conditions, each at most once; none alone."""
    server: ServerOptions = Field(default_factory=ServerOptions)
    weighting: Weighting = Field(default_factory=Weighting)
    """Static weights (default), or weights moved by the servers' response times (engine haproxy)."""
    balancer: Balancer = Field(default_factory=Balancer)
    service: PoolService = Field(default_factory=PoolService)
    lvs: Lvs | None = None
    dns: Dns | None = None
    """Engine dns: the record, its TTL and its targets."""
    tls: PoolTLS | None = None
    """HTTPS on the pool's Service from a kubernetes.io/tls Secret (engine haproxy, mode http)."""
    request_classes: list[RequestClass] = Field(default_factory=list, max_length=32)
    """HAProxy mode http: named classes of requests, first match wins (api/request_classes.py)."""
    default_request_class: ClassName | None = None
    """The class of a request no class matches; required with requestClasses."""
    request_refusal: RequestRefusal | None = None
    """How a class a DegradationPolicy refuses is answered (default 503, Retry-After 10s)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("(self.engine == 'lvs') == has(self.lvs)",
                    "engine lvs needs spec.lvs (virtualIP, port, vrrp), and spec.lvs is valid with engine lvs only"),
                *DNS_RULES,
                cel("!has(self.algorithm) || self.engine != 'dns'",
                    "algorithm does not apply to engine dns: resolvers and clients choose among the records"),
                cel("!has(self.algorithm) || self.engine == 'dns' || (self.engine == 'haproxy' ? self.algorithm in "
                    + repr(list(HAPROXY_ALGORITHMS)) + " : self.algorithm in " + repr(list(LVS_ALGORITHMS)) + ")",
                    "algorithm must be one of " + ", ".join(HAPROXY_ALGORITHMS) + " for engine haproxy, or one of "
                    + ", ".join(LVS_ALGORITHMS) + " for engine lvs"),
                cel("has(self.hashHeader) == (has(self.algorithm) && self.algorithm == 'hdr')",
                    "hashHeader is required with algorithm hdr and valid with it only"),
                cel("!has(self.hashType) || (has(self.algorithm) && self.algorithm in ['source', 'uri', 'hdr'])",
                    "hashType applies to the hash algorithms source, uri and hdr only"),
                cel("self.engine == 'haproxy' || !has(self.mode)",
                    "mode applies to engine haproxy; engine lvs balances at layer 4 (set lvs.protocol), "
                    "engine dns publishes records"),
                cel("!(has(self.mode) && self.mode == 'tcp') || !has(self.algorithm) "
                    "|| !(self.algorithm in ['uri', 'hdr'])",
                    "algorithms uri and hdr read HTTP requests: use mode http or redirect"),
                cel("self.sessionAffinity.type != 'Cookie' "
                    "|| (self.engine == 'haproxy' && (!has(self.mode) || self.mode == 'http'))",
                    "Cookie session affinity needs engine haproxy with mode http"),
                cel("self.engine == 'haproxy' || self.healthCheck.type != 'mysql'",
                    "mysql health checks need engine haproxy; use tcp with engine lvs"),
                cel("self.engine != 'dns' || self.healthCheck.type == 'tcp'",
                    "engine dns runs no health check of its own: a backend counts while its pod is ready "
                    "(its readiness probe), a pool while it is Ready; leave healthCheck out"),
                cel("self.engine != 'dns' || self.sessionAffinity.type == 'None'",
                    "session affinity does not apply to engine dns: resolvers and clients choose among the records"),
                cel("self.engine == 'haproxy' || size(self.retryOn) == 0",
                    "retryOn applies to engine haproxy only"),
                cel("!has(self.lvs) || self.lvs.forwarding == 'NAT' || self.backends.port == self.lvs.port",
                    "DR and TUN forwarding cannot map ports: backends.port must equal lvs.port"),
                cel("!has(self.lvs) || self.lvs.protocol == 'TCP' || !(self.healthCheck.type in ['http', 'mysql'])",
                    "a UDP virtual server cannot use an http or mysql health check"),
                # the timeout is at most the interval (HealthCheck's rule), so it is bounded too
                cel(f"self.engine != 'haproxy' || duration(self.healthCheck.interval) <= "
                    f"duration('{HAPROXY_LONGEST_TIMER}')",
                    f"with engine haproxy, healthCheck.interval (and so its timeout) must be at most "
                    f"{HAPROXY_LONGEST_TIMER} (about 24.8 days): HAProxy's longest timer"),
                cel("!has(self.tls) || (self.engine == 'haproxy' && (!has(self.mode) || self.mode == 'http'))",
                    "tls (TLS termination) needs engine haproxy with mode http: mode tcp passes TLS through to "
                    "the backends untouched, mode redirect answers before any request is read"),
                cel("!has(self.tls) || self.tls.port != self.service.port",
                    "tls.port must differ from service.port: the Service serves plain HTTP on service.port and "
                    "HTTPS on tls.port"),
                cel(f"!has(self.tls) || self.balancer.metricsPort != {TLS_FRONTEND_PORT}",
                    f"with tls, balancer.metricsPort must not be {TLS_FRONTEND_PORT}: the balancer serves HTTPS on "
                    f"port {TLS_FRONTEND_PORT} inside its pod (tls.port maps to it)"),
                cel(f"self.engine != 'lvs' || self.healthCheck.type == 'none' || duration(self.healthCheck.timeout) "
                    f"<= duration('{KEEPALIVED_LONGEST_TIMEOUT}')",
                    f"with engine lvs, healthCheck.timeout must be at most {KEEPALIVED_LONGEST_TIMEOUT} (about 71.5 "
                    "minutes): keepalived's connect_timeout"),
                *LATENCY_RULES,
                *REQUEST_CLASS_RULES,
            ]
        }
    )


DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""A Service's name (Kubernetes API conventions, "DNS-1035 label"): it starts with a letter."""
BACKENDS_SERVICE_SUFFIX = "-backends"

POOL_NAME_RULES = (
    # The name is the value of the hakeeper.io/pool label on every object of the pool.
    cel("size(self.metadata.name) <= 63",
        "a LoadBalancerPool's name is at most 63 characters: it is the value of the hakeeper.io/pool label "
        "on the pool's objects"),
    # An haproxy pool's Service takes its name (`<pool>.<namespace>.svc` reaches the balancers), and
    # a Service's name is a DNS-1035 label: a dot (`web.v1`), which the API server accepts in a
    # LoadBalancerPool's name, or a leading digit failed every reconcile.
    cel("self.spec.engine != 'haproxy' || self.metadata.name.matches(" + cel_string(DNS_1035_LABEL) + ")",
        "a LoadBalancerPool of engine haproxy needs a name that is a DNS label starting with a letter: lowercase "
        "letters, digits and '-', no '.' (it names the pool's Service)"),
    # Backends chosen by selector get a headless Service `<pool>-backends`, either engine.
    cel("!has(self.spec.backends) || !has(self.spec.backends.selector) || (size(self.metadata.name) <= "
        f"{63 - len(BACKENDS_SERVICE_SUFFIX)} && self.metadata.name.matches(" + cel_string(DNS_1035_LABEL) + "))",
        f"a LoadBalancerPool whose backends are chosen by selector needs a name of at most "
        f"{63 - len(BACKENDS_SERVICE_SUFFIX)} characters that is a DNS label starting with a letter: it names the "
        f"Service <name>{BACKENDS_SERVICE_SUFFIX}"),
    cel("!has(self.spec.dns) || !has(self.spec.dns.pools) || self.spec.dns.pools.all(p, p.name != self.metadata.name)",
        "spec.dns.pools must not name the pool itself: an engine dns pool has no address of its own"),
)
"""CEL rules on the whole object (metadata.name can be read at the root only)."""


class BackendCount(StatusModel):
    """Backend endpoints the pool's backends select."""

    total: int = 0
    ready: int = 0


class BalancerPodStatus(StatusModel):
    """One balancer pod, as its agent reports it."""

    pod: str
    applied_hash: str | None = None
    """The config hash the pod's agent has applied (equal to configHash once it runs the current config)."""
    reloads: int | None = None
    """HAProxy: the hitless reloads the pod's agent has done since it started (structural changes)."""
    vrrp_state: str | None = None
    """Engine lvs: the VRRP state keepalived reports (MASTER holds the virtual IP, BACKUP, FAULT)."""


class DnsTargetStatus(StatusModel):
    """Engine dns: one target (a backend pod, or a pool of dns.pools) and what the pool made of it."""

    name: str
    """The backend's pod (or address-port), or the pool's name."""
    address: str | None = None
    """Its IPv4 address, None when it has none (a pool that is missing or has no address)."""
    weight: int = 1
    healthy: bool = False
    """A backend whose pod is ready, a pool that is Ready."""
    published: bool = False
    """Whether the DNSEndpoint carries its address."""


class LoadBalancerPoolStatus(BaseStatus):
    """Conditions: Ready (balancers run the current config and a backend is up), BackendsAvailable,
    ConfigApplied; engine dns: Ready (the records of the healthy targets are published),
    BackendsAvailable (a target is healthy), Published (ExternalDNS read the DNSEndpoint)."""

    algorithm: str | None = None
    """The algorithm in effect (the spec's, or the engine's default)."""
    config_hash: str | None = None
    """Hash of the current balancer config."""
    backends: BackendCount = Field(default_factory=BackendCount)
    balancers: list[BalancerPodStatus] = Field(default_factory=list)
    """The balancer pods, by name."""
    virtual_ip_holder: str | None = Field(default=None, alias="virtualIPHolder")
    """Engine lvs: the node (or nodes, comma-separated, during a split) whose keepalived holds the virtual IP."""
    effective_weights: list[EffectiveWeight] | None = None
    """Weighting mode Latency: the weights one ready balancer applies, as its agent last reported them."""
    refused_request_classes: list[RefusedRequestClass] = Field(default_factory=list)
    """Request classes the balancers refuse, and which DegradationPolicies refuse them."""
    published_addresses: list[str] | None = None
    """Engine dns: the addresses the pool's DNSEndpoint carries for spec.dns.hostname, sorted."""
    dns_targets: list[DnsTargetStatus] | None = None
    """Engine dns: every target, healthy or not, and whether it is published."""
