"""The re-seed's decisions (replicateddatabase.reseed.decide), step by step, and its record."""

from __future__ import annotations

from typing import Any

import pytest

from hakeeper.api.conditions import DatabaseReason
from hakeeper.replicateddatabase import objects, reseed
from hakeeper.replicateddatabase.reseed import Entry

ERRANT = "it has transactions the primary lacks (3e11fa47-71ca-11e1-9e33-c80aa9429562:1-2)"
PURGED = "its source no longer has the binary logs it needs (13114: Got fatal error 1236 ...)"
HOSTS = {"db-0": "10.1.0.10", "db-1": "10.1.0.11", "db-2": "10.1.0.12"}


def member(name: str, role: str = "replica", serving: bool = True, lag: float | None = 0.0,
           why: str | None = None, reachable: bool = True) -> dict[str, Any]:
    return {"name": name, "role": role, "serving": serving, "lag_seconds": lag, "reseed": why, "reachable": reachable}


def pod(name: str, uid: str = "uid-1", ready: bool = True, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": uid}
    if terminating:
        meta["deletionTimestamp"] = "2026-11-29T00:00:00Z"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def errant_db2(**db2: Any) -> list[dict[str, Any]]:
    return [member("db-0", role="primary", serving=False), member("db-1"),
            member("db-2", role="fenced", serving=False, why=ERRANT, **db2)]


PODS = {n: pod(n, uid=f"{n}-uid") for n in HOSTS}


def decide(members: list[dict[str, Any]], flavor: str = "mysql", entries: dict[str, Any] | None = None,
           pods: dict[str, Any] | None = None, **kwargs: Any) -> reseed.ReseedDecision:
    options: dict[str, Any] = {"auto": True, "requested": None, "copies": {}, "busy": False,
                               "new_id": "20261129t201500z", "now": "2026-11-29T20:15:00Z", **kwargs}
    return reseed.decide(flavor, members, PODS if pods is None else pods, HOSTS, entries or {}, "db-0", **options)


def test_nothing_to_do_when_every_member_can_rejoin_by_replication() -> None:
    d = decide([member("db-0", role="primary", serving=False), member("db-1"), member("db-2")])
    assert d.action == "none" and not d.required
    assert reseed.verdict(d, "db", auto=False) == (False, DatabaseReason.NO_RESEED_REQUIRED,
                                                   "every member can rejoin by replication")


def test_without_auto_reseed_a_member_to_rebuild_is_reported_with_the_command() -> None:
    d = decide(errant_db2(), auto=False)
    assert d.action == "report" and d.required == (("db-2", ERRANT),)
    status, reason, message = reseed.verdict(d, "db", auto=False)
    assert status and reason == DatabaseReason.AWAITING_APPROVAL
    assert "kubectl annotate rdb db hakeeper.io/reseed=db-2" in message and ERRANT in message


@pytest.mark.parametrize("flavor, phase", [("mysql", "copy"), ("mariadb", "restart")])
def test_a_person_naming_the_member_begins_its_reseed_from_the_least_lagging_serving_replica(
        flavor: str, phase: str) -> None:
    members = [member("db-0", role="primary", serving=False), member("db-1", lag=3.0), member("db-2", lag=1.0),
               member("db-3", role="fenced", serving=False, why=ERRANT)]
    hosts = {**HOSTS, "db-3": "10.1.0.13"}
    d = reseed.decide(flavor, members, {**PODS, "db-3": pod("db-3", uid="db-3-uid")}, hosts, {}, "db-0",
                      auto=False, requested="db-3", copies={}, busy=False, new_id="x1", now="t")
    assert d.action == "begin" and d.entry == Entry(member="db-3", id="x1", donor="db-2", host="10.1.0.12",
                                                    phase=phase, keep="errant", pod="db-3-uid", started="t")
    assert reseed.verdict(d, "db", auto=False).reason == DatabaseReason.RESEEDING


def test_a_member_whose_binlogs_are_gone_is_rebuilt_without_keeping_its_data() -> None:
    members = [member("db-0", role="primary", serving=False), member("db-1", serving=False, why=PURGED),
               member("db-2")]
    d = decide(members)
    assert d.action == "begin" and d.entry is not None
    assert (d.entry.member, d.entry.donor, d.entry.keep) == ("db-1", "db-2", "discard")


def test_the_primary_donates_when_no_replica_serves() -> None:
    members = [member("db-0", role="primary", serving=False), member("db-1", role="fenced", serving=False, why=ERRANT)]
    d = decide(members)
    assert d.action == "begin" and d.entry is not None and d.entry.donor == "db-0"


def test_no_reseed_begins_during_a_failover_or_switchover_or_without_a_donor() -> None:
    assert decide(errant_db2(), busy=True).action == "wait"
    members = [member("db-0", role="unknown", serving=False), member("db-1", serving=False),
               member("db-2", role="fenced", serving=False, why=ERRANT)]
    d = decide(members)
    assert d.action == "wait" and "no member serves" in d.reason
    assert reseed.verdict(d, "db", auto=True).reason == DatabaseReason.RESEEDING


def test_mysql_clones_only_with_the_members_server_up() -> None:
    d = decide(errant_db2(), pods={**PODS, "db-2": pod("db-2", ready=False)})
    assert d.action == "wait" and "must be up" in d.reason
    # MariaDB's init container fetches the copy: the server need not run
    assert decide(errant_db2(reachable=False), flavor="mariadb").action == "begin"


def entry(phase: str = "copy", pod_uid: str = "db-2-uid", id_: str = "x1") -> Entry:
    return Entry(member="db-2", id=id_, donor="db-1", host="10.1.0.11", phase=phase,  # type: ignore[arg-type]
                 keep="errant", pod=pod_uid, started="t")


def test_a_mysql_copy_is_started_then_awaited_then_the_pod_restarted_from_it() -> None:
    begun = {"db-2": entry()}
    assert decide(errant_db2(), entries=begun).action == "copy"  # none runs here (a restarted operator too)
    assert decide(errant_db2(), entries=begun, copies={"db-2": "running"}).action == "wait"
    copied = decide(errant_db2(), entries=begun, copies={"db-2": "done"})
    assert copied.action == "copied" and copied.entry == entry(phase="restart")
    assert reseed.status_of(copied) is not None and reseed.status_of(copied).phase == "Restarting"  # type: ignore[union-attr]
    failed = decide(errant_db2(), entries=begun, copies={"db-2": "failed"})
    assert failed.action == "fail" and reseed.status_of(failed) is None


def test_the_pod_named_in_the_entry_is_restarted_and_its_successor_completes_the_reseed() -> None:
    restart = {"db-2": entry(phase="restart")}
    assert decide(errant_db2(), entries=restart).action == "restart"
    assert decide(errant_db2(), entries=restart, pods={**PODS, "db-2": pod("db-2", terminating=True)}).action == "wait"
    successor = {**PODS, "db-2": pod("db-2", uid="new")}
    # starting: not reachable yet
    assert decide(errant_db2(reachable=False), entries=restart, pods=successor).action == "wait"
    done = decide([member("db-0", role="primary", serving=False), member("db-1"), member("db-2")],
                  entries=restart, pods=successor)
    assert done.action == "complete" and "errant-x1" in done.reason
    # the donor went away while the member copies from it: start over (with another donor)
    gone = [member("db-0", role="primary", serving=False), member("db-1", role="unknown", serving=False),
            member("db-2", role="unknown", serving=False, reachable=False)]
    assert decide(gone, flavor="mariadb", entries=restart, pods=successor).action == "fail"
    # the copy keeps failing (its init container restarted INIT_FAILURES times): given up
    crashing = pod("db-2", uid="new")
    crashing["status"]["initContainerStatuses"] = [{"name": "init", "restartCount": reseed.INIT_FAILURES}]
    failing = decide(errant_db2(reachable=False), flavor="mariadb", entries=restart, pods={**PODS, "db-2": crashing})
    assert failing.action == "fail" and "kubectl logs db-2 -c init" in failing.reason
    crashing["status"]["initContainerStatuses"][0]["restartCount"] = reseed.INIT_FAILURES - 1
    assert decide(errant_db2(reachable=False), flavor="mariadb", entries=restart,
                  pods={**PODS, "db-2": crashing}).action == "wait"
    # up, and still errant: the copy was not used
    still = decide(errant_db2(), entries=restart, pods=successor)
    assert still.action == "fail" and "init container" in still.reason


def test_a_void_entry_is_dropped() -> None:
    assert decide(errant_db2(), entries={"db-2": None}).action == "fail"
    assert decide(errant_db2(), entries={"db-0": entry()}).action == "fail"  # the primary


def test_an_entry_round_trips_and_refuses_what_a_shell_or_a_path_must_not_get() -> None:
    e = entry(phase="restart")
    text = e.render()
    assert text.splitlines() == ["id=x1", "donor=db-1", "host=10.1.0.11", "phase=restart", "keep=errant",
                                 "pod=db-2-uid", "started=t"]
    assert Entry.parse("db-2", text) == e
    assert reseed.entries_of({"data": {"db-2": text, "db-1": "id=$(reboot)\n"}}) == {"db-1": None, "db-2": e}
    for bad in ("../x", "a b", "$(id)", "x;y", ""):
        with pytest.raises(ValueError):
            entry(id_=bad).render()


def test_the_configmap_is_named_after_the_database() -> None:
    cm = objects.reseed_config_map("db", "ns", {"db-2": entry().render()})
    assert cm["metadata"]["name"] == "db-reseed" and cm["data"]["db-2"].startswith("id=x1\n")
