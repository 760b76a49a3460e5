"""Scheduling, measured: requests through a real HAProxy, rendered by hakeeper, to real backends."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from hakeeper.agents import haproxy_runtime as runtime

from ..support.polling import poll
from .haproxy_support import SETTLING, Lab, get, new_address, spec, spread

pytestmark = pytest.mark.integration


def start(lab: Lab, pool_spec, weights: dict[str, int] | None = None, names=("a", "b", "c", "d")):
    backends = lab.backends(*names)
    balancer = lab.balancer()
    weights = weights or {}
    rendered = balancer.render(pool_spec, [b.backend(weights.get(b.name, 1)) for b in backends])
    balancer.start(rendered)
    return balancer, backends, rendered


def test_roundrobin_spreads_evenly(lab: Lab) -> None:
    balancer, _, _ = start(lab, spec(algorithm="roundrobin"))
    counts = spread(balancer.address, 400)
    assert set(counts) == {"a", "b", "c", "d"}
    assert all(95 <= n <= 105 for n in counts.values()), counts


@pytest.mark.parametrize("algorithm", ["roundrobin", "static-rr"])
def test_weights_three_to_one(lab: Lab, algorithm: str) -> None:
    balancer, _, _ = start(lab, spec(algorithm=algorithm), weights={"a": 3, "b": 1}, names=("a", "b"))
    counts = spread(balancer.address, 400)
    assert 2.6 <= counts["a"] / counts["b"] <= 3.4, counts


def test_random_uses_every_backend(lab: Lab) -> None:
    balancer, _, _ = start(lab, spec(algorithm="random"))
    counts = spread(balancer.address, 400)
    assert set(counts) == {"a", "b", "c", "d"} and min(counts.values()) >= 50, counts


def test_leastconn_prefers_the_idle_backend(lab: Lab) -> None:
    slow = lab.slow_backend("slow", delay=0.25)
    fast = lab.backends("fast")[0]
    balancer = lab.balancer()
    balancer.start(balancer.render(spec(algorithm="leastconn"), [slow.backend(), fast.backend()]))
    counts: Counter = Counter()
    lock = threading.Lock()

    def client() -> None:
        for _ in range(10):
            answer = get(balancer.address)
            with lock:
                counts[answer.backend] += 1

    clients = [threading.Thread(target=client) for _ in range(6)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=60)
    assert sum(counts.values()) == 60
    # roundrobin would give the slow backend half; leastconn sees its open connections
    assert counts["slow"] <= 12, counts


def test_source_keeps_each_client_address_on_one_backend(lab: Lab) -> None:
    balancer, _, _ = start(lab, spec(algorithm="source"))
    clients = [new_address() for _ in range(24)]
    chosen = {}
    for source in clients:
        seen = {get(balancer.address, source=source).backend for _ in range(5)}
        assert len(seen) == 1, (source, seen)
        chosen[source] = seen.pop()
    assert len(set(chosen.values())) >= 3, chosen


@pytest.mark.parametrize("algorithm,key", [("uri", "path"), ("hdr", "header")])
@pytest.mark.parametrize("hash_type", ["map-based", "consistent"])
def test_hashing_keeps_a_key_on_one_backend(lab: Lab, algorithm: str, key: str, hash_type: str) -> None:
    extra = {"hashHeader": "X-User"} if algorithm == "hdr" else {}
    balancer, _, _ = start(lab, spec(algorithm=algorithm, hashType=hash_type, **extra))

    def ask(k: str) -> str:
        if key == "path":
            return get(balancer.address, f"/items/{k}").backend
        return get(balancer.address, headers={"X-User": k}).backend

    chosen = {}
    for k in (f"user-{i}" for i in range(30)):
        seen = {ask(k) for _ in range(3)}
        assert len(seen) == 1, (k, seen)
        chosen[k] = seen.pop()
    assert len(set(chosen.values())) >= 3, chosen


def test_consistent_hashing_moves_only_keys_to_the_new_backend(lab: Lab) -> None:
    pool_spec = spec(algorithm="uri", hashType="consistent")
    backends = lab.backends("a", "b", "c", "d", "e")
    balancer = lab.balancer()
    first = balancer.render(pool_spec, [b.backend() for b in backends[:4]])
    balancer.start(first)
    keys = [f"/k/{i}" for i in range(200)]
    before = {k: get(balancer.address, k).backend for k in keys}
    worker = balancer.worker()
    second = balancer.render(pool_spec, [b.backend() for b in backends], previous=first.slots)
    assert second.structure_hash == first.structure_hash  # a new backend is a runtime change
    balancer.apply(second)
    balancer.wait_up(second, "e")
    after = {k: get(balancer.address, k).backend for k in keys}
    moved = {k for k in keys if before[k] != after[k]}
    assert balancer.worker() == worker
    assert moved and all(after[k] == "e" for k in moved), "a consistent hash moves keys only to the new server"
    assert len(moved) / len(keys) <= 0.35, f"{len(moved)} of {len(keys)} keys moved"


def test_cookie_insert_keeps_a_session_until_its_backend_dies(lab: Lab) -> None:
    pool_spec = spec(sessionAffinity={"type": "Cookie", "cookie": {"name": "HKSRV", "maxIdle": "10m"}},
                     healthCheck={"type": "tcp", "interval": "200ms", "timeout": "100ms", "fall": 2, "rise": 1})
    balancer, backends, rendered = start(lab, pool_spec, names=("a", "b", "c"))
    first = get(balancer.address)
    cookie = first.headers["set-cookie"].split(";")[0]
    assert cookie.startswith("HKSRV=s")
    session = {get(balancer.address, headers={"Cookie": cookie}).backend for _ in range(20)}
    assert session == {first.backend}
    assert len(spread(balancer.address, 30)) == 3  # clients without the cookie are spread
    by_name = {b.name: b for b in backends}
    by_name[first.backend].kill()
    poll(lambda: not balancer.servers()[f"s{rendered.slots[first.backend]}"].up, timeout=5,
         what="the dead backend to be marked down", ignore=SETTLING)
    moved = get(balancer.address, headers={"Cookie": cookie})
    assert moved.status == 200 and moved.backend != first.backend
    assert moved.headers["set-cookie"].startswith("HKSRV=s")  # a new cookie for the new backend


def test_source_ip_affinity_with_a_stick_table(lab: Lab) -> None:
    balancer, _, _ = start(lab, spec(algorithm="roundrobin", sessionAffinity={"type": "SourceIP"}))
    chosen = {}
    for source in [new_address() for _ in range(12)]:
        seen = {get(balancer.address, source=source).backend for _ in range(4)}
        assert len(seen) == 1, (source, seen)
        chosen[source] = seen.pop()
    # the first choice was roundrobin's: twelve new clients over four backends, three each
    assert sorted(Counter(chosen.values()).values()) == [3, 3, 3, 3], chosen


def test_redirect_mode_answers_302_to_the_chosen_backend(lab: Lab) -> None:
    balancer, backends, _ = start(lab, spec(mode="redirect"), names=("a", "b"))
    locations = set()
    for _ in range(6):
        answer = get(balancer.address, "/some/page?x=1")
        assert answer.status == 302, answer
        locations.add(answer.headers["location"])
    expected = {f"http://{b.address}:{b.port}/some/page?x=1" for b in backends}
    assert locations == expected
    for backend in backends:
        # following the redirect reaches that backend directly
        assert get(backend.address, "/some/page?x=1", port=backend.port).backend == backend.name


def test_cookie_sessions_stay_when_the_pool_shrinks_from_20_to_4_backends(lab: Lab) -> None:
    """Issue 14 field fault b on a real HAProxy: 20 backends (32 slots) down to 4, two of them in
    slots past 8. Clients pinned by cookie to each of the 4 stay on it through the change and
    the reload it may bring; the slots never move (compaction used to move the backends beyond
    the smaller capacity, and with them their clients)."""
    pool_spec = spec(sessionAffinity={"type": "Cookie", "cookie": {"name": "HKSRV", "maxIdle": "10m"}},
                     healthCheck={"type": "tcp", "interval": "200ms", "timeout": "100ms", "fall": 2, "rise": 1})
    names = tuple(f"b{i:02}" for i in range(20))
    balancer, backends, rendered = start(lab, pool_spec, names=names)
    by_name = {b.name: b for b in backends}
    cookies: dict[str, str] = {}
    for _ in range(200):  # a cookie for each backend a client was sent to
        answer = get(balancer.address)
        cookies.setdefault(answer.backend, answer.headers["set-cookie"].split(";")[0])
        if len(cookies) == len(names):
            break
    keep = sorted(("b00", "b05", *sorted(names, key=lambda n: rendered.slots[n])[-2:]))
    assert max(rendered.slots[n] for n in keep) > 8
    shrunk = balancer.render(pool_spec, [by_name[n].backend() for n in keep], previous=rendered.slots)
    balancer.write(shrunk)
    if shrunk.structure_hash != rendered.structure_hash:
        runtime.reload(balancer.master, balancer.admin)
    balancer.apply(shrunk)
    balancer.wait_up(shrunk, *keep)
    for name in keep:
        pinned = {get(balancer.address, headers={"Cookie": cookies[name]}).backend for _ in range(5)}
        assert pinned == {name}, (name, cookies[name], pinned)
    assert {n: shrunk.slots[n] for n in keep} == {n: rendered.slots[n] for n in keep}
