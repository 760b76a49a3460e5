"""`helm uninstall` strands nothing: its pre-delete hook stops the operator, restores what a
DegradationPolicy shed and removes hakeeper's finalizers, before helm deletes the RBAC.

It uninstalls the operator every other e2e test shares, so it runs after all of them, the
least-privilege test included (the `uninstalls_the_operator` marker; tests/e2e/conftest.py);
the session's own uninstall then finds nothing to do.
"""

from __future__ import annotations

import time

import pytest

from ..support.polling import poll
from .all_kinds import KINDS, SHED, SHED_REPLICAS, finalized, hold_all_three_kinds, replicas
from .conftest import OPERATOR_NAMESPACE
from .test_least_privilege import audit_log, forbidden, requests_by_user

pytestmark = [pytest.mark.e2e, pytest.mark.uninstalls_the_operator]
NAMESPACE_DEADLINE = 60.0
"""Seconds for the namespace to go once nothing of hakeeper's holds it."""


def _operator_pods(cluster) -> list[str]:
    pods = cluster.get("pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=hakeeper")["items"]
    return [p["metadata"]["name"] for p in pods]


def test_helm_uninstall_restores_shed_deployments_and_removes_every_finalizer(operator, namespace, exporter):
    hold_all_three_kinds(operator, namespace, exporter, "e2e_uninstall_load")
    since = time.time()

    # the trigger still fires: only a stopped operator keeps the Deployment restored
    started = time.monotonic()
    operator.helm("uninstall", "hakeeper", "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout", "5m")
    took = time.monotonic() - started

    assert not _operator_pods(operator)
    assert replicas(operator, namespace, SHED)[::2] == (SHED_REPLICAS, None)  # back, and the shed mark gone
    poll(lambda: replicas(operator, namespace, SHED)[1] == SHED_REPLICAS, 60, what=f"{SHED}'s pods ready again")
    events = operator.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={SHED}")["items"]
    assert any(e["reason"] == "Restored" and e["source"].get("component") == "hakeeper-uninstall" for e in events), \
        [(e["reason"], e["message"]) for e in events]
    assert finalized(operator, namespace) == []
    jobs = operator.get("jobs", "-n", OPERATOR_NAMESPACE)["items"]
    assert jobs == [], [j["metadata"]["name"] for j in jobs]
    # the operator's last requests came before its rules went: none refused by the authorizer
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:hakeeper"
    refused = [f"{e['verb']} {e['requestURI']}" for e in requests_by_user(audit_log(operator)).get(user, [])
               if forbidden(e) and _after(e, since)]
    assert refused == []

    started_delete = time.monotonic()
    operator.kubectl("delete", "namespace", namespace, "--wait=false")
    poll(lambda: not operator.get(",".join(KINDS), "-n", namespace)["items"], NAMESPACE_DEADLINE,
         what="the pool, the database and the policy gone without the operator", interval=0.5)
    released = time.monotonic() - started_delete
    poll(lambda: operator.kubectl("get", "namespace", namespace, check=False).returncode != 0,
         NAMESPACE_DEADLINE, what=f"namespace {namespace} deleted without the operator", interval=0.5)
    print(f"helm uninstall --wait took {took:.1f}s; the namespace went {time.monotonic() - started_delete:.1f}s "
          "after its deletion "
          f"(the three kinds' objects after {released:.1f}s)")


def _after(event: dict, since: float) -> bool:
    from datetime import datetime

    stamp = event.get("requestReceivedTimestamp") or event.get("stageTimestamp") or ""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() >= since
