"""Manifests the API server must refuse, each with the words a person should read.

Kept as data so the same list serves the e2e test against a real API server and,
later, the offline `hakeeper render` check.
"""

from __future__ import annotations

LBP_BACKENDS = {"selector": {"matchLabels": {"app": "web"}}, "port": 8080}
DP_BASE = {
    "prometheus": {"url": "http://prometheus:9090"},
    "triggers": [{"name": "load", "query": "max(up)", "threshold": 1}],
    "tiers": [{"name": "batch", "priority": 1, "selector": {"matchLabels": {"tier": "batch"}}}],
}

# (id, kind, spec, fragment the error message must contain)
INVALID = [
    ("lbp-unknown-engine", "LoadBalancerPool",
     {"engine": "nginx", "backends": LBP_BACKENDS}, 'supported values: "haproxy", "lvs"'),
    ("lbp-no-backends", "LoadBalancerPool", {"engine": "haproxy"}, "spec.backends: Required value"),
    ("lbp-selector-and-service", "LoadBalancerPool",
     {"backends": {**LBP_BACKENDS, "service": "web"}}, "exactly one of selector"),
    ("lbp-empty-selector", "LoadBalancerPool",
     {"backends": {"selector": {}, "port": 80}}, "an empty selector would select everything"),
    ("lbp-lvs-algorithm-on-haproxy", "LoadBalancerPool",
     {"backends": LBP_BACKENDS, "algorithm": "wlc"}, "algorithm must be one of roundrobin"),
    ("lbp-hdr-without-header", "LoadBalancerPool",
     {"backends": LBP_BACKENDS, "algorithm": "hdr"}, "hashHeader is required with algorithm hdr"),
    ("lbp-cookie-in-tcp-mode", "LoadBalancerPool",
     {"backends": LBP_BACKENDS, "mode": "tcp", "sessionAffinity": {"type": "Cookie"}},
     "Cookie session affinity needs engine haproxy with mode http"),
    ("lbp-timeout-longer-than-interval", "LoadBalancerPool",
     {"backends": LBP_BACKENDS, "healthCheck": {"interval": "1s", "timeout": "5s"}},
     "timeout must not be longer than its interval"),
    ("lbp-bad-duration", "LoadBalancerPool",
     {"backends": LBP_BACKENDS, "healthCheck": {"interval": "two seconds"}}, "spec.healthCheck.interval"),
    ("lbp-port-out-of-range", "LoadBalancerPool",
     {"backends": {**LBP_BACKENDS, "port": 70000}}, "must be a port number (1-65535) or a port name"),
    ("lbp-lvs-without-settings", "LoadBalancerPool",
     {"engine": "lvs", "backends": LBP_BACKENDS}, "engine lvs needs spec.lvs"),
    ("lbp-dr-port-mapping", "LoadBalancerPool",
     {"engine": "lvs", "backends": LBP_BACKENDS,
      "lvs": {"virtualIP": "10.0.0.100", "port": 80, "forwarding": "DR", "vrrp": {"virtualRouterID": 51}}},
     "DR and TUN forwarding cannot map ports"),
    ("lbp-bad-vip", "LoadBalancerPool",
     {"engine": "lvs", "backends": LBP_BACKENDS,
      "lvs": {"virtualIP": "10.0.0.300", "port": 8080, "vrrp": {"virtualRouterID": 51}}}, "spec.lvs.virtualIP"),
    ("rdb-unknown-flavor", "ReplicatedDatabase", {"flavor": "postgres"}, 'supported values: "mysql", "mariadb"'),
    ("rdb-too-many-members", "ReplicatedDatabase", {"replicas": 12}, "spec.replicas"),
    ("rdb-semisync-count", "ReplicatedDatabase",
     {"replicas": 2, "semiSync": {"waitForReplicaCount": 2}}, "waitForReplicaCount must be smaller than replicas"),
    ("rdb-switchover-target", "ReplicatedDatabase",
     {"replicas": 3, "switchover": {"targetMember": 5}}, "must name an existing member"),
    ("rdb-owned-setting", "ReplicatedDatabase",
     {"config": {"server_id": "7"}}, "the operator manages them"),
    ("dp-no-triggers", "DegradationPolicy", {**DP_BASE, "triggers": []}, "spec.triggers"),
    ("dp-recover-wrong-side", "DegradationPolicy",
     {**DP_BASE, "triggers": [{"name": "load", "query": "max(up)", "threshold": 1, "recoverThreshold": 2}]},
     "recoverThreshold must lie on the recovered side"),
    ("dp-duplicate-priority", "DegradationPolicy",
     {**DP_BASE, "tiers": [{"name": "a", "priority": 1, "selector": {"matchLabels": {"t": "a"}}},
                           {"name": "b", "priority": 1, "selector": {"matchLabels": {"t": "b"}}}]},
     "each tier needs a priority of its own"),
    ("dp-tier-without-selection", "DegradationPolicy",
     {**DP_BASE, "tiers": [{"name": "a", "priority": 1}]}, "a tier selects Deployments by selector"),
    ("dp-bad-url", "DegradationPolicy",
     {**DP_BASE, "prometheus": {"url": "prometheus:9090"}}, "spec.prometheus.url"),
    ("dp-duplicate-trigger-names", "DegradationPolicy",
     {**DP_BASE, "triggers": [{"name": "x", "query": "a", "threshold": 1},
                              {"name": "x", "query": "b", "threshold": 2}]}, "Duplicate value"),
]
