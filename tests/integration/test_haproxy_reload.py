"""Structural changes: a hitless reload through the master CLI (master-worker, expose-fd listeners)."""

from __future__ import annotations

import pathlib
import time

import pytest

from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.loadbalancerpool.haproxy import config

from ..support.polling import poll
from .haproxy_support import SETTLING, ClientLoop, Lab, spec, spread

pytestmark = pytest.mark.integration


def test_structural_reloads_under_load_fail_no_request(lab: Lab) -> None:
    a, b = lab.backends("a", "b")
    balancer = lab.balancer()
    rendered = balancer.render(spec(), [a.backend(), b.backend()])
    balancer.start(rendered)
    workers = [balancer.worker()]
    durations = []
    during = 0
    with ClientLoop(balancer.address, threads=4) as loop:
        loop.wait_requests(100)
        for n, server_timeout in enumerate(["40s", "41s", "42s", "43s", "44s"], start=1):
            changed = balancer.render(spec(timeouts={"server": server_timeout}), [a.backend(), b.backend()],
                                      previous=rendered.slots)
            assert changed.structure_hash != rendered.structure_hash
            balancer.write(changed)
            before, started = loop.total, time.monotonic()
            workers.append(runtime.reload(balancer.master, balancer.admin))
            durations.append(time.monotonic() - started)
            during += loop.total - before  # answered while the master swapped workers
            loop.wait_requests(100)
            assert balancer.proc().reloads == n
            rendered = changed
    print(f"\n5 reloads under 4 client threads: {loop.total} requests, {len(loop.failures)} failed, "
          f"{during} while reloading; reload took {min(durations) * 1000:.0f}-{max(durations) * 1000:.0f} ms")
    assert loop.failures == [], loop.failures[:5]
    assert len(set(workers)) == 6, workers
    assert balancer.worker() == workers[-1]
    assert set(loop.backends) == {"a", "b"}


def test_health_verdicts_survive_a_reload(lab: Lab) -> None:
    a, b = lab.backends("a", "b")
    balancer = lab.balancer()
    check = {"type": "http", "path": "/healthz", "interval": "1s", "timeout": "500ms", "fall": 2, "rise": 2}
    rendered = balancer.render(spec(healthCheck=check), [a.backend(), b.backend()])
    balancer.start(rendered)
    b.set_healthy(False)
    slot_b = f"s{rendered.slots['b']}"
    poll(lambda: not balancer.servers()[slot_b].up, timeout=5, what="b to fail its checks", ignore=SETTLING)
    # the agent saves the state just before reloading; the new worker must start with b down
    changed = balancer.render(spec(healthCheck=check, retries=2), [a.backend(), b.backend()], rendered.slots)
    balancer.write(changed)
    saved = runtime.state_file(runtime.show_servers_state(balancer.admin)[1],
                               configmap.parse_servers(changed.files[configmap.SERVERS_FILE]))
    pathlib.Path(balancer.run_dir, config.STATE_FILE).write_text(saved)
    runtime.reload(balancer.master, balancer.admin)
    # first look well within one check interval: only the state file can have said "down"
    servers = balancer.servers()
    assert servers[slot_b].op_state == 0, servers[slot_b]
    assert set(spread(balancer.address, 10)) == {"a"}


def test_a_refused_configuration_leaves_the_old_worker_serving(lab: Lab) -> None:
    a, b = lab.backends("a", "b")
    balancer = lab.balancer()
    balancer.start(balancer.render(spec(), [a.backend(), b.backend()]))
    worker = balancer.worker()
    with open(balancer.config_path, "a") as f:
        f.write("    no-such-keyword here\n")
    with pytest.raises(runtime.ReloadFailed):
        runtime.reload(balancer.master, balancer.admin)
    assert balancer.worker() == worker
    assert set(spread(balancer.address, 10)) == {"a", "b"}
