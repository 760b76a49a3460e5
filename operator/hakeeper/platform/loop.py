"""One loop per object: how every kind reconciles its objects.

kopf starts an async daemon per object; the daemon awaits `run`, which calls the kind's
blocking `step` (Kubernetes reads and writes, SQL, PromQL) in the kind's worker pool, so
no thread is held between passes however many objects there are. Between passes the loop
sleeps until the step's next deadline, or until something wakes it (`Wakeups`: a watched
object changed, the spec changed); wake-ups that arrive together cost one pass.

After each pass the status goes through a `StatusWriter` (skipped when nothing but
volatile fields changed), then the step's Events are posted. A step that raises leaves
Ready=False with the kind's failure reason, posts one Warning per distinct error (not one
per retry), and is retried after `retry` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol

import kopf

from hakeeper.api.conditions import ConditionType, condition_status, set_condition
from hakeeper.platform import metrics
from hakeeper.platform.kube import ApiError, Kube
from hakeeper.platform.redact import scrub

MAX_MESSAGE = 1000
"""Condition messages and Events are cut here: the API server refuses very long ones."""


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the object (and, when `also` is given, about that object too)."""

    type: str
    """Normal or Warning."""
    reason: str
    message: str
    also: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, reason: Any, message: str, also: Mapping[str, Any] | None = None) -> Event:
        """An Event with a reason from an api.events catalog, posted as the type it is listed with."""
        return cls(reason.type, reason, message, also)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one pass decided: the status to write, the Events to post, when to run again."""

    status: Mapping[str, Any] | None = None
    """Status fields to merge into the object's status; None writes nothing."""
    events: Sequence[Event] = ()
    next_in: float | None = None
    """Seconds until the next pass; None sleeps until a wake-up."""


class Step(Protocol):
    """A kind's pass over one object: blocking, run in the kind's worker pool.

    Takes the object as the loop sees it (the watched body with the status this process
    wrote last) and what `observe` took from the watches for it (None without one), and
    returns an Outcome; raising fails the pass (see `run`).
    """

    def __call__(self, body: Mapping[str, Any], observed: Any, /) -> Outcome: ...


def describe(error: BaseException) -> str:
    """One line for a condition message or an Event: the API server's words for an ApiError;
    a URL's credentials in it hidden (platform.redact)."""
    text = str(error) if isinstance(error, ApiError) else f"{type(error).__name__}: {error}"
    return scrub(text)[:MAX_MESSAGE]


class StatusWriter:
    """Writes one object's status, skipping writes that change nothing a reader cares about.

    `volatile(status)` returns the status without the fields that may change without a
    write (a lease's expiry, a timestamp); a status equal to the last one written but for
    those is written only when `max_age` seconds have passed since the last write.
    Thread-safe for one object's loop (one pass at a time).
    """

    def __init__(self, kube: Kube, kind: str, namespace: str, name: str, *,
                 volatile: Callable[[Mapping[str, Any]], Any] | None = None, max_age: float = 30.0) -> None:
        self.kube, self.kind, self.namespace, self.name = kube, kind, namespace, name
        self.volatile = volatile or (lambda status: status)
        self.max_age = max_age
        self.written: dict[str, Any] | None = None
        """The status as this process last wrote it (merged over what it read)."""
        self._fingerprint: str | None = None
        self._at = 0.0

    def current(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The body with the status this process wrote last: the watched copy may lag behind it."""
        status = dict(body.get("status") or {})
        if self.written is not None:
            status.update(self.written)
        return {**body, "status": status}

    def write(self, base: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
        """Merge-patches `status` unless unchanged; False when the object is gone."""
        merged = {**(base.get("status") or {}), **status}
        fingerprint = json.dumps(_without_transition_times(self.volatile(merged)), sort_keys=True, default=str)
        if fingerprint == self._fingerprint and time.monotonic() - self._at < self.max_age:
            return True
        if not self.kube.patch_status(self.kind, self.namespace, self.name, status):
            return False
        self.written, self._fingerprint, self._at = merged, fingerprint, time.monotonic()
        return True

    def forget(self) -> None:
        """Believe the watched status again (e.g. after another operator replica acted)."""
        self.written, self._fingerprint = None, None


def _without_transition_times(status: Any) -> Any:
    """lastTransitionTime follows the status of a condition; it alone is no reason to write."""
    if not isinstance(status, Mapping):
        return status
    out = dict(status)
    if isinstance(out.get("conditions"), list):
        out["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in out["conditions"]]
    return out


class Wakeups:
    """Who to wake: one asyncio.Event per object, keyed by (namespace, name).

    Each registration may carry `data` (what the object watches, e.g. a Service name) that
    `wake_where` matches on, and `topics` (hashable names of what it watches, e.g. a Service's
    EndpointSlices) that `wake_topic` finds without looking at every registration: with a
    thousand pools, each slice event matched a thousand predicates (bench/scale). Call from the
    event loop's thread (kopf's async handlers).
    """

    def __init__(self) -> None:
        self._events: dict[Any, asyncio.Event] = {}
        self._data: dict[Any, Any] = {}
        self._topics: dict[Any, frozenset[Hashable]] = {}
        self._by_topic: dict[Hashable, set[Any]] = {}

    def register(self, key: Hashable) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def unregister(self, key: Hashable) -> None:
        self._events.pop(key, None)
        self._data.pop(key, None)
        self._subscribe(key, frozenset())

    def watch(self, key: Hashable, data: Any, topics: frozenset[Hashable] = frozenset()) -> None:
        """What the object depends on now (looked at by wake_where), and its topics (wake_topic)."""
        self._data[key] = data
        self._subscribe(key, topics)

    def _subscribe(self, key: Hashable, topics: frozenset[Hashable]) -> None:
        before = self._topics.pop(key, frozenset())
        for topic in before - topics:
            keys = self._by_topic.get(topic)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_topic[topic]
        for topic in topics - before:
            self._by_topic.setdefault(topic, set()).add(key)
        if topics:
            self._topics[key] = topics

    def wake_topic(self, topic: Hashable) -> list[Any]:
        """Wakes the objects that watch `topic`; their keys."""
        woken = []
        for key in list(self._by_topic.get(topic, ())):
            event = self._events.get(key)
            if event is not None:
                event.set()
                woken.append(key)
        return woken

    def wake(self, key: Hashable) -> None:
        event = self._events.get(key)
        if event is not None:
            event.set()

    def wake_where(self, predicate: Callable[[Any, Any], bool]) -> list[Any]:
        """Wakes the objects whose watch data matches; their keys."""
        woken = []
        for key, event in list(self._events.items()):
            if key in self._data and predicate(key, self._data[key]):
                event.set()
                woken.append(key)
        return woken


@dataclasses.dataclass
class Loop:
    """The settings of one kind's loop."""

    kind: str
    """The custom resource's kind, for the status subresource."""
    failure_reason: str
    """Ready=False reason and Warning reason when a pass raises."""
    executor: concurrent.futures.Executor
    retry: float = 2.0
    """Seconds before a failed pass is tried again."""
    debounce: float = 0.1
    """The shortest time in seconds from one pass's start to the next one's when woken: a
    wake-up after a quiet spell runs a pass at once (an endpoint change reaches the balancers
    without waiting), and a burst of wake-ups is coalesced into one pass at most this often."""


async def run(loop: Loop, body: kopf.Body, writer: StatusWriter, step: Step, wake: asyncio.Event,
              stopped: kopf.DaemonStopped, logger: Any,
              observe: Callable[[Mapping[str, Any]], Any] | None = None,
              lock: asyncio.Lock | None = None, telemetry: Telemetry | None = None) -> None:
    """Runs passes until the daemon is stopped (deletion, pause, exit).

    `observe(body)` runs in the event loop before each pass, where kopf's indexes may be
    read safely; its result is the step's second argument. `lock` is held for each pass
    (a deletion handler that must not run alongside a pass takes it too). After each pass
    the resource's metrics are updated: hakeeper_ready from the status, then `telemetry`
    (the kind's own families) with the status and the pass's Outcome. They are dropped
    when the loop ends, so a paused standby or a deleted object exports nothing stale.
    """
    lock = lock or asyncio.Lock()
    series = metrics.Series(loop.kind, writer.namespace, writer.name)
    failures: list[str] = []  # the last pass's error, if it failed: warn once per distinct one
    try:
        while not stopped:
            wake.clear()  # what woke this pass is seen by it; a wake-up during it runs another
            async with lock:
                if stopped:
                    return
                started = time.monotonic()
                delay = await _pass(loop, body, writer, step, logger, observe, failures, series, telemetry)
            if delay == _GONE:
                return
            if await _sleep(delay, wake, stopped):
                await asyncio.sleep(max(0.0, started + loop.debounce - time.monotonic()))
    finally:
        series.forget()


_GONE = -1.0

Telemetry = Callable[["metrics.Series", Mapping[str, Any], Outcome], None]
"""A kind's own metrics after a pass: (the resource's series, its status now, the Outcome)."""


async def _pass(loop: Loop, body: kopf.Body, writer: StatusWriter, step: Step, logger: Any,
                observe: Callable[[Mapping[str, Any]], Any] | None, failures: list[str],
                series: metrics.Series, telemetry: Telemetry | None) -> float | None:
    """One pass; the seconds until the next (None: until a wake-up), or _GONE when the object is."""
    started = time.monotonic()
    metrics.RECONCILES.labels(loop.kind).inc()
    snapshot = writer.current({"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                               "metadata": dict(body.metadata), "spec": dict(body.get("spec") or {}),
                               "status": dict(body.get("status") or {})})
    if snapshot["metadata"].get("deletionTimestamp"):
        return _GONE
    try:
        observed = observe(snapshot) if observe is not None else None
        outcome = await _blocking(loop.executor, step, snapshot, observed)
        if outcome.status is not None and not await _blocking(loop.executor, writer.write, snapshot,
                                                              outcome.status):
            return _GONE
    except Exception as error:  # a pass may fail any way; the next one tries again
        metrics.RECONCILE_ERRORS.labels(loop.kind).inc()
        metrics.RECONCILE_DURATION.labels(loop.kind).observe(time.monotonic() - started)
        message = describe(error)
        logger.warning("%s failed: %s", loop.kind, message, exc_info=not isinstance(error, ApiError))
        if message not in failures:
            kopf.warn(body, reason=loop.failure_reason, message=message)
        failures[:] = [message]
        await _report_failure(loop, writer, snapshot, message)
        series.ready(False)
        return loop.retry
    metrics.RECONCILE_DURATION.labels(loop.kind).observe(time.monotonic() - started)
    failures.clear()
    status = writer.current(snapshot)["status"]
    series.ready(condition_status(status, ConditionType.READY))
    if telemetry is not None:
        try:
            telemetry(series, status, outcome)
        except Exception:
            logger.exception("%s metrics failed", loop.kind)
    for event in outcome.events:
        objs: list[Any] = [body] if event.also is None else [body, event.also]
        kopf.event(objs, type=event.type, reason=event.reason, message=scrub(event.message)[:MAX_MESSAGE])
    return outcome.next_in


async def _report_failure(loop: Loop, writer: StatusWriter, snapshot: Mapping[str, Any], message: str) -> None:
    generation = snapshot["metadata"].get("generation")
    conditions = set_condition(snapshot["status"].get("conditions"), "Ready", False, loop.failure_reason,
                               message, generation)
    with contextlib.suppress(ApiError):  # the API server is what fails: the Warning and the log say it
        await _blocking(loop.executor, writer.write, snapshot, {"conditions": conditions})


async def _blocking(executor: concurrent.futures.Executor, fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(fn, *args))


async def _sleep(seconds: float | None, wake: asyncio.Event, stopped: kopf.DaemonStopped) -> bool:
    """Until `seconds` pass, a wake-up, or the daemon stops; True when woken."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait(seconds))]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return wake.is_set() and not stopped
