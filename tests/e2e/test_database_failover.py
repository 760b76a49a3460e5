"""ReplicatedDatabase on the local cluster: real mariadbd members run by the node agent.

The operator (as the chart's ServiceAccount) bootstraps replication, labels the primary,
and when the primary's process is killed promotes a replica; the `-primary` Service's
EndpointSlice follows, no acknowledged write is lost, and the old primary comes back as a
read-only replica.
"""

from __future__ import annotations

import base64
import json
import threading
import time

import pymysql
import pytest

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.localcluster]


def _database(name: str) -> dict:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "ReplicatedDatabase", "metadata": {"name": name},
            "spec": {"flavor": "mariadb", "replicas": 3, "storage": {"size": "1Gi"},
                     "failover": {"probeInterval": "1s", "failureThreshold": 3, "antiFlapWindow": "20s"}}}


def _status(cluster, namespace: str, name: str) -> dict:
    return cluster.get("rdb", name, "-n", namespace).get("status") or {}


def _condition(status: dict, kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in status.get("conditions") or [])


def _pod_ip(cluster, namespace: str, pod: str) -> str:
    return cluster.get("pod", pod, "-n", namespace)["status"]["podIP"]


def _slice_addresses(cluster, namespace: str, service: str) -> set[str]:
    slices = cluster.get("endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}")
    return {a for s in slices["items"] for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
            for a in e["addresses"]}


class Writer(threading.Thread):
    """Inserts ids one by one through the -primary Service; remembers every acknowledged one."""

    def __init__(self, host: str, password: str):
        super().__init__(daemon=True)
        self.host, self.password = host, password
        self.stop = threading.Event()
        self.acknowledged: list[int] = []
        self.failures = 0
        self.next_id = 1

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = pymysql.connect(host=self.host, user="root", password=self.password, database="app",
                                           autocommit=True, connect_timeout=2, read_timeout=5, write_timeout=5)
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO t (id) VALUES (%s)", (self.next_id,))
                self.acknowledged.append(self.next_id)
                self.next_id += 1
            except pymysql.MySQLError:
                self.failures += 1
                self.next_id += 1  # an unacknowledged id may or may not exist; never reuse it
                conn = None
                self.stop.wait(0.2)


@pytest.fixture
def database(operator, namespace):
    operator.apply(_database("db"), "-n", namespace)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=240s", "-n", namespace, "rdb/db")
    return operator


def _healthy(cluster, namespace: str) -> dict:
    seen: list[dict] = []

    def healthy():
        status = _status(cluster, namespace, "db")
        seen[:] = [status]
        return status if _condition(status, "Healthy") else None

    try:
        return wait_for(healthy, 180, "all members replicating")
    except AssertionError as error:
        last = seen[0] if seen else {}
        raise AssertionError(f"{error}; phase {last.get('phase')}, members {last.get('members')}, "
                             f"conditions {last.get('conditions')}") from None


def test_database_bootstraps_replication_and_labels_the_primary(database, namespace):
    status = _healthy(database, namespace)
    primary = status["currentPrimary"]
    assert status["phase"] == "Healthy" and status["readyMembers"] == 3
    roles = {m["name"]: m["role"] for m in status["members"]}
    assert roles[primary] == "primary" and sorted(roles.values()) == ["primary", "replica", "replica"]
    wait_for(lambda: _slice_addresses(database, namespace, "db-primary") == {_pod_ip(database, namespace, primary)},
             30, "the -primary Service on the primary")
    replicas = {n for n, r in roles.items() if r == "replica"}
    wait_for(lambda: _slice_addresses(database, namespace, "db-replicas") == {
        _pod_ip(database, namespace, n) for n in replicas}, 30, "the -replicas Service on the replicas")
    table = database.kubectl("get", "rdb", "db", "-n", namespace).stdout
    assert "mariadb" in table and primary in table and "Healthy" in table


def test_killing_the_primary_fails_over_without_losing_an_acknowledged_write(database, namespace):
    status = _healthy(database, namespace)
    old = status["currentPrimary"]
    secret = database.get("secret", "db-credentials", "-n", namespace)["data"]
    password = base64.b64decode(secret["root-password"]).decode()
    service_ip = database.get("service", "db-primary", "-n", namespace)["spec"]["clusterIP"]
    wait_for(lambda: _slice_addresses(database, namespace, "db-primary") == {_pod_ip(database, namespace, old)},
             30, "the -primary Service on the primary")
    with pymysql.connect(host=service_ip, user="root", password=password, autocommit=True, connect_timeout=5) as c:
        with c.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE TABLE app.t (id INT PRIMARY KEY)")
    writer = Writer(service_ip, password)
    writer.start()
    try:
        wait_for(lambda: len(writer.acknowledged) > 50, 30, "the writer's first writes")
        killed_at = time.monotonic()
        database.agent.process(namespace, old, "mariadb").kill()
        new = wait_for(lambda: (lambda p: p if p and p != old else None)(
            _status(database, namespace, "db").get("currentPrimary")), 60, "a new primary")
        failover_seconds = time.monotonic() - killed_at
        wait_for(lambda: _slice_addresses(database, namespace, "db-primary") == {_pod_ip(database, namespace, new)},
                 30, "the -primary Service on the new primary")
        count = len(writer.acknowledged)
        wait_for(lambda: len(writer.acknowledged) > count + 20, 30, "writes on the new primary")
    finally:
        writer.stop.set()
        writer.join(10)
    with pymysql.connect(host=_pod_ip(database, namespace, new), user="root", password=password,
                         database="app", connect_timeout=5) as c, c.cursor() as cur:
        cur.execute("SELECT id FROM t")
        stored = {row[0] for row in cur.fetchall()}
    lost = set(writer.acknowledged) - stored
    assert not lost, f"{len(lost)} acknowledged writes lost: {sorted(lost)[:10]}"
    status = _status(database, namespace, "db")
    assert status["history"][0]["kind"] == "failover" and status["history"][0]["to"] == new
    assert failover_seconds < 30
    events = database.kubectl("get", "events", "-n", namespace, "--field-selector",
                              "involvedObject.kind=ReplicatedDatabase", "-o", "json").stdout
    assert "FailoverCompleted" in events

    # the old primary restarts (after the node's back-off) as a read-only replica of the new one
    def old_is_replica():
        members = {m["name"]: m for m in _status(database, namespace, "db").get("members") or []}
        m = members.get(old) or {}
        return m if m.get("role") == "replica" and m.get("readOnly") is True else None

    wait_for(old_is_replica, 90, f"{old} back as a read-only replica")
    assert _status(database, namespace, "db")["currentPrimary"] == new
    assert json.loads(_status(database, namespace, "db")["loopMemory"])["last_failover"] is not None
