"""A balancer agent touches only its own pod, proved against the API server.

The agent container's own token (the projected one, bound to its pod) patches its pod's report
annotation; the same token is refused, by the chart's ValidatingAdmissionPolicy and with the
policy's reason, when it relabels another pod into `role=primary`, changes its own pod's labels
or writes an annotation that is not a report. The HAProxy container has no token at all.

Every request here is one the agent's Role grants (pods patch), so the least-privilege test's
audit table sees only granted, authorized requests: admission refuses them after RBAC allowed.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request

import pytest
import yaml

from ..support.kube_objects import BACKEND_IMAGE, backend_deployment, restricted
from ..support.polling import poll

pytestmark = pytest.mark.e2e

TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _pool() -> dict:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool", "metadata": {"name": "web"},
            "spec": {"backends": {"selector": {"matchLabels": {"app": "web"}}, "port": "http"},
                     "balancer": {"replicas": 1}}}


def _balancer(cluster, namespace: str) -> dict | None:
    pods = cluster.get("pods", "-n", namespace, "-l", "hakeeper.io/pool=web,app.kubernetes.io/component=balancer")
    ready = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
    return ready[0] if ready else None


def _patch(cluster, token: str, namespace: str, pod: str, body: dict) -> tuple[int, str]:
    """A merge patch of the pod as the token's holder, straight to the API server (kubectl patch
    would GET the pod first, which the agent's Role does not grant): (HTTP status, message)."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]
    context = ssl.create_default_context()
    if "certificate-authority-data" in server:
        context.load_verify_locations(cadata=base64.b64decode(server["certificate-authority-data"]).decode())
    else:
        context.load_verify_locations(cafile=server["certificate-authority"])
    request = urllib.request.Request(f"{server['server']}/api/v1/namespaces/{namespace}/pods/{pod}", method="PATCH",
                                     data=json.dumps(body).encode(), headers={
                                         "Authorization": f"Bearer {token}",
                                         "Content-Type": "application/merge-patch+json"})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()).get("message", "")


def test_a_balancer_agent_patches_only_its_own_pods_report_annotations(operator, namespace):
    operator.apply(backend_deployment("web", 1), "-n", namespace)
    operator.apply(_pool(), "-n", namespace)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=120s", "-n", namespace, "lbp/web")
    balancer = poll(lambda: _balancer(operator, namespace), 60, what="a ready balancer pod")
    name = balancer["metadata"]["name"]
    # the agent reported through the policy, with the token of its projected volume
    config_hash = operator.get("lbp", "web", "-n", namespace)["status"]["configHash"]
    poll(lambda: (_balancer(operator, namespace) or {}).get("metadata", {}).get("annotations", {})
         .get("hakeeper.io/applied-hash") == config_hash, 30, what="the agent to report the applied hash")

    # HAProxy has no token: neither the file nor the directory the automount would have made
    listing = operator.exec(namespace, name, "haproxy", "ls", "/var/run/secrets", check=False)
    assert listing.returncode != 0, f"the haproxy container sees {listing.stdout!r}"
    token = operator.exec(namespace, name, "agent", "cat", f"{TOKEN_DIR}/token").stdout.strip()
    assert token

    other = restricted({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": {"role": "replica"}},
                        "spec": {"containers": [{"name": "x", "image": BACKEND_IMAGE}]}})
    operator.apply(other, "-n", namespace)

    # its own report annotation: allowed (the value it has: the agent owns it, the test only writes)
    reloads = balancer["metadata"]["annotations"].get("hakeeper.io/reloads", "0")
    status, message = _patch(operator, token, namespace, name, {"metadata": {"annotations": {
        "hakeeper.io/reloads": reloads, "hakeeper.io/applied-hash": config_hash}}})
    assert status == 200, message

    # another pod, relabelled into the primary: refused, with the reason
    status, message = _patch(operator, token, namespace, "x", {"metadata": {"labels": {"role": "primary"}}})
    assert status == 403, message
    assert f"balancer agent {namespace}/web-agent may only patch its own pod {name}, not UPDATE pods {namespace}/x" \
        in message
    assert operator.get("pod", "x", "-n", namespace)["metadata"]["labels"]["role"] == "replica"

    # its own labels (a balancer that joins another Service's selection): refused
    status, message = _patch(operator, token, namespace, name, {"metadata": {"labels": {"role": "primary"}}})
    assert status == 403, message
    assert f"may not change the labels of its pod {name}" in message

    # an annotation that is not a report (the backends' weight, say): refused, and named
    status, message = _patch(operator, token, namespace, name, {"metadata": {"annotations": {
        "hakeeper.io/weight": "1000"}}})
    assert status == 403, message
    assert message.endswith("not hakeeper.io/weight"), message
    assert "role" not in operator.get("pod", name, "-n", namespace)["metadata"]["labels"]
