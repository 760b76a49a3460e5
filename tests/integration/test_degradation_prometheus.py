"""DegradationPolicy against a real Prometheus (Debian's) scraping an exporter the test controls.

The policy runs its real evaluation (prometheus-api-client queries, tier selection, the state
machine, the scaling patches, the status) in a background loop that sleeps until each
evaluation is due, like the operator's daemon. Deployments are held in memory (Fleet): this
tier has no Kubernetes; tests/e2e/test_degradationpolicy.py runs the same against one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from hakeeper.api.conditions import get_condition
from hakeeper.api.degradationpolicy import DegradationPolicySpec
from hakeeper.api.meta import ORIGINAL_REPLICAS_ANNOTATION
from hakeeper.degradationpolicy.act import Scaler
from hakeeper.degradationpolicy.cycle import Evaluator
from hakeeper.degradationpolicy.decide import Memory
from hakeeper.degradationpolicy.metrics import PrometheusSource

from ..support.polling import poll
from .prometheus_support import Exporter, Fleet, PrometheusServer, deployment

pytestmark = pytest.mark.integration
PROMETHEUS_IP, EXPORTER_IP = "127.0.30.1", "127.0.30.2"


@pytest.fixture(scope="module")
def exporter():
    exp = Exporter(EXPORTER_IP)
    yield exp
    exp.close()


@pytest.fixture(scope="module")
def prometheus(exporter):
    server = PrometheusServer(PROMETHEUS_IP, exporter).start()
    yield server
    server.close()


class Runner:
    """One policy evaluated in a thread, each evaluation when the previous one said it is due."""

    def __init__(self, fleet: Fleet, spec: dict[str, Any], name: str = "peak"):
        self.fleet = fleet
        self.spec = DegradationPolicySpec.model_validate(spec)
        self.evaluator = Evaluator(fleet, Scaler(fleet.patch))
        self.body: dict[str, Any] = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy",
                                     "metadata": {"name": name, "namespace": "shop", "generation": 1},
                                     "spec": self.spec.wire(), "status": {}}
        self.memory = Memory()
        self.history: list[tuple[float, dict]] = []  # (time, status) of every evaluation
        self.events: list[tuple[float, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Runner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            result = self.evaluator.evaluate(self.body, self.spec, self.memory)
            self.memory = result.memory
            self.body["status"] = {**self.body["status"], **result.status}
            now = time.time()
            self.history.append((now, result.status))
            self.events.extend((now, e) for e in result.events)
            self._stop.wait(max(result.due - time.time(), 0))

    @property
    def status(self) -> dict:
        return self.history[-1][1] if self.history else {}

    def evaluations(self) -> int:
        return len(self.history)

    def wait_evaluations(self, count: int, timeout: float = 20) -> None:
        goal = self.evaluations() + count
        poll(lambda: self.evaluations() >= goal, timeout, what=f"{count} more evaluations")

    def condition(self, type_: str) -> dict | None:
        return get_condition(self.status.get("conditions"), type_)

    def reasons(self) -> list[str]:
        return [e.reason for _, e in self.events]


def policy(url: str, metric: str, **overrides: Any) -> dict[str, Any]:
    spec = {
        "prometheus": {"url": url, "timeout": "1s"},
        "interval": "1s",
        "triggers": [{"name": "load", "query": f"max({metric})", "threshold": 10, "recoverThreshold": 6,
                      "for": "3s"}],
        "tiers": [{"name": "batch", "priority": 10, "selector": {"matchLabels": {"tier": "batch"}}},
                  {"name": "reports", "priority": 20, "selector": {"matchLabels": {"tier": "reports"}}}],
        "restore": {"cooldown": "2s", "interval": "1s"},
        "maxShedFraction": 1.0,
    }
    spec.update(overrides)
    return spec


def shop() -> Fleet:
    return Fleet(deployment("batch-a", 3, {"tier": "batch"}), deployment("batch-b", 2, {"tier": "batch"}),
                 deployment("reports", 4, {"tier": "reports"}),
                 deployment("guarded", 2, {"tier": "batch", "hakeeper.io/protected": "true"}),
                 deployment("checkout", 5, {"tier": "core"}))


def settle(prometheus: PrometheusServer, exporter: Exporter, metric: str, value: float) -> float:
    """Sets the gauge and returns when Prometheus has it."""
    exporter.set(metric, value)
    prometheus.wait_value(f"max({metric})", lambda v: v == value)
    return time.time()


# -- readings ------------------------------------------------------------------------------------

def test_a_value_no_data_nan_and_errors_are_told_apart(prometheus, exporter):
    source = PrometheusSource(prometheus.url, 2)
    settle(prometheus, exporter, "reading_gauge", 7.5)
    assert source.read("max(reading_gauge)").value == 7.5
    assert source.read("reading_gauge").value == 7.5  # one series needs no aggregation
    assert source.read("max(no_such_metric)").outcome == "no-data"

    exporter.set("reading_nan", float("nan"))
    prometheus.wait_value("count(reading_nan)", lambda v: v == 1)
    nan = source.read("max(reading_nan)")
    assert (nan.outcome, nan.message) == ("no-data", "the query returned NaN")

    # a division by zero is how an idle ratio (errors / requests with no requests) answers:
    # Prometheus sends "+Inf"/"-Inf", and neither is a measurement
    for query, text in (("max(reading_gauge) / 0", "+Inf"), ("-max(reading_gauge) / 0", "-Inf"), ("1/0", "+Inf")):
        infinite = source.read(query)
        assert (infinite.outcome, infinite.message) == ("no-data", f"the query returned {text}"), query
    assert source.read("max(reading_gauge) / 2").value == 3.75  # the control: a finite ratio is a value

    exporter.set("reading_other", 1)
    prometheus.wait_value("count(reading_other)", lambda v: v == 1)
    several = source.read('{__name__=~"reading_(gauge|other)"}')
    assert several.outcome == "unavailable" and "returns 2 series" in several.message

    broken = source.read("max(reading_gauge")
    assert broken.outcome == "unavailable" and "Prometheus refused the query: HTTP Status Code 400" in broken.message
    ranged = source.read("reading_gauge[1m]")
    assert ranged.outcome == "unavailable" and "range vector" in ranged.message


def test_a_series_that_disappears_is_no_data_at_once_not_zero(prometheus, exporter):
    source = PrometheusSource(prometheus.url, 2)
    settle(prometheus, exporter, "vanishing", 3)
    exporter.drop("vanishing")
    started = time.monotonic()
    # Prometheus writes a staleness marker when a scrape no longer has the series
    poll(lambda: source.read("max(vanishing)").outcome == "no-data", 10, what="the stale series to read as no data")
    assert time.monotonic() - started < 5


def test_an_unreachable_prometheus_is_unavailable(exporter):
    down = PrometheusSource("http://127.0.30.9:9", 1)
    reading = down.read("up")
    assert reading.outcome == "unavailable" and "Connection refused" in reading.message


def test_https_with_the_policys_ca(exporter):
    from localcluster.certs import Authority

    authority = Authority.create("prometheus-test-ca")
    cert, key = authority.issue("prometheus", server_names=("127.0.30.3",), client=False)
    ca = authority.cert_pem()
    server = PrometheusServer("127.0.30.3", exporter, tls=(cert, key, ca)).start()
    try:
        exporter.set("tls_gauge", 4)
        server.wait_value("max(tls_gauge)", lambda v: v == 4)
        assert PrometheusSource(server.url, 2, ca_pem=ca.decode()).read("max(tls_gauge)").value == 4
        unknown_ca = PrometheusSource(server.url, 2).read("max(tls_gauge)")
        assert unknown_ca.outcome == "unavailable" and "CERTIFICATE_VERIFY_FAILED" in unknown_ca.message
        assert PrometheusSource(server.url, 2, insecure_skip_verify=True).read("max(tls_gauge)").value == 4
    finally:
        server.close()


def test_an_answer_with_warnings_is_unavailable(prometheus, exporter):
    """A Prometheus whose remote-read endpoint fails answers with its local data *and* a warning
    (a real way to get `warnings`; Thanos does the same for a failed store, partial response)."""
    partial = PrometheusServer("127.0.30.4", exporter, remote_read="http://127.0.30.9:9/api/v1/read").start()
    try:
        settle(prometheus, exporter, "warned_gauge", 12)
        partial.wait_value("max(warned_gauge)", lambda v: v == 12)
        reading = PrometheusSource(partial.url, 2).read("max(warned_gauge)")
        assert reading.outcome == "unavailable"
        assert "with warnings, so the answer may be partial: remote_read" in reading.message
        # the controls: the same query where nothing fails, and a query that selects no series
        # (so asks no remote) on the warning Prometheus, are values
        assert PrometheusSource(prometheus.url, 2).read("max(warned_gauge)").value == 12
        assert PrometheusSource(partial.url, 2).read("vector(1)").value == 1

        fleet = shop()
        with Runner(fleet, policy(partial.url, "warned_gauge", triggers=[
                {"name": "load", "query": "max(warned_gauge)", "threshold": 10, "for": "1s"}])) as run:
            run.wait_evaluations(4)  # well past `for`: 12 > 10 would have shed
            metrics = run.condition("MetricsAvailable")
            assert (metrics["status"], metrics["reason"]) == ("False", "Unavailable")
            assert "warnings" in metrics["message"]
        assert fleet.patches == [] and run.status["state"] == "Normal"
    finally:
        partial.close()


# -- the policy ----------------------------------------------------------------------------------

def test_a_breach_shorter_than_for_sheds_nothing(prometheus, exporter):
    fleet = shop()
    settle(prometheus, exporter, "short_load", 1)
    with Runner(fleet, policy(prometheus.url, "short_load", triggers=[
            {"name": "load", "query": "max(short_load)", "threshold": 10, "for": "5s"}])) as run:
        run.wait_evaluations(1)
        settle(prometheus, exporter, "short_load", 12)
        poll(lambda: run.status.get("state") == "Pending", 10, what="Pending")
        pending_at = time.time()
        settle(prometheus, exporter, "short_load", 1)
        poll(lambda: run.status.get("state") == "Normal", 10, what="Normal again")
        assert time.time() - pending_at < 5, "the breach lasted `for`: this run proves nothing"
        run.wait_evaluations(2)
    assert fleet.patches == []
    assert "Pending" in run.reasons() and "Degraded" not in run.reasons()


def test_staged_shedding_hysteresis_and_restore_in_priority_order(prometheus, exporter):
    fleet = shop()
    settle(prometheus, exporter, "shop_load", 1)
    with Runner(fleet, policy(prometheus.url, "shop_load")) as run:
        run.wait_evaluations(1)
        breached = settle(prometheus, exporter, "shop_load", 12)
        poll(lambda: fleet.replicas("batch-a") == 0, 10, what="the batch tier to be shed")
        batch_shed = time.time()
        # not before `for` (3 s), and within one interval + 1 s of it
        assert 3 - 0.2 <= batch_shed - breached <= 3 + 1 + 1.5
        assert fleet.replicas("batch-b") == 0 and fleet.replicas("reports") == 4
        assert fleet.annotations("batch-a")[ORIGINAL_REPLICAS_ANNOTATION] == "3"

        poll(lambda: fleet.replicas("reports") == 0, 10, what="the next tier while the trigger still fires")
        assert time.time() - batch_shed >= 1 - 0.25  # one tier per interval (times polled every 0.1 s)
        assert run.status["shedCount"] == 3 and run.status["shedTiers"] == 2

        # between recoverThreshold (6) and threshold (10): nothing changes
        settle(prometheus, exporter, "shop_load", 8)
        patches = len(fleet.patches)
        run.wait_evaluations(5)
        assert len(fleet.patches) == patches and run.status["state"] == "Degraded"
        trigger = run.status["triggers"][0]
        assert (trigger["condition"], trigger["value"], trigger["firing"]) == ("Between", 8, True)

        recovered = settle(prometheus, exporter, "shop_load", 2)
        poll(lambda: fleet.replicas("reports") == 4, 10, what="the highest-priority tier back first")
        reports_back = time.time()
        assert fleet.replicas("batch-a") == 0, "restore goes one tier per restore.interval"
        assert 2 - 0.2 <= reports_back - recovered <= 2 + 1 + 1.5  # cooldown 2 s
        poll(lambda: fleet.replicas("batch-a") == 3 and fleet.replicas("batch-b") == 2, 10, what="the batch tier")
        assert time.time() - reports_back >= 1 - 0.25
        poll(lambda: run.status.get("state") == "Normal", 5, what="Normal")

    assert fleet.replicas("guarded") == 2 and fleet.replicas("checkout") == 5
    assert all(name not in ("guarded", "checkout") for _, name, _ in fleet.patches)
    assert ORIGINAL_REPLICAS_ANNOTATION not in fleet.annotations("batch-a")
    reasons = run.reasons()
    assert reasons.count("Shed") == 3 and reasons.count("Restored") == 3
    assert [r for r in reasons if r in ("Pending", "Degraded", "Recovering", "Normal")] == [
        "Pending", "Degraded", "Recovering", "Normal"]


def test_prometheus_stopped_holds_then_recovery_resumes(prometheus, exporter):
    fleet = shop()
    settle(prometheus, exporter, "stop_load", 12)
    with Runner(fleet, policy(prometheus.url, "stop_load", mode="all",
                              restore={"cooldown": "1s", "interval": "1s"})) as run:
        poll(lambda: fleet.replicas("reports") == 0 and fleet.replicas("batch-a") == 0, 15, what="every tier shed")
        prometheus.stop()
        try:
            poll(lambda: (run.condition("MetricsAvailable") or {}).get("status") == "False", 10,
                 what="MetricsAvailable=False")
            metrics = run.condition("MetricsAvailable")
            assert metrics["reason"] == "Unavailable" and "Connection refused" in metrics["message"]
            exporter.set("stop_load", 2)  # recovered, but nobody can tell: hold
            patches = len(fleet.patches)
            run.wait_evaluations(3)  # past the 1 s cooldown
            assert len(fleet.patches) == patches
            assert run.status["state"] == "Degraded" and run.status["triggers"][0]["condition"] == "Unavailable"
            assert "MetricsUnavailable" in run.reasons()
        finally:
            prometheus.start()
        poll(lambda: fleet.replicas("reports") == 4 and fleet.replicas("batch-a") == 3, 20,
             what="the restore once Prometheus answers again")
        assert run.condition("MetricsAvailable")["status"] == "True"


def test_no_data_never_sheds(prometheus, exporter):
    fleet = shop()
    with Runner(fleet, policy(prometheus.url, "never_exported", triggers=[
            {"name": "load", "query": "max(never_exported)", "threshold": 10, "for": "1s"}])) as run:
        run.wait_evaluations(3)
        metrics = run.condition("MetricsAvailable")
        assert (metrics["status"], metrics["reason"]) == ("False", "NoData")
        assert "no series" in metrics["message"]
    assert fleet.patches == [] and run.status["state"] == "Normal"


def test_an_infinite_ratio_never_sheds(prometheus, exporter):
    """An error ratio over no requests at all is +Inf: far above any threshold, were it a value."""
    fleet = shop()
    settle(prometheus, exporter, "idle_errors", 3)
    with Runner(fleet, policy(prometheus.url, "idle_errors", triggers=[
            {"name": "errors", "query": "max(idle_errors) / 0", "threshold": 10, "for": "1s"}])) as run:
        run.wait_evaluations(4)  # well past `for`
        metrics = run.condition("MetricsAvailable")
        assert (metrics["status"], metrics["reason"]) == ("False", "NoData")
        assert "+Inf" in metrics["message"]
        assert run.status["triggers"][0]["condition"] == "NoData"
    assert fleet.patches == [] and run.status["state"] == "Normal"


def test_dry_run_changes_nothing_but_reports_what_it_would_do(prometheus, exporter):
    fleet = shop()
    settle(prometheus, exporter, "dry_load", 12)
    with Runner(fleet, policy(prometheus.url, "dry_load", dryRun=True, mode="all")) as run:
        poll(lambda: len(run.status.get("shed", [])) == 3, 15, what="the dry run to report both tiers")
        assert all(e["dryRun"] for e in run.status["shed"])
        assert {e["name"]: e["originalReplicas"] for e in run.status["shed"]} == {
            "batch-a": 3, "batch-b": 2, "reports": 4}
        assert run.status["shedCount"] == 0
        assert run.condition("Degraded")["reason"] == "DryRun"
        settle(prometheus, exporter, "dry_load", 1)
        poll(lambda: run.status.get("shed") == [], 15, what="the dry run to report the restore")
    assert fleet.patches == []
    assert run.reasons().count("WouldShed") == 3 and run.reasons().count("WouldRestore") == 3
