"""For the restore's e2e test: a real object store pods reach, and backups taken as a user takes them.

- The store: SeaweedFS (tests/support/objectstore.py) on the local node's bridge address, which
  pods reach as they reach an exporter on this machine (monitoring_support.host_ip).
- The backup: the operator's CronJob `<db>-backup` (spec.backup, suspended so that it runs only
  when asked), one Job made from it per backup (`kubectl create job --from=cronjob/...`), done
  when the database's status.backup.recent lists it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hakeeper.replicateddatabase import objects

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


def backup_spec(store_: objectstore.ObjectStore) -> dict[str, Any]:
    """spec.backup to the store, suspended: the CronJob `<db>-backup` is there, and a run starts
    only when asked (backup_now), as a user takes one outside the schedule."""
    return {"schedule": "0 3 * * *", "suspend": True, "target": target_spec(store_)}


def backup_now(cluster, namespace: str, db: str, job: str, timeout: float = 180) -> dict[str, Any]:
    """A backup taken as README's "To take a backup now" says: `kubectl create job
    --from=cronjob/<db>-backup <job>`; waits until status.backup.recent lists a backup it did not
    list before and returns that entry (camelCase: name, finished, source, gtid, sizeBytes,
    durationSeconds). AssertionError with the run's log when the Job fails, or nothing new is
    listed within `timeout` seconds."""
    def recent() -> list[dict[str, Any]]:
        status = cluster.get("rdb", db, "-n", namespace).get("status") or {}
        return (status.get("backup") or {}).get("recent") or []

    before = {entry["name"] for entry in recent()}
    cluster.kubectl("create", "job", f"--from=cronjob/{db}-backup", job, "-n", namespace)

    def listed() -> dict[str, Any] | None:
        new = next((entry for entry in recent() if entry["name"] not in before), None)
        if new is None and (cluster.get("job", job, "-n", namespace).get("status") or {}).get("failed"):
            log = cluster.kubectl("logs", "-n", namespace, f"job/{job}", check=False)
            raise AssertionError(f"backup job {job} failed:\n{log.stdout}{log.stderr}")
        return new

    try:
        return poll(listed, timeout, what=f"status.backup.recent of {db} to list the backup of job {job}",
                    interval=1)
    except AssertionError as error:
        log = cluster.kubectl("logs", "-n", namespace, f"job/{job}", check=False)
        raise AssertionError(f"{error}\n{log.stdout}{log.stderr}") from None


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
