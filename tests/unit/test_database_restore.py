"""spec.restore (replicateddatabase.restore): what the members' pods get, the base the restoring
script chooses (the same as backup.choose_base, run by dash), what the first member's init
container says about its restore, and the re-seed of the new members without asking."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from hakeeper.api.conditions import DatabaseReason
from hakeeper.api.events import DatabaseEvent
from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec, RestoreSpec, RestoreStatus
from hakeeper.replicateddatabase import backup, objects, reseed, restore, restore_gtid

T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
S3 = {"s3": {"endpoint": "http://10.0.0.1:8333", "bucket": "backups", "credentials": {"name": "store"}},
      "prefix": "hk"}


def spec(flavor: str = "mysql", **restore_spec) -> ReplicatedDatabaseSpec:
    return ReplicatedDatabaseSpec.model_validate({"flavor": flavor, "restore": {
        "database": "orders", "target": S3, **restore_spec}})


def template(s: ReplicatedDatabaseSpec) -> dict:
    extras = restore.pod_extras(s.flavor, s.restore) if s.restore else None
    return objects.statefulset("db", "ns", s, restore=extras)["spec"]["template"]["spec"]


# ------------------------------------------------------------------------ the base chosen in sh

def sh_choice(rows: list[tuple[str, datetime]], point: datetime | None) -> tuple[str, str]:
    """backup.CHOOSE_BASE_FUNCTION run by dash on `<id> <finished>` lines: (stdout, stderr)."""
    text = "".join(f"{id_} {done.strftime('%Y-%m-%dT%H:%M:%SZ')}\n" for id_, done in rows)
    stamp = "" if point is None else point.strftime("%Y-%m-%dT%H:%M:%SZ")
    done = subprocess.run(["dash", "-c", backup.CHOOSE_BASE_FUNCTION + 'choose_base "$1"', "sh", stamp],
                          input=text, capture_output=True, text=True)
    return done.stdout.strip(), done.stderr.strip()


def manifests(rows: list[tuple[str, datetime]]) -> list[backup.Manifest]:
    return [backup.Manifest(id=i, flavor="mysql", started=d.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            finished=d.strftime("%Y-%m-%dT%H:%M:%SZ"), source="db-1", gtid="", object="data.tar.zst",
                            size=1, sha256="ab" * 32) for i, d in rows]


ROWS = [("20261130T010000Z", T0 + timedelta(minutes=3)), ("20261130T020000Z", T0 + timedelta(hours=1, minutes=5)),
        # out of order in the listing, and one finished long after it started
        ("20261130T013000Z", T0 + timedelta(hours=1, minutes=50))]


@pytest.mark.parametrize("point", [None, T0 + timedelta(minutes=3), T0 + timedelta(minutes=50),
                                   T0 + timedelta(hours=1, minutes=6), T0 + timedelta(hours=1, minutes=51),
                                   T0 + timedelta(days=3)])
def test_the_script_chooses_the_base_as_choose_base_does(point: datetime | None) -> None:
    out, err = sh_choice(ROWS, point)
    assert (out, err) == (backup.choose_base(manifests(ROWS), point).id, "")


def test_the_script_refuses_a_point_before_the_oldest_backup_as_choose_base_does() -> None:
    point = T0 + timedelta(minutes=2)
    out, err = sh_choice(ROWS, point)
    with pytest.raises(backup.BackupError) as refused:
        backup.choose_base(manifests(ROWS), point)
    assert out == "" and err == f"restore: {refused.value}"
    assert "before the oldest backup (20261130T010000Z, finished 2026-11-30T01:03:00Z)" in err
    out, err = sh_choice([], None)
    assert out == "" and err == "restore: there is no complete backup to restore from"


# ------------------------------------------------------------------------ the pods

def test_the_first_member_restores_with_the_store_s_keys_from_the_secret() -> None:
    pod = template(spec(pointInTime="2026-11-30T10:15:00Z",
                        target={**S3, "s3": {**S3["s3"], "credentials": {"name": "store", "accessKeyIdKey": "id"},
                                             "caSecret": {"name": "store-ca", "key": "ca.pem"}}}))
    init = pod["initContainers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in init["env"]}
    assert env["HK_STORE_ROOT"] == "store:backups/hk/orders"
    assert env["RCLONE_CONFIG_STORE_ENDPOINT"] == "http://10.0.0.1:8333"
    assert env["RCLONE_CONFIG_STORE_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "store", "key": "id"}}
    assert env["RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "store",
                                                                            "key": "secret-access-key"}}
    assert env["RCLONE_CA_CERT"] == f"{restore.CA_DIR}/{restore.CA_FILE}"
    assert {"name": "restore-ca", "mountPath": restore.CA_DIR, "readOnly": True} in init["volumeMounts"]
    assert {"name": "restore-ca", "secret": {"secretName": "store-ca", "items": [
        {"key": "ca.pem", "path": "ca.crt"}]}} in pod["volumes"]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    script = init["command"][2]
    subprocess.run(["dash", "-n", "-c", script], check=True)
    # the base is chosen in the store (no backup named), up to the point, on ordinal 0 only, before
    # an empty datadir would be initialised
    assert "HK_RESTORE_POINT='2026-11-30T10:15:00Z'" in script and "choose_base" in script
    assert "HK_RESTORE_STOP='2026-11-30 10:15:00'" in script and "HK_RESTORE_BINLOGS_OF=$(" in script
    assert script.index('if [ "$ordinal" = 0 ]') < script.index("restore.sh") < script.index(".initialising")
    # the server container has none of the store's keys
    assert not any("RCLONE" in e["name"] for e in pod["containers"][0]["env"])


def test_a_named_backup_and_a_volume_target() -> None:
    pod = template(spec("mariadb", backup="20261130T010000Z", target={"volume": {"claimName": "backups"}}))
    init = pod["initContainers"][0]
    script = init["command"][2]
    subprocess.run(["dash", "-n", "-c", script], check=True)
    assert "HK_RESTORE_ID=20261130T010000Z" in script and "choose_base" not in script and "binlog/" not in script
    env = {e["name"]: e.get("value") for e in init["env"]}
    assert env["HK_STORE_ROOT"] == f"store:{restore.VOLUME_MOUNT}/orders"
    assert {"name": "restore-store", "persistentVolumeClaim": {"claimName": "backups", "readOnly": True}} \
        in pod["volumes"]
    assert {"name": "restore-store", "mountPath": restore.VOLUME_MOUNT, "readOnly": True} in init["volumeMounts"]


def test_without_restore_the_pod_template_is_as_before() -> None:
    """A database without spec.restore keeps the template it had (no rollout of every database
    on upgrade): nothing of the restore in it."""
    plain = ReplicatedDatabaseSpec.model_validate({"flavor": "mysql"})
    pod = template(plain)
    assert pod == objects.statefulset("db", "ns", plain)["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert "terminationMessagePolicy" not in init and "restore" not in init["command"][2]


def test_the_wrapper_s_last_line_says_why_it_failed(tmp_path) -> None:
    """init_part run by dash with a restore script that fails as the real one does: the last
    line (and the termination message's fallback, the log's tail) is `restore failed: <why>`."""
    part = restore.init_part("mysql", backup.Restore("20261130T010000Z"))
    head, rest = part.split("<<'HAKEEPER_RESTORE'\n", 1)
    _, tail = rest.split("HAKEEPER_RESTORE\n", 1)
    failing = "echo 'restoring backup 20261130T010000Z'\necho 'restore: cannot download data.tar.zst' >&2\nexit 1\n"
    script = (head + "<<'HAKEEPER_RESTORE'\n" + failing + "HAKEEPER_RESTORE\n" + tail).replace(
        objects.TMP_DIR + "/", f"{tmp_path}/")
    # as in init_script: set -eu first
    done = subprocess.run(["dash", "-c", "set -eu\nordinal=0\n" + script], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["restore failed: cannot download data.tar.zst"]
    assert (tmp_path / "restore.rc").read_text() == "1\n"
    assert (tmp_path / "restore.log").read_text() == ("restoring backup 20261130T010000Z\n"
                                                     "restore: cannot download data.tar.zst\n")
    (tmp_path / "restore.sh").unlink()
    other = subprocess.run(["dash", "-c", "set -eu\nordinal=1\n" + script], capture_output=True, text=True)
    assert other.returncode == 0 and not (tmp_path / "restore.sh").exists()  # only the first member restores


# ------------------------------------------------------------------------ what the status says

def pod_with(state: dict, last: dict | None = None) -> dict:
    return {"status": {"initContainerStatuses": [{"name": "init", "state": state, "lastState": last or {}}]}}


def test_the_restore_s_phase_from_the_init_container() -> None:
    assert restore.observe(None)[0] == "Restoring"
    assert restore.observe(pod_with({"running": {}}))[0] == "Restoring"
    failed = pod_with({"terminated": {"exitCode": 1, "message": "restoring backup x\nrestore failed: the point in "
                                                                 "time 2000-01-01T00:00:00Z is before the oldest"}})
    assert restore.observe(failed) == ("Failed", "restore failed: the point in time 2000-01-01T00:00:00Z is before "
                                                 "the oldest")
    # a retry running after a failure: still failed, for the same reason
    retry = pod_with({"running": {}}, {"terminated": {"exitCode": 1, "message": "rclone: connection refused"}})
    assert restore.observe(retry) == ("Failed", "restore failed: rclone: connection refused")
    keys = pod_with({"waiting": {"reason": "CreateContainerConfigError",
                                 "message": "couldn't find key secret-access-key in Secret ns/store"}})
    phase, message = restore.observe(keys)
    assert phase == "Failed" and "couldn't find key secret-access-key in Secret ns/store" in message
    ok = pod_with({"terminated": {"exitCode": 0, "message": "restoring backup 20261130T010000Z (data.tar.zst) "
                                                             "restored data as of GTID position 'x:1-9'"}},
                  {"terminated": {"exitCode": 1, "message": "restore failed: the store is unreachable"}})
    assert restore.observe(ok)[0] == "Completed"


def test_status_and_events_through_a_failure_to_completion() -> None:
    s = spec(pointInTime="2026-11-30T10:15:00Z").restore
    assert s is not None
    first, events = restore.progress(None, s, ("Restoring", "restoring"))
    assert first.phase == "Restoring" and [e for e, _ in events] == [DatabaseEvent.RESTORE_STARTED]
    verdict = restore.verdict(first)
    assert verdict is not None and verdict.reason == DatabaseReason.RESTORING and not verdict.status
    failed, events = restore.progress(first, s, ("Failed", "restore failed: the store is unreachable"))
    assert [e for e, _ in events] == [DatabaseEvent.RESTORE_FAILED] and "nothing was deleted" in events[0][1]
    verdict = restore.verdict(failed)
    assert verdict is not None and verdict.reason == DatabaseReason.RESTORE_FAILED
    assert verdict.message == "restore failed: the store is unreachable"
    again, events = restore.progress(failed, s, ("Failed", "restore failed: the store is unreachable"))
    assert events == [] and again == failed  # one Event per failure, not one per pass
    done, events = restore.progress(again, s, ("Completed", "restoring backup 20261130T010000Z (data.tar.zst) "
                                                            "restored data as of GTID position 'x:1-9'"))
    assert [e for e, _ in events] == [DatabaseEvent.RESTORE_COMPLETED]
    assert done.phase == "Completed" and done.backup == "20261130T010000Z"  # the one the script chose
    assert restore.verdict(done) is None
    later, events = restore.progress(done, s, ("Failed", "anything"))
    assert later == done and events == []  # complete is final: a restart later changes nothing


def test_a_status_restore_round_trips() -> None:
    status = RestoreStatus(phase="Failed", backup=None, point_in_time="2026-11-30T10:15:00Z", message="x")
    assert RestoreStatus.model_validate(status.model_dump(by_alias=True)) == status


# ------------------------------------------------------------------------ the new members

def members(reason: str) -> list[dict]:
    return [{"name": "db-0", "role": "primary", "serving": True, "reachable": True},
            {"name": "db-1", "role": "replica", "serving": False, "reachable": True, "reseed": reason}]


PODS = {"db-0": {"metadata": {"uid": "u0"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        "db-1": {"metadata": {"uid": "u1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}}
GONE = "its source no longer has the binary logs it needs (13114: ...)"


@pytest.mark.parametrize("restored, reason, action", [
    (True, GONE, "begin"),  # a new member of a restored database: rebuilt without asking
    (False, GONE, "report"),  # the control: any other database asks (autoReseed false)
    (True, f"{reseed.ERRANT} (x:1)", "report"),  # errant data is never rebuilt without approval
])
def test_the_new_members_of_a_restored_database_are_seeded_without_asking(restored: bool, reason: str,
                                                                          action: str) -> None:
    decision = reseed.decide("mysql", members(reason), PODS, {"db-0": "10.0.0.1", "db-1": "10.0.0.2"}, {}, "db-0",
                             auto=False, requested=None, copies={}, busy=False, new_id="t1", now="now",
                             restored=restored)
    assert decision.action == action
    if action == "begin":
        assert decision.entry is not None and decision.entry.donor == "db-0" and decision.entry.keep == "discard"
        assert reseed.verdict(decision, "db", auto=False).reason == DatabaseReason.RESEEDING


def test_a_point_in_time_that_is_not_rfc3339_never_reaches_the_script() -> None:
    with pytest.raises(ValueError):
        RestoreSpec.model_validate({"database": "orders", "target": S3, "pointInTime": "yesterday"})


# ------------------------------------------------------------------------ up to a GTID

U1, U2 = "3e11fa47-71ca-11e1-9e33-c80aa9429562", "4f22ab58-82db-22f2-8f44-d91bb0530673"
INCLUDES_CASES = [
    # (flavor, outer, inner, outer includes inner)
    ("mariadb", "0-1-100", "0-1-100", True),
    ("mariadb", "0-1-100", "0-1-101", False),
    ("mariadb", "0-2-150", "0-1-90", True),  # a failover changed the server id, not the history
    ("mariadb", "0-1-100,1-1-5", "1-1-6", False),
    ("mariadb", "0-1-100", "1-1-1", False),  # a domain the outer never saw
    ("mariadb", "0-1-100", "", True),
    ("mariadb", "", "0-1-1", False),
    ("mariadb", "0-1-9", "0-1-10", False),  # numbers, not strings
    ("mysql", f"{U1}:1-100", f"{U1}:1-100", True),
    ("mysql", f"{U1}:1-100", f"{U1}:1-101", False),
    ("mysql", f"{U1}:1-100", f"{U1}:5-9:20", True),
    ("mysql", f"{U1}:1-50:52-100", f"{U1}:1-100", False),  # a hole
    ("mysql", f"{U1}:1-100,{U2}:1-5", f"{U2}:1-6", False),
    ("mysql", f"{U1}:1-100", f"{U2}:1", False),
    ("mysql", f"{U1}:1-100,{U2}:1-5", f"{U1}:1-99,{U2}:3", True),
    ("mysql", f"{U1}:1-9", f"{U1}:10", False),
    ("mysql", f"{U1}:1-5:tag_a:1-3", f"{U1}:tag_a:2", True),
    ("mysql", f"{U1}:1-5:tag_a:1-3", f"{U1}:tag_b:2", False),
    ("mysql", f"{U1}:1-5", "", True),
    ("mysql", "", f"{U1}:1", False),
]


@pytest.mark.parametrize(("flavor", "outer", "inner", "expected"), INCLUDES_CASES)
def test_the_script_compares_gtid_positions_as_python_does(flavor: str, outer: str, inner: str,
                                                           expected: bool) -> None:
    """restore_gtid.INCLUDES_AWK (what the restoring script runs) against restore_gtid.includes."""
    assert restore_gtid.includes(flavor, outer, inner) is expected
    program = restore_gtid.INCLUDES_AWK + "BEGIN { print includes(outer, inner, flavor) }"
    done = subprocess.run(["awk", "-v", f"outer={outer}", "-v", f"inner={inner}", "-v", f"flavor={flavor}", program],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ("1" if expected else "0")


def gtid_rows(flavor: str) -> list[tuple[str, datetime, str]]:
    if flavor == "mariadb":
        return [("20261130T010000Z", T0, "0-1-100"), ("20261130T020000Z", T0 + timedelta(hours=1), "0-2-250"),
                ("20261130T013000Z", T0 + timedelta(minutes=30), "0-1-180")]
    return [("20261130T010000Z", T0, f"{U1}:1-100"), ("20261130T020000Z", T0 + timedelta(hours=1),
                                                       f"{U1}:1-200,{U2}:1-50"),
            ("20261130T013000Z", T0 + timedelta(minutes=30), f"{U1}:1-180")]


def gtid_choice(flavor: str, rows: list[tuple[str, datetime, str]], target: str) -> tuple[str, str]:
    text = "".join(f"{i} {d.strftime('%Y-%m-%dT%H:%M:%SZ')} {g}\n" for i, d, g in rows)
    done = subprocess.run(["dash", "-c", backup.CHOOSE_BASE_FUNCTION + 'choose_base "" "$1" "$2"', "sh", target,
                           flavor], input=text, capture_output=True, text=True)
    return done.stdout.strip(), done.stderr.strip()


@pytest.mark.parametrize(("flavor", "target"), [
    ("mariadb", "0-1-100"), ("mariadb", "0-1-179"), ("mariadb", "0-1-180"), ("mariadb", "0-2-9999"),
    ("mariadb", "0-1-99"),
    ("mysql", f"{U1}:1-100"), ("mysql", f"{U1}:1-199"), ("mysql", f"{U1}:1-300,{U2}:1-50"),
    ("mysql", f"{U1}:1-300"), ("mysql", f"{U1}:1-99")])
def test_the_script_chooses_the_base_for_a_gtid_as_choose_base_does(flavor: str, target: str) -> None:
    """The newest backup whose position the GTID includes; a GTID before the oldest backup is
    refused with the same words."""
    rows = gtid_rows(flavor)
    found = [backup.Manifest(id=i, flavor=flavor, started=d.strftime("%Y-%m-%dT%H:%M:%SZ"),  # type: ignore[arg-type]
                             finished=d.strftime("%Y-%m-%dT%H:%M:%SZ"), source="db-1", gtid=g,
                             object=backup.DATA_OBJECT[flavor], size=1, sha256="ab" * 32) for i, d, g in rows]
    target = restore_gtid.canonical(flavor, target)
    out, err = gtid_choice(flavor, rows, target)
    try:
        expected = (backup.choose_base(found, None, target).id, "")
    except backup.BackupError as refused:
        expected = ("", f"restore: {refused}")
        assert "before the oldest backup (20261130T010000Z, at GTID position" in err
    assert (out, err) == expected
    # a backup without a position (nothing written yet, or a MySQL backup before positions were
    # recorded) is never a GTID restore's base: what it holds is not known
    empty = [("20261130T000000Z", T0 - timedelta(hours=1), "")]
    assert gtid_choice(flavor, empty + rows, target)[0] == expected[0]


def test_a_gtid_is_taken_in_the_flavor_s_form_and_written_canonical() -> None:
    assert restore_gtid.canonical("mariadb", "1-1-5,0-1-100") == "0-1-100,1-1-5"
    assert restore_gtid.canonical("mysql", f"{U1.upper()}:1-5:6-9:20") == f"{U1}:1-9:20"
    for flavor, bad in (("mariadb", f"{U1}:1-5"), ("mysql", "0-1-100"), ("mysql", f"{U1}:9-5"), ("mysql", "")):
        with pytest.raises(restore_gtid.GtidError):
            restore_gtid.canonical(flavor, bad)


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_the_first_member_replays_up_to_and_including_the_gtid(flavor: str) -> None:
    gtid = "0-1-1042" if flavor == "mariadb" else f"{U1.upper()}:1-1042"
    s = spec(flavor, gtid=gtid)
    script = template(s)["initContainers"][0]["command"][2]
    subprocess.run(["dash", "-n", "-c", script], check=True)
    canonical = restore_gtid.canonical(flavor, gtid)
    assert f"HK_RESTORE_GTID='{canonical}'" in script and "choose_base" in script
    assert "HK_RESTORE_BINLOGS_OF=$(" in script and "--stop-datetime" not in script
    stop = '--stop-position="$HK_RESTORE_GTID"' if flavor == "mariadb" else '--include-gtids="$HK_RESTORE_GTID"'
    assert stop in script
    # the position reached is checked against the GTID before the copy becomes the datadir
    assert script.index("before the GTID") < script.index('mv "$partial/data" "$restoring"')
    assert "up to and including GTID" in restore.describe(s.restore)  # type: ignore[arg-type]


def test_a_gtid_the_restore_cannot_use_is_refused_before_anything_is_made() -> None:
    """The schema lets `uuid:9-5` through (an interval's end before its start): pod_extras
    refuses it, and the pass reports it (reconcile.RestoreInvalid: Ready=False RestoreFailed)."""
    s = spec("mysql", gtid=f"{U1}:9-5")
    with pytest.raises(ValueError, match="bad GTID interval"):
        restore.pod_extras(s.flavor, s.restore)  # type: ignore[arg-type]
