"""The agent's decide step: given the ConfigMap, the file on disk and HAProxy, what to do."""

from __future__ import annotations

import pytest

from hakeeper.agents import haproxy as agent
from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.agents.haproxy import ConfigMapView, Decision, Desired, Observed
from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.haproxy import config

SPEC = LoadBalancerPoolSpec.model_validate({"backends": {"service": "web", "port": 80}})
BACKENDS = [Backend("a", "10.0.0.1", 80), Backend("b", "10.0.0.2", 80, 2)]


def desired(backends=BACKENDS, annotations=None) -> Desired:
    rendered = config.render("web", SPEC, backends)
    return Desired.from_configmap(ConfigMapView(rendered.files, annotations or {}))


def running_servers(d: Desired) -> tuple[runtime.ServerState, ...]:
    """What a HAProxy started from d.disk_text reports."""
    by_slot = {e.slot: e for e in d.servers}
    rows = []
    for slot in range(1, configmap.slot_count(d.cfg) + 1):
        e = by_slot.get(slot)
        rows.append(runtime.ServerState(
            "servers", f"s{slot}", slot, e.address if e else "0.0.0.0", e.port if e else 0, 2,
            0 if e and e.state == "ready" else 5, e.weight if e else 1, e.weight if e else 1, 3))
    return tuple(rows)


def test_before_haproxy_runs_only_the_file_is_written() -> None:
    d = desired()
    decision = agent.decide(d, Observed(disk_text=None, running=False))
    assert decision == Decision(write=d.disk_text, waiting="HAProxy is not running")
    # once written, nothing to do but wait
    assert agent.decide(d, Observed(disk_text=d.disk_text, running=False)).idle


def test_a_running_haproxy_with_everything_applied_only_gets_reported() -> None:
    d = desired()
    observed = Observed(disk_text=d.disk_text, running=True, structure=d.structure_hash, servers=running_servers(d))
    assert agent.decide(d, observed) == Decision(report=d.config_hash)
    assert agent.decide(d, Observed(**{**observed.__dict__, "reported": d.config_hash})).idle


def test_server_changes_are_runtime_commands_and_a_rewrite_without_reload() -> None:
    old = desired()
    new = desired([Backend("a", "10.0.0.1", 80), Backend("b", "10.0.0.2", 80, 2, "draining"),
                   Backend("c", "10.0.0.3", 80)])
    assert new.structure_hash == old.structure_hash
    observed = Observed(disk_text=old.disk_text, running=True, structure=old.structure_hash,
                        servers=running_servers(old), reported=old.config_hash)
    decision = agent.decide(new, observed)
    assert decision.write == new.disk_text and not decision.reload
    assert decision.commands == ("set server servers/s3 addr 10.0.0.3 port 80", "set server servers/s3 state ready",
                                 "set server servers/s2 state drain")
    assert decision.report == new.config_hash


def test_a_new_structure_reloads_first_and_applies_servers_after() -> None:
    old = desired()
    new = desired([Backend(f"n{i}", f"10.0.1.{i}", 80) for i in range(9)])
    assert new.structure_hash != old.structure_hash
    observed = Observed(disk_text=old.disk_text, running=True, structure=old.structure_hash,
                        servers=running_servers(old), master=True)
    assert agent.decide(new, observed) == Decision(write=new.disk_text, reload=True)
    # without the master CLI there is no way to reload: wait
    assert agent.decide(new, Observed(**{**observed.__dict__, "master": False})).waiting
    # a structure HAProxy refused is not retried
    refused = agent.decide(new, Observed(**{**observed.__dict__, "refused": new.structure_hash}))
    assert refused == Decision(waiting=refused.waiting) and "refused" in refused.waiting


def test_the_reported_hash_is_the_operators_annotation() -> None:
    d = desired(annotations={agent.CONFIG_HASH_ANNOTATION: "from-operator"})
    assert d.config_hash == "from-operator"
    assert desired().config_hash == config.render("web", SPEC, BACKENDS).config_hash


def test_a_configmap_without_configuration_is_an_error() -> None:
    with pytest.raises(configmap.ConfigError, match="no haproxy.cfg"):
        Desired.from_configmap(ConfigMapView({}))
