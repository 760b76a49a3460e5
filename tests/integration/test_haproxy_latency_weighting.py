"""Latency-aware weights against a real HAProxy: the agent reads `show stat`, moves the weights
through the runtime API, and a backend answering 50 ms slower gets fewer requests.

Everything is real but the Kubernetes watch (snapshots go into the agent's `Latest` box):
HAProxy 2.6, its runtime API, HTTP backends on their own loopback addresses, clients sending
requests without pause. The negative control is the same pool with Static weights.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.haproxy import config

from ..support.polling import poll
from .haproxy_support import BACKEND_PORT, HAPROXY, ClientLoop, Lab, RunningAgent, new_address, port_open, spec

pytestmark = pytest.mark.integration

SLOWER = 0.05
"""How much slower the slow backend answers (seconds)."""
FAST_WEIGHTING = {"mode": "Latency", "interval": "1s", "halfLife": "1s", "floor": 10, "maxStep": 25}


class Responder:
    """A fast backend: HAProxy answering by itself (`http-request return`), in well under a
    millisecond, with its name in X-Backend. Two of them measure the same (0 ms in `show stat`),
    where two Python backends differ by a millisecond or two at random: 2 ms against 1 ms is
    half as fast to a proportional rule."""

    def __init__(self, lab: Lab, name: str) -> None:
        self.name = name
        self.address = new_address()
        cfg = lab.workdir / f"responder-{name}.cfg"
        cfg.write_text(f"global\n    maxconn 1000\ndefaults\n    mode http\n    timeout client 10s\n"
                       f"    timeout server 10s\n    timeout connect 5s\nfrontend f\n"
                       f"    bind {self.address}:{BACKEND_PORT}\n"
                       f"    http-request return status 200 content-type text/plain string {name} hdr X-Backend {name}\n")
        lab.process([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll(lambda: port_open(self.address, BACKEND_PORT), 10, what=f"responder {name}")

    def backend(self, weight: int = 1) -> Backend:
        return Backend(name=self.name, address=self.address, port=BACKEND_PORT, weight=weight)


def start(lab: Lab, weighting: dict, weights: dict[str, int] | None = None):
    """Two fast backends (a, b) and one answering SLOWER later (slow), behind a balancer whose
    agent runs; the balancer, the rendered config, and the agent (entered)."""
    weights = weights or {}
    slow = lab.slow_backend("slow", delay=SLOWER)
    fast = [Responder(lab, "a"), Responder(lab, "b")]
    balancer = lab.balancer()
    rendered = balancer.render(spec(weighting=weighting),
                               [b.backend(weights.get(b.name, 1)) for b in (*fast, slow)])
    balancer.start(rendered)
    balancer.wait_up(rendered, "a", "b", "slow")
    agent = RunningAgent(balancer)
    agent.put(rendered)
    agent.__enter__()
    lab.started.append(_Stopper(agent))
    poll(lambda: agent.reported and agent.reported[-1] == rendered.config_hash, 10,
         what="the agent to apply the configuration")
    return balancer, rendered, agent


class _Stopper:
    def __init__(self, agent: RunningAgent) -> None:
        self.agent = agent

    def stop(self) -> None:
        self.agent.__exit__(None, None, None)


def shares_over(clients: ClientLoop, requests: int) -> Counter:
    """Who answered the next `requests` requests."""
    start = clients.timeline[-1][0] if clients.timeline else 0.0
    clients.wait_requests(requests, timeout=60)
    return clients.since(start + 1e-9)


def settled_shares(clients: ClientLoop, check, timeout: float, window: int = 300) -> Counter:
    """Shares over windows of `window` requests, until one passes `check`; that window's."""
    last: list[Counter] = []

    def attempt() -> Counter | None:
        counts = shares_over(clients, window)
        last.append(counts)
        return counts if check(counts) else None

    return poll(attempt, timeout, what=f"shares passing the check (last: {last[-1:]})", interval=0.0)


def test_the_slow_servers_share_falls_below_half_of_a_fast_ones(lab: Lab) -> None:
    balancer, rendered, agent = start(lab, FAST_WEIGHTING)
    with ClientLoop(balancer.address, threads=4) as clients:
        settled_shares(clients, lambda c: 0 < c["slow"] < 0.5 * min(c["a"], c["b"]),
                                timeout=40)
        # and it holds: the weights do not swing back
        later = shares_over(clients, 400)
        assert later["slow"] < 0.5 * min(later["a"], later["b"]), later
    assert not clients.failures, clients.failures[:5]
    servers = balancer.servers()
    weights = {name: servers[f"s{slot}"].weight for name, slot in rendered.slots.items()}
    assert weights["a"] == weights["b"] == 100 and 10 <= weights["slow"] < 50, weights
    # the report the operator shows in the status
    report = {r["backend"]: r for r in json.loads(agent.weights[-1])}
    assert report["slow"]["latencyMs"] >= 40 and report["a"]["latencyMs"] < 20, report
    assert report["slow"]["weight"] < 50 and report["slow"]["base"] == 1, report


def test_negative_control_static_weights_give_the_slow_server_an_equal_share(lab: Lab) -> None:
    balancer, rendered, agent = start(lab, {"mode": "Static"})
    with ClientLoop(balancer.address, threads=4) as clients:
        clients.wait_requests(50, timeout=30)
        counts = shares_over(clients, 600)
    # roundrobin counts requests, not time: a third each, slow or not
    assert all(abs(counts[name] / sum(counts.values()) - 1 / 3) < 0.05 for name in ("a", "b", "slow")), counts
    assert {s.weight for s in balancer.servers().values() if s.address != config.PLACEHOLDER_ADDRESS} == {1}
    assert agent.weights == []  # Static: no report


def test_the_base_weights_from_annotations_keep_their_proportions(lab: Lab) -> None:
    balancer, rendered, agent = start(lab, FAST_WEIGHTING, weights={"a": 2})
    with ClientLoop(balancer.address, threads=4) as clients:
        counts = settled_shares(clients, lambda c: c["slow"] < 0.5 * c["b"], timeout=40, window=400)
    assert 1.6 <= counts["a"] / counts["b"] <= 2.4, counts
    servers = balancer.servers()
    weights = {name: servers[f"s{slot}"].weight for name, slot in rendered.slots.items()}
    assert weights["a"] == 2 * weights["b"] == 200, weights  # base 2 and 1, scaled by 100
