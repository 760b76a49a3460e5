"""The rollout of a new pod template (hakeeper.replicateddatabase.rollout.decide): replicas
first, one member at a time and only while the others serve, then one switchover, then the
old primary; and what the pass makes of a decision (reconcile.rollout_switchover, the status)."""

from __future__ import annotations

from typing import Any

import pytest

from hakeeper.replicateddatabase import reconcile
from hakeeper.replicateddatabase.clustering.classify import ANY_REPLICA
from hakeeper.replicateddatabase.rollout import REVISION_LABEL, decide

NEW, OLD = "db-7c9", "db-5f1"


def sts(revision: str | None = NEW) -> dict[str, Any]:
    return {"kind": "StatefulSet", "status": {"updateRevision": revision} if revision else {}}


def pod(name: str, revision: str = OLD, ready: bool = True, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "labels": {REVISION_LABEL: revision}}
    if terminating:
        meta["deletionTimestamp"] = "2026-11-29T17:00:00Z"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def member(name: str, role: str = "replica", serving: bool = True, message: str = "") -> dict[str, Any]:
    return {"name": name, "role": role, "serving": serving if role == "replica" else False, "message": message}


def cluster(revisions: dict[str, str], primary: str = "db-0", not_serving: tuple[str, ...] = (),
            **pod_args: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    pods = {n: pod(n, r, **pod_args.get(n.replace("-", "_"), {})) for n, r in revisions.items()}
    members = [member(n, "primary" if n == primary else "replica", serving=n not in not_serving,
                      message="replication stopped" if n in not_serving else "") for n in revisions]
    return pods, members


def test_nothing_to_do_without_a_statefulset_or_when_every_member_is_up_to_date() -> None:
    pods, members = cluster({"db-0": NEW, "db-1": NEW, "db-2": NEW})
    assert decide(None, pods, members, "db-0").action == "none"
    assert decide(sts(None), pods, members, "db-0").action == "none"
    done = decide(sts(), pods, members, "db-0")
    assert (done.action, done.outdated) == ("none", ())


def test_replicas_first_highest_ordinal_first_then_a_switchover_then_the_old_primary() -> None:
    revisions = {"db-0": OLD, "db-1": OLD, "db-2": OLD}
    steps = []
    primary = "db-0"
    for _ in range(10):
        pods, members = cluster(revisions, primary)
        d = decide(sts(), pods, members, primary)
        steps.append((d.action, d.member))
        if d.action == "none":
            break
        assert d.outdated == tuple(n for n, r in revisions.items() if r != NEW)
        if d.action == "restart":
            revisions[d.member] = NEW  # type: ignore[index]
        elif d.action == "switchover":
            assert d.request_id == f"rollout:{NEW}:db-0"
            primary = "db-2"  # the best replica, all of them new
    assert steps == [("restart", "db-2"), ("restart", "db-1"), ("switchover", "db-0"), ("restart", "db-0"),
                     ("none", None)]


def test_one_member_at_a_time_each_back_and_serving_before_the_next() -> None:
    pods, members = cluster({"db-0": OLD, "db-1": OLD, "db-2": NEW}, db_2={"terminating": True})
    waiting = decide(sts(), pods, members, "db-0")
    assert waiting.action == "wait" and "db-2 is stopping" in waiting.reason
    # made again from the new template, not yet repointed by the loop
    pods, members = cluster({"db-0": OLD, "db-1": OLD, "db-2": NEW}, not_serving=("db-2",))
    waiting = decide(sts(), pods, members, "db-0")
    assert waiting.action == "wait" and "db-2" in waiting.reason and "replication stopped" in waiting.reason
    pods, members = cluster({"db-0": OLD, "db-1": OLD, "db-2": NEW}, db_2={"ready": False})
    assert decide(sts(), pods, members, "db-0").action == "wait"
    pods = {n: p for n, p in pods.items() if n != "db-2"}
    missing = decide(sts(), pods, members, "db-0")
    assert missing.action == "wait" and "db-2 has no pod yet" in missing.reason


def test_a_replica_that_does_not_serve_is_restarted_first_but_never_two_members_away() -> None:
    pods, members = cluster({"db-0": OLD, "db-1": OLD, "db-2": OLD}, not_serving=("db-1",))
    first = decide(sts(), pods, members, "db-0")
    assert (first.action, first.member) == ("restart", "db-1")
    pods, members = cluster({"db-0": OLD, "db-1": OLD, "db-2": OLD}, not_serving=("db-1", "db-2"))
    assert decide(sts(), pods, members, "db-0").action == "wait"


def test_a_new_template_that_does_not_serve_stops_the_rollout_there() -> None:
    """A bad config crash-loops the first restarted replica: nobody else is restarted."""
    pods, members = cluster({"db-0": OLD, "db-1": OLD, "db-2": NEW}, not_serving=("db-2",))
    for _ in range(3):
        d = decide(sts(), pods, members, "db-0")
        assert d.action == "wait" and d.outdated == ("db-0", "db-1")


@pytest.mark.parametrize(("primary", "busy"), [(None, False), ("db-0", True)])
def test_no_primary_or_a_failover_under_way_waits(primary: str | None, busy: bool) -> None:
    pods, members = cluster({"db-0": OLD, "db-1": OLD, "db-2": OLD})
    assert decide(sts(), pods, members, primary, busy=busy).action == "wait"


def test_a_primary_that_is_not_ready_is_not_switched_over_from() -> None:
    pods, members = cluster({"db-0": OLD, "db-1": NEW, "db-2": NEW}, db_0={"ready": False})
    assert decide(sts(), pods, members, "db-0").action == "wait"


def test_a_lone_member_is_restarted_in_place() -> None:
    pods, members = cluster({"db-0": OLD})
    d = decide(sts(), pods, members, "db-0")
    assert (d.action, d.member) == ("restart", "db-0")


def test_the_switchover_is_asked_for_once_per_revision_and_primary() -> None:
    pods, members = cluster({"db-0": OLD, "db-1": NEW, "db-2": NEW})
    d = decide(sts(), pods, members, "db-0")
    body: dict[str, Any] = {"metadata": {}, "status": {}}
    assert reconcile.rollout_switchover(body, d, "db-0") == (f"rollout:{NEW}:db-0", ANY_REPLICA)
    assert reconcile.rollout_switchover(body, d, "db-1") is None  # the primary moved meanwhile
    body["status"]["handledSwitchover"] = d.request_id
    assert reconcile.rollout_switchover(body, d, "db-0") is None
    assert reconcile.rollout_switchover(body, None, "db-0") is None


def test_the_status_shows_a_rollout_under_way_and_drops_it_once_done() -> None:
    pods, members = cluster({"db-0": OLD, "db-1": OLD, "db-2": NEW}, not_serving=("db-2",))
    shown = reconcile.rollout_status(decide(sts(), pods, members, "db-0"))
    assert shown is not None
    assert shown.patch() == {"revision": NEW, "pending": ["db-0", "db-1"], "next": shown.next}
    assert shown.next and "db-2" in shown.next
    pods, members = cluster({"db-0": NEW, "db-1": NEW, "db-2": NEW})
    assert reconcile.rollout_status(decide(sts(), pods, members, "db-0")) is None


def test_a_former_primary_s_clients_are_disconnected_once_the_service_stopped_routing_there() -> None:
    """reconcile.Departure: KUBE_PROXY_MARGIN after the -primary EndpointSlice dropped the
    member (kube-proxy's sync), or DEPARTURE_DEADLINE after it left whatever the slice says."""
    from hakeeper.replicateddatabase.reconcile import DEPARTURE_DEADLINE, KUBE_PROXY_MARGIN, Departure

    left = Departure(since=100.0)
    assert not left.due(routed=True, now=101.0)
    assert not left.due(routed=False, now=101.5)  # just dropped: kube-proxy may still route there
    assert not left.due(routed=False, now=101.5 + KUBE_PROXY_MARGIN - 0.1)
    assert left.due(routed=False, now=101.5 + KUBE_PROXY_MARGIN)
    flapping = Departure(since=100.0)
    assert not flapping.due(routed=False, now=101.0)
    assert not flapping.due(routed=True, now=102.0)  # listed again: the margin starts over
    assert not flapping.due(routed=False, now=102.5 + KUBE_PROXY_MARGIN - 0.1)
    stuck = Departure(since=100.0)
    assert stuck.due(routed=True, now=100.0 + DEPARTURE_DEADLINE)
