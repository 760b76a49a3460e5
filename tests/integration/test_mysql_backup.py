"""Backups and restores against real servers and a real object store (SeaweedFS's S3 gateway).

A backup run copies a replica while an application writes to the primary (MariaDB: the
replica's backup container streams mariabackup; MySQL: the job's own mysqld clones it),
compresses, checksums and uploads it with its manifest, and stores the primary's binary logs.
A restore bootstraps a new database's member from a backup: (a) the latest, as it is; (b) an
older one brought to a point in time between two known writes by replaying the binary logs.
What the restored server holds is compared with what the primary acknowledged, id by id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hakeeper.replicateddatabase import backup, objects, restore_gtid
from hakeeper.replicateddatabase.clustering import Policy
from hakeeper.replicateddatabase.clustering.gtid import MariaDBGtidList, MySQLGtidSet

from ..support import certs, objectstore
from ..support.polling import poll
from .backup_support import RestoredFleet, read_manifests, remove, run_backup, s3_target, volume_dir
from .mariadb_support import Writer, app_connect, bootstrap, stored_ids
from .mysql_support import PodFleet, database_spec, pod_fleet_fixture

pytestmark = pytest.mark.integration

RESTORED_HOST = {"mariadb": "127.0.43.1", "mysql": "127.0.44.1"}
MARKS = (20_000_001, 20_000_002)
"""Two writes after the writer's, with a GTID taken between them."""


@pytest.fixture(scope="module")
def store() -> Iterator[objectstore.ObjectStore]:
    with objectstore.running() as running:
        yield running


@pytest.fixture(params=["mariadb", "mysql"])
def fleet(request) -> Iterator[PodFleet]:
    yield from pod_fleet_fixture(database_spec(request.param))


@pytest.fixture(params=["mariadb", "mysql"])
def single(request) -> Iterator[PodFleet]:
    yield from pod_fleet_fixture(database_spec(request.param, replicas=1))


def server_time_writer(endpoint) -> Writer:
    """The application, each row stamped with the primary's own clock (NOW(6): the statement's
    start, which is also its binary log events' timestamp), so that which rows a point in time
    keeps is known exactly."""
    writer = Writer(endpoint)
    writer.sql = "INSERT INTO hk.writes (id, at) VALUES (%s, UNIX_TIMESTAMP(NOW(6)))"
    writer.params = lambda i: (i,)
    return writer


@contextlib.contextmanager
def restored(fleet: PodFleet, target: backup.Target, restore: backup.Restore,
             store: objectstore.ObjectStore | None, volume: Path | None = None) -> Iterator[RestoredFleet]:
    new = RestoredFleet(fleet.flavor, target, restore, store, RESTORED_HOST[fleet.flavor], volume)
    try:
        yield new
    finally:
        new.close()


def position(member, flavor: str) -> str:
    """The member's GTID position as restore_gtid compares it."""
    sql = ("SELECT @@GLOBAL.gtid_current_pos AS p" if flavor == "mariadb"
           else "SELECT REPLACE(@@GLOBAL.gtid_executed, CHAR(10), '') AS p")
    return str(member.query(sql)[0]["p"])


def beyond(flavor: str, gtid: str) -> str:
    """A GTID a million transactions past `gtid`, of the same server: never written."""
    if flavor == "mariadb":
        return ",".join(f"{d}-{s}-{n + 1_000_000}"
                        for d, (s, n) in MariaDBGtidList.parse(gtid).domain_positions().items())
    key, intervals = MySQLGtidSet.parse(gtid).sources[-1]
    return restore_gtid.canonical(flavor, f"{gtid},{key}:{intervals[-1][1] + 1}-{intervals[-1][1] + 1_000_000}")


def test_backups_under_writes_restore_the_latest_a_point_in_time_and_a_gtid(fleet: PodFleet,
                                                                            store: objectstore.ObjectStore) -> None:
    policy = dataclasses.replace(Policy.from_spec(fleet.spec), probe_interval=0.5)
    loop = bootstrap(fleet, policy).start()
    primary = fleet.by_name(loop.primary)
    replica = next(p for p in fleet if p.name != loop.primary)
    target = s3_target(store, prefix=f"{fleet.flavor}-{uuid.uuid4().hex[:8]}")
    writer = server_time_writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 200 or writer.errors[-3:], 30, what="writes before the backup")
    assert len(writer.acked) >= 200, writer.errors[-3:]

    first = run_backup(fleet, target, replica.host, primary.host, store)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"of {replica.name} complete" in first.stdout
    [base] = read_manifests(fleet, target, store)
    assert base.flavor == fleet.flavor and base.source == replica.name and base.size > 0
    # the point in time: a whole second after the copy was finished, with writes on both sides
    point = datetime.fromtimestamp(math.floor(base.finished_at.timestamp()) + 2, UTC)
    poll(lambda: time.time() > point.timestamp() + 1.5, 10, what="writes past the point in time")
    writer.stop()
    assert not writer.errors, writer.errors[:3]
    committed = {int(r["id"]): float(r["at"]) for r in primary.query("SELECT id, at FROM hk.writes")}
    assert set(committed) == writer.ids()
    kept = {i for i, at in committed.items() if at < point.timestamp()}
    assert 0 < len(kept) < len(committed)
    # the GTID: the position right after one known write and before the next
    with app_connect(primary.host) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO hk.writes (id, at) VALUES (%s, 0)", (MARKS[0],))
        gtid = restore_gtid.canonical(fleet.flavor, position(primary, fleet.flavor))
        cur.execute("INSERT INTO hk.writes (id, at) VALUES (%s, 0)", (MARKS[1],))
    # the latest backup is to hold every write: the replica it copies has applied them
    poll(lambda: replica.query("SELECT COUNT(*) AS n FROM hk.writes WHERE id = %s", (MARKS[1],))[0]["n"] == 1, 30,
         what="the replica applying the last write")

    # the latest backup, taken once the writes stopped: every acknowledged write; its run also
    # stores the binary logs up to now
    second = run_backup(fleet, target, replica.host, primary.host, store)
    assert second.returncode == 0, second.stdout + second.stderr
    manifests = read_manifests(fleet, target, store)
    assert [m.id for m in manifests] == sorted(m.id for m in manifests) and len(manifests) == 2
    latest = backup.choose_base(manifests, None)
    assert latest.id != base.id and backup.choose_base(manifests, point) == base
    with pytest.raises(backup.BackupError, match="before the oldest backup"):
        backup.choose_base(manifests, base.finished_at - timedelta(seconds=1))

    # (a) the latest backup as it is
    with restored(fleet, target, backup.Restore(latest.id), store) as new:
        new.start()
        assert f"restoring backup {latest.id}" in new[0].init_output
        assert stored_ids(new[0]) == writer.ids() | set(MARKS)
        restored_loop = new.serving()
        with app_connect(new[0].host) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO hk.writes (id, at) VALUES (%s, 0)", (10_000_000,))
        restored_loop.stop()

    # (b) the first backup and the primary's binary logs, up to the point in time
    restore = backup.Restore(base.id, point, binlogs_of=primary.name)
    with restored(fleet, target, restore, store) as new:
        new.start()
        assert "replaying the binary logs up to" in new[0].init_output, new[0].init_output
        got = stored_ids(new[0])
        assert got == kept, (f"{len(got - kept)} rows after the point, {len(kept - got)} missing; "
                             f"init output:\n{new[0].init_output[-3000:]}")
        new.serving().stop()

    # (c) up to and including a GTID: the script chooses the base (the newest the GTID includes:
    # the first, unless the replica copied second had not applied the later write yet) and whose
    # binary logs; the write of that GTID is there, the next is not
    chosen = backup.choose_base(manifests, None, gtid)
    with restored(fleet, target, backup.Restore("", gtid=gtid), store) as new:
        new.start()
        assert f"restoring backup {chosen.id}" in new[0].init_output, new[0].init_output
        assert f"up to and including the GTID {gtid}" in new[0].init_output
        got = stored_ids(new[0])
        assert got == writer.ids() | {MARKS[0]}, (f"{sorted(got - writer.ids())} past the base's writes, "
                                                  f"{len(writer.ids() - got)} writes missing; GTID {gtid}, base "
                                                  f"{chosen}; init output:\n{new[0].init_output[-3000:]}")
        assert restore_gtid.includes(fleet.flavor, position(new[0], fleet.flavor), gtid)
        new.serving().stop()
    # the control: a GTID the stored binary logs never reach is refused, not restored short of it
    with restored(fleet, target, backup.Restore("", gtid=beyond(fleet.flavor, gtid)), store) as new:
        with pytest.raises(RuntimeError) as refused:
            new.start()
        assert "the binary logs in the store end at GTID position" in str(refused.value), str(refused.value)
    loop.stop()


def test_a_corrupted_backup_is_refused_and_kept_and_a_store_that_fails_leaves_earlier_backups(
        single: PodFleet) -> None:
    """The negative control of the checksum: the same backup restores once the byte is put back."""
    member = single[0]
    volume = volume_dir()
    try:
        target = backup.Target("volume", path="/backup")
        done = run_backup(single, target, member.host, member.host, None, volume)
        assert done.returncode == 0, done.stdout + done.stderr
        [manifest] = read_manifests(single, target, None, volume)
        data = volume / "db" / "base" / manifest.id / manifest.object
        assert data.stat().st_size == manifest.size
        original = data.read_bytes()
        middle = len(original) // 2
        data.write_bytes(original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1:])

        with restored(single, target, backup.Restore(manifest.id), None, volume) as new:
            with pytest.raises(RuntimeError, match="init container exited") as refused:
                new.start()
            assert f"restore refused: backup {manifest.id}'s {manifest.object} has SHA-256" in str(refused.value)
            # nothing of it was used, and the backup is still there, as it was
            assert not [p.name for p in new[0].volumes["data"].iterdir()]
            assert (data.parent / backup.MANIFEST).exists() and data.stat().st_size == manifest.size

            data.write_bytes(original)
            new.start()
            assert f"restoring backup {manifest.id}" in new[0].init_output

        # a store that does not answer: the run fails with the reason, the earlier backup stays
        unreachable = backup.Target("s3", bucket="backups", endpoint="http://127.0.60.99:1")
        failed = run_backup(single, unreachable, member.host, member.host, None)
        assert failed.returncode != 0 and "failed" in failed.stderr, failed.stderr
        assert read_manifests(single, target, None, volume) == [manifest]
    finally:
        remove(volume)


def test_retention_removes_the_oldest_backups_once_newer_ones_are_complete(single: PodFleet) -> None:
    """keep 2: the third run removes the first backup, and the binary logs stored long before
    the oldest kept backup started; the member's newest log file and the others stay."""
    member = single[0]
    volume = volume_dir()
    try:
        target = backup.Target("volume", path="/backup")
        ids = []
        logs = volume / "db" / "binlog" / member.name
        for run in range(3):
            if run == 1:
                member.query("FLUSH BINARY LOGS")  # a second file: the first is complete
            if run == 2:
                # the first file as if stored two days ago (its time in a volume target: the file's)
                first, *rest = sorted(logs.iterdir())
                assert rest, "two binary log files stored"
                os.utime(first, (time.time() - 2 * 86400,) * 2)
            # ids are whole seconds: one run per second at most (a second run in the same one stops)
            poll(lambda: not ids or backup.backup_id(datetime.now(UTC)) > ids[-1], 5, what="the next second")
            done = run_backup(single, target, member.host, member.host, None, volume, keep=2)
            assert done.returncode == 0, done.stdout + done.stderr
            ids.append(read_manifests(single, target, None, volume)[-1].id)
        assert f"retention: backup {ids[0]} removed (keeping 2)" in done.stdout
        assert [m.id for m in read_manifests(single, target, None, volume)] == ids[1:]
        assert sorted(p.name for p in (volume / "db" / "base").iterdir()) == ids[1:]
        assert f"retention: binary log {member.name}/{first.name} removed" in done.stdout, done.stdout
        assert not first.exists() and all(p.exists() for p in rest)
    finally:
        remove(volume)


def test_an_https_store_is_trusted_through_its_ca_bundle_and_refused_without(single: PodFleet) -> None:
    """spec.backup.target.s3.caSecret: the run checks the store's certificate against the CA
    bundle it is given (Target.ca_file: rclone's --ca-cert). The control: the same run without
    the bundle is refused by the certificate check, and stores nothing. The store has ports of
    its own (objectstore.start's offset): the module's plain store runs at the same time."""
    member = single[0]
    store_cert = certs.make_cert("store", hosts=("127.0.60.2",))
    ca = {"store-ca.crt": store_cert.cert_pem}
    with objectstore.running("127.0.60.2", tls=(store_cert.cert_pem, store_cert.key_pem), offset=7) as store:
        assert store.endpoint.startswith("https://")
        untrusted = backup.Target("s3", prefix="tls", bucket=store.bucket, endpoint=store.endpoint)
        refused = run_backup(single, untrusted, member.host, member.host, store)
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert "certificate" in refused.stderr, refused.stderr

        trusted = dataclasses.replace(untrusted, ca_file=f"{objects.TMP_DIR}/store-ca.crt")
        done = run_backup(single, trusted, member.host, member.host, store, tmp_files=ca)
        assert done.returncode == 0, done.stdout + done.stderr
        [manifest] = read_manifests(single, trusted, store, tmp_files=ca)
        assert manifest.source == member.name and manifest.size > 0


def test_a_point_in_time_the_stored_binary_logs_do_not_reach_back_to_is_refused(single: PodFleet) -> None:
    """The binary logs a restore replays must begin at or before the backup's position: with the
    file holding the writes just after the backup gone from the store (as retention or a failover
    leaves it), the replay would skip them without a word. It is refused, naming both positions;
    the control: the same restore with the file back holds every write."""
    # the loop keeps running: it renews the lease that keeps the primary writable (clustering/lease.py)
    loop = bootstrap(single, dataclasses.replace(Policy.from_spec(single.spec), probe_interval=0.5)).start()
    member = single[0]
    volume = volume_dir()
    try:
        target = backup.Target("volume", path="/backup")

        def write(ids: range) -> None:
            for i in ids:
                member.query("INSERT INTO hk.writes (id, at) VALUES (%s, 0)", (i,))

        write(range(1, 11))
        first = run_backup(single, target, member.host, member.host, None, volume)
        assert first.returncode == 0, first.stdout + first.stderr
        [base] = read_manifests(single, target, None, volume)
        write(range(11, 21))  # after the backup, in the file stored now
        member.query("FLUSH BINARY LOGS")
        write(range(21, 31))  # in the next file
        point = datetime.fromtimestamp(math.floor(time.time()) + 2, UTC)
        poll(lambda: time.time() > point.timestamp() + 0.5, 10, what="the point in time")
        poll(lambda: backup.backup_id(datetime.now(UTC)) > base.id, 5, what="the next second")
        second = run_backup(single, target, member.host, member.host, None, volume)
        assert second.returncode == 0, second.stdout + second.stderr
        logs = sorted((volume / "db" / "binlog" / member.name).iterdir())
        assert len(logs) >= 2, logs
        # every file up to the one the writes 11-20 are in, removed as retention removes the oldest
        kept = {path: path.read_bytes() for path in logs[:-1]}
        for path in kept:
            path.unlink()

        restore = backup.Restore(base.id, point, binlogs_of=member.name)
        with restored(single, target, restore, None, volume) as new:
            with pytest.raises(RuntimeError, match="init container exited") as refused:
                new.start()
            assert f"restore: the binary logs of {member.name} in the store begin at GTID position" \
                in str(refused.value), str(refused.value)
            # no datadir: only the partial copy, which the next start begins again
            assert [p.name for p in new[0].volumes["data"].iterdir()] == [".restoring.partial"]

            for path, data in kept.items():
                path.write_bytes(data)
            new.start()
            assert stored_ids(new[0]) == set(range(1, 31)), new[0].init_output[-3000:]
    finally:
        loop.stop()
        remove(volume)
