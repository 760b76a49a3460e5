"""keepalived.conf for engine lvs: accepted by the real keepalived -t, refused before any file
when the input cannot be rendered; and the agent's pure decide step."""

from __future__ import annotations

import ipaddress
import itertools
import os
import pathlib
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import given, settings
from hypothesis import strategies as st

from hakeeper.agents import keepalived as agent
from hakeeper.agents import vrrp_state
from hakeeper.api.configmaps import keepalived as configmap
from hakeeper.api.configmaps.keepalived import ConfigError
from hakeeper.api.loadbalancerpool import LVS_ALGORITHMS, LoadBalancerPoolSpec
from hakeeper.api.meta import APPLIED_HASH_ANNOTATION
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.lvs import config

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
BACKENDS = [
    Backend("web-0", "10.1.0.10", 8080, 3),
    Backend("web-1", "10.1.0.11", 8080, 1, "draining"),
    Backend("web-2", "10.1.0.12", 8080, 5, "down"),
]


def host_interface() -> str:
    """keepalived -t checks that the instance's interface exists here, and refuses loopback."""
    names = sorted(n for n in os.listdir("/sys/class/net") if n != "lo")
    if not names:
        pytest.fail("keepalived -t needs a non-loopback interface on this machine")
    return "eth0" if "eth0" in names else names[0]


def make_spec(lvs: dict[str, Any] | None = None, backend_port: int = 8080, **fields: Any) -> LoadBalancerPoolSpec:
    vrrp = {"virtualRouterID": 51, "interface": host_interface(), **(lvs or {}).pop("vrrp", {})}
    return LoadBalancerPoolSpec.model_validate({
        "engine": "lvs",
        "backends": {"selector": {"matchLabels": {"app": "web"}}, "port": backend_port},
        "lvs": {"virtualIP": "10.0.0.100", "port": 80, **(lvs or {}), "vrrp": vrrp},
        **fields,
    })


def keepalived_check(text: str, directory: pathlib.Path) -> None:
    """keepalived -t exits 5 on any error or warning it logs."""
    if not os.path.exists(KEEPALIVED):
        pytest.fail("keepalived is not installed (Debian package keepalived)")
    path = directory / "keepalived.conf"
    path.write_text(text)
    done = subprocess.run([KEEPALIVED, "-t", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr + text


def node_text(rendered: config.Rendered, node: str = "node-a", password: str | None = "s3cret") -> str:
    text = rendered.files[configmap.CONFIG_FILE]
    priority = configmap.node_priority(rendered.files, node, configmap.base_priority(text))
    return configmap.for_node(text, priority, password)


# -- keepalived -t accepts what we render ---------------------------------------------------

CASES = list(itertools.product(
    LVS_ALGORITHMS,
    [("NAT", 8080), ("DR", 80), ("TUN", 80)],
    [{"type": "tcp"}, {"type": "http", "path": "/healthz?x=1", "expectStatus": 204}, {"type": "none"}],
))


@pytest.mark.parametrize(("algorithm", "forwarding", "check"), CASES,
                         ids=[f"{a}-{f[0]}-{c['type']}" for a, f, c in CASES])
def test_keepalived_accepts_every_algorithm_forwarding_and_check(algorithm, forwarding, check, tmp_path):
    kind, port = forwarding
    spec = make_spec({"forwarding": kind, "persistenceTimeout": 300}, backend_port=port,
                     algorithm=algorithm, healthCheck=check)
    backends = [Backend(b.name, b.address, port, b.weight, b.state) for b in BACKENDS]
    rendered = config.render("web", spec, backends)
    text = rendered.files[configmap.CONFIG_FILE]
    keepalived_check(text, tmp_path)
    assert f"lb_algo {algorithm}\n" in text and f"lb_kind {kind}\n" in text


@pytest.mark.parametrize("protocol,check,checker", [
    ("TCP", "tcp", "TCP_CHECK"), ("UDP", "tcp", "UDP_CHECK"), ("TCP", "http", "HTTP_GET")])
def test_checker_follows_protocol_and_type(protocol, check, checker, tmp_path):
    spec = make_spec({"protocol": protocol}, healthCheck={"type": check, "interval": "500ms", "timeout": "250ms",
                                                          "fall": 4})
    text = config.render("web", spec, BACKENDS).files[configmap.CONFIG_FILE]
    keepalived_check(text, tmp_path)
    assert text.count(f"{checker} {{") == 2  # web-0 and web-1 (down web-2 is left out)
    assert "connect_timeout 0.25\n" in text and "delay_before_retry 0.5\n" in text and "delay_loop 0.5\n" in text
    assert "retry 3\n" in text  # fall 4: the first failure and three retries


def test_backend_states_weights_and_order(tmp_path):
    text = config.render("web", make_spec(), list(reversed(BACKENDS))).files[configmap.CONFIG_FILE]
    assert "real_server 10.1.0.10 8080 {\n        weight 3\n" in text
    assert "real_server 10.1.0.11 8080 {\n        weight 0\n" in text  # draining: open connections only
    assert "10.1.0.12" not in text  # down
    assert text.index("10.1.0.10") < text.index("10.1.0.11")


def test_vrrp_instance(tmp_path):
    spec = make_spec({"vrrp": {"virtualRouterID": 7, "priority": 150, "advertInterval": 2,
                               "unicastPeers": ["10.0.0.3", "10.0.0.2"], "authSecretRef": {"name": "s", "key": "k"}}})
    rendered = config.render("web", spec, BACKENDS, auth_password="abc", nodes=["node-b", "node-a"])
    text = rendered.files[configmap.CONFIG_FILE]
    keepalived_check(text, tmp_path)
    assert "state BACKUP\n" in text and "nopreempt\n" in text
    assert "virtual_router_id 7\n" in text and "priority 150\n" in text and "advert_int 2\n" in text
    assert "auth_type PASS\n        auth_pass abc\n" in text
    assert "unicast_peer {\n        10.0.0.2\n        10.0.0.3\n    }" in text
    assert "virtual_ipaddress {\n        10.0.0.100\n    }" in text
    assert configmap.node_priority(rendered.files, "node-a", 150) == 150
    assert configmap.node_priority(rendered.files, "node-b", 150) == 149
    assert configmap.node_priority(rendered.files, "node-c", 150) == 148  # a node the operator has not listed yet
    b_text = node_text(rendered, "node-b")
    assert "priority 149\n" in b_text
    keepalived_check(b_text, tmp_path)


def test_connection_sync_runs_the_sync_daemon_on_the_vrrp_interface(tmp_path):
    interface = host_interface()
    text = config.render("web", make_spec({"connectionSync": True}), BACKENDS).files[configmap.CONFIG_FILE]
    keepalived_check(text, tmp_path)
    assert f"global_defs {{\n    router_id hakeeper_web\n    lvs_sync_daemon {interface} hk_web\n}}\n" in text
    # the default, false: no sync daemon (the lvs tier shows what each does to a failover)
    assert "lvs_sync_daemon" not in config.render("web", make_spec(), BACKENDS).files[configmap.CONFIG_FILE]


def test_preempt_true_has_no_nopreempt():
    text = config.render("web", make_spec({"vrrp": {"preempt": True}}), BACKENDS).files[configmap.CONFIG_FILE]
    assert "nopreempt" not in text and "state BACKUP" in text


def test_password_from_secret_stays_out_of_the_configmap(tmp_path):
    spec = make_spec({"vrrp": {"authSecretRef": {"name": "s", "key": "k"}}})
    rendered = config.render("web", spec, BACKENDS)
    assert f"auth_pass {configmap.PASSWORD_PLACEHOLDER}\n" in rendered.files[configmap.CONFIG_FILE]
    with pytest.raises(ConfigError, match="auth-password-file"):
        node_text(rendered, password=None)
    with pytest.raises(ConfigError, match="1 to 8"):
        node_text(rendered, password="123456789")
    with pytest.raises(ConfigError, match="1 to 8"):  # re's match took it: "$" matched before the newline
        node_text(rendered, password="abc\n")
    text = node_text(rendered, password="p@ss-1")
    assert "auth_pass p@ss-1\n" in text
    keepalived_check(text, tmp_path)


@pytest.mark.parametrize("backends", [[], [BACKENDS[2]], [BACKENDS[1]], [Backend("w", "10.1.0.1", 8080, 0)]],
                         ids=["none", "only-down", "only-draining", "only-weight-0"])
def test_no_backend_for_new_connections_leaves_the_virtual_server_out(backends, tmp_path):
    # keepalived refuses a virtual server without real servers, and warns (-t fails) when their
    # weights add up to 0; VRRP still holds the VIP
    text = config.render("web", make_spec(), backends).files[configmap.CONFIG_FILE]
    assert "virtual_server" not in text and "vrrp_instance hk_web" in text
    keepalived_check(text, tmp_path)


def test_render_is_deterministic():
    spec = make_spec({"vrrp": {"unicastPeers": ["10.0.0.9", "10.0.0.2"]}})
    one = config.render("web", spec, BACKENDS, nodes=["b", "a"])
    two = config.render("web", spec, list(reversed(BACKENDS)), nodes=["a", "b"])
    assert one == two
    other = config.render("web", spec, BACKENDS[:1], nodes=["a", "b"])
    assert other.config_hash != one.config_hash


# -- broken inputs never reach a file -------------------------------------------------------

def with_path(path: str) -> LoadBalancerPoolSpec:
    """An http check with a path the schema (and pydantic) refuse: model_copy does not validate,
    so the renderer's own check is what stops it."""
    spec = make_spec(healthCheck={"type": "http"})
    return spec.model_copy(update={"health_check": spec.health_check.model_copy(update={"path": path})})


@pytest.mark.parametrize(("build", "message"), [
    (lambda: config.render("web", make_spec(), BACKENDS, auth_password="123456789"), "1 to 8"),
    (lambda: config.render("web", make_spec(), BACKENDS, auth_password="has space"), "1 to 8"),
    (lambda: config.render("web", make_spec(), BACKENDS, auth_password="a#b"), "1 to 8"),
    (lambda: config.render("web", make_spec(), BACKENDS, auth_password=""), "1 to 8"),
    # re's match let "$" match before a final newline: the line break reached auth_pass
    (lambda: config.render("web", make_spec(), BACKENDS, auth_password="abc\n"), "1 to 8"),
    (lambda: config.render("Web Pool", make_spec(), BACKENDS), "object name"),
    (lambda: config.render("web", make_spec(), [Backend("x", "10.0.0.1 9", 80)]), "IPv4"),
    (lambda: config.render("web", make_spec(), [Backend("x", "host.example", 80)]), "IPv4"),
    (lambda: config.render("web", make_spec(), [Backend("x", "10.0.0.1", 0)]), "port"),
    (lambda: config.render("web", make_spec(), [Backend("x", "10.0.0.1", 80, 257)]), "weight"),
    (lambda: config.render("web", make_spec(), [Backend("x", "10.0.0.1", 80, 1, "gone")]), "state"),  # type: ignore[arg-type]
    # a named backend port resolved to another number than the virtual server's
    (lambda: config.render("web", make_spec({"forwarding": "DR"}, backend_port=80), BACKENDS), "cannot map ports"),
    (lambda: config.render("web", with_path("/a b"), BACKENDS), "path"),
    (lambda: config.render("web", with_path("/a#b"), BACKENDS), "path"),
    (lambda: config.render("web", with_path("/${X}"), BACKENDS), "path"),
    (lambda: config.render("web", make_spec(healthCheck={"type": "mysql"}), BACKENDS), "mysql"),
    (lambda: config.render("web", make_spec().model_copy(update={"algorithm": "roundrobin"}), BACKENDS), "IPVS"),
    (lambda: config.render("web", make_spec().model_copy(update={"engine": "haproxy", "lvs": None}), BACKENDS),
     "engine lvs"),
])
def test_broken_inputs_raise_config_error(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_for_node_refuses_bad_priorities_and_files():
    text = config.render("web", make_spec(), BACKENDS).files[configmap.CONFIG_FILE]
    with pytest.raises(ConfigError, match="1..254"):
        configmap.for_node(text, 255)
    with pytest.raises(ConfigError, match="exactly one priority"):
        configmap.for_node(text + text, 100)
    with pytest.raises(ConfigError, match="JSON"):
        configmap.node_priority({configmap.PRIORITIES_FILE: "{"}, "a", 100)


def test_priority_for_counts_down_in_node_name_order():
    nodes = ["node-c", "node-a", "node-b"]
    assert [config.priority_for(100, n, nodes) for n in ("node-a", "node-b", "node-c")] == [100, 99, 98]
    assert config.priority_for(100, "node-z", nodes) == 97
    assert config.priority_for(2, "node-c", nodes) == 1  # never below VRRP's lowest backup priority


# -- property: every valid spec renders to a file keepalived accepts -------------------------

addresses = st.integers(min_value=int(ipaddress.IPv4Address("10.0.0.1")),
                        max_value=int(ipaddress.IPv4Address("10.255.255.254"))).map(lambda i: str(ipaddress.IPv4Address(i)))
passwords = st.text(alphabet="abcXYZ019_.,:;+=*%^&()[]<>|/?~@-", min_size=1, max_size=8)
paths = st.text(alphabet="abz09/?&=:,;+@*%._~-", max_size=20).map(lambda s: "/" + s)
durations = st.sampled_from(["100ms", "250ms", "1s", "2s", "1500ms", "1m"])


@st.composite
def specs_and_backends(draw):
    forwarding = draw(st.sampled_from(["NAT", "DR", "TUN"]))
    protocol = draw(st.sampled_from(["TCP", "UDP"]))
    port = draw(st.integers(1, 65535))
    backend_port = draw(st.integers(1, 65535)) if forwarding == "NAT" else port
    check_type = draw(st.sampled_from(["tcp", "none"] if protocol == "UDP" else ["tcp", "http", "none"]))
    interval = draw(durations)
    check: dict[str, Any] = {"type": check_type, "interval": interval, "timeout": draw(durations),
                             "rise": draw(st.integers(1, 100)), "fall": draw(st.integers(1, 100))}
    if check["timeout"] > interval:  # the CRD wants timeout <= interval; any order is fine here
        check["timeout"] = interval
    if check_type == "http":
        check["path"] = draw(paths)
        check["expectStatus"] = draw(st.integers(100, 599))
    vrrp = {"virtualRouterID": draw(st.integers(1, 255)), "priority": draw(st.integers(1, 254)),
            "advertInterval": draw(st.integers(1, 255)), "preempt": draw(st.booleans()),
            "unicastPeers": draw(st.lists(addresses, max_size=4))}
    with_secret = draw(st.booleans())
    if with_secret:
        vrrp["authSecretRef"] = {"name": "vrrp", "key": "password"}
    lvs = {"virtualIP": draw(addresses), "port": port, "protocol": protocol, "forwarding": forwarding, "vrrp": vrrp}
    if draw(st.booleans()):
        lvs["persistenceTimeout"] = draw(st.integers(1, 86400))
    spec = make_spec(lvs, backend_port=backend_port, algorithm=draw(st.sampled_from(LVS_ALGORITHMS)),
                     healthCheck=check)
    backends = draw(st.lists(st.builds(Backend, name=st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z"), address=addresses,
                                       port=st.just(backend_port), weight=st.integers(0, 256),
                                       state=st.sampled_from(["ready", "draining", "down"])), max_size=6))
    password = draw(passwords) if with_secret and draw(st.booleans()) else None
    nodes = draw(st.lists(st.from_regex(r"\A[a-z][a-z0-9-]{0,10}\Z"), max_size=4))
    return spec, backends, password, nodes, (draw(passwords) if with_secret else None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HypothesisHealthCheck.function_scoped_fixture])
@given(case=specs_and_backends())
def test_every_valid_spec_renders_a_config_keepalived_accepts(case, tmp_path):
    spec, backends, password, nodes, node_password = case
    rendered = config.render("pool-1", spec, backends, auth_password=password, nodes=nodes)
    assert rendered == config.render("pool-1", spec, backends, auth_password=password, nodes=nodes)
    keepalived_check(rendered.files[configmap.CONFIG_FILE], tmp_path)
    for node in sorted(set(nodes))[:2] or ["alone"]:
        keepalived_check(node_text(rendered, node, node_password), tmp_path)


# -- the agent: keepalived -t guards the file; decide is pure -------------------------------

def test_refused_file_never_replaces_the_running_one(tmp_path):
    target = tmp_path / "keepalived.conf"
    good = config.render("web", make_spec(), BACKENDS).files[configmap.CONFIG_FILE]
    agent.write_tested(str(target), good, (KEEPALIVED,))
    assert target.read_text() == good
    broken = good.replace("virtual_router_id 51", "virtual_router_id 300")
    with pytest.raises(agent.Refused, match="exited 5"):
        agent.write_tested(str(target), broken, (KEEPALIVED,))
    assert target.read_text() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keepalived.conf"]  # no temporary left behind
    with pytest.raises(agent.Refused, match="does not exist"):  # keepalived -t says 0 for a missing file
        agent.config_test(str(tmp_path / "missing.conf"), (KEEPALIVED,))


DESIRED = agent.Desired(text="conf v2", config_hash="h2")


def test_decide_writes_and_reloads_then_reports():
    first = agent.decide(DESIRED, agent.Observed(disk_text="conf v1", running=True, state="MASTER", applied="h1"))
    assert first.write == "conf v2" and first.reload
    # the hash only once loaded
    assert first.report == {agent.VRRP_STATE_ANNOTATION: "MASTER", agent.IPVS_ANNOTATION: "available"}
    second = agent.decide(DESIRED, agent.Observed(disk_text="conf v2", running=True, state="MASTER", applied="h2",
                                                  reported=first.report))
    assert second.write is None and not second.reload and second.report == {APPLIED_HASH_ANNOTATION: "h2"}
    reported = {**first.report, **second.report}
    assert agent.decide(DESIRED, agent.Observed(disk_text="conf v2", running=True, state="MASTER", applied="h2",
                                                reported=reported)).idle
    moved = agent.decide(DESIRED, agent.Observed(disk_text="conf v2", running=True, state="BACKUP", applied="h2",
                                                 reported=reported))
    assert moved.report == {agent.VRRP_STATE_ANNOTATION: "BACKUP"} and not moved.reload


def test_decide_without_keepalived_writes_the_file_and_waits():
    decision = agent.decide(DESIRED, agent.Observed(disk_text=None, running=False, state="FAULT"))
    assert decision.write == "conf v2" and not decision.reload and decision.waiting
    assert decision.report == {agent.VRRP_STATE_ANNOTATION: "FAULT", agent.IPVS_ANNOTATION: "available"}


def test_decide_reports_a_node_without_ipvs():
    # keepalived exits at once where ip_vs is not loaded (it cannot load it from its container)
    decision = agent.decide(DESIRED, agent.Observed(disk_text="conf v2", running=False, state="FAULT", ipvs=False))
    assert decision.report[agent.IPVS_ANNOTATION] == "missing" and "load ip_vs" in decision.waiting


def test_a_balancer_node_without_ipvs_makes_the_pool_not_ready():
    from hakeeper.loadbalancerpool.status import BalancerPod, conditions_for

    balancers = [BalancerPod("edge-a", False, None, "FAULT", "node-a", "missing"),
                 BalancerPod("edge-b", True, "h", "MASTER", "node-b", "available")]
    conditions = {c.type: c for c in conditions_for(None, 1, [], "h", balancers)}
    assert conditions["Ready"].status == "False" and conditions["Ready"].reason == "IPVSUnavailable"
    assert "no IPVS on node-a" in conditions["Ready"].message and "modprobe ip_vs" in conditions["Ready"].message


def test_decide_reloads_a_keepalived_that_has_not_loaded_the_file():
    decision = agent.decide(DESIRED, agent.Observed(disk_text="conf v2", running=True, state="BACKUP", applied=None))
    assert decision.write is None and decision.reload


def test_decide_does_not_retry_a_refused_config():
    decision = agent.decide(DESIRED, agent.Observed(disk_text="conf v1", running=True, state="MASTER", applied="h1",
                                                    refused="conf v2"))
    assert decision.write is None and not decision.reload and "refused" in decision.waiting


@pytest.mark.parametrize(("running", "link", "state"), [
    (True, {"flags": ["UP"], "operstate": "UP", "addr_info": [{"family": "inet", "local": "10.0.0.100"}]}, "MASTER"),
    (True, {"flags": ["UP"], "operstate": "UP", "addr_info": [{"family": "inet", "local": "10.0.0.1"}]}, "BACKUP"),
    (True, {"flags": ["BROADCAST"], "operstate": "DOWN", "addr_info": []}, "FAULT"),
    (True, None, "FAULT"),
    # killed with -9, keepalived leaves the VIP behind: a dead node is not a master
    (False, {"flags": ["UP"], "operstate": "UP", "addr_info": [{"family": "inet", "local": "10.0.0.100"}]}, "FAULT"),
])
def test_vrrp_state_from_the_interface(running, link, state):
    assert vrrp_state.classify(running, link, "10.0.0.100") == state


def test_instance_target_reads_interface_and_vip():
    text = config.render("web", make_spec(), BACKENDS).files[configmap.CONFIG_FILE]
    assert vrrp_state.instance_target(text) == (host_interface(), "10.0.0.100")
