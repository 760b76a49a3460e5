"""The policy's decision, as a pure function: readings, time, memory and tiers in; a Plan out.

Per trigger, each reading is classified:

    Breaching    the comparison with `threshold` holds
    Between      past recoverThreshold but not past threshold (hysteresis: nothing changes)
    Recovered    back on the good side of recoverThreshold (threshold when not given)
    NoData       empty result, NaN, +Inf/-Inf, stale series
    Unavailable  Prometheus unreachable, or the query failed

A trigger *fires* once it has been Breaching for `for`, and stays firing until it counts as
recovered (Recovered, or NoData/Unavailable when the policy says Restore for them). The
policy then:

    Normal      nothing shed, nothing breaching
    Pending     a trigger breaches, its `for` has not elapsed yet
    Degraded    a trigger fires, or Deployments are shed and not every trigger has recovered.
                While a trigger fires *and* breaches, one more tier is shed per interval
                (staged) or every tier at once (all); Between, NoData and Unavailable hold.
    Recovering  Deployments are shed and every trigger has recovered: after `restore.cooldown`
                one tier comes back per `restore.interval`, highest priority first.

A tier may also name pools' request classes (tiers[].requestClasses): they are refused while the
tier is shed, in the same order (request_classes.py). A tier of classes only is a step of its own:
with staged shedding it is refused at its turn, and restored at its turn; Memory.refused keeps which
tiers' classes are refused, and since when.

Time windows (`for`, cooldown) count only continuous observations: a gap longer than two
intervals (e.g. the operator was down; after a restart it is counted from the status's
lastEvaluated) starts them again, and clears a firing trigger, so nothing is shed or restored on
evidence older than the gap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from hakeeper.api.common import parse_duration
from hakeeper.api.degradationpolicy import DegradationPolicySpec, Trigger
from hakeeper.degradationpolicy import request_classes as classes
from hakeeper.degradationpolicy.targets import Selection, Target

Condition = Literal["Breaching", "Between", "Recovered", "NoData", "Unavailable"]
State = Literal["Normal", "Pending", "Degraded", "Recovering"]

# Evaluations scheduled for a deadline may wake a hair early; count them as on time.
EPSILON = 0.05
# A gap in the observations longer than this many intervals resets every time window.
GAP_INTERVALS = 2


@dataclass(frozen=True)
class Reading:
    """What one trigger's query returned: a value, no data, or unavailable (with why)."""

    outcome: Literal["value", "no-data", "unavailable"]
    value: float | None = None
    message: str = ""


@dataclass(frozen=True)
class TriggerMemory:
    condition: Condition
    since: float
    """When the current condition began (epoch seconds)."""
    firing: bool = False
    value: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Memory:
    """What the policy must remember between evaluations; kept in its status."""

    state: State = "Normal"
    state_since: float | None = None
    last_evaluated: float | None = None
    last_shed: float | None = None
    last_restore: float | None = None
    triggers: Mapping[str, TriggerMemory] = field(default_factory=dict)
    refused: Mapping[str, float] = field(default_factory=dict)
    """Tiers whose request classes are refused -> since when (epoch seconds)."""


@dataclass(frozen=True)
class Plan:
    memory: Memory
    shed: tuple[Target, ...] = ()
    restore: tuple[Target, ...] = ()
    message: str = ""
    wake_in: float = 1.0
    """Seconds until the next evaluation: the interval, or sooner when a window closes."""


def compare(value: float, operator: str, threshold: float) -> bool:
    return {">": value > threshold, ">=": value >= threshold,
            "<": value < threshold, "<=": value <= threshold}[operator]


def classify(trigger: Trigger, reading: Reading) -> Condition:
    if reading.outcome == "unavailable":
        return "Unavailable"
    if reading.outcome == "no-data" or reading.value is None:
        return "NoData"
    if compare(reading.value, trigger.operator, trigger.threshold):
        return "Breaching"
    recover = trigger.recover_threshold if trigger.recover_threshold is not None else trigger.threshold
    if compare(reading.value, trigger.operator, recover):
        return "Between"
    return "Recovered"


def counts_as_recovered(condition: Condition, spec: DegradationPolicySpec) -> bool:
    return (condition == "Recovered"
            or (condition == "NoData" and spec.on_no_data == "Restore")
            or (condition == "Unavailable" and spec.on_metrics_unavailable == "Restore"))


def remember(trigger: Trigger, reading: Reading, before: TriggerMemory | None, now: float, gap: bool,
             spec: DegradationPolicySpec) -> TriggerMemory:
    condition = classify(trigger, reading)
    continuous = before is not None and not gap and before.condition == condition
    since = before.since if continuous else now  # type: ignore[union-attr]
    if counts_as_recovered(condition, spec):
        firing = False
    elif condition == "Breaching" and now - since >= parse_duration(trigger.for_) - EPSILON:
        firing = True
    else:  # Between, a hold, or still pending: keep what was (a gap forgets it)
        firing = bool(before and before.firing and not gap)
    return TriggerMemory(condition, since, firing, reading.value, reading.message)


def _due(last: float | None, every: float, now: float) -> bool:
    return last is None or now - last >= every - EPSILON


def _take(selection: Selection, limit: int, staged: bool) -> list[Target]:
    """Running Deployments, lowest tier first: from one tier (staged) or across tiers (all)."""
    chosen: list[Target] = []
    for tier in selection.tiers:
        if not tier.running:
            continue
        chosen.extend(tier.running[:max(limit - len(chosen), 0)])
        if staged or len(chosen) >= limit:
            break
    return chosen


def _shed_step(spec: DegradationPolicySpec, selection: Selection) -> tuple[tuple[Target, ...], str]:
    """The next Deployments to switch off, and a note when maxShedFraction holds some back."""
    staged = spec.mode == "staged"
    wanted = _take(selection, spec.max_targets_per_step, staged)
    if not wanted:
        return (), "nothing left to shed"
    room = selection.budget - selection.shed_count
    guard = (f"maxShedFraction {spec.max_shed_fraction:g} allows {selection.budget} of "
             f"{selection.workload} running Deployments; {selection.shed_count} shed")
    if room <= 0:
        return (), guard
    chosen = _take(selection, min(room, spec.max_targets_per_step), staged)
    return tuple(chosen), (guard if len(chosen) < len(wanted) else "")


def _restore_step(spec: DegradationPolicySpec, selection: Selection,
                  refused: Mapping[str, float]) -> tuple[str, tuple[Target, ...]]:
    """The tier that comes back next (its Deployments and its request classes): its name, and the
    Deployments to restore ("" and none when nothing is shed)."""
    priorities = {t.name: t.priority for t in spec.tiers}
    shed = {t.name: t.shed for t in selection.tiers if t.shed}
    tiers = sorted(set(shed) | set(refused), key=lambda n: priorities.get(n, 0),
                   reverse=spec.restore.order == "HighestPriorityFirst")
    if not tiers:
        return "", ()
    first = tiers[0]
    # within a tier, the Deployments with the most important pods come back first
    ordered = sorted(shed.get(first, ()), key=lambda t: (-(t.pod_priority or 0), t.namespace, t.name))
    return first, tuple(ordered[:spec.max_targets_per_step])


def decide(spec: DegradationPolicySpec, memory: Memory, readings: Mapping[str, Reading],
           selection: Selection, now: float) -> Plan:
    interval = parse_duration(spec.interval)
    cooldown = parse_duration(spec.restore.cooldown)
    restore_every = parse_duration(spec.restore.interval)
    # the longest an evaluation may legitimately take: every query up to its timeout
    allowance = GAP_INTERVALS * interval + parse_duration(spec.prometheus.timeout) * len(spec.triggers)
    gap = memory.last_evaluated is None or now - memory.last_evaluated > allowance

    triggers = {
        t.name: remember(t, readings.get(t.name, Reading("no-data", message="not evaluated")),
                         memory.triggers.get(t.name), now, gap, spec)
        for t in spec.triggers
    }
    firing = [n for n, m in triggers.items() if m.firing]
    pushing = [n for n, m in triggers.items() if m.firing and m.condition == "Breaching"]
    pending = [n for n, m in triggers.items() if m.condition == "Breaching" and not m.firing]
    recovered = all(counts_as_recovered(m.condition, spec) for m in triggers.values())
    recovered_since = max(m.since for m in triggers.values()) if recovered else None
    shed_before = selection.shed_count

    notes: list[str] = []
    shed: tuple[Target, ...] = ()
    restore: tuple[Target, ...] = selection.orphans[:spec.max_targets_per_step]
    last_shed, last_restore = memory.last_shed, memory.last_restore
    # a tier gone from the spec, or without request classes now, refuses nothing any more
    refused = {t: since for t, since in memory.refused.items() if t in classes.tier_names(spec)}
    tier_shed = any(t.shed for t in selection.tiers) or bool(refused)

    if pushing:
        if _due(memory.last_shed, interval, now):
            refuse, classes_only = classes.refuse_step(spec, selection, refused)
            shed, note = ((), "") if classes_only else _shed_step(spec, selection)
            refused.update({t: now for t in refuse})
            if shed or refuse:
                last_shed = now
            if shed:
                names = sorted({t.tier for t in shed})
                notes.append(f"{', '.join(pushing)} firing: shedding {len(shed)} in tier {', '.join(names)}")
            if refuse:
                notes.append(f"{', '.join(pushing)} firing: refusing the request classes of tier {', '.join(refuse)}")
            if not shed and not refuse:
                notes.append(f"{', '.join(pushing)} firing; {note}")
            if note and shed:
                notes.append(note)
        else:
            notes.append(f"{', '.join(pushing)} firing; next tier after the interval")
    elif firing:
        notes.append(f"{', '.join(firing)} fired; holding ({_holds(triggers, firing)})")
    elif tier_shed and recovered:
        wait = recovered_since + cooldown - now  # type: ignore[operator]
        if wait > EPSILON:
            notes.append(f"all triggers recovered; restoring after the cooldown (in {wait:.0f}s)")
        elif _due(memory.last_restore, restore_every, now):
            tier, step = _restore_step(spec, selection, refused)
            restore = restore + step
            last_restore = now
            allowed = refused.pop(tier, None) is not None
            notes.append(f"all triggers recovered: restoring {len(step)} in tier {tier}"
                         + (" and letting its request classes through" if allowed else ""))
        else:
            notes.append("all triggers recovered: next tier after restore.interval")
    elif tier_shed:
        notes.append(f"holding what is shed ({_holds(triggers, list(triggers))})")
    elif pending:
        left = min(parse_duration(_trigger(spec, n).for_) - (now - triggers[n].since) for n in pending)
        notes.append(f"{', '.join(pending)} breaching; fires in {max(left, 0):.0f}s unless it recovers")
    else:
        unknown = [n for n, m in triggers.items() if m.condition in ("NoData", "Unavailable")]
        notes.append(f"holding: no data from {', '.join(unknown)}" if unknown
                     else "every trigger within its threshold")
    if selection.orphans:
        notes.append(f"restoring {len(selection.orphans[:spec.max_targets_per_step])} no longer selected")
    if selection.held:
        notes.append(f"dryRun holds {len(selection.held)} shed before")

    remaining = shed_before + len(shed) - len(restore) + len(refused)
    if firing:
        state: State = "Degraded"
    elif remaining > 0:
        state = "Recovering" if recovered else "Degraded"
    elif pending:
        state = "Pending"
    else:
        state = "Normal"
    state_since = memory.state_since if memory.state == state and memory.state_since is not None else now

    new_memory = Memory(state, state_since, now, last_shed, last_restore, triggers, refused)
    return Plan(new_memory, shed, restore, "; ".join(notes),
                _wake_in(spec, new_memory, pending, recovered_since, remaining > 0, now))


def _trigger(spec: DegradationPolicySpec, name: str) -> Trigger:
    return next(t for t in spec.triggers if t.name == name)


def _holds(triggers: Mapping[str, TriggerMemory], names: list[str]) -> str:
    parts = [f"{n} {triggers[n].condition}" for n in names if triggers[n].condition != "Breaching"]
    return ", ".join(parts) or "waiting"


def _wake_in(spec: DegradationPolicySpec, memory: Memory, pending: list[str], recovered_since: float | None,
             anything_shed: bool, now: float) -> float:
    """The regular interval, or the moment a `for`, cooldown or restore step falls due if sooner."""
    deadlines = [parse_duration(spec.interval)]
    for name in pending:
        deadlines.append(memory.triggers[name].since + parse_duration(_trigger(spec, name).for_) - now)
    if anything_shed and recovered_since is not None:
        deadlines.append(recovered_since + parse_duration(spec.restore.cooldown) - now)
        if memory.last_restore is not None:
            deadlines.append(memory.last_restore + parse_duration(spec.restore.interval) - now)
    return max(min(d for d in deadlines if d > EPSILON) if any(d > EPSILON for d in deadlines) else EPSILON,
               EPSILON)
