"""ReplicatedDatabase on a real node: database members are containers of the images built here.

For each flavor (MariaDB 10.11 from bookworm, MySQL 9.7 from Debian sid), the chart's operator
pod bootstraps replication and labels the primary. Then, with an application writing through
the `-primary` Service all along: one SIGKILL of the primary's server process (the kubelet
restarts it at once: the same primary may be opened again, holding every acknowledged write),
a crash-looping primary (failed over), and an evicted primary pod (switched over: a planned
restart, as in a node drain); then a config change rolled out replicas first, with one
switchover. Each time no
acknowledged write is lost, the `-primary` EndpointSlice follows, and a replaced primary comes
back as a read-only replica, never promoted back.
"""

from __future__ import annotations

import base64
import datetime
import json
import time

import pymysql
import pytest

from ..support.polling import poll
from ..support.writer import Writer
from .conftest import FLAVORS, metric, operator_metrics
from .conftest import database_manifest as _database

pytestmark = pytest.mark.e2e


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


def _writer(host: str, first_id: int, password: str) -> Writer:
    """The application: INSERTs ids from first_id on into app.t through the -primary Service
    (`host`, its cluster IP) as the generated application account (user app, the credentials
    Secret's application-password); waits 0.2 s after a failed statement."""
    def connect(address: str) -> pymysql.Connection:
        return pymysql.connect(host=address, user="app", password=password, database="app", autocommit=True,
                               connect_timeout=2, read_timeout=5, write_timeout=5)

    return Writer(lambda: host, connect, "INSERT INTO t (id) VALUES (%s)", first_id=first_id, retry_pause=0.2)


def _healthy(cluster, namespace: str) -> dict:
    seen: list[dict] = []

    def healthy():
        status = _status(cluster, namespace, "db")
        seen[:] = [status]
        return status if _condition(status, "Healthy") else None

    try:
        return poll(healthy, 240, what="all members replicating")
    except AssertionError as error:
        last = seen[0] if seen else {}
        raise AssertionError(f"{error}; phase {last.get('phase')}, members {last.get('members')}, "
                             f"conditions {last.get('conditions')}") from None


def _application(database, namespace: str) -> tuple[str, str, str]:
    """The application's schema, made through the -primary Service with the account the operator
    generated for it (user app, no SUPER or READ ONLY ADMIN: a fenced or restarting member
    refuses its writes, as it must); returns (the root password, the application's password, the
    Service's cluster IP)."""
    secret = database.get("secret", "db-credentials", "-n", namespace)["data"]
    password = base64.b64decode(secret["root-password"]).decode()
    app_password = base64.b64decode(secret["application-password"]).decode()
    assert base64.b64decode(secret["application-user"]).decode() == "app"
    service_ip = database.get("service", "db-primary", "-n", namespace)["spec"]["clusterIP"]
    primary = _status(database, namespace, "db")["currentPrimary"]
    # Ready says the primary takes writes; the Service follows its role label through the
    # EndpointSlice controller and then kube-proxy's next sync, each a moment later
    poll(lambda: _slice_addresses(database, namespace, "db-primary") == {_pod_ip(database, namespace, primary)},
         60, what="the -primary Service on the primary")

    def connect():
        try:
            return pymysql.connect(host=service_ip, user="app", password=app_password, autocommit=True,
                                   connect_timeout=5)
        except pymysql.err.OperationalError as error:
            if error.args[0] != 2003:  # only "can't connect" is kube-proxy's lag; a refused login is a fault
                raise
            return None

    with poll(connect, 30, what="kube-proxy routing the -primary Service") as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE app")
        cur.execute("CREATE TABLE app.t (id INT PRIMARY KEY)")
        cur.execute("SHOW GRANTS")
        grants = " ".join(row[0] for row in cur.fetchall())
        assert not any(p in grants for p in ("SUPER", "READ_ONLY ADMIN", "ALL PRIVILEGES")), grants
    return password, app_password, service_ip


def _stored(database, namespace: str, member: str, password: str, first_id: int) -> set[int]:
    with pymysql.connect(host=_pod_ip(database, namespace, member), user="root", password=password,
                         database="app", connect_timeout=5) as c, c.cursor() as cur:
        cur.execute("SELECT id FROM t WHERE id >= %s", (first_id,))
        return {row[0] for row in cur.fetchall()}


def _active_operator(cluster) -> str:
    """The operator pod that acts: the live peer with the highest priority in kopf's peering object."""
    peers = (cluster.get("clusterkopfpeering", "hakeeper").get("status") or {})
    live = [(info.get("priority", 0), name) for name, info in peers.items() if info.get("lifetime", 0) > 0]
    return max(live)[1]


def _settled_primary(database, namespace: str) -> str:
    """The primary of an Available status with no failover running, which the -primary Service
    agrees with. Not Healthy: an old primary back with errant transactions keeps the database
    Degraded until it is re-seeded."""
    def settled():
        status = _status(database, namespace, "db")
        primary = status.get("currentPrimary")
        if not primary or not _condition(status, "Available") or _condition(status, "FailoverInProgress"):
            return None
        addresses = _slice_addresses(database, namespace, "db-primary")
        return primary if addresses == {_pod_ip(database, namespace, primary)} else None

    return poll(settled, 120, what="an Available primary the -primary Service points at")


def _fault(database, namespace: str, password: str, service_ip: str, fail, first_id: int,
           expect: str | None = "failover", *, app_password: str) -> tuple[str, str]:
    """Writes through the -primary Service while `fail(primary)` runs; returns (old primary,
    primary after) once writes flow again, after checking that no acknowledged write was lost.
    With `expect` ("failover" or "switchover"), another member must have been promoted that way,
    and the old one must come back as a read-only replica; with None, the cluster must merely be
    Healthy again (a primary that restarts within the failure threshold, with every acknowledged
    write, is opened again)."""
    old = _healthy(database, namespace)["currentPrimary"]
    poll(lambda: _slice_addresses(database, namespace, "db-primary") == {_pod_ip(database, namespace, old)},
         60, what="the -primary Service on the primary")
    writer = _writer(service_ip, first_id, app_password)
    writer.start()
    try:
        poll(lambda: len(writer.acked) > 50, 60, what="the writer's first writes")
        failed_at = time.monotonic()
        fail(old)
        try:
            if expect:
                new = poll(lambda: (lambda p: p if p and p != old else None)(
                    _status(database, namespace, "db").get("currentPrimary")), 90, what="a new primary")
            else:
                new = _healthy(database, namespace)["currentPrimary"]
        except AssertionError as error:
            status = _status(database, namespace, "db")
            pods = database.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
            raise AssertionError(f"{error}\nstatus: {json.dumps(status, indent=1)}\n{pods}") from None
        recovery_seconds = time.monotonic() - failed_at

        def on_primary() -> bool:
            # without `expect`, the Healthy status read right after the fault may predate the
            # operator noticing it (CI: it named the killed db-0, then db-1 was promoted, and the
            # Service followed db-1): the Service must follow the primary the status names now
            current = new if expect else _status(database, namespace, "db").get("currentPrimary")
            return bool(current) and _slice_addresses(database, namespace, "db-primary") == {
                _pod_ip(database, namespace, current)}

        poll(on_primary, 60, what="the -primary Service on the primary")
        count = len(writer.acked)
        poll(lambda: len(writer.acked) > count + 20, 60, what="writes after the fault")
    finally:
        writer.stop(10)
    if not expect:
        # the Healthy status read right after the kill may predate the operator noticing it
        # (CI: it named the killed db-0 while db-1 was being promoted, and db-0 came back errant
        # without the later writes): the primary is the one named once the cluster settled
        new = _settled_primary(database, namespace)
    with pymysql.connect(host=_pod_ip(database, namespace, new), user="root", password=password,
                         database="app", connect_timeout=5) as c, c.cursor() as cur:
        cur.execute("SELECT id FROM t WHERE id >= %s", (first_id,))
        stored = {row[0] for row in cur.fetchall()}
    lost = writer.ids() - stored
    if lost:
        raise AssertionError(f"{len(lost)} of {len(writer.acked)} acknowledged writes lost on {new}: "
                             f"{sorted(lost)[:10]}\n{_diagnosis(database, namespace, password, sorted(lost))}")
    assert recovery_seconds < 30, recovery_seconds
    if new == old:
        return old, new
    history = _status(database, namespace, "db")["history"][0]
    if not (history["kind"] == (expect or "failover") and history["to"] == new):
        raise AssertionError(f"{old} -> {new}, but the last history entry is {history}\n"
                             f"{_diagnosis(database, namespace, password, [])}")

    # the old primary comes back (the kubelet restarts its container or the StatefulSet its pod)
    # as a read-only replica of the new one, never promoted back by itself. MySQL keeps what a
    # killed primary had binlogged but no replica had acknowledged (MariaDB's init_rpl_role=SLAVE
    # cuts that tail on restart): such a member comes back read-only with errant transactions
    # and stays out of the cluster, fenced; what it holds beyond the new primary must then be
    # writes no client was told had committed.
    def old_is_back():
        members = {m["name"]: m for m in _status(database, namespace, "db").get("members") or []}
        m = members.get(old) or {}
        if m.get("readOnly") is not True:
            return None
        if m.get("role") == "replica" or (database.flavor == "mysql" and m.get("role") == "fenced" and m.get("errant")):
            return m
        return None

    try:
        back = poll(old_is_back, 180, what=f"{old} back as a read-only replica (or, MySQL, fenced as errant)")
        if back["role"] == "fenced":
            with pymysql.connect(host=_pod_ip(database, namespace, old), user="root", password=password,
                                 database="app", connect_timeout=5) as c, c.cursor() as cur:
                cur.execute("SELECT id FROM t WHERE id >= %s", (first_id,))
                extra = {row[0] for row in cur.fetchall()} - stored
            assert not extra & writer.ids(), f"{old} is errant with acknowledged writes: {sorted(extra)[:10]}"
            print(f"{database.flavor}: {old} came back errant with {len(extra)} unacknowledged row(s) "
                  f"{sorted(extra)[:5]}; kept out, fenced")
    except AssertionError as error:
        status = _status(database, namespace, "db")
        pods = database.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
        events = database.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp").stdout[-3000:]
        raise AssertionError(f"{error}\nstatus: {json.dumps(status, indent=1)}\n{pods}\n{events}") from None
    assert _status(database, namespace, "db")["currentPrimary"] == new
    return old, new


def _diagnosis(database, namespace: str, password: str, lost: list[int]) -> str:
    """Where the lost writes are, what the operator decided, and its log: for the failure message."""
    lines = []
    for member in ("db-0", "db-1", "db-2"):
        try:
            with pymysql.connect(host=_pod_ip(database, namespace, member), user="root", password=password,
                                 database="app", connect_timeout=5) as c, c.cursor() as cur:
                ids = ",".join(str(int(i)) for i in lost)
                cur.execute(f"SELECT COUNT(*) FROM t WHERE id IN ({ids})")
                lines.append(f"{member} holds {cur.fetchone()[0]} of the lost writes")
        except Exception as error:  # noqa: BLE001 - a diagnosis reports what it cannot see
            lines.append(f"{member}: {error}")
    status = _status(database, namespace, "db")
    events = database.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp").stdout[-4000:]
    log = database.kubectl("logs", "-n", "hakeeper-system", "deployment/hakeeper", "--tail=150", check=False).stdout
    return "\n".join([*lines, f"status: {json.dumps(status, indent=1)}", events, log])


def test_database_bootstraps_fails_over_twice_and_never_flips_back(database, namespace):
    """Bootstrap; one SIGKILL of the primary's server; an evicted primary pod; a crash-looping primary."""
    status = _healthy(database, namespace)
    primary = status["currentPrimary"]
    assert status["phase"] == "Healthy" and status["readyMembers"] == 3
    roles = {m["name"]: m["role"] for m in status["members"]}
    assert roles[primary] == "primary" and sorted(roles.values()) == ["primary", "replica", "replica"]
    poll(lambda: _slice_addresses(database, namespace, "db-primary") == {_pod_ip(database, namespace, primary)},
         60, what="the -primary Service on the primary")
    replicas = {n for n, r in roles.items() if r == "replica"}
    poll(lambda: _slice_addresses(database, namespace, "db-replicas") == {
        _pod_ip(database, namespace, n) for n in replicas}, 60, what="the -replicas Service on the replicas")
    table = database.kubectl("get", "rdb", "db", "-n", namespace).stdout
    assert database.flavor in table and primary in table and "Healthy" in table
    for pod in (primary, *replicas):  # the server runs as the image's user, not root
        uid = database.exec(namespace, pod, database.flavor, "id", "-u").stdout.strip()
        assert uid == "999", f"{pod} runs as uid {uid}"

    password, app_password, service_ip = _application(database, namespace)

    def kill(pod: str) -> None:
        database.kill_container(namespace, pod, database.flavor)

    # one crash: the kubelet restarts the server at once; whether the same primary is opened
    # again (it restarted within the failure threshold holding every acknowledged write) or a
    # replica is promoted, nothing acknowledged is lost and the cluster is whole again
    killed, _ = _fault(database, namespace, password, service_ip, kill, 1_000_000, expect=None,
                       app_password=app_password)
    # if the kill outlasted the failure threshold, MySQL's old primary may be back errant (see
    # _fault), out of the cluster until a person approves its re-seed, as the Warning Event says
    errant = {m["name"] for m in _status(database, namespace, "db").get("members") or [] if m.get("errant")}
    if errant:
        assert errant == {killed}, errant
        database.kubectl("annotate", "rdb", "db", "-n", namespace, f"hakeeper.io/reseed={killed}")
        poll(lambda: not any(m.get("errant") for m in _status(database, namespace, "db").get("members") or []),
             300, what=f"{killed} re-seeded")

    def evict(pod: str) -> None:
        """What `kubectl drain` does to each pod of the node: the Eviction API, which the
        database's PodDisruptionBudget admits (then the pod is deleted)."""
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
        database.kubectl("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", "-f", "-",
                         input=json.dumps(eviction))

    # an evicted (or deleted) primary pod is a planned restart: its preStop hook keeps the server
    # up until the operator has switched over to the best replica and pointed the old primary at it
    first_old, first_new = _fault(database, namespace, password, service_ip, evict, 2_000_000,
                                  expect="switchover", app_password=app_password)
    assert first_new != first_old

    def crash_loop(pod: str) -> None:
        """SIGKILL again each time the kubelet brings the server back: its back-off grows from
        10 s, far beyond the failure threshold, so the primary must be replaced."""
        database.crash_loop(namespace, pod, database.flavor,
                            lambda: _status(database, namespace, "db").get("currentPrimary") not in (pod, None), 60)

    # last, as it may leave a MySQL member out for good (see _fault)
    second_old, second_new = _fault(database, namespace, password, service_ip, crash_loop, 3_000_000,
                                    expect="failover", app_password=app_password)
    assert second_old == first_new and second_new != first_new
    events = database.kubectl("get", "events", "-n", namespace, "--field-selector",
                              "involvedObject.kind=ReplicatedDatabase", "-o", "json").stdout
    assert "FailoverCompleted" in events and "SwitchoverCompleted" in events
    assert _status(database, namespace, "db")["loop"]["lastFailover"]  # the loop's memory, typed in the status
    # what Prometheus scrapes from the operator tells the same story
    db = {"namespace": namespace, "name": "db"}
    samples = operator_metrics(database)
    assert metric(samples, "hakeeper_database_failovers_total", outcome="completed", **db) >= 1
    assert metric(samples, "hakeeper_database_switchovers_total", outcome="completed", **db) >= 1
    assert metric(samples, "hakeeper_database_failover_duration_seconds_count", **db) >= 1
    assert metric(samples, "hakeeper_database_members", role="primary", **db) == 1
    assert metric(samples, "hakeeper_ready", kind="ReplicatedDatabase", **db) == 1


def test_writes_go_on_while_the_active_operator_is_killed_and_a_standby_takes_over(database, namespace):
    """Issue 11 item 3: with durability Lossless the primary keeps taking writes while no operator
    runs (its lease lapses after 2 s; it fences only when cut off from its replicas), and a
    standby operator takes over from a SIGKILLed active one within the peering lifetime (12 s),
    measured from the kill to a switchover the new operator carries out. The switchover pauses
    writes on purpose, so "while no operator ran" ends where its record says it began."""
    from .conftest import OPERATOR_NAMESPACE, ROOT

    primary = _healthy(database, namespace)["currentPrimary"]
    password, app_password, service_ip = _application(database, namespace)
    chart = str(ROOT / "charts/hakeeper")
    database.helm("upgrade", "hakeeper", chart, "-n", OPERATOR_NAMESPACE, "--reuse-values",
                  "--set", "replicaCount=2", "--wait", "--timeout", "5m")
    writer = _writer(service_ip, 5_000_000, app_password)
    try:
        poll(lambda: len(database.get("clusterkopfpeering", "hakeeper").get("status") or {}) >= 2, 120,
             what="two operator replicas in the peering object")
        active = _active_operator(database)
        writer.start()
        poll(lambda: len(writer.acked) > 50, 60, what="the writer's first writes")
        target = next(m["name"] for m in _status(database, namespace, "db")["members"] if m["name"] != primary)
        killed_at, killed_wall = time.monotonic(), time.time()
        database.kill_container(OPERATOR_NAMESPACE, active, "operator")
        # what the next acting operator must do: a switchover nobody has carried out yet
        database.kubectl("annotate", "rdb", "db", "-n", namespace, f"hakeeper.io/switchover-to={target}")
        # the killed replica's restarts are killed too, so the standby is the one that takes over
        took_over = database.crash_loop(
            OPERATOR_NAMESPACE, active, "operator",
            lambda: _status(database, namespace, "db").get("currentPrimary") == target, 60)
        takeover = time.monotonic() - killed_at
        assert took_over, f"no operator carried out the switchover within 60 s of the kill ({active} killed)"
        count = len(writer.acked)
        poll(lambda: len(writer.acked) > count + 20, 60, what="writes on the new primary")
    finally:
        writer.stop(10)
        database.helm("upgrade", "hakeeper", chart, "-n", OPERATOR_NAMESPACE, "--reuse-values",
                      "--set", "replicaCount=1", "--wait", "--timeout", "5m")
    # while no operator ran (from the kill until the switchover began) writes never stopped; the
    # record's completion time has whole seconds, so `began` is up to 1 s early, never late
    record = _status(database, namespace, "db")["history"][0]
    assert (record["kind"], record["to"]) == ("switchover", target), record
    completed = datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()
    began = killed_at + (completed - record["durationSeconds"] - killed_wall)
    outage = [a.at for a in writer.acked if killed_at <= a.at <= began]
    gaps = [b - a for a, b in zip([killed_at, *outage], [*outage, began], strict=True)]
    errors = [f"{at - killed_at:.1f}s {message}" for at, message in writer.errors if killed_at <= at <= began]
    print(f"{database.flavor}: standby took over {takeover:.1f}s after the kill, the switchover began "
          f"{began - killed_at:.1f}s after it and took {record['durationSeconds']:.1f}s; {len(outage)} writes "
          f"acknowledged meanwhile, longest gap {max(gaps):.2f}s; errors meanwhile: {errors}")
    assert max(gaps) < 1.5, f"writes stopped for {max(gaps):.1f}s while the operator was away"
    assert takeover <= 15, f"the standby took {takeover:.1f}s to take over"
    lost = writer.ids() - _stored(database, namespace, target, password, 5_000_000)
    assert not lost, f"{len(lost)} acknowledged writes lost: {sorted(lost)[:10]}"


def test_a_config_change_restarts_the_replicas_then_switches_over_once_and_loses_no_write(database, namespace):
    """Issue 11 item 5: a new spec.config is a planned rollout, not a failover. Under writes
    through the -primary Service, the operator evicts the replicas one at a time, switches over
    to one of them once they all run the new my.cnf, then restarts the old primary as a replica:
    every server ends with the new setting, the history gains one switchover and no failover,
    writes pause only for the switchover and the Service's move, and no acknowledged write is lost."""
    before = _healthy(database, namespace)
    primary, history = before["currentPrimary"], before.get("history") or []
    password, app_password, service_ip = _application(database, namespace)
    writer = _writer(service_ip, 4_000_000, app_password)
    writer.start()
    pending_seen: list[list[str]] = []

    def rolled_out():
        status = _status(database, namespace, "db")
        rollout = status.get("rollout")
        if rollout:
            if not pending_seen or pending_seen[-1] != rollout["pending"]:
                pending_seen.append(rollout["pending"])
            return None
        if not pending_seen or not _condition(status, "Healthy"):
            return None
        values = []
        for member in ("db-0", "db-1", "db-2"):
            with pymysql.connect(host=_pod_ip(database, namespace, member), user="root", password=password,
                                 connect_timeout=5) as c, c.cursor() as cur:
                cur.execute("SELECT @@max_connections")
                values.append(cur.fetchone()[0])
        return status if values == [222, 222, 222] else None

    try:
        poll(lambda: len(writer.acked) > 50, 60, what="the writer's first writes")
        started = time.monotonic()
        database.kubectl("patch", "rdb", "db", "-n", namespace, "--type", "merge",
                         "-p", json.dumps({"spec": {"config": {"max_connections": "222"}}}))
        try:
            after = poll(rolled_out, 600, what="every member restarted with max_connections 222", interval=0.3,
                         ignore=pymysql.err.OperationalError)
        except AssertionError as error:
            raise AssertionError(f"{error}; rollouts seen {pending_seen}\n"
                                 f"{_diagnosis(database, namespace, password, [])}") from None
        took = time.monotonic() - started
        count = len(writer.acked)
        poll(lambda: len(writer.acked) > count + 20, 60, what="writes after the rollout")
    finally:
        writer.stop(10)
    new = after["currentPrimary"]
    acks = [a.at for a in writer.acked if a.at >= started]
    gap = max(b - a for a, b in zip(acks, acks[1:]))
    print(f"{database.flavor}: rolled out in {took:.0f}s, {primary} -> {new}, longest write gap {gap:.2f}s; "
          f"pending as seen: {pending_seen}")
    # the replicas went first, one at a time; the old primary last, after the switchover
    assert pending_seen[0] == ["db-0", "db-1", "db-2"], pending_seen
    assert all(primary in p for p in pending_seen) and pending_seen[-1] == [primary], pending_seen
    assert all(len(a) - len(b) <= 1 for a, b in zip(pending_seen, pending_seen[1:])), pending_seen
    added = (after.get("history") or [])[:len(after.get("history") or []) - len(history)]
    assert [(h["kind"], h["from"], h["to"]) for h in added] == [("switchover", primary, new)], added
    assert (after.get("loop") or {}).get("lastFailover") == (before.get("loop") or {}).get("lastFailover")
    # the pause is the switchover and the Service's move to the new primary (the EndpointSlice,
    # then kube-proxy's next sync: seconds on a busy 2-core node); restarting the primary in
    # place would stop writes for its whole restart, well over 10 s
    assert gap < 10.0, f"writes stopped for {gap:.1f}s during the rollout"
    lost = writer.ids() - _stored(database, namespace, new, password, 4_000_000)
    assert not lost, f"{len(lost)} acknowledged writes lost: {sorted(lost)[:10]}"
    events = database.kubectl("get", "events", "-n", namespace, "--field-selector",
                              "involvedObject.kind=ReplicatedDatabase", "-o", "json").stdout
    assert events.count("RolloutRestart") >= 3 and "RolloutCompleted" in events


@pytest.fixture(params=FLAVORS)
def lossless(request, operator, namespace):
    """A Lossless database (the default) whose primary falls back to asynchronous replication
    3 s after its replicas' acknowledgements stop."""
    spec = _database("db", request.param)
    spec["spec"]["semiSync"] = {"timeout": "3s"}
    operator.apply(spec, "-n", namespace)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=300s", "-n", namespace, "rdb/db", timeout=320)
    operator.flavor = request.param
    return operator


def test_a_failover_after_semi_sync_fell_back_is_refused_until_a_person_forces_it(lossless, namespace):
    """Issue 11 item 2 on the real node: the replicas' packets to the primary are dropped on the
    node, so its semi-sync falls back and it acknowledges writes no replica holds; then its server
    crash-loops. Lossless refuses to promote (phase Lost, Ready=False FailoverRefused, a Warning
    Event saying how to force it); a person annotates hakeeper.io/force-failover-to; that member
    is promoted once (FailoverForced, history.forced, the annotation removed), and the writes
    only the old primary had are gone: the writer counts them (the negative control)."""
    database = lossless
    status = _healthy(database, namespace)
    primary = status["currentPrimary"]
    replicas = [m["name"] for m in status["members"] if m["name"] != primary]
    password, app_password, service_ip = _application(database, namespace)
    node = database.get("pod", primary, "-n", namespace)["spec"]["nodeName"]
    writer = _writer(service_ip, 6_000_000, app_password)
    writer.start()
    target = replicas[0]
    seen: dict[str, dict] = {}

    def refused_then_forced():
        status = _status(database, namespace, "db")
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        if "refused" not in seen and ready.get("reason") == "FailoverRefused":
            seen["refused"] = status
            database.kubectl("annotate", "rdb", "db", "-n", namespace, f"hakeeper.io/force-failover-to={target}")
        history = status.get("history") or []
        return bool(history) and history[0].get("forced") is True

    try:
        poll(lambda: len(writer.acked) > 50, 60, what="the writer's first writes")
        ips = {m: _pod_ip(database, namespace, m) for m in (primary, *replicas)}
        with database.dropped(node, [ips[r] for r in replicas], ips[primary], 3306):
            cut = time.monotonic()
            poll(lambda: (_status(database, namespace, "db").get("loop") or {}).get("primarySemiSync") is False,
                 60, what="the operator to see the primary's semi-sync fall back")
            # more than a TCP window of binlog: some of it cannot have reached a replica
            poll(lambda: len(writer.acked_since(cut)) > 500, 60, what="writes acknowledged asynchronously")
            forced = database.crash_loop(namespace, primary, database.flavor, refused_then_forced, 180)
    finally:
        writer.stop(10)
    assert "refused" in seen, f"no FailoverRefused within 180 s: {json.dumps(_status(database, namespace, 'db'))}"
    refused = seen["refused"]
    assert refused["phase"] == "Lost" and refused["currentPrimary"] == primary, refused
    ready = next(c for c in refused["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and "semi-sync" in ready["message"], ready
    assert forced, f"the forced failover did not happen: {json.dumps(_status(database, namespace, 'db'))}"
    after = _status(database, namespace, "db")
    entry = after["history"][0]
    assert (entry["kind"], entry["from"], entry["to"], entry["forced"]) == ("failover", primary, target, True)
    assert "semi-sync" in (entry.get("possibleLoss") or ""), entry
    assert after["currentPrimary"] == target
    annotations = database.get("rdb", "db", "-n", namespace)["metadata"].get("annotations") or {}
    assert "hakeeper.io/force-failover-to" not in annotations  # used once
    events = database.kubectl("get", "events", "-n", namespace, "--field-selector",
                              "involvedObject.kind=ReplicatedDatabase", "-o", "json").stdout
    assert "FailoverRefused" in events and "FailoverForced" in events
    assert "hakeeper.io/force-failover-to" in events  # the refusal says how to force it
    # what only the old primary acknowledged is gone
    lost = writer.ids() - _stored(database, namespace, target, password, 6_000_000)
    asynchronous = {a.id for a in writer.acked_since(cut)}
    print(f"{database.flavor}: refused, then forced to {target}: {len(lost)} of {len(writer.acked)} acknowledged "
          f"writes lost ({len(asynchronous)} acknowledged after the cut)")
    assert lost, "the forced failover lost nothing: the cut stranded no acknowledged write (no negative control)"
    assert lost <= asynchronous, f"writes acknowledged before the cut are gone: {sorted(lost - asynchronous)[:10]}"
