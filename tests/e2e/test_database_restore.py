"""A new ReplicatedDatabase restored from a backup on a real node, as a user sees it.

A 2-member database `src` with spec.backup to SeaweedFS (suspended: the operator's CronJob
`src-backup` is there, and runs only when asked) takes writes in three batches: A, then a backup,
B, then — once the server's clock has passed the point in time P, the first whole second after
B's last commit — C, and a second backup, whose run also stores the primary's binary logs. P lies
between the two backups. Each backup is taken as README says a user takes one now, `kubectl
create job --from=cronjob/src-backup <name>`, and is done when src's status.backup.recent lists
it: the operator's CronJob template runs here for both flavors (test_database_backup.py runs
MariaDB's on schedule), copying a replica (never the primary).

- `badgtid`, naming a GTID the schema lets through but the restore cannot read: Ready=False
  RestoreFailed at once, a Warning Event, no StatefulSet made.
- `gdst`, one member restored up to and including the GTID of B's last write: the first backup
  and the binary logs up to it; it holds exactly A and B.
- `early`, restored to a point before the oldest backup: Ready=False, reason RestoreFailed, the
  init container's reason in the message, a Warning Event RestoreFailed; nothing is deleted (the
  next restore reads the same backups).
- `dst`, restored to P with no backup named: the first member chooses the first backup (the
  second finished after P) and replays the binary logs up to P; the database becomes Ready, its
  second member is rebuilt from the restored primary without anyone asking and replicates; both
  hold exactly A and B, none of C; it takes writes; status.restore says Completed and names the
  backup; Events RestoreStarted and RestoreCompleted.
"""

from __future__ import annotations

import datetime
import json
import time

import pymysql
import pytest

from ..support.polling import poll
from .conftest import FLAVORS, database_manifest
from .restore_support import (
    backup_now,
    backup_spec,
    diagnosis,
    events,
    password,
    store,
    store_secret,
    target_spec,
)

pytestmark = pytest.mark.e2e

A, B, C = range(1, 41), range(1001, 1041), range(2001, 2041)


def _status(cluster, namespace: str, db: str) -> dict:
    return cluster.get("rdb", db, "-n", namespace).get("status") or {}


def _condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def _ip(cluster, namespace: str, pod: str) -> str:
    return cluster.get("pod", pod, "-n", namespace)["status"]["podIP"]


def _connect(cluster, namespace: str, db: str, member: str) -> pymysql.Connection:
    return pymysql.connect(host=_ip(cluster, namespace, member), user="root", password=password(cluster, namespace, db),
                           autocommit=True, connect_timeout=5)


def _ids(cluster, namespace: str, db: str, member: str) -> set[int]:
    with _connect(cluster, namespace, db, member) as c, c.cursor() as cur:
        cur.execute("SELECT id FROM app.t")
        return {row[0] for row in cur.fetchall()}


def _insert(cur, ids: range) -> None:
    for i in ids:
        cur.execute("INSERT INTO app.t (id) VALUES (%s)", (i,))


def _job_seconds(cluster, namespace: str, job: str) -> float | None:
    """A finished Job's startTime → completionTime (whole seconds, as the Job controller writes them)."""
    status = cluster.get("job", job, "-n", namespace).get("status") or {}
    if not status.get("startTime") or not status.get("completionTime"):
        return None
    start, end = (datetime.datetime.fromisoformat(status[k].replace("Z", "+00:00"))
                  for k in ("startTime", "completionTime"))
    return (end - start).total_seconds()


def _restored(name: str, flavor: str, target: dict, point: str | None, replicas: int, **restore) -> dict:
    doc = database_manifest(name, flavor)
    if point is not None:
        restore["pointInTime"] = point
    doc["spec"].update(replicas=replicas, durability="Available",
                       restore={"database": "src", "target": target, **restore})
    return doc


def _position(cur, flavor: str) -> str:
    """The server's GTID position, as a user reads it to name in spec.restore.gtid."""
    cur.execute("SELECT @@GLOBAL.gtid_binlog_pos" if flavor == "mariadb"
                else "SELECT REPLACE(@@GLOBAL.gtid_executed, CHAR(10), '')")
    return cur.fetchone()[0]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_new_database_restores_a_backup_to_a_point_in_time(operator, namespace, flavor):
    with store(operator) as objects_store:
        store_secret(operator, namespace, objects_store)
        source = database_manifest("src", flavor)
        source["spec"].update(replicas=2, durability="Available", backup=backup_spec(objects_store))
        operator.apply(source, "-n", namespace)
        operator.kubectl("wait", "--for=condition=Healthy", "--timeout=240s", "-n", namespace, "rdb/src", timeout=260)
        status = _status(operator, namespace, "src")
        primary = status["currentPrimary"]
        # made once src is Ready, suspended as asked: no run on its own
        poll(lambda: operator.kubectl("get", "cronjob", "src-backup", "-n", namespace, check=False).returncode == 0,
             60, what="the CronJob src-backup", interval=0.5)
        assert operator.get("cronjob", "src-backup", "-n", namespace)["spec"]["suspend"] is True

        with _connect(operator, namespace, "src", primary) as c, c.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE TABLE app.t (id INT PRIMARY KEY)")
            _insert(cur, A)
            started = time.monotonic()
            first = backup_now(operator, namespace, "src", "backup-1")
            first_seconds = time.monotonic() - started
            _insert(cur, B)
            after_b = _position(cur, flavor)  # the GTID of B's last write: a restore up to it holds A and B
            cur.execute("SELECT UTC_TIMESTAMP()")
            point = cur.fetchone()[0].replace(microsecond=0) + datetime.timedelta(seconds=1)

            def past_point() -> bool:
                cur.execute("SELECT UTC_TIMESTAMP() >= %s", (point,))
                return bool(cur.fetchone()[0])

            poll(past_point, 10, what="the server's clock past the point in time", interval=0.1)
            _insert(cur, C)
        started = time.monotonic()
        second = backup_now(operator, namespace, "src", "backup-2")
        second_seconds = time.monotonic() - started
        first_id = first["name"]
        for taken in (first, second):  # a replica's copy, never the primary's, and where it stands
            assert taken["source"] != primary and taken["sizeBytes"] > 0 and taken["gtid"], taken
        jobs = operator.get("jobs", "-n", namespace, "-l", "hakeeper.io/database=src")["items"]
        assert sorted(j["metadata"]["name"] for j in jobs) == ["backup-1", "backup-2"], "a suspended CronJob ran"
        stamp = point.strftime("%Y-%m-%dT%H:%M:%SZ")

        # a point before the oldest backup: refused, said so, nothing deleted; and a key the store's
        # Secret lacks: the restoring container cannot start, said so
        operator.apply(_restored("early", flavor, target_spec(objects_store), "2000-01-01T00:00:00Z", 1),
                       "-n", namespace)
        keyless = target_spec(objects_store)
        keyless["s3"]["credentials"]["accessKeyIdKey"] = "no-such-key"
        operator.apply(_restored("keyless", flavor, keyless, stamp, 1), "-n", namespace)

        def refused() -> dict | None:
            ready = _condition(_status(operator, namespace, "early"), "Ready")
            return ready if ready.get("reason") == "RestoreFailed" else None

        try:
            ready = poll(refused, 120, what="early: Ready=False RestoreFailed", interval=1)
            event = poll(lambda: next((e for e in events(operator, namespace, "early")
                                       if e["reason"] == "RestoreFailed"), None), 30, what="a RestoreFailed Event")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{diagnosis(operator, namespace, 'early')}") from None
        assert ready["status"] == "False"
        assert "before the oldest backup" in ready["message"] and first_id in ready["message"], ready
        assert event["type"] == "Warning" and "before the oldest backup" in event["message"], event
        assert _status(operator, namespace, "early")["restore"]["phase"] == "Failed"
        try:
            keyless_ready = poll(lambda: next((c for c in [_condition(_status(operator, namespace, "keyless"), "Ready")]
                                               if c.get("reason") == "RestoreFailed"), None), 120,
                                 what="keyless: Ready=False RestoreFailed", interval=1)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{diagnosis(operator, namespace, 'keyless')}") from None
        assert "no-such-key" in keyless_ready["message"] and "store" in keyless_ready["message"], keyless_ready
        # a GTID the schema lets through but the restore cannot read (MySQL: an interval that ends
        # before it starts; MariaDB: sequence 0, no transaction): said at once, nothing made
        unreadable = "0-1-0" if flavor == "mariadb" else after_b.split(":")[0] + ":9-5"
        operator.apply(_restored("badgtid", flavor, target_spec(objects_store), None, 1, gtid=unreadable),
                       "-n", namespace)
        bad = poll(lambda: next((c for c in [_condition(_status(operator, namespace, "badgtid"), "Ready")]
                                 if c.get("reason") == "RestoreFailed"), None), 60,
                   what="badgtid: Ready=False RestoreFailed", interval=1)
        assert "spec.restore cannot be used" in bad["message"], bad
        poll(lambda: any(e["reason"] == "RestoreFailed" and e["type"] == "Warning"
                         for e in events(operator, namespace, "badgtid")), 30, what="badgtid's RestoreFailed Event")
        assert operator.kubectl("get", "statefulset", "badgtid", "-n", namespace, check=False).returncode != 0

        # up to and including a GTID (B's last write): the first backup and the logs up to it
        operator.apply(_restored("gdst", flavor, target_spec(objects_store), None, 1, gtid=after_b), "-n", namespace)
        try:
            poll(lambda: _condition(_status(operator, namespace, "gdst"), "Ready").get("status") == "True", 300,
                 what="gdst Ready", interval=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{diagnosis(operator, namespace, 'gdst')}") from None
        restored_by_gtid = _status(operator, namespace, "gdst")["restore"]
        assert restored_by_gtid["phase"] == "Completed" and restored_by_gtid["backup"] == first_id, restored_by_gtid
        assert restored_by_gtid["gtid"] == after_b, restored_by_gtid
        assert _ids(operator, namespace, "gdst", "gdst-0") == set(A) | set(B)

        # a point between the two backups: the first backup, and the binary logs up to the point
        operator.apply(_restored("dst", flavor, target_spec(objects_store), stamp, 2), "-n", namespace)
        created = time.monotonic()
        try:
            poll(lambda: _condition(_status(operator, namespace, "dst"), "Ready").get("status") == "True", 300,
                 what="dst Ready", interval=0.5)
            ready_after = time.monotonic() - created
            poll(lambda: _condition(_status(operator, namespace, "dst"), "Healthy").get("status") == "True", 300,
                 what="dst Healthy (its second member rebuilt from the restored primary)", interval=0.5)
            healthy_after = time.monotonic() - created
        except AssertionError as error:
            raise AssertionError(f"{error}\n{diagnosis(operator, namespace, 'dst')}") from None
        # for the README: how long a user waits (printed with -rP)
        ran = [_job_seconds(operator, namespace, job) for job in ("backup-1", "backup-2")]
        print(f"{flavor}: backups listed {first_seconds:.1f} s and {second_seconds:.1f} s after their Jobs were made "
              f"(Jobs ran {ran[0]} s and {ran[1]} s, copies {first.get('durationSeconds')} s and "
              f"{second.get('durationSeconds')} s by their manifests); from the restored database's "
              f"creation: Ready after {ready_after:.1f} s (Ready wants the primary and a replicating replica: the "
              f"restore and the second member's copy), Healthy after {healthy_after:.1f} s")
        status = _status(operator, namespace, "dst")
        assert _condition(status, "Ready")["status"] == "True", status
        assert status["restore"]["phase"] == "Completed" and status["restore"]["backup"] == first_id, status["restore"]
        committed = set(A) | set(B)
        for member in ("dst-0", "dst-1"):
            assert _ids(operator, namespace, "dst", member) == committed, member
        # a normal cluster: the primary takes a write, the replica gets it
        new_primary = status["currentPrimary"]
        other = "dst-1" if new_primary == "dst-0" else "dst-0"
        with _connect(operator, namespace, "dst", new_primary) as c, c.cursor() as cur:
            cur.execute("INSERT INTO app.t (id) VALUES (5000)")
        poll(lambda: 5000 in _ids(operator, namespace, "dst", other), 30, what="the replica to get a new write")
        # spec.restore is read at creation only: changing, removing or adding it is refused at apply
        for db, patch in (("dst", {"restore": {"pointInTime": "2026-01-01T00:00:00Z"}}), ("dst", {"restore": None}),
                          ("src", {"restore": {"database": "dst", "target": target_spec(objects_store)}})):
            refused = operator.kubectl("patch", "rdb", db, "-n", namespace, "--type=merge", "-p",
                                       json.dumps({"spec": patch}), check=False)
            assert refused.returncode != 0 and "restore is read only when the database is created" in refused.stderr, (
                db, patch, refused.stderr)
        # the control: another change to the restored database's spec is taken
        operator.kubectl("patch", "rdb", "dst", "-n", namespace, "--type=merge", "-p",
                         json.dumps({"spec": {"failover": {"antiFlapWindow": "6s"}}}))
        said = events(operator, namespace, "dst")
        reasons = [e["reason"] for e in said]
        assert "RestoreStarted" in reasons and "RestoreCompleted" in reasons, reasons
        assert "RestoreFailed" not in reasons, reasons
        # the second member was rebuilt from the restored primary's data, nobody asked
        assert "ReseedStarted" in reasons and "ReseedCompleted" in reasons, reasons
        assert "ReseedRequired" not in reasons, reasons
        print("\n".join(f"  {e.get('firstTimestamp') or e.get('eventTime')} {e['reason']}: {e['message']}"
                        for e in said))
        for name in ("dst", "gdst", "badgtid", "early", "keyless", "src"):
            operator.kubectl("delete", "rdb", name, "-n", namespace, "--wait=false")
