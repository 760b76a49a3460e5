"""The per-object loop every kind runs (platform/loop.py), with a recording stand-in for the
API client and for kopf's Event posting; the kinds' e2e tests run it for real."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from hakeeper.degradationpolicy import status as policy_status
from hakeeper.platform import loop
from hakeeper.platform.kube import ApiError


class RecordingKube:
    """patch_status as the API server answers it: recorded, or False once the object is gone."""

    def __init__(self) -> None:
        self.writes: list[dict[str, Any]] = []
        self.gone = False

    def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        if self.gone:
            return False
        self.writes.append(dict(status))
        return True


class Stopped:
    """kopf.DaemonStopped's surface the loop uses."""

    def __init__(self) -> None:
        self.flag = asyncio.Event()

    def __bool__(self) -> bool:
        return self.flag.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self.flag.wait(), timeout)
        except TimeoutError:
            pass
        return self.flag.is_set()


class Body(dict):
    @property
    def metadata(self) -> dict[str, Any]:
        return self["metadata"]


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    events: list[tuple[str, str, str]] = []
    monkeypatch.setattr(loop.kopf, "event", lambda objs, *, type, reason, message: events.append((type, reason, message)))
    monkeypatch.setattr(loop.kopf, "warn", lambda obj, *, reason, message: events.append(("Warning", reason, message)))
    return events


def writer(kube: RecordingKube, **kwargs: Any) -> loop.StatusWriter:
    return loop.StatusWriter(kube, "Thing", "ns", "one", **kwargs)  # type: ignore[arg-type]


def test_status_writer_skips_a_status_that_changes_nothing() -> None:
    kube = RecordingKube()
    w = writer(kube)
    body = {"status": {"phase": "A"}}
    assert w.write(body, {"phase": "B"}) and w.write(body, {"phase": "B"})
    assert kube.writes == [{"phase": "B"}]
    assert w.write(body, {"phase": "C"})
    assert kube.writes[-1] == {"phase": "C"}


def test_status_writer_ignores_volatile_fields_and_transition_times_until_max_age() -> None:
    kube = RecordingKube()
    w = writer(kube, volatile=lambda s: {k: v for k, v in s.items() if k != "leaseExpires"}, max_age=3600)
    cond = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    w.write({}, {"leaseExpires": 1, "conditions": [cond]})
    w.write({}, {"leaseExpires": 2, "conditions": [{**cond, "lastTransitionTime": "2026-01-02T00:00:00Z"}]})
    assert len(kube.writes) == 1
    w.max_age = 0.0
    w.write({}, {"leaseExpires": 3, "conditions": [cond]})
    assert len(kube.writes) == 2


def test_policy_status_is_written_for_news_at_once_and_for_its_clock_once_a_refresh() -> None:
    kube = RecordingKube()
    w = writer(kube, volatile=policy_status.status_fingerprint, max_age=policy_status.STATUS_REFRESH_SECONDS)

    def evaluated(at: str, value: float, firing: bool) -> dict[str, Any]:
        return {"state": "Normal", "lastEvaluated": at,
                "triggers": [{"name": "load", "condition": "Between", "firing": firing, "value": value}]}

    w.write({}, evaluated("2026-01-01T00:00:00.000Z", 7.0, False))
    w.write({}, evaluated("2026-01-01T00:00:10.000Z", 8.0, False))  # the clock and a value: no news
    assert len(kube.writes) == 1
    w.write({}, evaluated("2026-01-01T00:00:20.000Z", 8.0, True))  # a trigger fires: at once
    assert len(kube.writes) == 2 and kube.writes[-1]["triggers"][0]["firing"] is True
    w.max_age = 0.0  # the refresh is due: the clock is written although nothing else changed
    w.write({}, evaluated("2026-01-01T00:00:30.000Z", 8.0, True))
    assert kube.writes[-1]["lastEvaluated"] == "2026-01-01T00:00:30.000Z"


def test_status_writer_overlays_what_it_wrote_on_a_lagging_body() -> None:
    kube = RecordingKube()
    w = writer(kube)
    w.write({"status": {"a": 1, "b": 1}}, {"b": 2})
    assert w.current({"status": {"a": 1, "b": 1}})["status"] == {"a": 1, "b": 2}
    w.forget()
    assert w.current({"status": {"a": 1, "b": 1}})["status"] == {"a": 1, "b": 1}


def test_status_writer_says_when_the_object_is_gone() -> None:
    kube = RecordingKube()
    kube.gone = True
    assert writer(kube).write({}, {"phase": "A"}) is False


def test_wakeups_wake_the_objects_whose_watch_matches() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        wakeups = loop.Wakeups()
        a, b = wakeups.register(("ns", "a")), wakeups.register(("ns", "b"))
        wakeups.watch(("ns", "a"), "svc-a")
        wakeups.watch(("ns", "b"), "svc-b")
        wakeups.wake_where(lambda key, service: service == "svc-b")
        c = wakeups.register(("ns", "c"))
        wakeups.wake(("ns", "c"))
        wakeups.unregister(("ns", "c"))
        wakeups.wake(("ns", "c"))  # gone: nothing to wake, no error
        return a.is_set(), b.is_set(), c.is_set()

    assert asyncio.run(scenario()) == (False, True, True)


def test_wakeups_wake_the_objects_watching_a_topic_and_forget_what_they_no_longer_watch() -> None:
    async def scenario() -> list[Any]:
        wakeups = loop.Wakeups()
        events = {k: wakeups.register(("ns", k)) for k in "abc"}
        wakeups.watch(("ns", "a"), None, frozenset({("slices", "ns", "web"), ("pod", "ns", "web-1")}))
        wakeups.watch(("ns", "b"), None, frozenset({("slices", "ns", "web")}))
        wakeups.watch(("ns", "c"), None, frozenset({("slices", "ns", "db")}))
        seen = [sorted(wakeups.wake_topic(("slices", "ns", "web"))), wakeups.wake_topic(("pod", "ns", "web-1"))]
        seen.append(sorted(k for k, e in events.items() if e.is_set()))
        # a watches another Service now; c goes: neither is woken by what it watched before
        wakeups.watch(("ns", "a"), None, frozenset({("slices", "ns", "api")}))
        wakeups.unregister(("ns", "c"))
        seen += [sorted(wakeups.wake_topic(("slices", "ns", "web"))), wakeups.wake_topic(("pod", "ns", "web-1")),
                 wakeups.wake_topic(("slices", "ns", "db")), wakeups.wake_topic(("slices", "ns", "api"))]
        return seen

    assert asyncio.run(scenario()) == [[("ns", "a"), ("ns", "b")], [("ns", "a")], ["a", "b"],
                                       [("ns", "b")], [], [], [("ns", "a")]]


def run_loop(step: Any, kube: RecordingKube, passes: int, **kwargs: Any) -> list[dict[str, Any]]:
    """Runs the loop until the step was called `passes` times; what the step saw each time."""
    seen: list[dict[str, Any]] = []
    body = Body(apiVersion="x/v1", kind="Thing", metadata={"name": "one", "namespace": "ns", "generation": 1},
                spec={}, status={})

    async def scenario() -> None:
        stopped = Stopped()

        def counting(snapshot: Mapping[str, Any], observed: Any) -> loop.Outcome:
            seen.append({**snapshot, "observed": observed})
            if len(seen) >= passes:
                stopped.flag.set()
            return step(snapshot, observed)

        settings = loop.Loop(kind="Thing", failure_reason="ReconcileFailed", retry=0.0, debounce=0.0,
                             executor=concurrent.futures.ThreadPoolExecutor(1))
        w = writer(kube)
        await asyncio.wait_for(loop.run(settings, body, w, counting, asyncio.Event(), stopped,  # type: ignore[arg-type]
                                        _Logger(), **kwargs), 10)

    asyncio.run(scenario())
    return seen


class _Logger:
    def warning(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_a_failing_pass_sets_ready_false_and_warns_once_per_distinct_error(posted: list[tuple[str, str, str]]) -> None:
    kube = RecordingKube()
    errors = iter([ApiError(500, "Internal"), ApiError(500, "Internal"), ApiError(409, "Conflict")])

    def step(snapshot: Mapping[str, Any], observed: Any) -> loop.Outcome:
        error = next(errors, None)
        if error is not None:
            raise error
        return loop.Outcome(status={"phase": "Fine"}, events=[loop.Event("Normal", "Done", "ok")], next_in=0.0)

    seen = run_loop(step, kube, passes=4)
    assert [e for e in posted if e[0] == "Warning"] == [("Warning", "ReconcileFailed", "500 Internal"),
                                                      ("Warning", "ReconcileFailed", "409 Conflict")]
    ready = [c for w in kube.writes for c in w.get("conditions", [])]
    assert [(c["status"], c["reason"], c["message"]) for c in ready] == [
        ("False", "ReconcileFailed", "500 Internal"), ("False", "ReconcileFailed", "409 Conflict")]
    assert kube.writes[-1] == {"phase": "Fine"} and ("Normal", "Done", "ok") in posted
    # every pass after the first sees the status the loop wrote, not the stale body
    assert seen[-1]["status"]["conditions"][0]["message"] == "409 Conflict"


def test_observe_runs_before_each_pass_and_its_result_reaches_the_step(posted: list[tuple[str, str, str]]) -> None:
    calls: list[str] = []

    def observe(snapshot: Mapping[str, Any]) -> str:
        calls.append("observe")
        return "what the watches saw"

    seen = run_loop(lambda snapshot, observed: loop.Outcome(next_in=0.0), RecordingKube(), passes=2,
                    observe=observe)
    assert calls == ["observe", "observe"] and {s["observed"] for s in seen} == {"what the watches saw"}


def test_the_loop_ends_when_the_object_is_gone(posted: list[tuple[str, str, str]]) -> None:
    kube = RecordingKube()
    kube.gone = True
    seen = run_loop(lambda snapshot, observed: loop.Outcome(status={"phase": "A"}, next_in=0.0), kube, passes=99)
    assert len(seen) == 1


def test_one_wake_up_costs_one_pass_and_the_loop_then_sleeps(posted: list[tuple[str, str, str]]) -> None:
    passes: list[float] = []

    async def scenario() -> None:
        stopped, wake = Stopped(), asyncio.Event()
        settings = loop.Loop(kind="Thing", failure_reason="ReconcileFailed", retry=0.0, debounce=0.0,
                             executor=concurrent.futures.ThreadPoolExecutor(1))
        body = Body(apiVersion="x/v1", kind="Thing", metadata={"name": "one", "namespace": "ns"}, spec={}, status={})

        def step(snapshot: Mapping[str, Any], observed: Any) -> loop.Outcome:
            passes.append(0.0)
            return loop.Outcome(next_in=None)  # until a wake-up

        task = asyncio.ensure_future(loop.run(settings, body, writer(RecordingKube()), step, wake,  # type: ignore[arg-type]
                                              stopped, _Logger()))
        while len(passes) < 1:
            await asyncio.sleep(0.01)
        wake.set()
        while len(passes) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # a loop that forgot the wake-up would pass again and again here
        stopped.flag.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert len(passes) == 2


def test_a_wake_up_after_a_quiet_spell_passes_at_once_and_a_burst_is_coalesced(
        posted: list[tuple[str, str, str]]) -> None:
    """The debounce is the shortest time between two passes' starts, not a delay before each one:
    an isolated endpoint change must not wait it out (issue 17: it was 100 ms of every change's
    propagation), while a burst of wake-ups still costs one pass per debounce."""
    debounce = 1.0
    starts: list[float] = []
    woken: dict[str, float] = {}

    async def scenario() -> None:
        stopped, wake = Stopped(), asyncio.Event()
        settings = loop.Loop(kind="Thing", failure_reason="ReconcileFailed", retry=0.0, debounce=debounce,
                             executor=concurrent.futures.ThreadPoolExecutor(1))
        body = Body(apiVersion="x/v1", kind="Thing", metadata={"name": "one", "namespace": "ns"}, spec={}, status={})

        def step(snapshot: Mapping[str, Any], observed: Any) -> loop.Outcome:
            starts.append(time.monotonic())
            return loop.Outcome(next_in=None)

        async def until(condition: Callable[[], bool]) -> None:
            deadline = time.monotonic() + 10
            while not condition():
                assert time.monotonic() < deadline, "the loop did not pass in time"
                await asyncio.sleep(0.005)

        task = asyncio.ensure_future(loop.run(settings, body, writer(RecordingKube()), step, wake,  # type: ignore[arg-type]
                                              stopped, _Logger()))
        await until(lambda: len(starts) == 1)
        await until(lambda: time.monotonic() > starts[0] + debounce)  # a quiet spell longer than the debounce
        woken["isolated"] = time.monotonic()
        wake.set()
        await until(lambda: len(starts) == 2)
        for _ in range(5):  # a burst right after that pass
            wake.set()
            await asyncio.sleep(0)
        await until(lambda: len(starts) == 3)
        await asyncio.sleep(0.2)  # a loop that passed once per wake-up would pass again here
        stopped.flag.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert len(starts) == 3
    # the old loop slept the debounce after every wake-up: the isolated change waited 1 s
    assert starts[1] - woken["isolated"] < debounce / 2
    assert starts[2] - starts[1] >= debounce - 0.01
