"""A database whose generated credentials Secret predates the application account (an earlier
hakeeper made it with the root, replication and operator passwords only): the operator adds the
application's user and password to that Secret, keeps the passwords it holds, and the
application logs in with them through the -primary Service. Then drift repair: the budget deleted
and the -replicas Service relabelled come back as the operator applied them."""

from __future__ import annotations

import base64
import secrets

import pytest

from ..support.polling import poll
from .conftest import database_manifest
from .test_database_failover import _application

pytestmark = pytest.mark.e2e


def test_a_secret_made_before_the_application_account_gets_one(operator, namespace):
    earlier = {key: secrets.token_urlsafe(24) for key in ("root-password", "replication-password", "operator-password")}
    operator.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-credentials"},
                    "stringData": earlier}, "-n", namespace)
    operator.apply(database_manifest("db", "mariadb"), "-n", namespace)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=300s", "-n", namespace, "rdb/db", timeout=320)
    data = operator.get("secret", "db-credentials", "-n", namespace)["data"]
    kept = {key: base64.b64decode(data[key]).decode() for key in earlier}
    assert kept == earlier, "a password the servers already hold was rewritten"
    assert base64.b64decode(data["application-user"]).decode() == "app"
    operator.flavor = "mariadb"
    _, app_password, _ = _application(operator, namespace)  # logs in as app and writes its schema
    assert app_password == base64.b64decode(data["application-password"]).decode()
    _restored_after_drift(operator, namespace)


def _restored_after_drift(operator, namespace: str) -> None:
    """The operator watches what a database owns and applies it again when someone deletes it or
    changes a field it set. The control: unchanged objects are sent again only after 30 to 60
    minutes, so without the watches neither would be back within the deadlines here."""
    operator.kubectl("delete", "pdb", "db", "-n", namespace)
    poll(lambda: operator.get("pdb", "db", "-n", namespace)["spec"]["maxUnavailable"] == 1, 30,
         what="the deleted PodDisruptionBudget back", ignore=AssertionError)
    operator.kubectl("label", "--overwrite", "service", "db-replicas", "-n", namespace,
                     "app.kubernetes.io/instance=someone-else")
    poll(lambda: operator.get("service", "db-replicas", "-n", namespace)["metadata"]["labels"][
        "app.kubernetes.io/instance"] == "db", 30, what="the -replicas Service's label back")
