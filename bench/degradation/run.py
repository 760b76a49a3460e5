"""DegradationPolicy benchmark: reaction and restore time beyond the configured windows, and
the cost of an evaluation with 1 and with 100 policies.

Everything runs against a real Prometheus (Debian's, on loopback, scraping an exporter whose
gauge the benchmark sets every second) with the policy's real evaluation code (queries through
prometheus-api-client, tier selection, the state machine, the scaling patches, the status);
the Deployments are held in memory (tests/integration/prometheus_support.Fleet), so the
Kubernetes API's own latency is not in the numbers.

1. Reaction: the gauge goes over the threshold; t0 is the moment Prometheus first answers a
   query with the new value ("trigger true in Prometheus"), t1 the moment the Deployment is
   scaled to 0. Reported: t1 - t0 - `for`. Then the gauge goes back under recoverThreshold:
   restore time beyond the cooldown likewise. Two evaluation loops run side by side on the
   same gauge: the operator's (each evaluation sleeps until the next is due: the interval, or
   sooner when a `for`/cooldown window closes) and, as the baseline measured in the same run,
   a plain fixed-interval loop (what a kopf timer with the policy's interval would do).
   Goal (issue 6): at most one interval + 1 s beyond the windows.
2. Cost: wall and CPU time of one evaluation, 1 policy alone versus 100 policies evaluated
   at once on the operator's worker pool (32 threads), each with 20 Deployments.

Run: `make bench` (or .venv/bin/python bench/degradation/run.py). BENCH_DP_CYCLES (default 20).
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import random
import statistics
import sys
import threading
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from hakeeper.api.common import parse_duration
from hakeeper.api.degradationpolicy import DegradationPolicySpec
from hakeeper.degradationpolicy.act import Scaler
from hakeeper.degradationpolicy.cycle import Evaluator
from hakeeper.degradationpolicy.decide import Memory
from tests.integration.prometheus_support import Exporter, Fleet, PrometheusServer, deployment
from tests.support.polling import poll

CYCLES = int(os.environ.get("BENCH_DP_CYCLES", "20"))
PROMETHEUS_IP, EXPORTER_IP = "127.0.32.1", "127.0.32.2"
INTERVAL, FOR, COOLDOWN = "1s", "1500ms", "1500ms"
METRIC = "bench_load"
HIGH, LOW = 12.0, 1.0


def spec(url: str, metric: str = METRIC) -> DegradationPolicySpec:
    return DegradationPolicySpec.model_validate({
        "prometheus": {"url": url, "timeout": "1s"}, "interval": INTERVAL,
        "triggers": [{"name": "load", "query": f"max({metric})", "threshold": 10, "recoverThreshold": 6,
                      "for": FOR}],
        "tiers": [{"name": "batch", "priority": 1, "selector": {"matchLabels": {"tier": "batch"}}}],
        "restore": {"cooldown": COOLDOWN, "interval": "1s"}, "maxShedFraction": 1.0})


def body(name: str, policy: DegradationPolicySpec) -> dict[str, Any]:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy",
            "metadata": {"name": name, "namespace": "shop", "generation": 1}, "spec": policy.wire(), "status": {}}


class Loop:
    """A policy evaluated in a thread: on the operator's schedule, or on a fixed interval."""

    def __init__(self, name: str, policy: DegradationPolicySpec, deadline_wake: bool, phase: float):
        self.fleet = Fleet(deployment("batch", 3, {"tier": "batch"}), deployment("web", 3, {"tier": "core"}))
        self.spec = policy
        self.evaluator = Evaluator(self.fleet, Scaler(self.fleet.patch))
        self.body = body(name, policy)
        self.memory = Memory()
        self.deadline_wake = deadline_wake
        self.phase = phase
        self.evaluations = 0
        self.shed_at: float | None = None
        self.restored_at: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        interval = parse_duration(self.spec.interval)
        self.stop.wait(self.phase)
        while not self.stop.is_set():
            started = time.time()
            result = self.evaluator.evaluate(self.body, self.spec, self.memory)
            done = time.time()
            self.memory = result.memory
            self.body["status"] = {**self.body["status"], **result.status}
            self.evaluations += 1
            for event in result.events:
                if event.reason == "Shed":
                    self.shed_at = done
                elif event.reason == "Restored":
                    self.restored_at = done
            due = result.due if self.deadline_wake else started + interval
            self.stop.wait(max(due - time.time(), 0))


def prometheus_has(prometheus: PrometheusServer, value: float) -> float:
    """Polls until Prometheus answers with the value; the moment it first does."""
    poll(lambda: prometheus.query_value(f"max({METRIC})") == value, 10, what=f"{METRIC}={value} in Prometheus",
         interval=0.01)
    return time.time()


OURS, BASELINE = "deadline wake (operator)", "fixed interval (baseline)"


def reaction(prometheus: PrometheusServer, exporter: Exporter) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {name: {"shed": [], "restore": []} for name in (OURS, BASELINE)}
    out["scrape"] = {"shed": []}
    for_s, cooldown_s, interval = parse_duration(FOR), parse_duration(COOLDOWN), parse_duration(INTERVAL)
    exporter.set(METRIC, LOW)
    prometheus_has(prometheus, LOW)
    for cycle in range(CYCLES):
        # Fresh loops at a random phase each cycle: a loop keeps its phase against Prometheus'
        # 1 s scrape, so one loop for every cycle would measure one phase over and over.
        loops = {OURS: Loop("ours", spec(prometheus.url), True, random.uniform(0, interval)),
                 BASELINE: Loop("timer", spec(prometheus.url), False, random.uniform(0, interval))}
        for loop in loops.values():
            loop.thread.start()
        try:
            poll(lambda: all(lp.evaluations >= 2 for lp in loops.values()), 10, what="both loops running")
            set_at = time.time()
            exporter.set(METRIC, HIGH)
            true_at = prometheus_has(prometheus, HIGH)
            poll(lambda: all(lp.shed_at for lp in loops.values()), 30, what="both loops to shed")
            exporter.set(METRIC, LOW)
            low_at = prometheus_has(prometheus, LOW)
            poll(lambda: all(lp.restored_at for lp in loops.values()), 30, what="both loops to restore")
        finally:
            for loop in loops.values():
                loop.stop.set()
                loop.thread.join(5)
        for name, loop in loops.items():
            assert loop.fleet.replicas("web") == 3, "a core Deployment was touched"
            out[name]["shed"].append(loop.shed_at - true_at - for_s)
            out[name]["restore"].append(loop.restored_at - low_at - cooldown_s)
        out["scrape"]["shed"].append(true_at - set_at)
        print(f"  cycle {cycle + 1}/{CYCLES}", end="\r", file=sys.stderr, flush=True)
    return out


def cost(prometheus: PrometheusServer, exporter: Exporter, policies: int, rounds: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per policy evaluation with `policies` evaluated at once."""
    exporter.set("bench_cost", 3)
    prometheus_has_cost = lambda: prometheus.query_value("max(bench_cost)") == 3  # noqa: E731
    poll(prometheus_has_cost, 10, what="bench_cost in Prometheus")
    loops = []
    for i in range(policies):
        fleet = Fleet(*[deployment(f"d{j}", 2, {"tier": "batch" if j % 2 else "core"}) for j in range(20)])
        policy = spec(prometheus.url, "bench_cost")
        loops.append((Evaluator(fleet, Scaler(fleet.patch)), body(f"p{i}", policy), policy))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=32)
    try:
        def evaluate_all() -> None:
            list(pool.map(lambda item: item[0].evaluate(item[1], item[2], Memory()), loops))

        evaluate_all()  # warm up: connections, caches
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            evaluate_all()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        pool.shutdown()
    n = policies * rounds
    return wall / n * 1000, cpu / n * 1000


def main() -> int:
    exporter = Exporter(EXPORTER_IP)
    prometheus = PrometheusServer(PROMETHEUS_IP, exporter).start()
    try:
        print(f"DegradationPolicy: real Prometheus scraping every 1 s; interval {INTERVAL}, for {FOR}, "
              f"cooldown {COOLDOWN}; {CYCLES} cycles")
        results = reaction(prometheus, exporter)
        one_wall, one_cpu = cost(prometheus, exporter, 1, 100)
        many_wall, many_cpu = cost(prometheus, exporter, 100, 3)
    finally:
        prometheus.close()
        exporter.close()

    goal = parse_duration(INTERVAL) + 1.0
    ours = OURS
    print()
    print(f"{'measurement':<62}{'p50 s':>8}{'max s':>8}{'goal s':>8}{'max/goal':>10}{'p50 vs baseline':>17}")
    for kind, label in (("shed", "reaction beyond `for`"), ("restore", "restore beyond cooldown")):
        base = statistics.median(results[BASELINE][kind])
        for name in (OURS, BASELINE):
            series = results[name]
            p50, worst = statistics.median(series[kind]), max(series[kind])
            versus = f"{p50 / base:.2f}x" if name == ours and base > 0 else "1.00x"
            print(f"{label + ': ' + name:<62}{p50:>8.2f}{worst:>8.2f}{goal:>8.2f}"
                  f"{worst / goal:>10.2f}{versus:>17}")
    scrape = results["scrape"]["shed"]
    print(f"{'(floor, not counted: gauge set -> visible in Prometheus)':<62}{statistics.median(scrape):>8.2f}{max(scrape):>8.2f}")
    print()
    print(f"{'evaluation cost per policy':<62}{'wall ms':>8}{'CPU ms':>8}{'':>8}{'vs 1 policy':>12}")
    print(f"{'1 policy':<62}{one_wall:>8.2f}{one_cpu:>8.2f}{'':>8}{'1.00x':>12}")
    print(f"{'100 policies at once (32 workers)':<62}{many_wall:>8.2f}{many_cpu:>8.2f}{'':>8}"
          f"{many_wall / one_wall:>11.2f}x")
    print(f"100 policies: one round of evaluations takes {many_wall * 100 / 1000:.2f} s of wall time "
          f"({many_wall * 100 / 1000 / 15 * 100:.1f} % of the default 15 s interval)")
    worst = max(max(results[ours]["shed"]), max(results[ours]["restore"]))
    return 0 if worst <= goal else 1


if __name__ == "__main__":
    raise SystemExit(main())
