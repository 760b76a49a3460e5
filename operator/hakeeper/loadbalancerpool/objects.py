"""The Kubernetes objects that run a HAProxy balancer pool (pure builders).

The balancer pod has two containers: haproxy, and the hakeeper agent as a native
sidecar (an init container with restartPolicy Always), so the agent has written the
configuration before haproxy starts and outlives it on shutdown. They share an emptyDir
holding haproxy.cfg and the runtime/master sockets.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hakeeper.api.loadbalancerpool import BACKENDS_SERVICE_SUFFIX, LoadBalancerPoolSpec
from hakeeper.api.meta import (
    BALANCER_COMPONENT,
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAME_LABEL,
    POD_SPEC_ANNOTATION,
    POOL_LABEL,
)
from hakeeper.loadbalancerpool.backends import BACKEND_PORT_NAME
from hakeeper.loadbalancerpool.haproxy import tls

DEFAULT_HAPROXY_IMAGE = "ghcr.io/hakeeper/haproxy:2.6"  # images/haproxy: Debian 12's 2.6, the tested release
RUN_DIR = "/var/run/hakeeper"
FRONTEND_PORT = 8080  # inside the pod; the Service maps spec.service.port to it
HEADLESS_PLACEHOLDER_PORT = 9


def names(pool: str) -> dict[str, str]:
    return {
        "configmap": f"{pool}-haproxy",
        "deployment": f"{pool}-haproxy",
        "service": pool,
        "backends_service": f"{pool}{BACKENDS_SERVICE_SUFFIX}",
        "pdb": f"{pool}-haproxy",
        "serviceaccount": f"{pool}-agent",
        "role": f"{pool}-agent",
    }


def labels(pool: str) -> dict[str, str]:
    return {
        NAME_LABEL: "haproxy",
        INSTANCE_LABEL: pool,
        COMPONENT_LABEL: BALANCER_COMPONENT,
        MANAGED_BY_LABEL: MANAGED_BY,
        POOL_LABEL: pool,
    }


def _meta(name: str, namespace: str, pool: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels(pool), **extra}


def config_map(pool: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(names(pool)["configmap"], namespace, pool),
            "data": dict(sorted(data.items()))}


def backends_service(pool: str, namespace: str, spec: LoadBalancerPoolSpec) -> dict[str, Any] | None:
    """A headless Service over the selected pods, so that their EndpointSlices exist.

    Only for backends chosen by selector; with `backends.service` the user's Service has them
    (and an engine dns pool of dns.pools has no backends).
    """
    backends = spec.backends
    if backends is None or backends.selector is None:
        return None
    # A Service selects by matchLabels only; matchExpressions are applied by the controller
    # to the pods behind the slices. A headless Service's own port number is never used:
    # the slices carry the resolved target port.
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(names(pool)["backends_service"], namespace, pool),
        "spec": {
            "clusterIP": "None",
            "selector": dict(backends.selector.match_labels),
            "publishNotReadyAddresses": False,
            "ports": [{"name": BACKEND_PORT_NAME, "port": backends.port if isinstance(backends.port, int)
                       else HEADLESS_PLACEHOLDER_PORT, "targetPort": backends.port}],
        },
    }


def client_service(pool: str, namespace: str, spec: LoadBalancerPoolSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(names(pool)["service"], namespace, pool),
        "spec": {
            "type": spec.service.type,
            "selector": {POOL_LABEL: pool, COMPONENT_LABEL: BALANCER_COMPONENT},
            "ports": [
                {"name": "frontend", "port": spec.service.port, "targetPort": "frontend", "protocol": "TCP"},
                {"name": "metrics", "port": spec.balancer.metrics_port, "targetPort": "metrics", "protocol": "TCP"},
                *tls.service_ports(spec),
            ],
        },
    }


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where pykube's in-cluster configuration reads token, ca.crt and namespace
(pykube.KubeConfig.from_service_account), the path the automount would use."""
TOKEN_SECONDS = 3607
"""The automount's own lifetime: the kubelet renews the file at 80 % of it, and an API server
with --service-account-extend-token-expiration (the default) accepts such a token for a year,
as pykube reads the file once (Kubernetes docs, "Managing Service Accounts": bound service
account token volume)."""


def agent_api_access() -> tuple[dict[str, Any], dict[str, Any]]:
    """The volume and the agent container's mount that give the agent alone an API token.

    The pod sets automountServiceAccountToken false, so no other container (haproxy,
    keepalived) gets a token; this projected volume is what the automount would have added
    (a bound token, the cluster's CA from the kube-root-ca.crt ConfigMap, the namespace from
    the downward API; Kubernetes docs, "Managing Service Accounts" and "Projected Volumes"),
    mounted only into the agent. The token is bound to the pod: the API server sees the pod's
    name in the request (user extra authentication.kubernetes.io/pod-name), which the chart's
    ValidatingAdmissionPolicy compares with the pod the agent writes.

    Returns ({"name", "projected": {...}}, {"name", "mountPath", "readOnly"}).
    """
    volume = {"name": "agent-api-access", "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_SECONDS}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}
    return volume, {"name": volume["name"], "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": True}


def pod_security(spec: LoadBalancerPoolSpec) -> dict[str, Any]:
    """The balancer pod's securityContext: Pod Security Standards `restricted`.

    Only the metrics port can lie below 1024 (the frontend is FRONTEND_PORT inside the pod);
    then the pod's network namespace lets unprivileged processes bind from that port up
    (net.ipv4.ip_unprivileged_port_start, a namespaced sysctl that `restricted` allows),
    which no capability could do for a non-root process."""
    security: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if spec.balancer.metrics_port < 1024:
        security["sysctls"] = [{"name": "net.ipv4.ip_unprivileged_port_start",
                                "value": str(spec.balancer.metrics_port)}]
    return security


def deployment(pool: str, namespace: str, spec: LoadBalancerPoolSpec, agent_image: str,
               structure_hash: str) -> dict[str, Any]:
    n = names(pool)
    haproxy_image = spec.balancer.image or DEFAULT_HAPROXY_IMAGE
    run_mount = {"name": "run", "mountPath": RUN_DIR}
    api_volume, api_mount = agent_api_access()
    resources = spec.balancer.resources.wire()
    restricted = {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "runAsUser": 65532, "capabilities": {"drop": ["ALL"]},
    }
    agent = {
        "name": "agent",
        "image": agent_image,
        "restartPolicy": "Always",
        "args": ["agent", "haproxy", "--configmap", n["configmap"], "--namespace", namespace,
                 "--pod", "$(POD_NAME)", "--config", f"{RUN_DIR}/haproxy.cfg",
                 "--socket", f"{RUN_DIR}/admin.sock", "--master-socket", f"{RUN_DIR}/master.sock",
                 *tls.agent_args(spec, RUN_DIR)],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [run_mount, api_mount, *tls.agent_mount(spec)],
        # haproxy starts only once the agent has written a configuration
        "startupProbe": {"exec": {"command": ["test", "-s", f"{RUN_DIR}/haproxy.cfg"]},
                         "periodSeconds": 1, "failureThreshold": 120},
        "resources": {"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": restricted,
    }
    haproxy = {
        "name": "haproxy",
        "image": haproxy_image,
        "command": ["haproxy"],
        "args": ["-W", "-db", "-S", f"{RUN_DIR}/master.sock,mode,600", "-f", f"{RUN_DIR}/haproxy.cfg"],
        "ports": [
            {"name": "frontend", "containerPort": FRONTEND_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": spec.balancer.metrics_port, "protocol": "TCP"},
            *tls.container_ports(spec),
        ],
        # a busy balancer answers late rather than not at all: both replicas flapping to
        # NotReady at once would empty the Service, whose clients are then refused
        "readinessProbe": {"tcpSocket": {"port": "frontend"}, "periodSeconds": 2, "timeoutSeconds": 2,
                           "failureThreshold": 3},
        # a stopping balancer keeps serving until the Service's endpoints no longer send it
        # anything (they are removed asynchronously); then haproxy stops softly
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "livenessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 10,
                          "failureThreshold": 3},
        # the configuration binds "${POD_IP}:8080": the pod's own address, nothing else
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "volumeMounts": [run_mount],
        # no capability: haproxy runs as uid 65532, and an added capability never reaches a
        # non-root process's effective set (Kubernetes sets no ambient capabilities); a port
        # below 1024 is opened by the pod's sysctl below instead
        "securityContext": restricted,
    }
    if resources:
        haproxy["resources"] = resources
    pod_labels = labels(pool)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(n["deployment"], namespace, pool),
        "spec": {
            "replicas": spec.balancer.replicas,
            "selector": {"matchLabels": {POOL_LABEL: pool, COMPONENT_LABEL: BALANCER_COMPONENT}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    # a structural change of the configuration is applied by a hitless reload
                    # inside the pods, so only the pod spec itself is hashed here
                    "annotations": {POD_SPEC_ANNOTATION: structure_hash},
                },
                "spec": {
                    "serviceAccountName": n["serviceaccount"],
                    # only the agent talks to the API server: haproxy gets no token
                    "automountServiceAccountToken": False,
                    "initContainers": [agent],
                    "containers": [haproxy],
                    "volumes": [{"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}, api_volume,
                                *filter(None, [tls.secret_volume(spec)])],
                    "nodeSelector": dict(spec.balancer.node_selector),
                    "terminationGracePeriodSeconds": 30,
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": {POOL_LABEL: pool}}},
                    }]}},
                    "securityContext": pod_security(spec),
                },
            },
        },
    }


def pod_disruption_budget(pool: str, namespace: str, spec: LoadBalancerPoolSpec) -> dict[str, Any] | None:
    if spec.balancer.replicas < 2:
        return None  # a PDB over one pod would block every node drain
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _meta(names(pool)["pdb"], namespace, pool),
        "spec": {"maxUnavailable": 1,
                 "selector": {"matchLabels": {POOL_LABEL: pool, COMPONENT_LABEL: BALANCER_COMPONENT}}},
    }


def agent_rbac(pool: str, namespace: str, configmap: str | None = None) -> list[dict[str, Any]]:
    """The agent may read and watch its own ConfigMap and annotate pods; nothing else (what the
    e2e suite's audit log shows the agents use, tests/e2e/test_least_privilege.py).

    RBAC cannot name the pods (the ReplicaSet or DaemonSet makes them later, with random names),
    so `patch` covers every pod of the namespace; the chart's ValidatingAdmissionPolicy
    (charts/hakeeper/templates/agent-policy.yaml) narrows it to the agent's own pod and its
    report annotations, knowing the agent by this ServiceAccount's name and its pod-bound token."""
    n = {**names(pool), **({"configmap": configmap} if configmap else {})}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(n["serviceaccount"], namespace, pool)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(n["role"], namespace, pool),
         "rules": [
             {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [n["configmap"]],
              "verbs": ["get", "watch"]},
             {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(n["role"], namespace, pool),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n["role"]},
         "subjects": [{"kind": "ServiceAccount", "name": n["serviceaccount"], "namespace": namespace}]},
    ]


def spec_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
