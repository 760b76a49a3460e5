"""kopf handlers for DegradationPolicy: one loop per policy evaluates it every spec.interval.

Why a loop (platform.loop) and not a kopf timer: a kopf timer's interval is fixed when it is registered, but
each policy has its own. A short fixed timer that checks whether the policy's interval has
elapsed would wake every policy every tick (100 policies: 100 wake-ups a second), could not
act sooner than its tick, and would judge "elapsed" from a status that may lag behind its
own last write. The loop sleeps exactly until the next evaluation is due: the interval, or
sooner when a `for`, cooldown or restore step window closes (so the reaction comes within
one interval of the trigger crossing its threshold), and wakes at once when the spec
changes. It overlays the status it wrote last, so it never decides on a stale copy.

Nothing else lives only in memory: the time windows are in the status and what is shed is
in annotations on the Deployments, so a restarted operator picks up where it left off.
Deleting a policy restores what it shed before kopf removes its finalizer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from hakeeper.api import DEGRADATION_POLICY, offline
from hakeeper.api.degradationpolicy import DegradationPolicySpec
from hakeeper.api.events import CommonEvent, PolicyEvent
from hakeeper.degradationpolicy.cycle import Evaluator
from hakeeper.degradationpolicy.decide import Memory
from hakeeper.degradationpolicy.observe import trim_deployment
from hakeeper.degradationpolicy.status import (
    STATUS_REFRESH_SECONDS,
    invalid_spec_status,
    memory_from_status,
    status_fingerprint,
)
from hakeeper.degradationpolicy.telemetry import PolicyTelemetry
from hakeeper.platform import kube as kubeapi
from hakeeper.platform import loop
from hakeeper.platform.redact import scrub, secrets_of
from hakeeper.platform.settings import settings
from hakeeper.platform.spec import explain

GROUP, VERSION = DEGRADATION_POLICY.api_version.split("/")
PLURAL = DEGRADATION_POLICY.plural

# Prometheus queries, Kubernetes reads and patches run in this kind's own pool: a slow
# Prometheus must not stall the other kinds' passes.
WORKERS = 8
LOOP = loop.Loop(kind=DEGRADATION_POLICY.kind, failure_reason=PolicyEvent.EVALUATION_FAILED, retry=5.0,
                 executor=concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="degradation"))
_evaluator: Evaluator | None = None


def evaluator() -> Evaluator:
    global _evaluator
    if _evaluator is None:
        _evaluator = Evaluator.for_cluster(kubeapi.shared(), settings().trusted_policy_namespaces)
    return _evaluator


@dataclass
class PolicyMemo:
    """Per policy, in this process only: coordination between its loop and its handlers."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held by each pass and by the deletion handler: never restore while a pass scales."""
    writer: loop.StatusWriter | None = None


def _memo(memo: kopf.Memo) -> PolicyMemo:
    if "degradation" not in memo:
        memo["degradation"] = PolicyMemo()
    state: PolicyMemo = memo["degradation"]
    return state


def read_spec(body: Mapping[str, Any]) -> tuple[DegradationPolicySpec | None, str]:
    """The spec, or None and the API server's words for what is wrong with it (which may quote
    prometheus.url: its credentials hidden, as the status and an Event show it)."""
    try:
        offline.check({"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                       "metadata": {"name": body["metadata"]["name"]}, "spec": body.get("spec") or {}})
        return DegradationPolicySpec.model_validate(body.get("spec") or {}), ""
    except offline.InvalidManifest as error:
        return None, scrub("; ".join(error.errors), _url_secrets(body))
    except ValidationError as error:
        return None, scrub(explain(error), _url_secrets(body))


def _url_secrets(body: Mapping[str, Any]) -> tuple[str, ...]:
    url = ((body.get("spec") or {}).get("prometheus") or {}).get("url")
    return secrets_of(url) if isinstance(url, str) else ()


class PolicyPass:
    """One policy's evaluations; keeps the state machine's memory between them."""

    def __init__(self) -> None:
        self.memory: Memory | None = None
        self.warned_generation: int | None = None
        self.checked: tuple[str, DegradationPolicySpec | None, str] | None = None
        """The spec last checked (canonical JSON) and read_spec's answer: the CEL check is the
        costliest part of an evaluation (bench/scale's profile), and a spec changes rarely."""

    def spec_of(self, body: Mapping[str, Any]) -> tuple[DegradationPolicySpec | None, str]:
        """read_spec(body), run again only when the spec differs from the last one checked."""
        key = json.dumps(body.get("spec") or {}, sort_keys=True)
        if self.checked is None or self.checked[0] != key:
            self.checked = (key, *read_spec(body))
        return self.checked[1], self.checked[2]

    def __call__(self, body: Mapping[str, Any], observed: Mapping[str, Sequence[dict]] | None = None) -> loop.Outcome:
        """observed: the Deployments of the policy's namespaces from the operator's index (watched)."""
        generation = body["metadata"].get("generation")
        spec, problem = self.spec_of(body)
        if spec is None:
            warning = loop.Event.of(CommonEvent.INVALID_SPEC, problem)
            events = [] if self.warned_generation == generation else [warning]
            self.warned_generation = generation
            return loop.Outcome(status=invalid_spec_status(body["status"], generation, problem), events=events)
        if self.memory is None:
            self.memory = memory_from_status(body["status"])
        result = evaluator().evaluate(body, spec, self.memory, listed=observed)
        self.memory = result.memory
        events = [loop.Event(e.type, e.reason, e.message, also=e.deployment) for e in result.events]
        return loop.Outcome(status=result.status, events=events, next_in=max(result.due - time.time(), 0.0))


@kopf.index("apps", "v1", "deployments")
async def deployments_by_namespace(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Hashable, Any]:
    """Every Deployment, trimmed to what a policy reads: an evaluation takes its namespaces' from
    here instead of listing them (a hundred policies listed a namespace ten times a second)."""
    return {namespace: trim_deployment(body)}


def watched(index: kopf.Index[Any, Any], namespace: str, body: Mapping[str, Any]) -> dict[str, Sequence[dict]]:
    """The Deployments of the namespaces the policy names (its own without a list), from the
    index; taken in the event loop, where kopf updates it."""
    wanted = (body.get("spec") or {}).get("namespaces") or [namespace]
    return {ns: tuple(index.get(ns, ())) for ns in wanted if isinstance(ns, str)}


# stopping (deletion, pause, exit): first ask and let a running evaluation finish, then cancel
@kopf.daemon(GROUP, VERSION, PLURAL, id="evaluate", cancellation_backoff=30, cancellation_timeout=10)
async def evaluate(body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo,
                   stopped: kopf.DaemonStopped, logger: Any,
                   deployments_by_namespace: kopf.Index[Any, Any] | None = None, **_: Any) -> None:
    assert namespace is not None, "a namespaced kind"
    # kopf passes every index to every handler, by the name of the function that keeps it
    assert deployments_by_namespace is not None
    index = deployments_by_namespace
    state = _memo(memo)
    # A (re)started daemon, e.g. after this operator paused for a peer that acted meanwhile,
    # believes the status it reads now, not what it wrote before.
    state.writer = loop.StatusWriter(kubeapi.shared(), DEGRADATION_POLICY.kind, namespace, name,
                                    volatile=status_fingerprint, max_age=STATUS_REFRESH_SECONDS)
    await loop.run(LOOP, body, state.writer, PolicyPass(), state.wake, stopped, logger, lock=state.lock,
                   observe=lambda snapshot: watched(index, namespace, snapshot), telemetry=PolicyTelemetry())


@kopf.on.update(GROUP, VERSION, PLURAL, id="spec-changed", field="spec")
async def spec_changed(memo: kopf.Memo, **_: Any) -> None:
    _memo(memo).wake.set()


@kopf.on.delete(GROUP, VERSION, PLURAL, id="restore")
async def restore_on_delete(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    state = _memo(memo)
    async with state.lock:  # never while an evaluation is scaling
        snapshot = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                    "metadata": dict(body.metadata), "spec": dict(body.get("spec") or {}),
                    "status": dict(body.get("status") or {})}
        if state.writer is not None:
            snapshot = state.writer.current(snapshot)
        spec, _problem = read_spec(snapshot)
        outcomes = await asyncio.get_running_loop().run_in_executor(
            LOOP.executor, evaluator().release_all, snapshot, spec)
    for outcome in outcomes:
        if outcome.action in ("restored", "released"):
            objs: list[Any] = [body, outcome.deployment]
            kopf.event(objs, type=PolicyEvent.RESTORED.type, reason=PolicyEvent.RESTORED,
                       message=f"policy deleted: {outcome.message}")
    left = [o for o in outcomes if o.action in ("changed", "failed")]
    if left:
        raise kopf.TemporaryError("could not restore yet: " + "; ".join(o.message for o in left), delay=2)
    logger.info(f"restored {len(outcomes)} Deployments before the policy goes")
