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
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hakeeper.replicateddatabase import backup
from hakeeper.replicateddatabase.clustering import Policy

from ..support import objectstore
from ..support.polling import poll
from .backup_support import RestoredFleet, read_manifests, remove, run_backup, s3_target, volume_dir
from .mariadb_support import Writer, app_connect, bootstrap, stored_ids
from .mysql_support import PodFleet, database_spec, pod_fleet_fixture

pytestmark = pytest.mark.integration

RESTORED_HOST = {"mariadb": "127.0.43.1", "mysql": "127.0.44.1"}


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


def test_backups_under_writes_restore_the_latest_and_a_point_in_time(fleet: PodFleet,
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
        assert stored_ids(new[0]) == writer.ids()
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
    member = single[0]
    volume = volume_dir()
    try:
        target = backup.Target("volume", path="/backup")
        ids = []
        for _ in range(3):
            # ids are whole seconds: one run per second at most (a second run in the same one stops)
            poll(lambda: not ids or backup.backup_id(datetime.now(UTC)) > ids[-1], 5, what="the next second")
            done = run_backup(single, target, member.host, member.host, None, volume, keep=2)
            assert done.returncode == 0, done.stdout + done.stderr
            ids.append(read_manifests(single, target, None, volume)[-1].id)
        assert f"retention: backup {ids[0]} removed (keeping 2)" in done.stdout
        assert [m.id for m in read_manifests(single, target, None, volume)] == ids[1:]
        assert sorted(p.name for p in (volume / "db" / "base").iterdir()) == ids[1:]
    finally:
        remove(volume)
