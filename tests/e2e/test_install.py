"""The chart installs as a user installs it: dry run on the server, then for real."""

from __future__ import annotations

import pathlib

import pytest

from .conftest import OPERATOR_NAMESPACE

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_helm_install_dry_run_on_the_server(crds, namespace):
    # the API server validates every object (RBAC, Deployment, peering) without storing any
    result = crds.helm("install", "dry", str(ROOT / "charts/hakeeper"), "--namespace", namespace,
                       "--dry-run=server", "--set", "peering.name=dry-run")
    assert "STATUS: pending-install" in result.stdout
    assert "kind: ClusterRole" in result.stdout
    assert crds.kubectl("get", "deployment", "-n", namespace, "-o", "name").stdout == ""


def test_helm_install_creates_the_operator_and_its_least_privilege_account(installed):
    deployment = installed.get("deployment", "hakeeper", "-n", OPERATOR_NAMESPACE)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "hakeeper"
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    can = installed.kubectl("auth", "can-i", "--list", "--as", f"system:serviceaccount:{OPERATOR_NAMESPACE}:hakeeper")
    assert "loadbalancerpools.hakeeper.io" in can.stdout
    # the account may read Secrets (database credentials) but never delete them
    assert installed.kubectl("auth", "can-i", "delete", "secrets", "--as",
                             f"system:serviceaccount:{OPERATOR_NAMESPACE}:hakeeper", check=False).stdout.strip() == "no"
    assert installed.get("clusterkopfpeering", "hakeeper")["metadata"]["name"] == "hakeeper"
