"""Handlers for DegradationPolicy: a daemon per policy evaluates it every spec.interval.

Why a daemon and not a timer: a kopf timer's interval is fixed when it is registered, but
each policy has its own. A short fixed timer that checks whether the policy's interval has
elapsed would wake every policy every tick (100 policies: 100 wake-ups a second), could not
act sooner than its tick, and would judge "elapsed" from a status that may lag behind its
own last write. A daemon sleeps exactly until the next evaluation is due: the interval, or
sooner when a `for`, cooldown or restore step window closes (so the reaction comes within
one interval of the trigger crossing its threshold), and wakes at once when the spec
changes. It keeps its last status in memory, so it never decides on a stale copy.

Nothing else lives only in memory: the time windows are in the status and what is shed is
in annotations on the Deployments, so a restarted operator picks up where it left off.
Deleting a policy restores what it shed before kopf removes its finalizer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from hakeeper.api import DEGRADATION_POLICY, offline
from hakeeper.api.conditions import set_condition
from hakeeper.api.degradationpolicy import DegradationPolicySpec
from hakeeper.degradationpolicy.cycle import Evaluator
from hakeeper.degradationpolicy.decide import Memory
from hakeeper.degradationpolicy.status import Event, memory_from_status
from hakeeper.platform import kube as kubeapi
from hakeeper.platform.spec import explain

GROUP, VERSION = DEGRADATION_POLICY.api_version.split("/")
PLURAL = DEGRADATION_POLICY.plural

# Blocking calls (Prometheus queries, Kubernetes reads and patches) run here, not in kopf's
# executor: a slow Prometheus must not stall the other kinds' handlers.
_WORKERS = 32
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="degradation")
_evaluator: Evaluator | None = None
RETRY_AFTER_FAILURE = 5.0


def evaluator() -> Evaluator:
    global _evaluator
    if _evaluator is None:
        _evaluator = Evaluator.for_cluster(kubeapi.shared())
    return _evaluator


@dataclass
class PolicyMemo:
    """Per-policy, in this process only: coordination, never the truth."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    status: dict[str, Any] | None = None
    """The status this process wrote last (the watched body may not show it yet)."""
    memory: Memory | None = None
    warned_generation: int | None = None
    failure: str | None = None


def _memo(memo: kopf.Memo) -> PolicyMemo:
    if "degradation" not in memo:
        memo["degradation"] = PolicyMemo()
    return memo["degradation"]


async def _run(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_executor, functools.partial(fn, *args))


def read_spec(body: dict[str, Any]) -> tuple[DegradationPolicySpec | None, str]:
    """The spec, or None and the API server's words for what is wrong with it."""
    try:
        offline.check({"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                       "metadata": {"name": body["metadata"]["name"]}, "spec": body.get("spec") or {}})
        return DegradationPolicySpec.model_validate(body.get("spec") or {}), ""
    except offline.InvalidManifest as error:
        return None, "; ".join(error.errors)
    except ValidationError as error:
        return None, explain(error)


def _patch_status(namespace: str, name: str, status: dict[str, Any]) -> bool:
    """Merge-patches the status subresource; False when the policy is gone."""
    return kubeapi.shared().patch_status(DEGRADATION_POLICY.kind, namespace, name, status)


def _post(body: kopf.Body | dict[str, Any], events: list[Event]) -> None:
    for event in events:
        objs: list[Any] = [body]
        if event.deployment is not None:
            objs.append(event.deployment)
        kopf.event(objs, type=event.type, reason=event.reason, message=event.message)


def _snapshot(body: kopf.Body, state: PolicyMemo) -> dict[str, Any]:
    """A consistent copy of the live body, with the status this process last wrote."""
    snapshot = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                "metadata": dict(body.metadata), "spec": dict(body.spec)}
    snapshot["status"] = state.status if state.status is not None else dict(body.get("status") or {})
    return snapshot


async def _evaluate_once(body: kopf.Body, state: PolicyMemo, logger: Any) -> float | None:
    """One evaluation; when the next is due (epoch seconds), or None to wait for a new spec."""
    snapshot = _snapshot(body, state)
    meta = snapshot["metadata"]
    generation = meta.get("generation")
    spec, problem = read_spec(snapshot)
    if spec is None:
        conditions = set_condition(snapshot["status"].get("conditions"), "Ready", False, "InvalidSpec", problem,
                                   generation)
        status = {"observedGeneration": generation, "conditions": conditions,
                  "message": f"invalid spec: {problem}"}
        if state.warned_generation != generation:
            kopf.warn(body, reason="InvalidSpec", message=problem)
            state.warned_generation = generation
        if await _run(_patch_status, meta["namespace"], meta["name"], status):
            state.status = {**snapshot["status"], **status}
        return None
    if state.memory is None:
        state.memory = memory_from_status(snapshot["status"])
    result = await _run(evaluator().evaluate, snapshot, spec, state.memory)
    state.memory = result.memory
    if not await _run(_patch_status, meta["namespace"], meta["name"], result.status):
        return None
    state.status = {**snapshot["status"], **result.status}
    _post(body, result.events)
    logger.debug(f"evaluated: {result.status['state']}: {result.status['message']}")
    return result.due


async def _report_failure(body: kopf.Body, state: PolicyMemo, message: str) -> None:
    """Ready=False and one Warning per distinct failure; evaluating goes on."""
    if message != state.failure:
        kopf.warn(body, reason="EvaluationFailed", message=message)
    state.failure = message
    snapshot = _snapshot(body, state)
    generation = snapshot["metadata"].get("generation")
    status = {"conditions": set_condition(snapshot["status"].get("conditions"), "Ready", False, "EvaluationFailed",
                                          message, generation)}
    try:
        if await _run(_patch_status, snapshot["metadata"]["namespace"], snapshot["metadata"]["name"], status):
            state.status = {**snapshot["status"], **status}
    except kubeapi.ApiError:
        pass  # the API server is what fails: the Warning and the log say it


async def _sleep(seconds: float | None, wake: asyncio.Event, stopped: kopf.DaemonStopped) -> None:
    """Until the next evaluation is due, the spec changes, or the daemon is stopped."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait(seconds))]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    wake.clear()


# stopping (deletion, pause, exit): first ask and let a running evaluation finish, then cancel
@kopf.daemon(GROUP, VERSION, PLURAL, id="evaluate", cancellation_backoff=30, cancellation_timeout=10)
async def evaluate(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, logger: Any,
                   **_: Any) -> None:
    state = _memo(memo)
    # A (re)started daemon, e.g. after this operator paused for a peer that acted meanwhile,
    # believes the status it reads now, not what it wrote before.
    state.status = state.memory = None
    while not stopped:
        async with state.lock:
            if stopped or body.metadata.get("deletionTimestamp"):
                return
            try:
                due = await _evaluate_once(body, state, logger)
                state.failure = None
            except Exception as error:  # keep evaluating; say what failed, once
                logger.exception("evaluation failed")
                await _report_failure(body, state, f"{type(error).__name__}: {error}"[:1000])
                due = time.time() + RETRY_AFTER_FAILURE
        await _sleep(None if due is None else max(due - time.time(), 0.0), state.wake, stopped)


@kopf.on.update(GROUP, VERSION, PLURAL, id="spec-changed", field="spec")
async def spec_changed(memo: kopf.Memo, **_: Any) -> None:
    _memo(memo).wake.set()


@kopf.on.delete(GROUP, VERSION, PLURAL, id="restore")
async def restore_on_delete(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    state = _memo(memo)
    async with state.lock:  # never while an evaluation is scaling
        snapshot = _snapshot(body, state)
        spec, _problem = read_spec(snapshot)
        outcomes = await _run(evaluator().release_all, snapshot, spec)
    for outcome in outcomes:
        if outcome.action in ("restored", "released"):
            kopf.event([body, outcome.deployment], type="Normal", reason="Restored",
                       message=f"policy deleted: {outcome.message}")
    left = [o for o in outcomes if o.action in ("changed", "failed")]
    if left:
        raise kopf.TemporaryError("could not restore yet: " + "; ".join(o.message for o in left), delay=2)
    logger.info(f"restored {len(outcomes)} Deployments before the policy goes")
