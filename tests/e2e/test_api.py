"""The API as a user meets it: kubectl apply, refusals, printer columns, Ready."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from ..support.polling import poll
from .invalid_specs import DP_BASE, INVALID

ROOT = pathlib.Path(__file__).resolve().parents[2]
QUICKSTART = sorted((ROOT / "examples/quickstart").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
pytestmark = pytest.mark.e2e


def _doc(kind: str, name: str, namespace: str, spec: dict) -> dict:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_crds_are_established_with_short_names_and_category(crds):
    resources = crds.kubectl("api-resources", "--api-group=hakeeper.io", "-o", "wide").stdout
    for plural, short in (("loadbalancerpools", "lbp"), ("replicateddatabases", "rdb"),
                          ("degradationpolicies", "dp")):
        line = next(line for line in resources.splitlines() if line.startswith(plural))
        assert f" {short} " in line and "hakeeper" in line and "true" in line  # namespaced, category


@pytest.mark.parametrize("sample", QUICKSTART, ids=lambda p: p.stem)
def test_valid_samples_are_accepted(crds, namespace, sample):
    out = crds.kubectl("apply", "-n", namespace, "-f", str(sample)).stdout
    assert "created" in out


def test_every_example_is_accepted_by_the_api_server(crds, namespace):
    # tests/unit/test_offline_validation.py passes the same files through `hakeeper render`'s check
    for example in EXAMPLES:
        result = crds.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(example), check=False)
        assert result.returncode == 0, f"{example}: {result.stderr}"


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c[0])
def test_invalid_specs_are_refused_with_a_clear_message(crds, namespace, case):
    name, kind, spec, fragment = case
    # YAML, as a person writes it: a NaN or an infinity goes as .nan or .inf, which JSON cannot carry
    result = crds.apply(yaml.safe_dump(_doc(kind, name, namespace, spec)), check=False)
    assert result.returncode != 0, f"{name} was accepted"
    assert fragment in result.stderr, result.stderr
    assert crds.kubectl("get", kind.lower(), name, "-n", namespace, check=False).returncode != 0


def test_zero_for_and_cooldown_are_accepted(crds, namespace):
    # a trigger that fires at its first breaching evaluation, a restore as soon as all recovered
    spec = {**DP_BASE, "triggers": [{"name": "load", "query": "max(up)", "threshold": 1, "for": "0s"}],
            "restore": {"cooldown": "0s"}}
    result = crds.apply(yaml.safe_dump(_doc("DegradationPolicy", "zero-waits", namespace, spec)), "--dry-run=server",
                        check=False)
    assert result.returncode == 0, result.stderr


def test_defaults_are_filled_in_by_the_api_server(crds, namespace):
    crds.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples/quickstart/replicateddatabase.yaml"))
    spec = crds.get("rdb", "orders", "-n", namespace)["spec"]
    assert spec["failover"]["enabled"] is True
    assert spec["semiSync"]["timeout"] == "10s"
    assert spec["storage"]["size"] == "10Gi"


def test_operator_reports_ready_and_observed_generation(operator, namespace):
    for sample in QUICKSTART:
        operator.kubectl("apply", "-n", namespace, "-f", str(sample))
    # three mariadbd members initialize their datadirs first: allow for a busy 2-core machine
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=110s", "-n", namespace,
                     "lbp/web", "rdb/orders", "dp/peak-shedding")
    for kind in ("lbp/web", "rdb/orders", "dp/peak-shedding"):
        obj = operator.get(kind, "-n", namespace)
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True" and ready["lastTransitionTime"] and ready["reason"]

    table = operator.kubectl("get", "hakeeper", "-n", namespace).stdout
    assert "loadbalancerpool.hakeeper.io/web" in table and "replicateddatabase.hakeeper.io/orders" in table
    assert "degradationpolicy.hakeeper.io/peak-shedding" in table
    for header in ("ENGINE", "ALGORITHM", "FLAVOR", "PRIMARY", "MODE", "STATE"):
        assert header in table
    lbp_row = next(line for line in table.splitlines() if "/web" in line).split()
    assert lbp_row[1:3] == ["haproxy", "roundrobin"] and "True" in lbp_row


def test_operator_follows_a_spec_change(operator, namespace):
    operator.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples/quickstart/loadbalancerpool.yaml"))
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", namespace, "lbp/web")
    operator.kubectl("patch", "lbp", "web", "-n", namespace, "--type=merge",
                     "-p", json.dumps({"spec": {"algorithm": "leastconn"}}))

    def caught_up():
        obj = operator.get("lbp", "web", "-n", namespace)
        status = obj.get("status", {})
        return status.get("observedGeneration") == obj["metadata"]["generation"] == 2 and \
            status.get("algorithm") == "leastconn"

    poll(caught_up, 60, what="observedGeneration 2 with algorithm leastconn")


def test_kubectl_explain_shows_field_docs(crds):
    out = crds.kubectl("explain", "loadbalancerpool.spec.sessionAffinity.cookie.mode").stdout
    assert "insert" in out and "prefix" in out
