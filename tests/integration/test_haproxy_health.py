"""Health checks as rendered: a failing backend leaves within fall x interval and returns after rise."""

from __future__ import annotations

import time

import pytest

from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.api.configmaps import haproxy as configmap

from ..support.polling import poll
from .haproxy_support import SETTLING, ClientLoop, Lab, spec, spread

pytestmark = pytest.mark.integration

INTERVAL = 0.2


def check(**extra):
    return {"type": "http", "path": "/healthz", "interval": "200ms", "timeout": "100ms", "fall": 3, "rise": 2,
            **extra}


def test_http_check_takes_a_backend_out_and_back(lab: Lab) -> None:
    a, b = lab.backends("a", "b")
    balancer = lab.balancer()
    rendered = balancer.render(spec(healthCheck=check()), [a.backend(), b.backend()])
    balancer.start(rendered)
    slot_b = f"s{rendered.slots['b']}"
    # a fresh server starts barely up (health = rise) and would fall at its first failure;
    # wait for full health (rise + fall - 1) so that fall is measured
    poll(lambda: balancer.servers()[slot_b].check_health == 2 + 3 - 1, timeout=5, what="b fully healthy",
         ignore=SETTLING)

    b.set_healthy(False)
    failed = time.monotonic()
    poll(lambda: not balancer.servers()[slot_b].up, timeout=5, interval=0.01, what="b down", ignore=SETTLING)
    took_down = time.monotonic() - failed
    assert set(spread(balancer.address, 20)) == {"a"}
    # the clients frontend logs no request (`no log`), the backend still logs its state changes
    # through the global log (raw lines on stdout; HAProxy's own warnings start with "[")
    poll(lambda: any(line.startswith(f"Server servers/{slot_b} is DOWN") for line in balancer.log().splitlines()),
         timeout=5, what="the DOWN line in the balancer's log")

    b.set_healthy(True)
    healed = time.monotonic()
    poll(lambda: balancer.servers()[slot_b].up, timeout=5, interval=0.01, what="b back up", ignore=SETTLING)
    took_up = time.monotonic() - healed
    assert set(spread(balancer.address, 20)) == {"a", "b"}
    print(f"\nhttp check (interval 200ms, fall 3, rise 2): out after {took_down * 1000:.0f} ms, "
          f"back after {took_up * 1000:.0f} ms")
    # one interval of slack: the failure can land just after a check
    assert 2 * INTERVAL <= took_down <= (3 + 1) * INTERVAL + 0.15
    assert took_up <= (2 + 1) * INTERVAL + 0.15


@pytest.mark.parametrize("expect,up", [(503, True), (None, False)])
def test_http_check_expects_the_configured_status(lab: Lab, expect: int | None, up: bool) -> None:
    (a,) = lab.backends("a")
    balancer = lab.balancer()
    health = check(path="/status/503", **({"expectStatus": expect} if expect else {}))
    rendered = balancer.render(spec(healthCheck=health), [a.backend()])
    balancer.start(rendered)
    slot = f"s{rendered.slots['a']}"
    # three intervals decide either way (fall 3, rise 2 from the initial "up")
    poll(lambda: balancer.servers()[slot].check_health in ((0,) if not up else (3, 4)), timeout=5,
         what="the check verdict", ignore=SETTLING)
    assert balancer.servers()[slot].up is up


def test_killed_backend_costs_no_request_with_retries_and_redispatch(lab: Lab) -> None:
    a, b, c = lab.backends("a", "b", "c")
    balancer = lab.balancer()
    pool_spec = spec(healthCheck=check(type="tcp", path=None), retries=3, redispatch=True,
                     retryOn=["conn-failure", "empty-response"])
    rendered = balancer.render(pool_spec, [a.backend(), b.backend(), c.backend()])
    balancer.start(rendered)
    slot_b = f"s{rendered.slots['b']}"
    poll(lambda: balancer.servers()[slot_b].check_health == 2 + 3 - 1, timeout=5, what="b fully healthy",
         ignore=SETTLING)
    with ClientLoop(balancer.address, threads=3) as loop:
        loop.wait_requests(100)
        killed = time.monotonic()
        b.kill()
        poll(lambda: not balancer.servers()[slot_b].up, timeout=5, interval=0.01, what="b down", ignore=SETTLING)
        took_down = time.monotonic() - killed
        loop.wait_requests(200)
    print(f"\nkilled backend under load: {loop.total} requests, {len(loop.failures)} failed; "
          f"marked down after {took_down * 1000:.0f} ms")
    assert loop.failures == [], loop.failures[:5]
    assert took_down <= (3 + 1) * INTERVAL + 0.15
    assert loop.since(killed + took_down + 0.05)["b"] == 0


def _requests_to_a_failing_backend_joining(lab: Lab, pool, backends, control: bool) -> tuple[int, float | None]:
    """Under load, the backend `failing` joins the pool (servers.json through the agent's runtime
    plan; `control`: without its `health down`). (requests it got until its checks failed,
    seconds until a `healthy` one joining next took its first request; None for the control)."""
    a, failing, healthy = backends
    balancer = lab.balancer()
    rendered = balancer.render(pool, [a.backend()])
    balancer.start(rendered)
    with ClientLoop(balancer.address, threads=2) as loop:
        loop.wait_requests(50)
        added = balancer.render(pool, [a.backend(), failing.backend()], previous=rendered.slots)
        current, _ = runtime.show_servers_state(balancer.admin)
        commands = runtime.plan(current, configmap.parse_servers(added.files[configmap.SERVERS_FILE]))
        assert any(c.endswith(" health down") for c in commands), commands
        if control:
            commands = [c for c in commands if not c.endswith(" health down")]
        since = time.monotonic()
        runtime.apply(balancer.admin, commands)
        slot = f"s{added.slots['failing']}"
        poll(lambda: balancer.servers()[slot].check_health == 0, timeout=10, what="the failing backend's checks",
             ignore=SETTLING)
        loop.wait_requests(100)
        count = loop.since(since)["failing"]
        up_after = None
        if not control:
            joined = balancer.render(pool, [a.backend(), failing.backend(), healthy.backend()], previous=added.slots)
            joined_at = time.monotonic()
            balancer.apply(joined)
            poll(lambda: loop.since(joined_at)["healthy"] > 0, timeout=10, what="the healthy backend's first request")
            up_after = time.monotonic() - joined_at
    balancer.stop()
    return count, up_after


def test_a_new_backend_takes_traffic_only_once_its_checks_pass(lab: Lab) -> None:
    """Issue 14 field fault g, under load: a backend added while its health check fails gets no
    request, and a healthy one gets traffic once `rise` checks passed. The negative control sends
    the same runtime commands without the agent's `health down`: HAProxy then sends to the
    failing backend at once, until `fall` failed checks."""
    backends = lab.backends("a", "failing", "healthy")
    backends[1].set_healthy(False)
    pool = spec(healthCheck=check(type="http", path="/healthz", rise=2, fall=3))
    count, up_after = _requests_to_a_failing_backend_joining(lab, pool, backends, control=False)
    control, _ = _requests_to_a_failing_backend_joining(lab, pool, backends, control=True)
    print(f"\nrequests to a backend added with failing checks: {count} (control without "
          f"`health down`: {control}); a healthy one took its first request {up_after:.2f} s after it was added")
    assert count == 0
    assert control > 0, "the control saw no request: the test cannot tell the fault"
    assert up_after is not None and up_after >= INTERVAL, "traffic before any check passed"
