"""ReplicatedDatabase re-seed on a real node, as a user sees it.

A 3-member database (spec.autoReseed false, the default), an application writing through the
`-primary` Service with the generated `app` account. A replica is made errant: root writes a row
on it directly, with binary logging on, so it holds a transaction the primary lacks. The
operator takes it out of the cluster and asks for approval (member errant, not serving, its
`reseed` reason; condition ReseedRequired=True AwaitingApproval with the `kubectl annotate`
command; a Warning Event ReseedRequired), and does nothing more. A person annotates
`hakeeper.io/reseed=<ordinal>`: the operator rebuilds the member from a healthy member's data
(MySQL: its own server clones the donor next to its data, its pod is evicted, the init container
swaps the copy in; MariaDB: its pod is evicted, its init container streams a mariabackup copy
from the donor pod's backup container, prepares it and swaps it in), keeps the errant data on the member's volume as `errant-<id>/`, and the
member serves again. No acknowledged write is lost, the errant row is on no serving member, and
the primary never changes.
"""

from __future__ import annotations

import json
import time

import pymysql
import pytest

from hakeeper.replicateddatabase.clustering.flavor import flavor_for

from ..support.polling import poll
from .test_database_failover import (
    _application,
    _healthy,
    _pod_ip,
    _status,
    _stored,
    _writer,
)

pytestmark = pytest.mark.e2e


ERRANT_ID = 999_999_999
"""The row written on the replica alone: far from every id the writer uses."""
FIRST_ID = 7_000_000
VOLUME = "/var/lib/mysql"
"""Where each member's volume is mounted (operator objects.VOLUME_DIR)."""


def _members(status: dict) -> dict[str, dict]:
    return {m["name"]: m for m in status.get("members") or []}


def _condition_of(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def _events(database, namespace: str) -> list[dict]:
    """The database's Events (reason, type, message, ...), oldest first."""
    items = database.get("events", "-n", namespace, "--field-selector",
                         "involvedObject.kind=ReplicatedDatabase,involvedObject.name=db")["items"]
    return sorted(items, key=lambda e: e.get("firstTimestamp") or e.get("eventTime") or "")


def _event(events: list[dict], reason: str) -> dict | None:
    return next((e for e in events if e.get("reason") == reason), None)


def _annotations(database, namespace: str) -> dict:
    return database.get("rdb", "db", "-n", namespace)["metadata"].get("annotations") or {}


def _reseed_entries(database, namespace: str) -> dict[str, str]:
    """The `db-reseed` ConfigMap's data (member -> entry), {} when there is no such ConfigMap."""
    found = database.kubectl("get", "configmap", "db-reseed", "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        assert "NotFound" in found.stderr, found.stderr
        return {}
    return json.loads(found.stdout).get("data") or {}


def _track(transitions: list[tuple], since: float, member: dict) -> None:
    """Appends (seconds since `since`, role, serving, errant, message, lag) when the role, serving,
    errant or message changed."""
    state = (member.get("role"), member.get("serving"), member.get("errant"), member.get("message"))
    if not transitions or transitions[-1][1:5] != state:
        transitions.append((round(time.monotonic() - since, 1), *state, member.get("lagSeconds")))


def _has(database, namespace: str, member: str, password: str, row: int) -> bool:
    with pymysql.connect(host=_pod_ip(database, namespace, member), user="root", password=password,
                         database="app", connect_timeout=5) as c, c.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t WHERE id = %s", (row,))
        return cur.fetchone()[0] > 0


def _diagnosis(database, namespace: str, victim: str) -> str:
    """What the operator decided and saw, for a failure message."""
    status = _status(database, namespace, "db")
    events = "\n".join(f"{e.get('type')} {e.get('reason')}: {e.get('message')}" for e in _events(database, namespace))
    pods = database.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
    every = database.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
    init = database.kubectl("logs", "-n", namespace, victim, "-c", "init", check=False)
    server = database.kubectl("logs", "-n", namespace, victim, "-c", database.flavor, "--tail=40", check=False)
    donors = ""  # where a copy is served from a sidecar (MariaDB's backup container), its side of the story
    for pod in database.get("pods", "-n", namespace, "-l", "app.kubernetes.io/instance=db")["items"]:
        if any(c["name"] == "backup" for c in pod["spec"]["containers"]):
            name = pod["metadata"]["name"]
            backup = database.kubectl("logs", "-n", namespace, name, "-c", "backup", "--tail=30", check=False)
            donors += f"{name} backup log:\n{backup.stdout}{backup.stderr}\n"
    log = database.kubectl("logs", "-n", "hakeeper-system", "deployment/hakeeper", "--tail=120", check=False).stdout
    return (f"status: {json.dumps(status, indent=1)}\nreseed ConfigMap: {_reseed_entries(database, namespace)}\n"
            f"the database's events:\n{events}\n{pods}\nevery event:\n{every[-4000:]}\n"
            f"{victim} init log:\n{init.stdout}{init.stderr}\n{victim} server log:\n{server.stdout}{server.stderr}\n"
            f"{donors}operator log:\n{log}")


def test_an_errant_replica_is_reseeded_once_a_person_approves_keeping_its_errant_data(database, namespace):
    try:
        before = _healthy(database, namespace)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{_diagnosis(database, namespace, 'db-2')}") from None
    primary, history = before["currentPrimary"], before.get("history") or []
    victim = "db-2" if primary != "db-2" else "db-1"
    other = next(m for m in ("db-0", "db-1", "db-2") if m not in (primary, victim))
    password, app_password, service_ip = _application(database, namespace)
    old_uid = database.get("pod", victim, "-n", namespace)["metadata"]["uid"]
    writer = _writer(service_ip, FIRST_ID, app_password)
    writer.start()
    try:
        poll(lambda: len(writer.acked) > 50, 60, what="the writer's first writes")

        # the replica writes a row of its own, binlogged with its own GTID: errant
        with pymysql.connect(host=_pod_ip(database, namespace, victim), user="root", password=password,
                             database="app", autocommit=True, connect_timeout=5) as c, c.cursor() as cur:
            for sql, args in flavor_for(database.flavor).unlocked([("INSERT INTO t (id) VALUES (%s)",
                                                                      (ERRANT_ID,))]):
                cur.execute(sql, args or None)
        errant_at = time.monotonic()

        def awaiting_approval():
            status = _status(database, namespace, "db")
            member = _members(status).get(victim) or {}
            condition = _condition_of(status, "ReseedRequired")
            if member.get("errant") and member.get("reseed") and condition.get("reason") == "AwaitingApproval":
                return status
            return None

        try:
            flagged = poll(awaiting_approval, 120, what=f"{victim} errant, awaiting approval of its re-seed",
                           interval=0.5)
            required = poll(lambda: _event(_events(database, namespace), "ReseedRequired"), 60,
                            what="a ReseedRequired Event", interval=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{_diagnosis(database, namespace, victim)}") from None
        flagged_seconds = time.monotonic() - errant_at
        member = _members(flagged)[victim]
        assert member["serving"] is False and member["errant"] is True, member
        assert member["reseed"].startswith("it has transactions the primary lacks"), member
        condition = _condition_of(flagged, "ReseedRequired")
        command = f"kubectl annotate rdb db hakeeper.io/reseed={victim}"
        assert condition["status"] == "True" and command in condition["message"], condition
        assert required["type"] == "Warning" and command in required["message"], required
        assert victim in required["message"]
        # nothing happens without approval: no re-seed under way, no record of one
        assert not flagged.get("reseed"), flagged.get("reseed")
        assert victim not in _reseed_entries(database, namespace)
        # the errant member is out of the -replicas Service: its role label is no longer replica
        poll(lambda: (database.get("pod", victim, "-n", namespace)["metadata"].get("labels") or {}).get(
            "hakeeper.io/role") != "replica", 30, what=f"{victim}'s replica label removed")

        # a person approves, naming the member by its ordinal
        approved_at = time.monotonic()
        database.kubectl("annotate", "rdb", "db", "-n", namespace, f"hakeeper.io/reseed={victim.rsplit('-', 1)[1]}")
        seen: dict = {"phases": [], "reseed": None, "entry": None, "unannotated": None, "replaced": None}
        transitions: list[tuple] = []

        def reseeded():
            status = _status(database, namespace, "db")
            reseed = status.get("reseed")
            if reseed:
                seen["reseed"] = seen["reseed"] or reseed
                if not seen["phases"] or seen["phases"][-1] != reseed["phase"]:
                    seen["phases"].append(reseed["phase"])
            entry = _reseed_entries(database, namespace).get(victim)
            if entry:
                seen["entry"] = seen["entry"] or entry
            if seen["unannotated"] is None and "hakeeper.io/reseed" not in _annotations(database, namespace):
                seen["unannotated"] = time.monotonic()
            pod = database.get("pod", victim, "-n", namespace)
            if seen["replaced"] is None and pod["metadata"]["uid"] != old_uid:
                seen["replaced"] = time.monotonic()
            member = _members(status).get(victim) or {}
            _track(transitions, approved_at, member)
            done = (not reseed and member.get("serving") and not member.get("errant")
                    and _condition_of(status, "ReseedRequired").get("status") == "False"
                    and _event(_events(database, namespace), "ReseedCompleted"))
            return status if done and seen["replaced"] else None

        try:
            after = poll(reseeded, 180, what=f"{victim} re-seeded and serving", interval=0.5,
                         ignore=AssertionError)  # a kubectl call that failed (the pod being replaced)
        except AssertionError as error:
            raise AssertionError(f"{error}; seen {seen}\n{_diagnosis(database, namespace, victim)}") from None
        reseed_seconds = time.monotonic() - approved_at
        count = len(writer.acked)

        def more_writes():
            _track(transitions, approved_at, _members(_status(database, namespace, "db")).get(victim) or {})
            return len(writer.acked) > count + 500

        poll(more_writes, 60, what="writes after the re-seed", interval=0.5)
    finally:
        writer.stop(10)

    # the approval was used once and removed
    assert seen["unannotated"] is not None and "hakeeper.io/reseed" not in _annotations(database, namespace)
    # status.reseed named the member and the donor: the other replica, which served and lagged least
    assert seen["reseed"] is not None, seen
    assert (seen["reseed"]["member"], seen["reseed"]["donor"]) == (victim, other), seen["reseed"]
    assert seen["reseed"]["started"], seen["reseed"]
    assert "Restarting" in seen["phases"] and seen["phases"] in (["Restarting"], ["Copying", "Restarting"]), seen
    assert seen["entry"] is not None and "keep=errant" in seen["entry"], seen["entry"]
    copy_id = next(line.split("=", 1)[1] for line in seen["entry"].splitlines() if line.startswith("id="))

    # the Events tell the story (MySQL's copy is its server's clone: Cloned)
    events = _events(database, namespace)
    reasons = [e["reason"] for e in events]
    story = ["ReseedRequired", "ReseedStarted", *(["Cloned"] if database.flavor == "mysql" else []),
             "ReseedRestart", "ReseedCompleted"]
    for reason in story:
        assert reason in reasons, f"no {reason} Event: {reasons}"
    assert "ReseedFailed" not in reasons, _diagnosis(database, namespace, victim)
    started, completed = _event(events, "ReseedStarted"), _event(events, "ReseedCompleted")
    assert victim in started["message"] and other in started["message"], started["message"]
    assert f"errant-{copy_id}" in completed["message"], completed["message"]
    if database.flavor == "mysql":
        cloned = _event(events, "Cloned")
        assert victim in cloned["message"] and other in cloned["message"], cloned["message"]
    assert victim in _event(events, "ReseedRestart")["message"], _event(events, "ReseedRestart")

    # the member is whole again, out of the record, and the primary never changed
    assert after["currentPrimary"] == primary
    assert (after.get("history") or []) == history, after.get("history")
    assert victim not in _reseed_entries(database, namespace)
    assert _condition_of(after, "ReseedRequired")["reason"] == "NoneRequired", after["conditions"]
    final = _healthy(database, namespace)
    assert final["currentPrimary"] == primary and final["readyMembers"] == 3, final

    def every_member_serves():
        status = _status(database, namespace, "db")
        _track(transitions, approved_at, _members(status).get(victim) or {})
        members = status.get("members") or []
        return status if all(m["serving"] or m["role"] == "primary" for m in members) else None

    try:
        final = poll(every_member_serves, 120, what="every replica serving", interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}; {victim} as seen since the approval: {transitions}\n"
                             f"{_diagnosis(database, namespace, victim)}") from None
    assert final["currentPrimary"] == primary

    # no acknowledged write lost on the rebuilt member; the errant row on no serving member
    acknowledged = writer.ids()
    try:
        poll(lambda: acknowledged <= _stored(database, namespace, victim, password, FIRST_ID), 60,
             what=f"{victim} to hold every acknowledged write", ignore=pymysql.err.OperationalError)
    except AssertionError:
        lost = acknowledged - _stored(database, namespace, victim, password, FIRST_ID)
        raise AssertionError(f"{len(lost)} of {len(acknowledged)} acknowledged writes missing on {victim}: "
                             f"{sorted(lost)[:10]}\n{_diagnosis(database, namespace, victim)}") from None
    assert acknowledged <= _stored(database, namespace, primary, password, FIRST_ID)
    for name in ("db-0", "db-1", "db-2"):
        assert not _has(database, namespace, name, password, ERRANT_ID), f"{name} holds the errant row"

    # the errant data is kept on the member's volume, a whole datadir; no copy left over
    init_log = database.kubectl("logs", "-n", namespace, victim, "-c", "init").stdout
    assert f"the errant data is kept in {VOLUME}/errant-{copy_id}" in init_log, init_log
    assert f"re-seeded from {other}'s data (copy {copy_id})" in init_log, init_log
    listing = database.exec(namespace, victim, database.flavor, "ls", "-a", VOLUME).stdout.split()
    assert f"errant-{copy_id}" in listing, listing
    assert not [n for n in listing if n.startswith((".reseed-", ".discard-"))], listing
    database.exec(namespace, victim, database.flavor, "test", "-f", f"{VOLUME}/errant-{copy_id}/app/t.ibd")
    print(f"{database.flavor}: {victim} flagged errant {flagged_seconds:.1f}s after its write, re-seeded from "
          f"{other} {reseed_seconds:.1f}s after the approval (phases {seen['phases']}); {len(writer.acked)} writes "
          f"acknowledged, none lost; errant data in {VOLUME}/errant-{copy_id}; {victim} as seen since the "
          f"approval: {transitions}")
