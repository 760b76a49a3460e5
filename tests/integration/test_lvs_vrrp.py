"""Real VRRP failover between network namespaces with Debian's keepalived running the file the
agent writes (VRRP only: this kernel has no IPVS, see keepalived_support.py)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from hakeeper.api.configmaps import keepalived as configmap
from hakeeper.loadbalancerpool.lvs import config

from ..support.polling import hold, poll
from .keepalived_support import KEEPALIVED, PASSWORD, Cluster

pytestmark = pytest.mark.integration

SCHEDULING_SLACK = 0.5
"""The bound is the protocol's; this covers process scheduling on a busy 2-core machine and
the 10 ms polling of `ip addr`."""
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def requirements() -> None:
    if os.geteuid() != 0:
        pytest.fail("VRRP in network namespaces needs root")
    if not os.path.exists(KEEPALIVED):
        pytest.fail("keepalived is not installed (Debian package keepalived)")


@pytest.mark.parametrize("preempt", [False, True], ids=["preempt-false", "preempt-true"])
def test_backup_takes_over_and_the_old_master_returns(requirements, tmp_path, preempt):
    with Cluster(tmp_path, preempt=preempt) as cluster:
        net = cluster.net
        first, second = net.nodes
        assert cluster.priority(0) == 100 and cluster.priority(1) == 99  # base, then one less by node name
        cluster.start_in_order([0, 1])
        hold(lambda: net.vip_holders() == [first], cluster.advert * 2, what="VIP on the first node only")

        # the master crashes: the backup holds the VIP within 3 adverts + skew
        bound = cluster.bound(1)
        took = cluster.takeover(killed=0, heir=1, timeout=bound + 5)
        assert took <= bound + SCHEDULING_SLACK, f"takeover took {took:.2f}s, bound {bound:.2f}s"

        # the old master comes back
        cluster.restart(0)
        if preempt:
            # its higher priority takes the VIP back once it has waited out one Master_Down_Interval
            poll(lambda: net.vip_holders() == [first], cluster.bound(0) + SCHEDULING_SLACK + 1,
                 what="VIP back on the first node")
            assert "Entering BACKUP STATE" in cluster.members[1].log_since_start().split("Entering MASTER")[-1]
        else:
            cluster.members[0].wait_state("BACKUP", 5)
            # it would preempt within a Master_Down_Interval of hearing the master: watch longer
            hold(lambda: net.vip_holders() == [second], cluster.bound(0) + 2 * cluster.advert,
                 what="VIP on the second node only")
            assert "Entering MASTER STATE" not in cluster.members[0].log_since_start()


def run_agent(cluster: Cluster, index: int, source: pathlib.Path, pid_file: pathlib.Path,
              password_file: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """`hakeeper agent keepalived --once` inside the node's namespace (it reads `ip addr` there)."""
    node = cluster.net.nodes[index]
    code = "import sys; from hakeeper.agents.keepalived import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        ["ip", "netns", "exec", node, sys.executable, "-c", code, "--once", "--node", node,
         "--source-dir", str(source), "--config", str(cluster.members[index].conf), "--pid-file", str(pid_file),
         "--auth-password-file", str(password_file)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT / "operator")})


def agent_inputs(cluster: Cluster, directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The agent's inputs as the pod mounts them: the ConfigMap's files in a directory, and the
    VRRP password file."""
    source = directory / "configmap"
    source.mkdir()
    for name, text in cluster.rendered.files.items():
        (source / name).write_text(text)
    password_file = directory / "password"
    password_file.write_text(PASSWORD + "\n")
    return source, password_file


def test_agent_applies_reloads_and_reports_the_vrrp_state(requirements, tmp_path):
    with Cluster(tmp_path, preempt=False) as cluster:
        source, password_file = agent_inputs(cluster, tmp_path)
        cluster.start_in_order([0, 1])
        master, backup = cluster.members

        # the ConfigMap changes (the backends are gone): both nodes apply it with a reload
        changed = config.render("web", cluster.spec, [], nodes=cluster.net.nodes)
        assert "virtual_server" not in changed.files[configmap.CONFIG_FILE]
        (source / configmap.CONFIG_FILE).write_text(changed.files[configmap.CONFIG_FILE])
        for index, state in ((0, "MASTER"), (1, "BACKUP")):
            member = cluster.members[index]
            done = run_agent(cluster, index, source, member.pid_file, password_file)
            assert done.returncode == 0, done.stderr
            assert f"applied-hash {changed.config_hash}" in done.stdout
            assert f"vrrp-state {state}" in done.stdout
            assert "virtual_server" not in member.conf.read_text()
            assert f"priority {cluster.priority(index)}\n" in member.conf.read_text()
            poll(lambda m=member: "Reloading" in m.log_since_start(), 5, what=f"{member.node} reloading")
        # a reload keeps the roles: no flip
        assert cluster.net.vip_holders() == [cluster.net.nodes[0]]

        # a configuration keepalived refuses is not written, and keepalived keeps running the old one
        before = master.conf.read_text()
        (source / configmap.CONFIG_FILE).write_text(changed.files[configmap.CONFIG_FILE].replace(
            "advert_int 1", "advert_int 1\n    no_such_keyword 1"))
        done = run_agent(cluster, 0, source, master.pid_file, password_file)
        assert done.returncode == 1 and "keepalived -t exited 5" in done.stderr
        assert master.conf.read_text() == before and master.running

        # keepalived gone: the agent says FAULT (the VIP it left behind does not make it a master)
        master.kill()
        assert cluster.net.has_vip(cluster.net.nodes[0])
        (source / configmap.CONFIG_FILE).write_text(changed.files[configmap.CONFIG_FILE])
        done = run_agent(cluster, 0, source, master.pid_file, password_file)
        assert done.returncode == 3 and "vrrp-state FAULT" in done.stdout
        assert backup.running


def test_a_split_brain_is_reported_by_the_agents_and_makes_the_pool_not_ready(requirements, tmp_path):
    """Issue 14 field fault f (second half): the backup stops hearing the master's adverts (VRRP,
    IP protocol 112, dropped on its node), becomes master too, and both hold the virtual IP. Each
    node's agent reports MASTER; from those reports the pool's status says VirtualIPUnique=False
    (MultipleMasters) and Ready=False. Before the drop the same reports make it Ready (the control)."""
    from hakeeper.loadbalancerpool.backends import Backend
    from hakeeper.loadbalancerpool.status import BalancerPod, pool_status

    with Cluster(tmp_path, preempt=False) as cluster:
        source, password_file = agent_inputs(cluster, tmp_path)
        cluster.start_in_order([0, 1])
        backends = [Backend(name="a", address="10.0.0.1", port=80, weight=1, state="ready")]

        def status() -> dict:
            pods = []
            for index, member in enumerate(cluster.members):
                done = run_agent(cluster, index, source, member.pid_file, password_file)
                assert done.returncode == 0, done.stderr
                state = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("vrrp-state "))
                pods.append(BalancerPod(name=f"edge-{index}", ready=True, applied_hash=cluster.rendered.config_hash,
                                        vrrp_state=state, node=cluster.net.nodes[index]))
            return pool_status(None, 1, "wlc", backends, cluster.rendered.config_hash, pods, lvs=True)

        def condition(found: dict, kind: str) -> dict:
            return next(c for c in found["conditions"] if c["type"] == kind)

        before = status()
        assert condition(before, "VirtualIPUnique")["status"] == "True" and condition(before, "Ready")["status"] == "True"
        subprocess.run(["ip", "netns", "exec", cluster.net.nodes[1], "iptables", "-A", "INPUT", "-p", "112", "-j", "DROP"],
                       check=True)
        poll(lambda: cluster.net.vip_holders() == cluster.net.nodes, cluster.bound(1) + 5,
             what="both nodes holding the virtual IP")
        split = status()
        assert condition(split, "VirtualIPUnique")["reason"] == "MultipleMasters", split["conditions"]
        assert condition(split, "Ready")["status"] == "False"
        assert split["virtualIPHolder"] == ",".join(sorted(cluster.net.nodes))
