"""Request priority classes on a real HAProxy driven by the real agent (issue 14 item 1).

A backend of limited capacity (server.maxconn, a fixed service time) is loaded by two load
generators, each its own process: a high class (header X-Class: high) and a low class. The agent
is handed ConfigMap snapshots whose refused-classes.json refuses the low class, then none: the
low class must get the refusal (503 + Retry-After) fast, through the runtime API (no reload),
while the high class keeps 0 errors and its p99 within 1.2x of its p99 without load; the
negative control is the same load with nothing refused, which raises the high class's p99.
A second test shows set-priority-class: at maxconn the high class waits less in the queue than
the low class, and not with equal priorities (the control).
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import pytest

from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.loadbalancerpool.haproxy import config

from ..support.polling import poll
from .haproxy_support import FRONTEND_PORT, SETTLING, Balancer, Lab, RunningAgent, get, snapshot, spec

pytestmark = pytest.mark.integration
LOADGEN = str(pathlib.Path(__file__).with_name("loadgen.py"))
SERVICE_TIME = 0.04


def classes(priorities: tuple[int, int] = (100, -100), maxconn: int = 4) -> Any:
    return spec(
        healthCheck={"type": "none"}, server={"maxconn": maxconn}, timeouts={"queue": "10s"},
        requestClasses=[
            {"name": "high", "priority": priorities[0], "match": {"headers": [{"name": "X-Class", "values": ["high"]}]}},
            {"name": "low", "priority": priorities[1]},
        ],
        defaultRequestClass="low", requestRefusal={"status": 503, "retryAfter": "7s"})


class Generator:
    """One load generator process (tests/integration/loadgen.py); its samples once stopped."""

    def __init__(self, lab: Lab, balancer: Balancer, name: str, *, header: str | None, threads: int,
                 pace: float, workdir: pathlib.Path) -> None:
        self.out = workdir / f"load-{name}.json"
        args = [sys.executable, LOADGEN, "--address", balancer.address, "--port", str(FRONTEND_PORT),
                "--threads", str(threads), "--pace", str(pace), "--out", str(self.out)]
        if header:
            args += ["--header", header]
        self.process = lab.process(args)
        self.samples: list[dict[str, Any]] = []

    def stop(self) -> list[dict[str, Any]]:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.samples = json.loads(self.out.read_text())
        return self.samples


def window(samples: Sequence[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    return [s for s in samples if start <= s["t"] < end]


def p99(samples: Sequence[dict[str, Any]]) -> float:
    latencies = sorted(s["latency"] for s in samples)
    assert len(latencies) >= 50, f"too few samples for a p99: {len(latencies)}"
    return statistics.quantiles(latencies, n=100, method="inclusive")[98]


def rendered_with(balancer: Balancer, pool_spec: Any, backends: list, refused: Sequence[str],
                  previous: Any = None) -> config.Rendered:
    return config.render("test", pool_spec, backends, previous, run_dir=balancer.run_dir, refused=refused)


def test_refusing_a_class_fails_it_fast_and_keeps_the_high_class_served(lab: Lab, tmp_path: pathlib.Path) -> None:
    backend = lab.slow_backend("a", SERVICE_TIME)
    balancer = lab.balancer()
    pool_spec = classes()
    open_ = rendered_with(balancer, pool_spec, [backend.backend()], refused=[])
    refusing = rendered_with(balancer, pool_spec, [backend.backend()], refused=["low"], previous=open_.slots)
    assert refusing.structure_hash == open_.structure_hash and refusing.config_hash != open_.config_hash
    acl_file = os.path.join(balancer.run_dir, configmap.REFUSED_ACL_FILE)

    with RunningAgent(balancer) as running:
        running.latest.put(snapshot(open_))
        poll(lambda: os.path.exists(balancer.config_path), 10, what="the agent to write haproxy.cfg")
        assert pathlib.Path(acl_file).read_text() == ""  # written before haproxy.cfg: HAProxy needs it
        balancer.start()
        running.wait_reported(open_.config_hash)
        worker = balancer.worker()
        assert get(balancer.address).status == 200 and get(balancer.address, headers={"X-Class": "high"}).status == 200

        high = Generator(lab, balancer, "high", header="X-Class:high", threads=2, pace=0.04, workdir=tmp_path)
        t0 = time.monotonic()
        time.sleep(5.0)  # the unloaded phase: only the high class (a fixed window, measured afterwards)
        t1 = time.monotonic()
        low = Generator(lab, balancer, "low", header=None, threads=16, pace=0.1, workdir=tmp_path)
        time.sleep(5.0)  # loaded, nothing refused: the negative control
        t2 = time.monotonic()
        running.latest.put(snapshot(refusing))
        running.wait_reported(refusing.config_hash)
        applied = time.monotonic()
        time.sleep(5.0)  # loaded, low refused
        t3 = time.monotonic()
        running.latest.put(snapshot(open_))
        running.wait_reported(open_.config_hash)
        time.sleep(3.0)  # restored
        t4 = time.monotonic()
        low_samples, high_samples = low.stop(), high.stop()

    unloaded = window(high_samples, t0 + 0.5, t1)
    loaded = window(high_samples, t1 + 1.0, t2)
    refused_phase = window(high_samples, applied + 0.5, t3)
    first_refusal = min(s["t"] + s["latency"] for s in low_samples if s["status"] == 503 and s["t"] >= t2)
    refusals = [s for s in window(low_samples, applied + 0.5, t3)]
    restored = [s for s in low_samples if s["t"] >= t3 and s["status"] == 200]
    first_restored = min(s["t"] + s["latency"] for s in restored)
    print(f"\nhigh class p99: unloaded {p99(unloaded) * 1000:.1f} ms (n={len(unloaded)}), loaded with nothing "
          f"refused {p99(loaded) * 1000:.1f} ms (n={len(loaded)}), low refused {p99(refused_phase) * 1000:.1f} ms "
          f"(n={len(refused_phase)}); low class: first 503 {first_refusal - t2:.3f} s after the ConfigMap "
          f"snapshot ({applied - t2:.3f} s to the agent's report), refusal p99 {p99(refusals) * 1000:.1f} ms "
          f"(n={len(refusals)}), first 200 again {first_restored - t3:.3f} s after the restore; "
          f"reloads {balancer.proc().reloads}")
    # nothing reloaded: the worker that started serves throughout
    assert balancer.worker() == worker and balancer.proc().reloads == 0 and running.agent.reloads == 0
    # the high class: no error at any moment, and its p99 while the low class is refused within
    # 1.2x of its p99 without load; the negative control: the same load unrefused raises it
    assert all(s["status"] == 200 for s in high_samples), [s for s in high_samples if s["status"] != 200][:5]
    assert p99(loaded) > 1.2 * p99(unloaded), (p99(loaded), p99(unloaded))
    assert p99(refused_phase) <= 1.2 * p99(unloaded), (p99(refused_phase), p99(unloaded))
    # the low class: refused within the budget (the DegradationPolicy's interval + 1 s is the
    # operator's part; the balancer's part is well under a second), fast, with Retry-After
    assert first_refusal - t2 < 1.0
    assert all(s["status"] == 503 and s["retryAfter"] == "7" for s in refusals), refusals[:5]
    assert p99(refusals) < SERVICE_TIME, "a refusal is answered by HAProxy, without waiting for a server"
    # before the refusal the low class was served (the control for "refused"), and after the restore again
    assert any(s["status"] == 200 for s in window(low_samples, t1, t2))
    assert first_restored - t3 < 1.0
    assert all(s["status"] == 200 for s in window(low_samples, t3 + 1.0, t4))
    assert pathlib.Path(acl_file).read_text() == ""


def test_a_starting_haproxy_refuses_from_the_file_the_agent_wrote(lab: Lab) -> None:
    backend = lab.slow_backend("a", 0.0)
    balancer = lab.balancer()
    refusing = rendered_with(balancer, classes(), [backend.backend()], refused=["low"])
    with RunningAgent(balancer) as running:
        running.latest.put(snapshot(refusing))
        poll(lambda: os.path.exists(balancer.config_path), 10, what="the agent to write haproxy.cfg")
        balancer.start()
        # the first request, before any runtime command could have arrived, is refused
        answer = get(balancer.address)
        assert answer.status == 503 and answer.headers["retry-after"] == "7", answer
        assert get(balancer.address, headers={"X-Class": "high"}).status == 200
        running.wait_reported(refusing.config_hash)
        # the control: the file, not a runtime command, did it — an HAProxy started from an empty
        # file serves the class
    other = lab.balancer()
    open_ = rendered_with(other, classes(), [backend.backend()], refused=[])
    other.write(open_)
    pathlib.Path(other.run_dir, configmap.REFUSED_ACL_FILE).write_text("")
    other.start()
    assert get(other.address).status == 200


def test_at_maxconn_the_high_class_waits_less_in_the_queue(lab: Lab, tmp_path: pathlib.Path) -> None:
    backend = lab.slow_backend("a", SERVICE_TIME)
    waits = {}
    for priorities in ((100, -100), (0, 0)):  # (0, 0): the control, no priority between them
        balancer = lab.balancer()
        rendered = rendered_with(balancer, classes(priorities, maxconn=1), [backend.backend()],
                                 refused=[])
        balancer.write(rendered)
        pathlib.Path(balancer.run_dir, configmap.REFUSED_ACL_FILE).write_text("")
        balancer.start()
        poll(lambda b=balancer: get(b.address).status == 200, 10, what="the balancer to serve", ignore=SETTLING)
        # the high class alone would leave the server idle half the time; the low class keeps it at maxconn
        high = Generator(lab, balancer, f"high-{priorities[0]}", header="X-Class:high", threads=1, pace=0.1,
                         workdir=tmp_path)
        low = Generator(lab, balancer, f"low-{priorities[0]}", header=None, threads=4, pace=0.0, workdir=tmp_path)
        time.sleep(5.0)
        start = time.monotonic() - 4.0
        waits[priorities] = (statistics.median(s["latency"] for s in window(high.stop(), start, start + 3.5)),
                             statistics.median(s["latency"] for s in window(low.stop(), start, start + 3.5)))
        balancer.stop()
    print(f"\nat maxconn 1, median latency high / low: with priorities {waits[(100, -100)][0] * 1000:.0f} / "
          f"{waits[(100, -100)][1] * 1000:.0f} ms, equal priorities {waits[(0, 0)][0] * 1000:.0f} / "
          f"{waits[(0, 0)][1] * 1000:.0f} ms")
    high_wait, low_wait = waits[(100, -100)]
    assert high_wait * 2 < low_wait
    high_equal, low_equal = waits[(0, 0)]
    assert 0.5 < high_equal / low_equal < 2.0  # the control: without priorities both wait alike
