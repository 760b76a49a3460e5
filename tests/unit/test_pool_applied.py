"""A pool's pass writes what changed: an endpoint change sends the ConfigMap alone, not every
object the pool owns (bench/scale found each change re-applying the Services, RBAC, Deployment
and budget), and past max_age everything is sent again (drift repair)."""

from __future__ import annotations

from typing import Any

from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool import reconcile
from hakeeper.loadbalancerpool.observe import Watched
from hakeeper.platform.kube import AppliedObjects, Kube
from hakeeper.platform.owned import Owners


class Api:
    """A stand-in API server: gets answer None; every apply and delete is recorded."""

    apply_changed = Kube.apply_changed

    def __init__(self) -> None:
        self.sent: list[str] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.sent.append(f"get {kind}")
        return None

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(f"apply {obj['kind']}")
        return obj

    def apply_all(self, objs: Any) -> list[Any]:
        return [self.apply(o) for o in objs if o is not None]

    def delete(self, obj: dict[str, Any]) -> bool:
        self.sent.append(f"delete {obj['kind']}")
        return False


BODY = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool",
        "metadata": {"name": "web", "namespace": "shop", "generation": 1, "uid": "u"},
        "spec": {"backends": {"service": "web-backends", "port": 8080}, "balancer": {"replicas": 1}}}
SPEC = LoadBalancerPoolSpec.model_validate(BODY["spec"])


def _slice(address: str) -> dict[str, Any]:
    return {"addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}]}


def _pass(api: Api, address: str, applied: AppliedObjects | None) -> None:
    reconcile.reconcile(api, BODY, SPEC, Watched(slices=(_slice(address),)), applied)  # type: ignore[arg-type]


def test_an_endpoint_change_writes_the_configmap_alone() -> None:
    api, applied = Api(), AppliedObjects(max_age=300)
    _pass(api, "10.0.0.1", applied)
    first = list(api.sent)
    assert {"apply ConfigMap", "apply Deployment", "apply Service", "apply Role"} <= set(first)
    api.sent.clear()
    _pass(api, "10.0.0.2", applied)
    # not even a read of the ConfigMap: the slots come from what this process wrote
    assert api.sent == ["apply ConfigMap"]
    api.sent.clear()
    _pass(api, "10.0.0.2", applied)
    assert api.sent == []


def test_past_max_age_every_object_is_written_again() -> None:
    api, applied = Api(), AppliedObjects(max_age=300)
    _pass(api, "10.0.0.1", applied)
    first = list(api.sent)
    api.sent.clear()
    applied.max_age = 0  # as if 300 s had passed
    _pass(api, "10.0.0.1", applied)
    assert api.sent == [s for s in first if s != "get ConfigMap"]


def test_without_the_memory_every_pass_writes_everything() -> None:
    """The control: the pass as it was before, which the scale bench measured."""
    api = Api()
    _pass(api, "10.0.0.1", None)
    first = list(api.sent)
    api.sent.clear()
    _pass(api, "10.0.0.2", None)
    assert api.sent == first and len(first) > 5


def test_applied_objects_compares_content_not_identity() -> None:
    applied = AppliedObjects(max_age=10)
    obj = {"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}, "data": {"k": "v"}}
    assert applied.due(obj, now=0)
    applied.record(obj, now=0)
    assert not applied.due({"kind": "ConfigMap", "metadata": {"namespace": "n", "name": "a"}, "data": {"k": "v"}},
                           now=5)
    assert applied.due({**obj, "data": {"k": "w"}}, now=5)
    assert applied.due(obj, now=10)
    assert applied.get("ConfigMap", "n", "a") == obj
    applied.forget("ConfigMap", "n", "a")
    assert applied.get("ConfigMap", "n", "a") is None


def test_objects_applied_together_are_applied_again_spread_over_half_the_age() -> None:
    applied = AppliedObjects(max_age=300, spread=0.5)
    objs = [{"kind": "ConfigMap", "metadata": {"name": f"pool-{i}", "namespace": "n"}} for i in range(200)]
    for obj in objs:
        applied.record(obj, now=0)
    due_at = {t: sum(applied.due(o, now=t) for o in objs) for t in (149, 225, 300)}
    assert due_at[149] == 0 and due_at[300] == 200
    assert 60 < due_at[225] < 140  # about half: the wave is spread, not one burst
    # the control: without the spread they are all due at once
    plain = AppliedObjects(max_age=300)
    for obj in objs:
        plain.record(obj, now=0)
    assert [sum(plain.due(o, now=t) for o in objs) for t in (299, 300)] == [0, 200]


LVS_BODY = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool",
            "metadata": {"name": "edge", "namespace": "net", "generation": 1, "uid": "v"},
            "spec": {"engine": "lvs", "backends": {"service": "web", "port": 80},
                     "lvs": {"virtualIP": "192.0.2.10", "port": 80, "vrrp": {"virtualRouterID": 61}}}}


def test_an_lvs_pool_refused_then_allowed_again_gets_its_daemonset_back(monkeypatch) -> None:
    """CI found it: the refusal deletes the DaemonSet, and the memory of its last apply kept the
    allowed pass from writing it again (the second pool with a claimed router ID never ran)."""
    from hakeeper.platform.settings import Settings

    spec = LoadBalancerPoolSpec.model_validate(LVS_BODY["spec"])
    api, applied = Api(), AppliedObjects(max_age=300)
    allowed = Settings(lvs_allowed_namespaces=frozenset({"net"}))
    monkeypatch.setattr(reconcile, "settings", lambda: allowed)
    reconcile.reconcile(api, LVS_BODY, spec, Watched(slices=(_slice("10.0.0.1"),)), applied)  # type: ignore[arg-type]
    assert "apply DaemonSet" in api.sent
    monkeypatch.setattr(reconcile, "settings", lambda: Settings())  # no namespace allowed
    api.sent.clear()
    reconcile.reconcile(api, LVS_BODY, spec, Watched(slices=(_slice("10.0.0.1"),)), applied)  # type: ignore[arg-type]
    assert api.sent == ["delete DaemonSet"]
    monkeypatch.setattr(reconcile, "settings", lambda: allowed)
    api.sent.clear()
    reconcile.reconcile(api, LVS_BODY, spec, Watched(slices=(_slice("10.0.0.1"),)), applied)  # type: ignore[arg-type]
    assert api.sent == ["apply DaemonSet"]


def _answer(obj: dict[str, Any], fields: dict[str, Any], manager: str = "hakeeper",
            operation: str = "Apply") -> dict[str, Any]:
    """The object as the API server answers an apply or sends it in a watch event."""
    entry = {"manager": manager, "operation": operation, "fieldsType": "FieldsV1", "fieldsV1": fields}
    return {**obj, "metadata": {**obj["metadata"], "managedFields": [entry]}}


CM = {"kind": "ConfigMap", "metadata": {"name": "web-haproxy", "namespace": "shop"}, "data": {"servers.json": "[]"}}
OWNED_FIELDS = {"f:data": {"f:servers.json": {}}, "f:metadata": {"f:labels": {"f:hakeeper.io/pool": {}}}}


def test_an_owned_object_edited_or_deleted_is_due_again_and_its_own_events_are_not_drift() -> None:
    """The OWNED watches (loadbalancerpool/handlers.py) hand each event to `drifted`: the pool
    applies an object again only when someone took a field it applied or deleted it."""
    applied = AppliedObjects(max_age=3600)
    assert not applied.drifted(_answer(CM, OWNED_FIELDS), deleted=True)  # not applied yet: its first pass does
    applied.record(CM, now=0, answer=_answer(CM, OWNED_FIELDS))
    # the apply's own event, and a controller's write of fields not ours (a label of its own)
    mine = _answer(CM, OWNED_FIELDS)
    mine["metadata"]["managedFields"].append({"manager": "other", "operation": "Update",
                                              "fieldsV1": {"f:metadata": {"f:labels": {"f:x": {}}}}})
    assert not applied.drifted(mine, deleted=False)
    assert not applied.due(CM, now=1)
    # `kubectl edit` changed our value: the field left our set
    edited = _answer(CM, {"f:metadata": {"f:labels": {"f:hakeeper.io/pool": {}}}})
    assert applied.drifted(edited, deleted=False)
    assert applied.due(CM, now=1)
    applied.record(CM, now=1, answer=_answer(CM, OWNED_FIELDS))
    assert not applied.due(CM, now=2)
    assert applied.drifted(CM, deleted=True)
    assert applied.due(CM, now=2)


def test_an_apply_sent_before_a_drift_is_not_its_repair() -> None:
    """The event of an edit made just after the apply reached the API server may come before the
    apply's answer is recorded: the object stays due."""
    applied = AppliedObjects(max_age=3600)
    applied.record(CM, now=0, answer=_answer(CM, OWNED_FIELDS))
    epoch = applied.epoch(CM)  # the pass reads it, then sends the apply
    assert applied.drifted(CM, deleted=True)  # meanwhile the watch reports a deletion
    applied.record(CM, now=1, answer=_answer(CM, OWNED_FIELDS), epoch=epoch)
    assert applied.due(CM, now=2)
    # the control: recorded with the drift count of after the event, it is not due
    applied.record(CM, now=1, answer=_answer(CM, OWNED_FIELDS))
    assert not applied.due(CM, now=2)


def test_an_unchanged_owned_object_is_not_applied_again_before_the_safety_age() -> None:
    """The control of the watches: without an event, nothing but the age sends an object again."""
    applied = AppliedObjects(max_age=3600, spread=0.5)
    applied.record(CM, now=0, answer=_answer(CM, OWNED_FIELDS))
    assert not applied.due(CM, now=1799)
    assert applied.due(CM, now=3600)


def test_owned_events_reach_the_loop_of_their_owner_by_reference_or_label() -> None:
    """platform/owned.py: one watch per kind for every owner kind; an event wakes the loop whose
    object drifted, and only that one."""
    owners = Owners("hakeeper.io")
    owners.label("LoadBalancerPool", "hakeeper.io/pool")
    woken: list[str] = []
    database, pool = AppliedObjects(max_age=3600), AppliedObjects(max_age=3600)
    owners.register(("ReplicatedDatabase", "shop", "db"), database, lambda: woken.append("db"))
    owners.register(("LoadBalancerPool", "shop", "web"), pool, lambda: woken.append("web"))
    ref = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "ReplicatedDatabase", "name": "db", "controller": True}
    sts = {"kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop", "ownerReferences": [ref]}}
    database.record(sts, now=0)
    pool.record(CM, now=0)
    by_label = {**CM, "metadata": {**CM["metadata"], "labels": {"hakeeper.io/pool": "web"}}}
    foreign = {**sts, "metadata": {**sts["metadata"], "ownerReferences": [{**ref, "apiVersion": "apps/v1"}]}}
    assert owners.changed(foreign, "DELETED") is None and woken == []
    assert owners.changed(sts, "DELETED") == ("ReplicatedDatabase", "shop", "db") and woken == ["db"]
    assert owners.changed(by_label, "DELETED") == ("LoadBalancerPool", "shop", "web") and woken == ["db", "web"]
    owners.unregister(("LoadBalancerPool", "shop", "web"))
    owners.changed(by_label, "DELETED")
    assert woken == ["db", "web"]
