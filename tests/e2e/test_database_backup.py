"""Scheduled backups of a ReplicatedDatabase on a real node, as a user sees them.

A real object store (SeaweedFS's S3 gateway, tests/support/objectstore) runs on this machine at
the node's bridge address, which pods reach. A 2-member MariaDB with spec.backup every minute to
it, an application writing through the `-primary` Service all along:

- the CronJob's run, started by kube-controller-manager on schedule, copies the replica (never the
  primary) and lists the backup in status.backup.recent with its size and GTID position; its
  manifest is in the store and says the same; LastBackupSucceeded=True, a BackupSucceeded Event;
- the store goes away: the next run fails, LastBackupSucceeded=False reason BackupFailed with the
  run's own words, a BackupFailed Event; the database stays Ready and keeps taking writes;
- the store's Secret loses a key: BackupConfigInvalid names it, the CronJob is suspended, and
  nothing is deleted (the backup listed, the CronJob and its Jobs); a volume target whose claim
  does not exist is named the same way;
- the claim made (the default StorageClass): a backup taken now (`kubectl create job
  --from=cronjob/db-backup`, the schedule suspended) is listed, LastBackupSucceeded=True again,
  its manifest in the volume's directory says the same; a new database `restored` from the
  volume is Ready with the backup named in status.restore and holds the writer's rows up to the
  copy, none missing below the newest it holds.
"""

from __future__ import annotations

import json
import shlex
import time
import urllib.request

import pymysql
import pytest

from hakeeper.replicateddatabase.backup import MANIFEST

from ..support import objectstore
from ..support.polling import poll
from .conftest import metric, operator_metrics
from .monitoring_support import host_ip
from .restore_support import backup_now, diagnosis, password
from .test_database_failover import _application, _status, _writer
from .test_database_reseed import _condition_of, _events

pytestmark = pytest.mark.e2e

PREFIX = "e2e"
FIRST_ID = 8_000_000
CLAIM = "backups"


@pytest.fixture
def store(cluster):
    """SeaweedFS on the node's bridge address; stopped (and its data removed) after the test."""
    running = objectstore.start(host_ip(cluster))
    yield running
    running.stop()


def _manifest_in_store(store: objectstore.ObjectStore, name: str) -> dict:
    # the filer serves what the S3 gateway stored under /buckets/<bucket>/
    url = f"http://{store.host}:{objectstore.FILER_PORT}/buckets/{store.bucket}/{PREFIX}/db/base/{name}/manifest.json"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def _backup_condition(status: dict, reason: str) -> dict | None:
    condition = _condition_of(status, "LastBackupSucceeded")
    return condition if condition.get("reason") == reason else None


def test_a_scheduled_backup_lands_in_the_store_and_a_failing_one_leaves_the_database_serving(
        operator, namespace, store):
    operator.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "store"}, "stringData": {
        "access-key-id": store.access_key, "secret-access-key": store.secret_key}}, "-n", namespace)
    operator.apply({
        "apiVersion": "hakeeper.io/v1alpha1", "kind": "ReplicatedDatabase", "metadata": {"name": "db"},
        "spec": {"flavor": "mariadb", "replicas": 2, "storage": {"size": "1Gi"},
                 "failover": {"probeInterval": "1s", "failureThreshold": 3},
                 "backup": {"schedule": "* * * * *", "target": {"prefix": PREFIX, "s3": {
                     "endpoint": store.endpoint, "bucket": store.bucket, "credentials": {"name": "store"}}}}},
    }, "-n", namespace)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=300s", "-n", namespace, "rdb/db", timeout=320)
    ready = time.monotonic()
    _, app_password, service_ip = _application(operator, namespace)
    writer = _writer(service_ip, FIRST_ID, app_password)
    writer.start()
    try:
        # 1. a run on schedule: the replica copied, listed with its size and GTID position
        def backed_up():
            status = _status(operator, namespace, "db")
            recent = (status.get("backup") or {}).get("recent") or []
            return status if recent and _backup_condition(status, "BackupSucceeded") else None

        status = poll(backed_up, 200, what="a scheduled backup listed in status.backup.recent", interval=2)
        newest = status["backup"]["recent"][0]
        print(f"first backup listed {time.monotonic() - ready:.0f} s after Ready: {newest}")
        assert newest["source"] != status["currentPrimary"]  # the replica, never the primary
        assert newest["sizeBytes"] > 0 and newest["gtid"].startswith("0-"), newest
        manifest = _manifest_in_store(store, newest["name"])
        assert (manifest["id"], manifest["size"], manifest["gtid"], manifest["source"]) == (
            newest["name"], newest["sizeBytes"], newest["gtid"], newest["source"])
        succeeded = [e for e in _events(operator, namespace) if e["reason"] == "BackupSucceeded"]
        assert succeeded and newest["name"] in succeeded[0]["message"], succeeded
        cronjob = operator.get("cronjob", "db-backup", "-n", namespace)
        assert cronjob["spec"]["schedule"] == "* * * * *" and cronjob["metadata"]["ownerReferences"][0]["name"] == "db"

        # 2. the store goes away: the next run fails, the database serves on
        store.kill()
        down = time.monotonic()
        status = poll(lambda: _backup_condition(s := _status(operator, namespace, "db"), "BackupFailed") and s,
                      150, what="LastBackupSucceeded=False BackupFailed", interval=2)
        failure = status["backup"]["lastFailure"]
        print(f"BackupFailed {time.monotonic() - down:.0f} s after the store went away; {len(writer.acked_since(down))} "
              f"writes acknowledged meanwhile")
        assert "failed" in failure, status["backup"]  # the run's own words (its log's last lines)
        assert status["backup"]["lastFailureTime"] > newest["finished"], status["backup"]  # a run after the backup
        failed = [e for e in _events(operator, namespace) if e["reason"] == "BackupFailed"]
        assert failed and failed[0]["type"] == "Warning", failed
        assert _condition_of(status, "Ready")["status"] == "True"
        assert status["backup"]["recent"][0]["name"] == newest["name"]  # the earlier backup still listed
        noticed = time.monotonic()
        poll(lambda: writer.first_ack(noticed), 30, what="a write acknowledged after the failed backup")
        assert writer.acked_since(down), "no write acknowledged while the backup failed"

        # 3. the store's Secret loses a key: refused with its name, the CronJob suspended, nothing deleted
        operator.kubectl("patch", "secret", "store", "-n", namespace, "--type=json",
                         "-p", '[{"op": "remove", "path": "/data/secret-access-key"}]')
        status = poll(lambda: _backup_condition(s := _status(operator, namespace, "db"), "BackupConfigInvalid")
                      and s, 60, what="LastBackupSucceeded=False BackupConfigInvalid", interval=1)
        print(f"BackupConfigInvalid {time.monotonic() - noticed:.0f} s after the failure was seen")
        condition = _condition_of(status, "LastBackupSucceeded")
        assert condition["status"] == "False" and "has no key secret-access-key" in condition["message"]
        assert any(e["reason"] == "BackupConfigInvalid" and "secret-access-key" in e["message"]
                   for e in _events(operator, namespace))
        poll(lambda: operator.get("cronjob", "db-backup", "-n", namespace)["spec"]["suspend"], 30,
             what="the CronJob suspended")
        assert status["backup"]["recent"][0]["name"] == newest["name"]
        assert operator.get("jobs", "-n", namespace, "-l", "hakeeper.io/database=db")["items"]
        assert _condition_of(status, "Ready")["status"] == "True"

        # a volume target whose claim does not exist yet: named the same way
        operator.kubectl("patch", "rdb", "db", "-n", namespace, "--type=merge", "-p", json.dumps(
            {"spec": {"backup": {"suspend": True, "target": {"s3": None, "volume": {"claimName": CLAIM}}}}}))
        poll(lambda: f"PersistentVolumeClaim {CLAIM} does not exist" in _condition_of(
            _status(operator, namespace, "db"), "LastBackupSucceeded").get("message", ""), 60,
            what="BackupConfigInvalid naming the claim", interval=1)

        samples = operator_metrics(operator)
        labels = {"namespace": namespace, "name": "db"}
        assert (metric(samples, "hakeeper_database_backup_runs_total", result="succeeded", **labels) or 0) >= 1
        assert (metric(samples, "hakeeper_database_backup_runs_total", result="failed", **labels) or 0) >= 1
        assert metric(samples, "hakeeper_database_backup_last_succeeded", **labels) == 0
        assert metric(samples, "hakeeper_database_backup_last_size_bytes", **labels) == newest["sizeBytes"]

        # 4. the claim made: a backup into the volume, and a new database restored from it
        _volume_backup_and_restore(operator, namespace, writer)
    finally:
        writer.stop(10)


def _volume_backup_and_restore(operator, namespace: str, writer) -> None:
    """The claim CLAIM of the cluster's default StorageClass made; once the CronJob mounts it, a
    backup taken now (suspended schedule: no scheduled run copies the replica at the same time)
    is listed, LastBackupSucceeded=True again, and its manifest is in the volume's directory;
    `restored` (one member) restored from the volume holds the writer's rows up to the copy."""
    # ReadWriteOnce is per node (Kubernetes "Persistent Volumes", access modes): on this one node the
    # job and a restoring member share it; on several nodes the claim must be ReadWriteMany (README)
    operator.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": CLAIM},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
                   "-n", namespace)

    def mounted() -> bool:
        template = operator.get("cronjob", "db-backup", "-n", namespace)["spec"]["jobTemplate"]["spec"]["template"]
        return any((v.get("persistentVolumeClaim") or {}).get("claimName") == CLAIM
                   for v in template["spec"]["volumes"])

    poll(mounted, 60, what=f"the CronJob to mount the claim {CLAIM}", interval=1)
    asked = time.monotonic()
    taken = backup_now(operator, namespace, "db", "db-backup-volume")
    print(f"backup into the volume listed {time.monotonic() - asked:.1f} s after its Job was made: {taken}")
    status = _status(operator, namespace, "db")
    condition = _condition_of(status, "LastBackupSucceeded")
    assert (condition["status"], condition["reason"]) == ("True", "BackupSucceeded"), condition
    assert taken["source"] != status["currentPrimary"] and taken["sizeBytes"] > 0, taken
    manifest = json.loads(_in_volume(operator, namespace, "db-backup-volume",
                                     f"{PREFIX}/db/base/{taken['name']}/{MANIFEST}"))
    assert (manifest["id"], manifest["size"], manifest["gtid"], manifest["source"]) == (
        taken["name"], taken["sizeBytes"], taken["gtid"], taken["source"])

    restored = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "ReplicatedDatabase", "metadata": {"name": "restored"},
                "spec": {"flavor": "mariadb", "replicas": 1, "storage": {"size": "1Gi"}, "restore": {
                    "database": "db", "target": {"prefix": PREFIX, "volume": {"claimName": CLAIM}}}}}
    operator.apply(restored, "-n", namespace)
    created = time.monotonic()
    try:
        poll(lambda: _condition_of(_status(operator, namespace, "restored"), "Ready").get("status") == "True", 120,
             what="restored Ready", interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{diagnosis(operator, namespace, 'restored')}") from None
    print(f"restored from the volume: Ready {time.monotonic() - created:.1f} s after it was created")
    status = _status(operator, namespace, "restored")
    assert status["restore"]["phase"] == "Completed" and status["restore"]["backup"] == taken["name"], status
    ip = operator.get("pod", "restored-0", "-n", namespace)["status"]["podIP"]
    with pymysql.connect(host=ip, user="root", password=password(operator, namespace, "restored"),
                         connect_timeout=5) as c, c.cursor() as cur:
        cur.execute("SELECT id FROM app.t")
        ids = {row[0] for row in cur.fetchall()}
    # a consistent copy of the replica: every id acknowledged before it was asked for, none never
    # sent, no acknowledged id missing below the newest it holds
    assert ids, "nothing restored"
    newest = max(ids)
    assert FIRST_ID <= min(ids) and newest < writer.next_id, (min(ids), newest, writer.next_id)
    assert {a.id for a in writer.acked if a.at < asked} <= ids
    missing = {i for i in writer.ids() if i <= newest} - ids
    assert not missing, sorted(missing)[:10]
    print(f"restored {len(ids)} rows, ids {min(ids)}..{newest}; the writer had {len(writer.acked)} acknowledged")


def _in_volume(operator, namespace: str, job: str, path: str) -> str:
    """A file of the claim CLAIM, read on the node that ran `job` from the directory of the claim's
    PersistentVolume (hostPath or local)."""
    claim = operator.get("pvc", CLAIM, "-n", namespace)
    volume = operator.get("pv", claim["spec"]["volumeName"])["spec"]
    root = (volume.get("hostPath") or volume.get("local"))["path"]
    pod = operator.get("pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job}")["items"][0]
    return operator.node_shell(f"cat {shlex.quote(f'{root}/{path}')}", pod["spec"]["nodeName"]).stdout
