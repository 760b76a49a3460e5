"""SourceIP stickiness with an algorithm of the pool's own, on real HAProxy (issue 14, field
fault c): the stick table that keeps a client on its backend is shared by the balancer replicas
through a `peers` section, and survives reloads, also when every replica reloads at once (a
structural change reaches them all), because the agent carries it over
(agents/haproxy_sticktable.py). Balancers with the rendered configuration and four backends;
each control shows the clients move: without peers, and with HAProxy reloading alone."""

from __future__ import annotations

import pytest

from hakeeper.agents import haproxy as agentlib
from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.loadbalancerpool.haproxy import config

from ..support.polling import poll
from .haproxy_support import SETTLING, Balancer, Lab, get, new_address, spec

pytestmark = pytest.mark.integration

STICKY = {"algorithm": "roundrobin", "sessionAffinity": {"type": "SourceIP"}}
CLIENTS = 12


def _entries(balancer: Balancer) -> int:
    """The stick table's entries (`show table servers`: a header line, then one line a key)."""
    text = runtime.command(balancer.admin, "show table servers")
    return sum(1 for line in text.splitlines() if line.startswith("0x"))


def _backends_of(balancer: Balancer, clients: list[str]) -> dict[str, str]:
    """Which backend each client gets at `balancer`, asking in the order given."""
    return {client: get(balancer.address, source=client).backend for client in clients}


def _peers(balancers: list[Balancer]) -> list[tuple[str, str]]:
    return [(b.peer_name or "", b.address) for b in balancers]


def _first_choices(lab: Lab, balancers: list[Balancer], peered: bool) -> tuple[list[str], dict[str, str], list]:
    """Starts the balancers (as peers of each other, or not), sends each client to the first."""
    backends = [b.backend() for b in lab.backends("a", "b", "c", "d")]
    for balancer in balancers:
        balancer.start(balancer.render(spec(**STICKY), backends, peers=_peers(balancers) if peered else []))
    clients = [new_address() for _ in range(CLIENTS)]
    first = _backends_of(balancers[0], clients)
    assert len(set(first.values())) == 4, first  # roundrobin spread the new clients
    if peered:
        for balancer in balancers:
            poll(lambda b=balancer: _entries(b) == CLIENTS, timeout=10, what="the replicas' tables",
                 ignore=SETTLING)
    return clients, first, backends


def _moved(first: dict[str, str], now: dict[str, str]) -> int:
    return sum(now[client] != backend for client, backend in first.items())


@pytest.mark.parametrize("peered", [True, False], ids=["peers", "control-no-peers"])
def test_a_client_that_reaches_another_replica_stays_on_its_backend(lab: Lab, peered: bool) -> None:
    one, two = lab.balancer("lb-one"), lab.balancer("lb-two")
    clients, first, _ = _first_choices(lab, [one, two], peered)
    # asked in the reverse order: the other replica's own roundrobin would give other backends
    other = _backends_of(two, clients[::-1])
    if peered:
        assert other == first
    else:
        assert _moved(first, other) >= 1, (first, other)


@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("by", ["agent", "control-haproxy-alone"])
def test_every_replica_reloading_keeps_the_table(lab: Lab, replicas: int, by: str) -> None:
    balancers = [lab.balancer(f"lb-{n}") for n in range(replicas)]
    clients, first, backends = _first_choices(lab, balancers, peered=True)
    # a structural change (a timeout), rendered for and applied to every replica in turn
    for balancer in balancers:
        before = balancer.worker()
        if by == "agent":
            changed = config.render("test", spec(**STICKY, timeouts={"connect": "4s"}), backends,
                                    run_dir=balancer.run_dir, peers=_peers(balancers))
            agent = agentlib.Agent(balancer.config_path, balancer.admin, balancer.master, lambda _: None)
            agent.converge(agentlib.ConfigMapView(data=dict(changed.files), annotations={}))
            assert agent.reloads == 1
        else:
            runtime.reload(balancer.master, balancer.admin)
        assert balancer.worker() != before
    for balancer in balancers:
        now = _backends_of(balancer, clients[::-1])
        if by == "agent":
            assert now == first, balancer.peer_name
        else:  # HAProxy 2.6 hands nothing to the new worker, and no replica kept the table
            assert _moved(first, now) >= 1, (balancer.peer_name, first, now)
