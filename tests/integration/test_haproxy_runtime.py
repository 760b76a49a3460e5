"""Backends come and go through the runtime API: no reload, no failed request."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from hakeeper.agents import haproxy_runtime as runtime

from ..support.polling import poll
from .haproxy_support import SETTLING, ClientLoop, Lab, spec, spread

pytestmark = pytest.mark.integration


def test_add_reweight_drain_remove_and_replace_without_reload(lab: Lab) -> None:
    a, b, c, d = lab.backends("a", "b", "c", "d")
    pool_spec = spec(algorithm="roundrobin")
    balancer = lab.balancer()
    current = balancer.render(pool_spec, [a.backend(), b.backend()])
    balancer.start(current)
    worker, uptime, reloads = balancer.worker(), int(balancer.info()["Uptime_sec"]), balancer.proc().reloads

    def change(backends, expect_commands=True):
        nonlocal current
        rendered = balancer.render(pool_spec, backends, previous=current.slots)
        assert rendered.structure_hash == current.structure_hash, "server changes must not touch the structure"
        commands = balancer.apply(rendered)
        assert bool(commands) == expect_commands, commands
        current = rendered
        return time.monotonic()

    with ClientLoop(balancer.address, threads=2) as loop:
        loop.wait_requests(50)

        # add c
        changed = change([a.backend(), b.backend(), c.backend()])
        poll(lambda: loop.since(changed)["c"] >= 20, 10, what="traffic to the new backend c")

        # reweight: c gets 4 of every 6 requests
        changed = change([a.backend(), b.backend(), c.backend(weight=4)])
        loop.wait_requests(300)
        share = loop.since(changed + 0.1)
        assert 0.55 <= share["c"] / sum(share.values()) <= 0.78, share

        # drain a (a terminating pod): no new requests for it
        changed = change([a.backend(state="draining"), b.backend(), c.backend()])
        loop.wait_requests(200)
        assert loop.since(changed + 0.1)["a"] == 0, loop.since(changed + 0.1)

        # remove a; then b leaves and d comes in the same update: d takes a freed slot
        change([b.backend(), c.backend()])
        changed = change([c.backend(), d.backend()])
        assert current.slots["d"] in (1, 2), current.slots
        balancer.wait_up(current, "d")  # a new backend takes requests once its checks passed
        loop.wait_requests(200)
        assert set(loop.since(changed + 0.1)) == {"c", "d"}, loop.since(changed + 0.1)

        # a backend whose pod is not ready goes to maintenance
        change([c.backend(state="down"), d.backend()])
        loop.wait_requests(100)
        changed = time.monotonic()
        loop.wait_requests(100)
        assert set(loop.since(changed)) == {"d"}

        # the same servers.json again: nothing to do
        change([c.backend(state="down"), d.backend()], expect_commands=False)
        loop.wait_requests(50)

    print(f"\nruntime changes under load: {loop.total} requests, {len(loop.failures)} failed")
    assert loop.failures == [], loop.failures[:5]
    assert balancer.worker() == worker, "the worker was replaced: a reload happened"
    assert int(balancer.info()["Uptime_sec"]) >= uptime
    assert balancer.proc().reloads == reloads == 0


def test_plan_is_empty_once_applied_and_refusals_are_reported(lab: Lab) -> None:
    a, b = lab.backends("a", "b")
    balancer = lab.balancer()
    rendered = balancer.render(spec(algorithm="static-rr"), [a.backend(weight=2), b.backend()])
    balancer.start(rendered)
    assert balancer.apply(rendered) == []  # the file on disk already had the servers
    assert spread(balancer.address, 30) == {"a": 20, "b": 10}
    # static-rr weights are structure: HAProxy refuses runtime weights, and apply says so
    with pytest.raises(runtime.RuntimeApiError, match="static"):
        runtime.apply(balancer.admin, ["set weight servers/s1 5"])
    # changing them renders a new structure instead
    changed = balancer.render(spec(algorithm="static-rr"), [a.backend(weight=5), b.backend()], rendered.slots)
    assert changed.structure_hash != rendered.structure_hash


def test_prometheus_exporter_serves_the_pools_metrics(lab: Lab) -> None:
    (a,) = lab.backends("a")
    balancer = lab.balancer()
    balancer.start(balancer.render(spec(), [a.backend()]))
    spread(balancer.address, 5)

    def counted() -> list[str]:
        with urllib.request.urlopen(f"http://{balancer.address}:8404/metrics", timeout=5) as response:
            text = response.read().decode()
        return [line for line in text.splitlines()
                if line.startswith('haproxy_backend_http_responses_total{proxy="servers",code="2xx"}')]

    # five requests went through the backend section named "servers"; HAProxy counts a
    # response as its stream ends, a moment after the client has read it
    totals = poll(lambda: (lambda t: t if t and float(t[0].split()[-1]) == 5.0 else None)(counted()), timeout=5,
                  what="the exporter to count 5 responses", ignore=SETTLING)
    assert float(totals[0].split()[-1]) == 5.0
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://{balancer.address}:8404/other", timeout=5)
    assert missing.value.code == 404
