"""For the restore's e2e test: a real object store pods reach, and a backup taken by a Job.

- The store: SeaweedFS (tests/support/objectstore.py) on the local node's bridge address, which
  pods reach as they reach an exporter on this machine (monitoring_support.host_ip).
- The backup: a Job of the database's own image running backup.backup_script with the
  environment backup.job_env gives it, the passwords from the database's Secret and the store's
  keys from the store's Secret, as the scheduled backup's CronJob will (its own template replaces
  this builder once both are merged: keep it small).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hakeeper.api.replicateddatabase import DEFAULT_IMAGE
from hakeeper.replicateddatabase import backup, objects

from ..support import objectstore
from ..support.polling import poll
from .monitoring_support import host_ip

STORE_SECRET = "store"
PREFIX = "e2e"


@contextmanager
def store(cluster) -> Iterator[objectstore.ObjectStore]:
    """SeaweedFS on the node's bridge address (bucket `backups`), stopped and removed after."""
    with objectstore.running(host=host_ip(cluster), bucket="backups") as running:
        yield running


def store_secret(cluster, namespace: str, store_: objectstore.ObjectStore) -> None:
    """The store's access key pair as a user gives it: a Secret with the default keys."""
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": STORE_SECRET}, "type": "Opaque",
                   "stringData": {"access-key-id": store_.access_key, "secret-access-key": store_.secret_key}},
                  "-n", namespace)


def target_spec(store_: objectstore.ObjectStore) -> dict[str, Any]:
    """spec.restore.target (as spec.backup.target) naming the store and its Secret."""
    return {"s3": {"endpoint": store_.endpoint, "bucket": store_.bucket, "credentials": {"name": STORE_SECRET}},
            "prefix": PREFIX}


def backup_job(name: str, db: str, flavor: str, store_: objectstore.ObjectStore, source: str,
               primary: str) -> dict[str, Any]:
    """A Job that takes one backup of `db` from the replica at `source` and stores the binary
    logs of the primary at `primary` (pod IPs), as the operator's CronJob will."""
    target = backup.Target("s3", prefix=PREFIX, bucket=store_.bucket, endpoint=store_.endpoint)
    credentials = objects.names(db)["credentials"]
    env = [{"name": k, "value": v} for k, v in sorted(backup.job_env(target, db, source, primary).items())]
    env += [{"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for var, secret, key in (
        ("REPLICATION_PASSWORD", credentials, "replication-password"),
        ("OPERATOR_PASSWORD", credentials, "operator-password"),
        ("RCLONE_CONFIG_STORE_ACCESS_KEY_ID", STORE_SECRET, "access-key-id"),
        ("RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY", STORE_SECRET, "secret-access-key"))]
    mounts = [{"name": "tmp", "mountPath": objects.TMP_DIR}, {"name": "conf", "mountPath": objects.CONF_DIR},
              {"name": "base-conf", "mountPath": objects.BASE_CONF_DIR}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "securityContext": dict(objects.POD_SECURITY),
                "containers": [{"name": "backup", "image": DEFAULT_IMAGE[flavor],
                                "command": ["sh", "-c", backup.backup_script(flavor)], "env": env,
                                "volumeMounts": mounts, "securityContext": dict(objects.CONTAINER_SECURITY)}],
                "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "conf", "emptyDir": {}},
                            {"name": "base-conf", "configMap": {"name": objects.names(db)["config"]}}]}}}}


def run_backup(cluster, namespace: str, job: dict[str, Any], timeout: float = 180) -> str:
    """Applies the Job and waits for it to succeed; its log (the manifest's line). AssertionError
    with the log when it fails or does not end in `timeout` seconds."""
    name = job["metadata"]["name"]
    cluster.apply(job, "-n", namespace)

    def ended() -> str | None:
        status = cluster.get("job", name, "-n", namespace).get("status") or {}
        return "ok" if status.get("succeeded") else "failed" if status.get("failed") else None

    try:
        outcome = poll(ended, timeout, what=f"backup job {name} to end", interval=1)
    except AssertionError as error:
        outcome = str(error)
    log = cluster.kubectl("logs", "-n", namespace, f"job/{name}", check=False)
    text = log.stdout + log.stderr
    assert outcome == "ok", f"backup job {name}: {outcome}\n{text}"
    return text


def password(cluster, namespace: str, db: str, key: str = "root-password") -> str:
    secret = cluster.get("secret", objects.names(db)["credentials"], "-n", namespace)["data"]
    return base64.b64decode(secret[key]).decode()


def events(cluster, namespace: str, db: str) -> list[dict[str, Any]]:
    """The database's Events, oldest first."""
    items = cluster.get("events", "-n", namespace, "--field-selector",
                        f"involvedObject.kind=ReplicatedDatabase,involvedObject.name={db}")["items"]
    return sorted(items, key=lambda e: e.get("firstTimestamp") or e.get("eventTime") or "")


def diagnosis(cluster, namespace: str, db: str) -> str:
    """What the operator and the first member said, for a failure message."""
    status = (cluster.get("rdb", db, "-n", namespace).get("status") or {})
    said = "\n".join(f"{e.get('type')} {e.get('reason')}: {e.get('message')}" for e in events(cluster, namespace, db))
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
    init = cluster.kubectl("logs", "-n", namespace, f"{db}-0", "-c", "init", "--tail=40", check=False)
    log = cluster.kubectl("logs", "-n", "hakeeper-system", "deployment/hakeeper", "--tail=60", check=False).stdout
    return (f"status: {json.dumps(status, indent=1)}\nevents:\n{said}\n{pods}\n{db}-0 init log:\n"
            f"{init.stdout}{init.stderr}\noperator log:\n{log}")
