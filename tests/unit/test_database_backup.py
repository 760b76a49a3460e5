"""The pure parts of backups and restores (replicateddatabase.backup): names in the store,
manifests, which backup a point in time starts from (and the refusal of one before the oldest),
and the sh the job and the restoring init container run (dash parses it; the integration tier
runs it against real servers and SeaweedFS)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta

import pytest

from hakeeper.replicateddatabase import backup, objects

T0 = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)


def manifest(id_: str, done: datetime, flavor: str = "mariadb", **overrides) -> str:
    raw = {"id": id_, "flavor": flavor, "started": "2026-11-30T00:00:00Z",
           "finished": done.strftime("%Y-%m-%dT%H:%M:%SZ"), "source": "db-1",
           "gtid": "0-100-42" if flavor == "mariadb" else "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42",
           "object": backup.DATA_OBJECT[flavor], "size": 1234, "sha256": "ab" * 32, **overrides}
    return json.dumps(raw, indent=2)


def test_the_store_layout_under_a_bucket_and_a_volume() -> None:
    s3 = backup.Target("s3", prefix="team/prod", bucket="backups", endpoint="https://s3.example.com")
    assert s3.root("orders") == "store:backups/team/prod/orders"
    env = s3.env()
    assert env["RCLONE_CONFIG_STORE_TYPE"] == "s3" and env["RCLONE_CONFIG_STORE_ENDPOINT"] == "https://s3.example.com"
    assert not any("KEY" in name for name in env)  # the keys come from the Secret, not from here
    volume = backup.Target("volume", path="/backup")
    assert volume.root("orders") == "store:/backup/orders"
    assert volume.env()["RCLONE_CONFIG_STORE_TYPE"] == "local"
    tls = backup.Target("s3", bucket="backups", endpoint="https://s3.example.com", ca_file="/etc/hakeeper/ca.crt")
    assert tls.env()["RCLONE_CA_CERT"] == "/etc/hakeeper/ca.crt"


@pytest.mark.parametrize("kwargs", [
    {"kind": "s3", "bucket": "Bad_Bucket", "endpoint": "http://s3"},
    {"kind": "s3", "bucket": "backups", "endpoint": "http://s3; rm -rf /"},
    {"kind": "s3", "bucket": "backups", "endpoint": "ftp://s3"},
    {"kind": "s3", "bucket": "backups", "endpoint": "http://s3", "prefix": "../other"},
    {"kind": "s3", "bucket": "backups", "endpoint": "http://s3", "prefix": "a b"},
    {"kind": "volume", "path": "relative"},
    {"kind": "volume", "path": "/backup/$(id)"},
    {"kind": "nfs"},
    # a final newline, which "$" matches before (re.match): each would end a line of the job's sh
    {"kind": "s3", "bucket": "backups\n", "endpoint": "http://s3"},
    {"kind": "s3", "bucket": "backups", "endpoint": "http://s3\n"},
    {"kind": "s3", "bucket": "backups", "endpoint": "http://s3", "prefix": "daily\n"},
    {"kind": "volume", "path": "/backup\n"},
])
def test_a_target_that_would_reach_a_shell_unchecked_is_refused(kwargs) -> None:
    with pytest.raises(backup.BackupError):
        backup.Target(**kwargs)


@pytest.mark.parametrize("host", ["db-replicas", "10.0.0.7", "db-replicas.ns.svc.cluster.local"])
def test_job_env_names_the_replica_and_the_primary(host: str) -> None:
    env = backup.job_env(backup.Target("volume", path="/backup"), "db", host, "db-primary")
    assert env["HK_SOURCE"] == host and env["HK_PRIMARY"] == "db-primary" and env["HK_STORE_ROOT"] == "store:/backup/db"


@pytest.mark.parametrize("host", ["", "a b", "$(id)", "host;rm", "-oops", "x" * 254])
def test_job_env_refuses_a_host_that_is_not_a_name(host: str) -> None:
    with pytest.raises(backup.BackupError):
        backup.job_env(backup.Target("volume", path="/backup"), "db", host, "db-primary")


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_a_manifest_round_trips_and_is_checked(flavor: str) -> None:
    parsed = backup.Manifest.parse(manifest("20261130T000000Z", T0, flavor))
    assert parsed.source == "db-1" and parsed.size == 1234 and parsed.finished_at == T0
    for bad in ({"sha256": "zz"}, {"gtid": "'; DROP TABLE x; --"}, {"id": "latest"}, {"object": "data.sql"},
                {"finished": "yesterday"}, {"flavor": "postgres"}):
        text = json.dumps({**json.loads(manifest("20261130T000000Z", T0, flavor)), **bad})
        with pytest.raises(backup.BackupError):
            backup.Manifest.parse(text)
    with pytest.raises(backup.BackupError, match="not a backup manifest"):
        backup.Manifest.parse("{}")


def test_the_base_of_a_restore_is_the_newest_backup_finished_by_the_point() -> None:
    manifests = [backup.Manifest.parse(manifest(f"20261130T0{h}0000Z", T0 + timedelta(hours=h, minutes=5)))
                 for h in (1, 3, 5)]
    assert backup.choose_base(manifests, None).id == "20261130T050000Z"
    assert backup.choose_base(manifests, T0 + timedelta(hours=4)).id == "20261130T030000Z"
    # finished at 03:05: a point at 03:04 needs the 01:00 backup and its binary logs
    assert backup.choose_base(manifests, T0 + timedelta(hours=3, minutes=4)).id == "20261130T010000Z"
    assert backup.choose_base(manifests, T0 + timedelta(hours=3, minutes=5)).id == "20261130T030000Z"


def test_a_point_before_the_oldest_backup_is_refused_with_the_reason() -> None:
    manifests = [backup.Manifest.parse(manifest("20261130T010000Z", T0 + timedelta(hours=1, minutes=5)))]
    with pytest.raises(backup.BackupError, match=r"before the oldest backup \(20261130T010000Z, finished "
                                                 r"2026-11-30T01:05:00Z\)"):
        backup.choose_base(manifests, T0)
    with pytest.raises(backup.BackupError, match="no complete backup"):
        backup.choose_base([], T0)


def test_a_point_in_time_is_read_in_rfc3339_and_replayed_to_the_whole_second() -> None:
    point = backup.parse_time("2026-11-30T10:15:30.250+01:00")
    assert backup.stop_datetime(point) == "2026-11-30 09:15:30"
    with pytest.raises(backup.BackupError, match="no time zone"):
        backup.parse_time("2026-11-30T10:15:30")
    with pytest.raises(backup.BackupError, match="not an RFC 3339 time"):
        backup.parse_time("last tuesday")


def test_a_restore_names_a_backup_and_whose_binary_logs() -> None:
    with pytest.raises(backup.BackupError):
        backup.Restore("latest")
    with pytest.raises(backup.BackupError):
        backup.Restore("20261130T010000Z", T0, binlogs_of="db-0; reboot")
    with pytest.raises(backup.BackupError, match="no time zone"):
        backup.Restore("20261130T010000Z", datetime(2026, 11, 30), binlogs_of="db-0")


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
@pytest.mark.parametrize("point", [None, T0])
def test_the_scripts_are_posix_sh(flavor: str, point: datetime | None) -> None:
    restore = backup.Restore("20261130T010000Z", point, binlogs_of="db-0" if point else "")
    for script in (backup.backup_script(flavor), objects.init_script(flavor, backup.restore_script(flavor, restore))):
        # dash: Debian's /bin/sh, and as strict a POSIX shell as an image will have
        subprocess.run(["dash", "-n", "-c", script], check=True)


def test_the_restore_replays_from_the_copy_s_position_up_to_the_point() -> None:
    point = datetime(2026, 11, 30, 9, 15, 30, tzinfo=UTC)
    mariadb = backup.restore_script("mariadb", backup.Restore("20261130T010000Z", point, binlogs_of="db-0"))
    assert "HK_RESTORE_STOP='2026-11-30 09:15:30'" in mariadb and "--start-position=$start" in mariadb
    mysql = backup.restore_script("mysql", backup.Restore("20261130T010000Z", point, binlogs_of="db-0"))
    assert "--exclude-gtids=$start" in mysql
    latest = backup.restore_script("mysql", backup.Restore("20261130T010000Z"))
    assert "binlog" not in latest


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_the_server_on_the_copy_runs_no_events(flavor: str) -> None:
    """The copy's self-fencing event, with its lapsed lease, made the writable server on the copy
    read-only within a second; on MySQL (super_read_only) the replay failed half-way with
    ERROR 1290 (bench/backup, 1 GiB, a few seconds of binary logs)."""
    script = backup.restore_script(flavor, backup.Restore("20261130T010000Z", datetime(2026, 11, 30, tzinfo=UTC),
                                                          binlogs_of="db-0"))
    # the command that starts it (continued lines, up to its `&`)
    command = script[script.index(f"{objects.layout(flavor).server} --defaults-file"):].split(" &\n")[0]
    assert "--event-scheduler=OFF" in command, command


def retention(listing: dict[str, bool], keep: int, binlogs: dict[str, str] | None = None) -> tuple[list[str], str]:
    """RETENTION run by dash against a store of `listing` (base id -> has a manifest) and
    `binlogs` (<member>/<file> -> its time in the store, "YYYY-MM-DD HH:MM:SS"), rclone being a
    stand-in that lists them and records what is purged or deleted; returns (removed, output)."""
    fake = """rclone() {
  case "$1 $2 $4 $5" in
    "lsf -R --format tp") printf '%s' "$BINLOGS" ;;
    "lsf -R"*) printf '%s' "$FILES" ;;
    "lsf --dirs-only"*) printf '%s' "$DIRS" ;;
    purge*) echo "purged ${2##*/}" >> "$PURGED" ;;
    deletefile*) echo "deleted ${2#*/binlog/}" >> "$PURGED" ;;
  esac
}
"""
    with tempfile.NamedTemporaryFile("r") as purged:
        env = {"PATH": "/usr/bin:/bin", "HK_KEEP": str(keep), "HK_STORE_ROOT": "store:b/db", "PURGED": purged.name,
               "FILES": "".join(f"{i}/{backup.MANIFEST}\n{i}/{backup.DATA_OBJECT['mysql']}\n"
                                if complete else f"{i}/{backup.DATA_OBJECT['mysql']}\n"
                                for i, complete in listing.items()),
               "DIRS": "".join(f"{i}/\n" for i in listing),
               "BINLOGS": "".join(f"{t};{f}\n" for f, t in (binlogs or {}).items())}
        done = subprocess.run(["dash", "-ec", fake + backup.RETENTION], env=env, capture_output=True, text=True,
                              check=True)
        return [line.split()[1] for line in purged.read().splitlines()], done.stdout


def test_retention_keeps_the_newest_complete_backups_and_what_is_under_way() -> None:
    store = {"20261101T000000Z": True, "20261102T000000Z": False, "20261103T000000Z": True,
             "20261104T000000Z": True, "20261105T000000Z": False}
    purged, output = retention(store, keep=2)
    # the 3rd and 4th are kept; older ones go, the failed 2nd with them; the 5th is a run under way
    assert purged == ["20261101T000000Z", "20261102T000000Z"]
    assert "retention: backup 20261101T000000Z removed (keeping 2)" in output
    assert retention(store, keep=1)[0] == ["20261101T000000Z", "20261102T000000Z", "20261103T000000Z"]
    # as many complete backups as `keep` or fewer, or no retention: nothing goes
    assert retention(store, keep=3)[0] == retention(store, keep=4)[0] == retention(store, keep=0)[0] == []


def test_retention_is_a_count() -> None:
    with pytest.raises(backup.BackupError):
        backup.job_env(backup.Target("volume", path="/backup"), "db", "db-replicas", "db-primary", keep=-1)


def test_retention_removes_the_binary_logs_no_kept_backup_needs() -> None:
    """A file goes when it was stored an hour (BINLOG_MARGIN_SECONDS) before the oldest kept
    backup started; a later one stays, and so does each member's newest file, however old (the
    next run copies from it on)."""
    store = {"20261101T000000Z": True, "20261103T000000Z": True, "20261104T000000Z": True}
    binlogs = {"db-0/mysql-bin.000001": "2026-11-02 12:00:00", "db-0/mysql-bin.000002": "2026-11-02 22:59:59",
               "db-0/mysql-bin.000003": "2026-11-02 23:00:00", "db-0/mysql-bin.000004": "2026-11-03 00:10:00",
               "db-1/mysql-bin.000007": "2026-11-01 00:00:00"}
    removed, output = retention(store, keep=2, binlogs=binlogs)
    assert removed == ["20261101T000000Z", "db-0/mysql-bin.000001", "db-0/mysql-bin.000002"]
    assert ("retention: binary log db-0/mysql-bin.000001 removed (written before 2026-11-02 23:00:00, an hour "
            "before backup 20261103T000000Z)") in output
    # the control: keeping all three, the oldest kept started on Nov 1st, and every file is newer
    assert retention(store, keep=3, binlogs=binlogs)[0] == []
    assert retention(store, keep=0, binlogs=binlogs)[0] == []
