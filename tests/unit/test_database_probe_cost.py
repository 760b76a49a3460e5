"""What a database's probe costs (issue 17, bench/scale's profile): a member whose pod has no IP
is recorded unreachable without a connection, every connection reuses one TLS context, and a pass
reads its pods from the index and the Secret and StatefulSet only when they may have changed."""

from __future__ import annotations

import collections
import dataclasses
import ssl
from typing import Any

import pymysql.connections
import pytest

from hakeeper.api.meta import ROLE_LABEL
from hakeeper.replicateddatabase import objects, reconcile
from hakeeper.replicateddatabase.clustering import Cluster, Credentials, Member, MemberState, Policy
from hakeeper.replicateddatabase.clustering.members import NOT_ADDRESSED
from hakeeper.replicateddatabase.clustering.ops import PREFERRED_TLS, Connection
from hakeeper.replicateddatabase.rollout import REVISION_LABEL

from .fake_mysql import FakeFleet
from .test_database_pass import Api, mariadb_pass

CREDENTIALS = Credentials("root-secret", "replication-secret", "operator-secret")


class CountingFleet(FakeFleet):
    """A FakeFleet that records which members were probed."""

    def __init__(self, flavor: str) -> None:
        super().__init__(flavor)
        self.probed: list[str] = []

    def gather(self, member: Member) -> MemberState:
        self.probed.append(member.name)
        return super().gather(member)


def test_a_member_without_a_pod_ip_is_unreachable_without_a_probe() -> None:
    fleet = CountingFleet("mariadb")
    # db-2's pod has no IP yet: its server (the fake's) would answer, were it asked
    members = [*fleet.members[:2], dataclasses.replace(fleet.members[2], addressed=False)]
    states = Cluster("mariadb", CREDENTIALS, Policy(), ops=fleet).gather(members, primary="db-0")
    assert sorted(fleet.probed) == ["db-0", "db-1"]
    assert (states["db-2"].reachable, states["db-2"].error) == (False, NOT_ADDRESSED)
    assert states["db-1"].reachable and states["db-0"].reachable


def test_every_connection_shares_one_preferred_tls_context() -> None:
    first, second = (Connection(host="127.0.0.1", defer_connect=True) for _ in range(2))
    assert first.ctx is second.ctx is PREFERRED_TLS
    # pymysql's PREFERRED mode kept: TLS when offered, not required, no certificate check
    assert first.ssl and not first._ssl_required
    assert PREFERRED_TLS.verify_mode == ssl.CERT_NONE and not PREFERRED_TLS.check_hostname
    # the control: pymysql alone builds a context (and loads the CA bundle) per connection
    plain = [pymysql.connections.Connection(host="127.0.0.1", defer_connect=True) for _ in range(2)]
    assert plain[0].ctx is not plain[1].ctx


class CountingApi(Api):
    """test_database_pass's stand-in, counting reads; the StatefulSet settled (its controller
    caught up with its generation) unless `unsettled`, the members' pods at its revision."""

    def __init__(self, fleet: FakeFleet, unsettled: bool = False) -> None:
        super().__init__(fleet)
        self.reads: collections.Counter = collections.Counter()
        self.statefulset = {"metadata": {"name": "db", "generation": 2},
                            "status": {"observedGeneration": 1 if unsettled else 2, "updateRevision": "db-r1"}}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads[f"get {kind}"] += 1
        return self.statefulset if kind == "StatefulSet" else super().get(kind, namespace, name)

    def list(self, kind: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        self.reads[f"list {kind}"] += 1
        return super().list(kind, namespace, label_selector)

    def indexed_pods(self) -> list[dict[str, Any]]:
        """The members' pods as the operator's index holds them (reconcile.pod_index_entry)."""
        out = []
        for m in self.fleet.members:
            pod = {"metadata": {"name": m.name, "namespace": "shop", "uid": f"uid-{m.name}",
                                "labels": {**objects.selector("db"), REVISION_LABEL: "db-r1",
                                           ROLE_LABEL: self.labels.get(m.name)},
                                "managedFields": [{"manager": "kubelet"}]},
                   "spec": {"nodeName": "n1", "containers": [{"name": "mysql"}]}, "status": {"podIP": m.host}}
            [(key, entry)] = reconcile.pod_index_entry(pod).items()
            assert key == ("shop", "db") and "managedFields" not in entry["metadata"]
            out.append(entry)
        return out


def passes(api: CountingApi, fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    body, database = mariadb_pass(api, fleet, monkeypatch)
    for _ in range(n):
        fleet.advance(1.0)
        fleet.replicate()
        database(body, api.indexed_pods())
    assert database.primary == "db-0"


def test_a_pass_reads_pods_from_the_index_and_the_secret_and_statefulset_with_the_objects(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = FakeFleet("mariadb")
    api = CountingApi(fleet)
    passes(api, fleet, monkeypatch, 10)
    # all at the first pass: the generated Secret checked by ensure_objects, then read for the
    # passwords; the re-seed ConfigMap (read again only while a member needs a re-seed)
    assert api.reads == {"get Secret": 2, "get StatefulSet": 1, "get ConfigMap": 1}
    # the control: a StatefulSet whose controller has not caught up is read at every pass
    unsettled = CountingApi(FakeFleet("mariadb"), unsettled=True)
    passes(unsettled, unsettled.fleet, monkeypatch, 10)
    assert unsettled.reads["get StatefulSet"] == 10
