"""The Kubernetes objects that run an LVS pool: keepalived on the balancer nodes (pure builders).

keepalived programs IPVS and moves the virtual IP by VRRP, so it runs in the node's network
namespace (hostNetwork) with NET_ADMIN and NET_RAW and nothing else. A DaemonSet puts one
balancer on every node that matches lvs.nodeSelector; the hakeeper agent beside it writes
keepalived.conf (with this node's VRRP priority, and the VRRP password from the mounted
Secret, which never enters the ConfigMap) after `keepalived -t` accepts it, then reloads
keepalived. Both containers run the keepalived image, which is the operator's image plus
Debian's keepalived (images/keepalived), so the agent has keepalived for the test.
"""

from __future__ import annotations

from typing import Any

from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.api.meta import (
    BALANCER_COMPONENT,
    COMPONENT_LABEL,
    CONFIG_HASH_ANNOTATION,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAME_LABEL,
    POOL_LABEL,
)
from hakeeper.loadbalancerpool.objects import _meta, agent_api_access, names

DEFAULT_KEEPALIVED_IMAGE = "ghcr.io/hakeeper/keepalived:2.2.7"
CONFIG_DIR = "/etc/keepalived"
RUN_DIR = "/var/run/keepalived"
PASSWORD_DIR = "/etc/hakeeper/vrrp"


def configmap_name(pool: str) -> str:
    return f"{pool}-keepalived"


def labels(pool: str) -> dict[str, str]:
    return {NAME_LABEL: "keepalived", INSTANCE_LABEL: pool,
            COMPONENT_LABEL: BALANCER_COMPONENT, MANAGED_BY_LABEL: MANAGED_BY, POOL_LABEL: pool}


def config_map(pool: str, namespace: str, data: dict[str, str], config_hash: str) -> dict[str, Any]:
    meta = _meta(configmap_name(pool), namespace, pool, annotations={CONFIG_HASH_ANNOTATION: config_hash})
    meta["labels"] = labels(pool)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(sorted(data.items()))}


def daemonset(pool: str, namespace: str, spec: LoadBalancerPoolSpec) -> dict[str, Any]:
    assert spec.lvs is not None
    n = names(pool)
    image = spec.balancer.image or DEFAULT_KEEPALIVED_IMAGE
    shared: list[dict[str, Any]] = [{"name": "config", "mountPath": CONFIG_DIR}, {"name": "run", "mountPath": RUN_DIR}]
    keepalived = {
        "name": "keepalived",
        "image": image,
        "command": ["keepalived"],
        "args": ["--dont-fork", "--log-console", "--use-file", f"{CONFIG_DIR}/keepalived.conf",
                 "--pid", f"{RUN_DIR}/keepalived.pid", "--vrrp_pid", f"{RUN_DIR}/vrrp.pid",
                 "--checkers_pid", f"{RUN_DIR}/checkers.pid"],
        # root: the capabilities reach only a root process's effective set (Kubernetes gives a
        # non-root one no ambient capabilities). The root filesystem is read-only: keepalived
        # writes its pid files to RUN_DIR and its signal dumps (keepalived.data, .stats) to /tmp
        "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
        "volumeMounts": [*shared, {"name": "tmp", "mountPath": "/tmp"}],
    }
    resources = spec.balancer.resources.wire()
    if resources:
        keepalived["resources"] = resources
    secret = spec.lvs.vrrp.auth_secret_ref
    agent_args = ["agent", "keepalived", "--configmap", configmap_name(pool), "--namespace", namespace,
                  "--pod", "$(POD_NAME)", "--node", "$(NODE_NAME)", "--config", f"{CONFIG_DIR}/keepalived.conf",
                  "--pid-file", f"{RUN_DIR}/keepalived.pid"]
    api_volume, api_mount = agent_api_access()
    agent_mounts = [*shared, api_mount]
    volumes: list[dict[str, Any]] = [{"name": "config", "emptyDir": {}},
                                     {"name": "run", "emptyDir": {"medium": "Memory"}},
                                     {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}, api_volume]
    if secret is not None:
        agent_args += ["--auth-password-file", f"{PASSWORD_DIR}/{secret.key}"]
        agent_mounts.append({"name": "vrrp-password", "mountPath": PASSWORD_DIR, "readOnly": True})
        volumes.append({"name": "vrrp-password", "secret": {"secretName": secret.name,
                                                            "items": [{"key": secret.key, "path": secret.key}]}})
    agent = {
        "name": "agent", "image": spec.balancer.agent_image or image, "restartPolicy": "Always",
        "command": ["hakeeper"], "args": agent_args,
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        # keepalived starts once the agent has written its configuration
        "startupProbe": {"exec": {"command": ["test", "-s", f"{CONFIG_DIR}/keepalived.conf"]},
                         "periodSeconds": 1, "failureThreshold": 120},
        "securityContext": {"capabilities": {"drop": ["ALL"]}, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True},
        "resources": {"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": agent_mounts,
    }
    selector = {POOL_LABEL: pool, COMPONENT_LABEL: BALANCER_COMPONENT}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {**_meta(f"{pool}-keepalived", namespace, pool), "labels": labels(pool)},
        "spec": {
            "selector": {"matchLabels": selector},
            # one node at a time, so the VIP always has a holder during an upgrade
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels(pool)},
                "spec": {
                    "hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet",
                    # the agent reloads keepalived with SIGHUP: it must see keepalived's pid
                    # (one process namespace) and run as the same user (it holds no CAP_KILL)
                    "shareProcessNamespace": True,
                    # The pod passes Pod Security Standards `privileged` only (host network, root,
                    # NET_ADMIN): its namespace must allow that. The runtime's default seccomp
                    # profile still filters keepalived's system calls (netlink, raw sockets pass).
                    "securityContext": {"runAsUser": 0, "runAsGroup": 0,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "serviceAccountName": n["serviceaccount"],
                    # only the agent talks to the API server: keepalived gets no token
                    "automountServiceAccountToken": False,
                    "nodeSelector": dict(spec.lvs.node_selector or spec.balancer.node_selector),
                    "initContainers": [agent], "containers": [keepalived],
                    "volumes": volumes,
                    "terminationGracePeriodSeconds": 10,
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                },
            },
        },
    }
