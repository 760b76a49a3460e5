"""The agent against a real HAProxy: first start, server changes without reload, structure by reload.

The Kubernetes watch is replaced by snapshots put into the agent's `Latest` box (or files,
for the command line); everything downstream of it — the file, the runtime API, the master
CLI — is real. The e2e tier runs the agent against an API server.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from hakeeper.agents import haproxy as agentlib
from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.loadbalancerpool.backends import Backend

from ..support.polling import poll
from .haproxy_support import REPO, SETTLING, ClientLoop, Lab, RunningAgent, snapshot, spec, spread

pytestmark = pytest.mark.integration


def test_agent_first_start_runtime_changes_and_a_structural_reload(lab: Lab) -> None:
    a, b, c = lab.backends("a", "b", "c")
    balancer = lab.balancer()
    pool_spec = spec(healthCheck={"type": "http", "path": "/healthz", "interval": "500ms", "timeout": "200ms"})
    first = balancer.render(pool_spec, [a.backend(), b.backend()])
    with RunningAgent(balancer) as running:
        # before HAProxy runs, the agent only writes the file (the pod starts haproxy once it exists)
        running.latest.put(snapshot(first))
        poll(lambda: os.path.exists(balancer.config_path), 10, what="the agent to write haproxy.cfg")
        assert running.reported == []
        balancer.start()
        running.wait_reported(first.config_hash)
        assert set(spread(balancer.address, 20)) == {"a", "b"}
        worker = balancer.worker()

        with ClientLoop(balancer.address, threads=2) as loop:
            loop.wait_requests(50)
            # a backend joins and one drains: servers.json only
            second = balancer.render(pool_spec, [a.backend(state="draining"), b.backend(), c.backend()],
                                     previous=first.slots)
            assert second.structure_hash == first.structure_hash
            running.latest.put(snapshot(second))
            running.wait_reported(second.config_hash)
            assert balancer.worker() == worker and balancer.proc().reloads == 0
            loop.wait_requests(200)

            # the pool grows past 8 slots, and a check changes: a new structure, one reload
            ghosts = [Backend(f"ghost-{i}", f"127.0.0.{10 + i}", 9, state="down") for i in range(7)]
            third = balancer.render(spec(healthCheck={"type": "tcp", "interval": "500ms", "timeout": "200ms"}),
                                    [b.backend(), c.backend(), *ghosts], previous=second.slots)
            assert third.structure_hash != second.structure_hash
            assert configmap.slot_count(third.files[configmap.CONFIG_FILE]) == 16
            running.latest.put(snapshot(third))
            running.wait_reported(third.config_hash)
            assert balancer.proc().reloads == 1 and balancer.worker() != worker
            loop.wait_requests(200)

    print(f"\nagent: {loop.total} requests during a runtime change and a reload, {len(loop.failures)} failed")
    assert loop.failures == [], loop.failures[:5]
    assert running.agent.reloads == 1
    # c joined at runtime: it takes requests once its checks passed, which a reload that came
    # before then makes it wait for again (the state file keeps its verdict)
    balancer.wait_up(third, "c")
    assert set(spread(balancer.address, 20)) == {"b", "c"}
    # the file on disk is what a restarting HAProxy would load: the servers are in it
    on_disk = pathlib.Path(balancer.config_path).read_text()
    assert f"{c.address}:{c.port} weight 1" in on_disk and configmap.disk_structure(on_disk) == third.structure_hash


def test_agent_command_line_once_applies_servers_without_reload(lab: Lab, tmp_path: pathlib.Path) -> None:
    a, b = lab.backends("a", "b")
    balancer = lab.balancer()
    first = balancer.render(spec(), [a.backend()])
    balancer.start(first)
    worker = balancer.worker()
    source = tmp_path / "configmap"
    source.mkdir()
    second = balancer.render(spec(), [a.backend(), b.backend(weight=2)], previous=first.slots)
    for name, text in second.files.items():
        (source / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    done = subprocess.run(
        [sys.executable, "-m", "hakeeper.agents.haproxy", "--source-dir", str(source), "--config", balancer.config_path,
         "--socket", balancer.admin, "--master-socket", balancer.master, "--once"],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"applied-hash {second.config_hash}" in done.stdout
    assert balancer.worker() == worker and balancer.proc().reloads == 0
    balancer.wait_up(second, "b")
    assert spread(balancer.address, 30) == {"a": 10, "b": 20}


def test_agent_command_line_follows_a_directory(lab: Lab, tmp_path: pathlib.Path) -> None:
    a, b = lab.backends("a", "b")
    balancer = lab.balancer()
    first = balancer.render(spec(), [a.backend()])
    source = tmp_path / "configmap"
    source.mkdir()
    for name, text in first.files.items():
        (source / name).write_text(text)
    log = open(tmp_path / "agent.log", "w")
    lab.process([sys.executable, "-m", "hakeeper.agents.haproxy", "--source-dir", str(source),
                 "--config", balancer.config_path, "--socket", balancer.admin, "--master-socket", balancer.master],
                env={**os.environ, "PYTHONPATH": str(REPO / "operator")}, stdout=log, stderr=subprocess.STDOUT)
    poll(lambda: os.path.exists(balancer.config_path), 10, what="the agent to write haproxy.cfg")
    balancer.start()
    agent_log = tmp_path / "agent.log"
    poll(lambda: f"applied-hash {first.config_hash}" in agent_log.read_text(), 10, what="first config applied",
         ignore=SETTLING)
    second = balancer.render(spec(), [b.backend()], previous=first.slots)
    (source / configmap.SERVERS_FILE).write_text(second.files[configmap.SERVERS_FILE])
    poll(lambda: f"applied-hash {second.config_hash}" in agent_log.read_text(), 10, what="second config applied",
         ignore=SETTLING)
    balancer.wait_up(second, "b")
    assert set(spread(balancer.address, 10)) == {"b"}
    assert balancer.proc().reloads == 0
    log.close()


def test_agent_survives_a_configuration_haproxy_refuses(lab: Lab) -> None:
    a, b = lab.backends("a", "b")
    balancer = lab.balancer()
    good = balancer.render(spec(), [a.backend(), b.backend()])
    balancer.start(good)
    worker = balancer.worker()
    broken_files = {**good.files, configmap.CONFIG_FILE: good.files[configmap.CONFIG_FILE] + "    no-such-keyword\n"}
    broken = agentlib.ConfigMapView(broken_files, {agentlib.CONFIG_HASH_ANNOTATION: "broken"})
    with RunningAgent(balancer) as running:
        running.latest.put(snapshot(good))
        running.wait_reported(good.config_hash)
        running.latest.put(broken)
        poll(lambda: running.agent.refused is not None, 10, what="the reload to be refused")
        # the old worker keeps serving; the broken hash is never reported, nothing is retried
        assert balancer.worker() == worker and balancer.proc().failed_reloads == 1
        assert set(spread(balancer.address, 10)) == {"a", "b"}
        assert "broken" not in running.reported
        # and the file on disk is the working one again, for a HAProxy that restarts
        assert configmap.disk_structure(pathlib.Path(balancer.config_path).read_text()) == good.structure_hash
        fixed = balancer.render(spec(retries=1), [a.backend(), b.backend()], previous=good.slots)
        running.latest.put(snapshot(fixed))
        running.wait_reported(fixed.config_hash)
    # two reloads, one refused (HAProxy 2.6 clears its failed count at the next success)
    assert balancer.proc().reloads == 2 and balancer.worker() != worker
    assert set(spread(balancer.address, 10)) == {"a", "b"}
