"""The policy's status and Events from one evaluation (pure), built as DegradationPolicyStatus,
and its memory read back from the status.

Conditions: MetricsAvailable, Degraded, Conflict, NamespacesAllowed, and Ready, which ready() derives: True while
the policy evaluates, False with the problem that stops it (SecretMissing, InvalidSpec,
EvaluationFailed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hakeeper.api.common import epoch_of, rfc3339
from hakeeper.api.conditions import (
    CommonReason,
    ConditionType,
    PolicyReason,
    Verdict,
    find_condition,
    parse_conditions,
    with_verdicts,
)
from hakeeper.api.degradationpolicy import (
    DegradationPolicySpec,
    DegradationPolicyStatus,
    RefusedNamespace,
    RefusedRequestClasses,
    ShedTarget,
    TriggerStatus,
)
from hakeeper.api.events import PolicyEvent
from hakeeper.degradationpolicy import request_classes as classes
from hakeeper.degradationpolicy.decide import Memory, Plan, TriggerMemory
from hakeeper.degradationpolicy.targets import Outcome, Selection, Shed, Target
from hakeeper.degradationpolicy.tenancy import Admission

iso = rfc3339
"""RFC 3339 with milliseconds: windows of a few seconds need more than whole seconds."""
epoch = epoch_of


STATUS_REFRESH_SECONDS = 60.0
"""An evaluation whose status differs from the last one written only in lastEvaluated and the
triggers' values is written once this many seconds have passed since that write (status_fingerprint;
a hundred policies at a 10 s interval wrote 10 statuses a second, each coming back as a watch event:
bench/scale). Any other change (a condition, a trigger's condition or firing, what is shed) is
written at once."""


def status_fingerprint(status: Mapping[str, Any]) -> str:
    """What a status says, less what changes at every evaluation without news: lastEvaluated and
    each trigger's value (the StatusWriter's `volatile`; canonical JSON)."""
    triggers = [{k: v for k, v in t.items() if k != "value"} for t in status.get("triggers") or []
                if isinstance(t, Mapping)]
    rest = {k: v for k, v in status.items() if k not in ("lastEvaluated", "triggers")}
    return json.dumps({**rest, "triggers": triggers}, sort_keys=True, default=str)


def memory_from_status(status: Mapping[str, Any] | None) -> Memory:
    """What the previous evaluation (maybe by an operator since restarted) left in the status.

    Its lastEvaluated may be up to STATUS_REFRESH_SECONDS older than the last evaluation (an
    unchanged status is not written each time): a restarted operator then counts that time as a
    gap in the observations (decide), which restarts the time windows: the safe side."""
    status = status or {}
    triggers = {}
    for t in status.get("triggers") or []:
        since = epoch(t.get("since"))
        if t.get("condition") and since is not None:
            triggers[t["name"]] = TriggerMemory(t["condition"], since, bool(t.get("firing")), t.get("value"),
                                                t.get("message") or "")
    return Memory(state=status.get("state") or "Normal", state_since=epoch(status.get("lastTransitionTime")),
                  last_evaluated=epoch(status.get("lastEvaluated")), last_shed=epoch(status.get("lastShedTime")),
                  last_restore=epoch(status.get("lastRestoreTime")), triggers=triggers,
                  refused={tier: at for tier, since in classes.refused_from_status(status).items()
                           if (at := epoch(since)) is not None})


def dry_marks(status: Mapping[str, Any] | None, policy: str) -> dict[tuple[str, str], Shed]:
    """What an earlier dry run reported as shed: the dry run's own memory."""
    return {(e["namespace"], e["name"]): Shed(policy, int(e.get("originalReplicas", 0)), e.get("tier", ""),
                                              e.get("since", ""), dry_run=True)
            for e in (status or {}).get("shed") or [] if e.get("dryRun")}


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str
    deployment: Mapping[str, Any] | None = None
    """Also posted on this Deployment, so `kubectl describe deployment` tells it."""


def _entry(target: Target, tier: str, original: int, since: str, dry_run: bool, hpa: str | None,
           conflict: str | None) -> ShedTarget:
    return ShedTarget(namespace=target.namespace, name=target.name, tier=tier, original_replicas=original,
                      since=since, dry_run=dry_run, hpa=hpa or None, conflict=conflict or None)


def shed_entries(selection: Selection, outcomes: Iterable[Outcome], hpas: Mapping[tuple[str, str], str],
                 conflicts: Mapping[tuple[str, str], str], now: float) -> list[ShedTarget]:
    """Every Deployment shed after this evaluation: what was, minus what came back, plus what went;
    lowest tier priority first."""
    entries: dict[tuple[str, str], ShedTarget] = {}
    order: dict[tuple[str, str], int] = {}
    for target in selection.all_shed():
        mark = target.shed
        assert mark is not None
        entries[target.key] = _entry(target, target.tier or mark.tier, mark.original_replicas, mark.since,
                                     mark.dry_run, hpas.get(target.key), conflicts.get(target.key))
        order[target.key] = target.tier_priority
    for outcome in outcomes:
        key = outcome.target.key
        if outcome.action in ("shed", "would-shed"):
            entries[key] = _entry(outcome.target, outcome.target.tier, outcome.original_replicas or 0, iso(now) or "",
                                  outcome.action == "would-shed", hpas.get(key), None)
            order[key] = outcome.target.tier_priority
        elif outcome.action in ("restored", "released", "gone", "would-restore"):
            entries.pop(key, None)
    return [entries[k] for k in sorted(entries, key=lambda k: (order.get(k, 0), k))]


# -- conditions ---------------------------------------------------------------------------------
def ready(spec: DegradationPolicySpec | None, problem: Verdict | None = None) -> Verdict:
    """Ready: the policy evaluates its triggers every interval. False with the problem that stops
    it when there is one: SecretMissing, InvalidSpec (no spec then), EvaluationFailed."""
    if problem is not None:
        return problem
    if spec is None:
        raise ValueError("a policy without a valid spec is not ready: give the problem")
    return Verdict(True, PolicyReason.EVALUATING, f"evaluating {len(spec.triggers)} triggers every {spec.interval}")


def metrics_available(memory: Memory) -> Verdict:
    """MetricsAvailable: every trigger's last query returned a value (Unavailable wins over NoData)."""
    unavailable = {n: m for n, m in memory.triggers.items() if m.condition == "Unavailable"}
    no_data = {n: m for n, m in memory.triggers.items() if m.condition == "NoData"}
    if unavailable:
        return Verdict(False, PolicyReason.UNAVAILABLE, "; ".join(f"{n}: {m.message}" for n, m in unavailable.items()))
    if no_data:
        return Verdict(False, PolicyReason.NO_DATA, "; ".join(f"{n}: {m.message}" for n, m in no_data.items()))
    return Verdict(True, PolicyReason.VALUES, f"every trigger has a value ({len(memory.triggers)})")


def degraded(real: list[ShedTarget], dry: list[ShedTarget],
             refused: Sequence[RefusedRequestClasses] = ()) -> Verdict:
    """Degraded: Deployments are shed, or a pool's request classes refused, for real (a dry run's
    are only reported)."""
    refusing = [r for r in refused if not r.dry_run and set(r.classes) - set(r.unknown)]
    if real or refusing:
        tiers = sorted({e.tier for e in real} | {r.tier for r in refusing})
        what = [f"{len(real)} Deployments shed"] if real else []
        if refusing:
            what.append("request classes refused on " + ", ".join(sorted({f"pool {r.pool}" for r in refusing})))
        return Verdict(True, PolicyReason.SHED, f"{'; '.join(what)} in tier {', '.join(tiers)}")
    if dry:
        return Verdict(False, PolicyReason.DRY_RUN,
                       f"dryRun: would have shed {len(dry)} Deployments; nothing was scaled")
    if any(r.dry_run for r in refused):
        return Verdict(False, PolicyReason.DRY_RUN, "dryRun: would have refused request classes; nothing was refused")
    return Verdict(False, PolicyReason.NOTHING_SHED, "no Deployment is shed")


def conflict(real: list[ShedTarget]) -> Verdict:
    """Conflict: something else scaled a shed Deployment back up."""
    in_conflict = [e for e in real if e.conflict]
    if in_conflict:
        return Verdict(True, PolicyReason.SCALED_BY_OTHERS,
                       "; ".join(f"{e.namespace}/{e.name} {e.conflict}" for e in in_conflict))
    return Verdict(False, PolicyReason.NO_CONFLICT, "no shed Deployment was scaled up by anything else")


def namespaces_allowed(allowed: Iterable[str], refused: Mapping[str, str]) -> Verdict:
    """NamespacesAllowed: the policy may shed in every namespace it lists (tenancy.admit)."""
    if refused:
        return Verdict(False, PolicyReason.NAMESPACE_REFUSED,
                       "; ".join(f"{namespace}: {why}" for namespace, why in sorted(refused.items())))
    allowed = list(allowed)
    return Verdict(True, PolicyReason.ALLOWED, f"may shed in {', '.join(allowed)}" if allowed
                   else "may shed in every namespace it lists")


def problem_status(previous: Mapping[str, Any] | None, generation: int | None, problem: Verdict,
                   now: str | None = None, spec_invalid: bool = False) -> dict[str, Any]:
    """The status patch for a policy that cannot evaluate: Ready=False with the problem (reason
    CommonReason.INVALID_SPEC or PolicyReason.EVALUATION_FAILED), the rest of the status as it is.
    An invalid spec also sets observedGeneration and the one-line message."""
    conditions = with_verdicts((previous or {}).get("conditions"), [(ConditionType.READY, ready(None, problem))],
                               generation, now)
    if not spec_invalid:
        return DegradationPolicyStatus(conditions=conditions).patch()
    return DegradationPolicyStatus(observed_generation=generation, conditions=conditions,
                                   message=f"invalid spec: {problem.message}").patch()


def invalid_spec_status(previous: Mapping[str, Any] | None, generation: int | None, problem: str,
                        now: str | None = None) -> dict[str, Any]:
    """problem_status for a spec the schema refuses; `problem` says where, in the API server's words."""
    return problem_status(previous, generation, Verdict(False, CommonReason.INVALID_SPEC, problem), now,
                          spec_invalid=True)


def evaluation_failed_status(previous: Mapping[str, Any] | None, generation: int | None, message: str,
                             now: str | None = None) -> dict[str, Any]:
    """problem_status for an evaluation that raised (`message`: what failed)."""
    return problem_status(previous, generation, Verdict(False, PolicyReason.EVALUATION_FAILED, message), now)


# -- the status ---------------------------------------------------------------------------------
def status_model(spec: DegradationPolicySpec, generation: int | None, previous: Mapping[str, Any] | None,
                 plan: Plan, selection: Selection, outcomes: list[Outcome], hpas: Mapping[tuple[str, str], str],
                 conflicts: Mapping[tuple[str, str], str], ready: tuple[bool, str, str],
                 now: float, admission: Admission | None = None,
                 pools: Mapping[str, list[str] | None] | None = None) -> tuple[DegradationPolicyStatus, list[Event]]:
    """The status after one evaluation and the Events to post. `previous` is the status as read
    from the API; `ready` is ready()'s verdict for this evaluation; `now` is epoch seconds;
    `admission`: where the policy may shed (tenancy.admit; None: everywhere it lists); `pools`: the
    request classes of each pool the tiers name (None: the pool does not exist)."""
    admission = admission or Admission(())
    previous = previous or {}
    memory = plan.memory
    shed = shed_entries(selection, outcomes, hpas, conflicts, now)
    real = [e for e in shed if not e.dry_run]
    dry = [e for e in shed if e.dry_run]
    stamp = iso(now)
    metrics = metrics_available(memory)
    refused = classes.entries(spec, memory.refused, pools or {}, iso, dry_run=spec.dry_run)
    conditions = with_verdicts(previous.get("conditions") or [], [
        (ConditionType.READY, Verdict(*ready)),
        (ConditionType.METRICS_AVAILABLE, metrics),
        (ConditionType.DEGRADED, degraded(real, dry, refused)),
        (ConditionType.CONFLICT, conflict(real)),
        (ConditionType.NAMESPACES_ALLOWED, namespaces_allowed(admission.allowed, admission.refused)),
    ], generation, stamp)
    status = DegradationPolicyStatus(
        observed_generation=generation,
        conditions=conditions,
        state=memory.state,
        message=plan.message,
        shed_tiers=len({e.tier for e in real}),
        shed_count=len(real),
        triggers=[_trigger_status(n, m) for n, m in memory.triggers.items()],
        shed=shed,
        refused_namespaces=[RefusedNamespace(namespace=n, reason=why) for n, why in sorted(admission.refused.items())],
        refused_request_classes=refused,
        last_evaluated=stamp,
        last_shed_time=iso(memory.last_shed),
        last_restore_time=iso(memory.last_restore),
        last_transition_time=iso(memory.state_since),
    )
    return status, _events(previous, status, outcomes, metrics.message)


def build(spec: DegradationPolicySpec, generation: int | None, previous: Mapping[str, Any] | None, plan: Plan,
          selection: Selection, outcomes: list[Outcome], hpas: Mapping[tuple[str, str], str],
          conflicts: Mapping[tuple[str, str], str], ready: tuple[bool, str, str],
          now: float, admission: Admission | None = None,
          pools: Mapping[str, list[str] | None] | None = None) -> tuple[dict[str, Any], list[Event]]:
    """status_model's status as the merge patch to write (StatusModel.patch), and the Events to post."""
    status, events = status_model(spec, generation, previous, plan, selection, outcomes, hpas, conflicts, ready, now,
                                  admission, pools)
    return status.patch(), events


def _trigger_status(name: str, m: TriggerMemory) -> TriggerStatus:
    message = m.message or None
    value = None
    if m.value is not None and math.isfinite(m.value):
        value = round(m.value, 6)
    elif m.value is not None:  # JSON has no infinities: the API server would refuse the patch
        message = f"value {m.value:+}"
    return TriggerStatus(name=name, condition=m.condition, firing=m.firing, since=iso(m.since), message=message,
                         value=value)


_OUTCOME_EVENTS = {"shed": PolicyEvent.SHED, "restored": PolicyEvent.RESTORED, "released": PolicyEvent.RELEASED,
                   "would-shed": PolicyEvent.WOULD_SHED, "would-restore": PolicyEvent.WOULD_RESTORE,
                   "failed": PolicyEvent.SCALE_FAILED}


def _event(reason: PolicyEvent, message: str, deployment: Mapping[str, Any] | None = None) -> Event:
    return Event(reason.type, reason, message, deployment)


def _events(previous: Mapping[str, Any], status: DegradationPolicyStatus, outcomes: list[Outcome],
            metrics_message: str) -> list[Event]:
    events = [_event(_OUTCOME_EVENTS[o.action], o.message, o.deployment) for o in outcomes
              if o.action in _OUTCOME_EVENTS]
    before = previous.get("state")
    if before and status.state and before != status.state:
        # a change of state is posted as an Event named after the new state
        events.append(_event(PolicyEvent(status.state), f"{before} -> {status.state}: {status.message}"))
    was = find_condition(parse_conditions(previous.get("conditions")), ConditionType.METRICS_AVAILABLE)
    metrics = find_condition(status.conditions, ConditionType.METRICS_AVAILABLE)
    if metrics and metrics.status == "False" and (was is None or was.status != "False"):
        events.append(_event(PolicyEvent.METRICS_UNAVAILABLE, metrics_message))
    refused_before = {e["namespace"]: e.get("reason") for e in previous.get("refusedNamespaces") or []}
    for refused in status.refused_namespaces:  # once, and again when the reason changes
        if refused_before.get(refused.namespace) != refused.reason:
            events.append(_event(PolicyEvent.NAMESPACE_REFUSED,
                                 f"not shedding in {refused.namespace}: {refused.reason}"))
    events += _class_events(previous.get("refusedRequestClasses") or [], status.refused_request_classes)
    known = {(e["namespace"], e["name"]) for e in previous.get("shed") or [] if e.get("conflict")}
    for entry in status.shed:
        if entry.conflict and (entry.namespace, entry.name) not in known:
            events.append(_event(PolicyEvent.CONFLICT, f"{entry.namespace}/{entry.name} {entry.conflict}"))
    return events


def _class_events(before: list[Mapping[str, Any]], after: list[RefusedRequestClasses]) -> list[Event]:
    """RequestClassesRefused / Restored per pool and tier when its entry comes or goes, and a
    Warning for classes (or a pool) a tier names that do not exist, once until that changes."""
    was = {(str(e.get("pool")), str(e.get("tier"))): e for e in before}
    now = {(e.pool, e.tier): e for e in after}
    events = []
    for key, entry in now.items():
        old = was.get(key)
        dry = "dryRun: would refuse" if entry.dry_run else "refusing"
        if old is None and entry.classes:
            events.append(_event(PolicyEvent.REQUEST_CLASSES_REFUSED, f"tier {entry.tier} shed: {dry} request "
                                 f"classes {', '.join(entry.classes)} of LoadBalancerPool {entry.pool}"))
        if entry.unknown and (old is None or sorted(old.get("unknown") or []) != entry.unknown):
            events.append(_event(PolicyEvent.REQUEST_CLASS_UNKNOWN, f"tier {entry.tier}: LoadBalancerPool "
                                 f"{entry.pool} does not define request classes {', '.join(entry.unknown)} "
                                 "(or does not exist): they refuse nothing"))
    for key, old in was.items():
        if key not in now and old.get("classes"):
            events.append(_event(PolicyEvent.REQUEST_CLASSES_RESTORED, f"tier {key[1]} restored: LoadBalancerPool "
                                 f"{key[0]} lets request classes {', '.join(old['classes'])} through again"))
    return events
