"""A network partition of the primary, for each flavor: the members are started from the server
image exactly as the StatefulSet starts them (mysql_support.PodFleet), the primary's pod in a
network namespace joined to the host by a veth pair, and the test cuts the link while its
server keeps running.

The operator cannot reach the partitioned primary to fence it, so the primary fences itself
(hakeeper.replicateddatabase.clustering.lease). Under durability Available it does when its
lease lapses, and the failover opens the new primary only after that: at no step are two
members writable. Under Lossless it does once it is cut off and a commit waits for an
acknowledgement; a client writing there meanwhile is never told a write committed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pymysql
import pytest

from hakeeper.replicateddatabase.clustering import Policy

from ..support.polling import poll
from .mariadb_support import APP_PASSWORD, APP_USER, NetnsLink, Writer, bootstrap, follows, stored_ids
from .mysql_support import Pod, PodFleet, database_spec, pod_fleet_fixture

pytestmark = pytest.mark.integration

NETNS = "hkdb0"
INSIDE, OUTSIDE = "10.240.0.2", "10.240.0.1"   # the veth pair
REPLICAS = ["10.241.0.2", "10.241.0.3"]          # host-side members, on lo, routed from the namespace


@pytest.fixture
def link():
    link = NetnsLink(NETNS, outer_ip=OUTSIDE, inner_ip=INSIDE, host_net="10.241.0.0/24", host_ips=REPLICAS)
    link.create()
    try:
        yield link
    finally:
        link.destroy()


@pytest.fixture(params=["mariadb", "mysql"])
def fleet(request, link: NetnsLink, durability: str):
    """db-0's pod in the namespace; the spec's durability is the test's."""
    spec = database_spec(request.param, durability=durability)
    yield from pod_fleet_fixture(spec, hosts=[INSIDE, *REPLICAS], netns={0: NETNS})


def socket_value(pod: Pod, sql: str) -> object:
    """The first column of the first row, as root over the member's unix socket."""
    with pod.admin() as conn, conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
        return row[0] if row else None


class ReadOnlyWatch(threading.Thread):
    """Polls read_only of every member over its unix socket (which the partition does not
    touch) and records when each one changed."""

    def __init__(self, fleet: PodFleet) -> None:
        super().__init__(daemon=True)
        self.fleet = fleet
        self.changes: list[tuple[float, str, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        last: dict[str, int] = {}
        while not self.halt.is_set():
            for inst in self.fleet:
                try:
                    value = int(socket_value(inst, "SELECT @@read_only"))  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001
                    continue
                if last.get(inst.name) != value:
                    last[inst.name] = value
                    self.changes.append((time.monotonic(), inst.name, value))
            self.halt.wait(0.02)

    def first(self, name: str, value: int, after: float) -> float | None:
        return next((t for t, n, v in self.changes if n == name and v == value and t > after), None)


def app_over_socket(pod: Pod, read_timeout: float) -> Callable[[str], pymysql.Connection]:
    """The application's account (APP_USER@'%') over the member's unix socket."""
    def connect(_: str) -> pymysql.Connection:
        return pymysql.connect(unix_socket=pod.socket, user=APP_USER, password=APP_PASSWORD, autocommit=True,
                               connect_timeout=2, read_timeout=read_timeout)
    return connect


def socket_writer(fleet: PodFleet, first_id: int) -> Writer:
    """A client of the old primary that still reaches it over its unix socket."""
    connect = app_over_socket(fleet[0], read_timeout=15)
    writer = Writer(lambda: "socket")
    writer.connect, writer.next_id, writer.retry_pause = connect, first_id, 0.2
    return writer


@pytest.mark.parametrize("durability", ["Available", "Lossless"])
def test_a_partitioned_primary_fences_itself_and_acknowledges_nothing_once_a_replica_is_promoted(
        fleet: PodFleet, link: NetnsLink, durability: str) -> None:
    lossless = durability == "Lossless"
    policy = Policy.from_spec(fleet.spec)
    assert policy.lossless is lossless
    loop = bootstrap(fleet, policy).start()
    assert loop.primary == "db-0" and fleet[0].host == INSIDE
    writer = Writer(loop.primary_host)
    writer.start()
    poll(lambda: len(writer.acked) >= 200, 30, what="writes through the veth pair")
    writer.stop()  # no commit in flight when the link goes
    acked = writer.ids()
    poll(lambda: all(acked <= stored_ids(fleet[i]) for i in (1, 2)), 10, what="replicas to catch up", ignore=Exception)

    watch = ReadOnlyWatch(fleet)
    watch.start()
    link.cut()
    cut = time.monotonic()
    stranded = socket_writer(fleet, 100_000)
    if lossless:
        stranded.start()  # under Lossless the old primary fences when a commit waits
    failover = loop.wait(lambda r: r.primary != "db-0", 30, "a failover away from the partitioned primary")
    new = failover.primary
    fenced_at = poll(lambda: watch.first("db-0", 1, cut), 10, what="db-0 to fence itself")
    opened_at = poll(lambda: watch.first(new, 0, cut), 10, what=f"{new} to open")  # type: ignore[arg-type]
    print(f"\n{fleet.flavor} partition ({durability}): db-0 read-only after {fenced_at - cut:.2f}s, {new} writable after "
          f"{opened_at - cut:.2f}s")
    if lossless:
        stranded.stop()
        # nothing the old primary was asked to commit after the cut was acknowledged
        assert not stranded.acked, f"db-0 acknowledged {len(stranded.acked)} writes after the cut"
        assert stranded.errors, "the stranded client never tried"
    else:
        assert fenced_at < opened_at

    # A client that still reaches the old primary (over its socket) cannot write there.
    with app_over_socket(fleet[0], read_timeout=5)("socket") as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as refused:
            cur.execute("INSERT INTO hk.writes (id, at) VALUES (-1, 0)")
    assert refused.value.args[0] == 1290  # --read-only

    writer = Writer(loop.primary_host)
    writer.next_id = 10_000
    writer.start()
    poll(lambda: len(writer.acked) >= 50, 20, what="writes on the new primary")
    writer.stop()

    link.heal()
    if lossless:
        # the stranded client's commit, killed unacknowledged, stayed in db-0's binlog: back, db-0
        # is errant and kept out, read-only, until re-seeded (its data is not discarded)
        kept_out = loop.wait(lambda r: any(m["name"] == "db-0" and m["errant"] for m in r.members), 30,
                             "the old primary to be kept out as errant")
        loop.stop()
        watch.halt.set()
        watch.join()
        assert kept_out.primary == new and fleet[0].value("SELECT @@read_only") == 1
        extra = stored_ids(fleet[0]) - stored_ids(fleet.by_name(new))  # type: ignore[arg-type]
        assert extra <= set(range(100_000, stranded.next_id)), extra  # only what the stranded client tried
        assert not extra & stranded.ids()
    else:
        rejoined = loop.wait(lambda r: r.state == "Healthy", 30, "the old primary to rejoin")
        loop.stop()
        watch.halt.set()
        watch.join()
        assert rejoined.primary == new
        assert follows(fleet, "db-0", new)  # both replication threads running, read-only
        poll(lambda: writer.ids() | acked <= stored_ids(fleet[0]), 15, what="db-0 to catch up", ignore=Exception)

    # Never two writable members in what the loop saw, nor (Available) on the servers themselves.
    for seen in loop.observed:
        writable = [n for n, s in seen.result.states.items() if s.writable]
        assert len(writable) <= 1, writable
    if lossless:
        return
    state = {"db-0": 0, "db-1": 1, "db-2": 1}
    for _, name, value in watch.changes:
        state[name] = value
        assert list(state.values()).count(0) <= 1, watch.changes
