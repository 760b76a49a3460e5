"""One pass of the ReplicatedDatabase handler (handlers.DatabasePass) on the in-memory fleet,
with a stand-in for the API server: what the pass keeps between passes when Kubernetes fails it."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from hakeeper.api.meta import ROLE_LABEL
from hakeeper.platform import loop
from hakeeper.platform.kube import ApiError, Kube
from hakeeper.replicateddatabase import handlers
from hakeeper.replicateddatabase.clustering import Cluster, Policy

from .fake_mysql import FakeFleet


class Api:
    """The few calls a pass makes: the Secret, the member pods (at the fleet's addresses), the
    objects applied, label and annotation patches; status patches fail while `failing`."""

    def __init__(self, fleet: FakeFleet) -> None:
        self.fleet = fleet
        self.failing = False
        self.statuses: list[dict[str, Any]] = []
        self.labels: dict[str, str | None] = {}
        self.applied: list[str] = []
        self.gets: list[str] = []
        secret = {k: base64.b64encode(v.encode()).decode() for k, v in
                  {"root-password": "r", "replication-password": "p", "operator-password": "o"}.items()}
        self.secret = {"data": secret}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets.append(kind)
        return self.secret if kind == "Secret" else None

    def create(self, obj: Any) -> dict[str, Any]:
        return dict(obj)

    apply_changed = Kube.apply_changed

    def apply_all(self, objs: Any) -> list[Any]:
        return [self.apply(o) for o in objs]

    def apply(self, obj: Any) -> dict[str, Any]:
        self.applied.append(f"{obj['kind']} {obj['metadata']['name']}")
        return dict(obj)

    def list(self, kind: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        return [{"metadata": {"name": m.name, "labels": {ROLE_LABEL: self.labels.get(m.name)}},
                 "status": {"podIP": m.host}} for m in self.fleet.members]

    def patch(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if kind == "Pod":
            self.labels[name] = body["metadata"]["labels"][ROLE_LABEL]
        return body

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
        if self.failing:
            raise ApiError(500, "etcdserver: request timed out")
        self.statuses.append(status)
        return True


@pytest.mark.parametrize("flavor", ["mysql", "mariadb"])
def test_a_status_write_failing_after_a_failover_does_not_hand_the_primary_back(
        flavor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Field fault (b): the next step planned from the old record, so the old primary, back
    read-only, was opened again and the new one fenced: the writes taken there were lost."""
    policy = Policy()
    fleet = FakeFleet(flavor, 3, policy)
    api = Api(fleet)
    monkeypatch.setattr(handlers.kubeapi, "shared", lambda: api)
    monkeypatch.setattr(handlers, "Cluster", lambda flavor, credentials, policy: Cluster(
        flavor, credentials, policy, ops=fleet))
    body: dict[str, Any] = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "ReplicatedDatabase",
                            "metadata": {"name": "db", "namespace": "shop", "generation": 1, "uid": "u1"},
                            "spec": {"flavor": flavor, "replicas": 3}, "status": {}}
    writer = loop.StatusWriter(api, "ReplicatedDatabase", "shop", "db")  # type: ignore[arg-type]
    database = handlers.DatabasePass(body, writer)

    def run() -> None:
        fleet.advance(policy.probe_interval)
        fleet.replicate()
        database(body)

    for _ in range(4):
        run()
    assert database.primary == "db-0" and api.labels["db-0"] == "primary"
    fleet.write("db-0", 3)
    fleet.crash("db-0")
    api.failing = True
    for _ in range(policy.failure_threshold + 2):
        try:
            run()
        except ApiError:
            pass
        if database.primary != "db-0":
            break
    new = database.primary
    assert new in ("db-1", "db-2") and fleet.writable() == [new]
    taken = fleet.write(new, 5)
    # the old primary's pod restarts (read-only) before any status write succeeds
    fleet.restart("db-0")
    for _ in range(3):
        with pytest.raises(ApiError):
            run()
    assert fleet.writable() == [new] and database.primary == new
    api.failing = False
    run()
    assert api.statuses[-1]["currentPrimary"] == new and api.labels[new] == "primary"
    assert fleet.has_all(new, taken)


def test_a_password_with_a_line_break_is_refused_with_a_reason() -> None:
    """Field fault (d): the init file is read a line at a time; quotes and backslashes are escaped."""
    from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec
    from hakeeper.replicateddatabase import reconcile

    api = Api(FakeFleet("mariadb", 1))
    api.secret["data"]["root-password"] = base64.b64encode(b"it's\\fine").decode()
    assert reconcile.credentials(api, "db", "shop", ReplicatedDatabaseSpec()).root_password == "it's\\fine"  # type: ignore[arg-type]
    api.secret["data"]["operator-password"] = base64.b64encode(b"two\nlines").decode()
    with pytest.raises(reconcile.CredentialsInvalid) as refused:
        reconcile.credentials(api, "db", "shop", ReplicatedDatabaseSpec())  # type: ignore[arg-type]
    assert refused.value.reason == "CredentialsInvalid" and "operator-password has a line break" in str(refused.value)


def test_a_secret_generated_before_the_application_account_gets_its_password_added() -> None:
    from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec
    from hakeeper.replicateddatabase import reconcile

    api = Api(FakeFleet("mariadb", 1))
    patches: list[tuple[str, dict]] = []
    api.patch = lambda kind, namespace, name, body: patches.append((kind, body)) or body  # type: ignore[method-assign]
    body = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "ReplicatedDatabase",
            "metadata": {"name": "db", "namespace": "shop", "uid": "u1"}}
    reconcile.ensure_objects(api, body, ReplicatedDatabaseSpec())  # type: ignore[arg-type]
    (kind, patch), = patches
    assert kind == "Secret" and set(patch["data"]) == {"application-password", "application-user"}
    assert base64.b64decode(patch["data"]["application-user"]) == b"app"
    # the other passwords are never rewritten, and a Secret that has the key is left alone
    api.secret["data"].update(patch["data"])
    reconcile.ensure_objects(api, body, ReplicatedDatabaseSpec())  # type: ignore[arg-type]
    assert len(patches) == 1


def mariadb_pass(api: Api, fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch) -> tuple[
        dict[str, Any], handlers.DatabasePass]:
    """A 3-member MariaDB `db`'s body and its pass, on `api` and `fleet`."""
    monkeypatch.setattr(handlers.kubeapi, "shared", lambda: api)
    monkeypatch.setattr(handlers, "Cluster", lambda flavor, credentials, policy: Cluster(
        flavor, credentials, policy, ops=fleet))
    body: dict[str, Any] = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "ReplicatedDatabase",
                            "metadata": {"name": "db", "namespace": "shop", "generation": 1, "uid": "u1"},
                            "spec": {"flavor": "mariadb", "replicas": 3}, "status": {}}
    return body, handlers.DatabasePass(body, loop.StatusWriter(api, "ReplicatedDatabase", "shop", "db"))  # type: ignore[arg-type]


def test_a_pass_sends_only_changed_or_drifted_objects_and_reads_its_secret_every_few_minutes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: every 30 s all four kinds applied and the Secret read twice, per database (bench/scale).
    A deleted StatefulSet (the OWNED watch's event) is sent again at the next pass."""
    fleet = FakeFleet("mariadb", 3, Policy())
    api = Api(fleet)
    clock = [1000.0]
    monkeypatch.setattr(handlers.time, "monotonic", lambda: clock[0])
    body, database = mariadb_pass(api, fleet, monkeypatch)
    database(body)
    first = sorted(api.applied)
    assert {a.split()[0] for a in first} == {"ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget"}
    api.applied.clear()
    api.gets.clear()
    clock[0] += handlers.OBJECTS_EVERY_SECONDS + 1  # rendered again: nothing changed, nothing sent
    database(body)
    assert api.applied == [] and "Secret" not in api.gets
    sts = next(a for a in first if a.startswith("StatefulSet")).split()[1]
    live = {"kind": "StatefulSet", "metadata": {"name": sts, "namespace": "shop"}}
    assert database.objects.drifted(live, deleted=True)
    clock[0] += 1
    database(body)
    assert api.applied == [f"StatefulSet {sts}"]
    clock[0] += handlers.SECRET_EVERY_SECONDS
    database(body)
    assert api.gets.count("Secret") == 2  # the generated one checked, the credentials read
    body["metadata"]["generation"] = 2  # a spec change: everything rendered, the Secret read
    database(body)
    assert api.gets.count("Secret") == 4


def test_a_database_with_no_member_addressed_waits_for_a_pod_instead_of_probing_each_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = FakeFleet("mariadb", 3, Policy())
    api = Api(fleet)
    body, database = mariadb_pass(api, fleet, monkeypatch)
    pending = [{"metadata": {"name": m.name}, "status": {}} for m in fleet.members]  # scheduled nowhere yet
    assert database(body, pending).next_in == handlers.UNADDRESSED_SECONDS
    assert ("shop", "db") in handlers._unaddressed
    addressed = [{"metadata": {"name": m.name}, "status": {"podIP": m.host}} for m in fleet.members]
    assert database(body, addressed).next_in <= 1.0  # failover.probeInterval's default
    assert ("shop", "db") not in handlers._unaddressed
