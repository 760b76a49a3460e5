"""Only the balancer agent holds an API token: the HAProxy and keepalived containers get none.

The pods set automountServiceAccountToken false and mount a projected volume, the automount's
equivalent (Kubernetes docs, "Managing Service Accounts": bound service account token volume),
into the agent container alone, at the path pykube's in-cluster configuration reads.
"""

from __future__ import annotations

from typing import Any

import pytest

from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool import objects as pool_objects
from hakeeper.loadbalancerpool.lvs import objects as lvs_objects

BACKENDS = {"selector": {"matchLabels": {"app": "web"}}, "port": 8080}


def _haproxy() -> dict[str, Any]:
    spec = LoadBalancerPoolSpec.model_validate({"backends": BACKENDS})
    return pool_objects.deployment("web", "ns", spec, "ghcr.io/hakeeper/hakeeper:test", "hash")


def _lvs() -> dict[str, Any]:
    spec = LoadBalancerPoolSpec.model_validate({
        "engine": "lvs", "backends": BACKENDS,
        "lvs": {"virtualIP": "10.0.0.100", "port": 80, "vrrp": {"virtualRouterID": 51, "interface": "eth0"}}})
    return lvs_objects.daemonset("edge", "ns", spec)


def test_pykube_reads_the_in_cluster_configuration_where_the_agent_mounts_it():
    import inspect

    import pykube

    default = inspect.signature(pykube.KubeConfig.from_service_account).parameters["path"].default
    assert default == pool_objects.SERVICE_ACCOUNT_DIR


@pytest.mark.parametrize("build,engine", [(_haproxy, "haproxy"), (_lvs, "keepalived")], ids=["haproxy", "lvs"])
def test_only_the_agent_container_mounts_a_token(build, engine):
    pod = build()["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    volume = next(v for v in pod["volumes"] if v["name"] == "agent-api-access")
    sources = volume["projected"]["sources"]
    # what the automount gives: a bound token, the CA, the namespace
    assert sources[0] == {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}
    assert sources[1]["configMap"] == {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    (agent,) = pod["initContainers"]
    (balancer,) = pod["containers"]
    assert agent["name"] == "agent" and balancer["name"] == engine
    assert {"name": "agent-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": True} in agent["volumeMounts"]
    assert all(m["name"] != "agent-api-access" for m in balancer["volumeMounts"])
