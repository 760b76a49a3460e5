"""The policy's status and Events from one evaluation (pure), and its memory read back from status."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hakeeper.api.conditions import get_condition, set_condition
from hakeeper.api.degradationpolicy import DegradationPolicySpec
from hakeeper.degradationpolicy.decide import Memory, Plan, TriggerMemory
from hakeeper.degradationpolicy.targets import Outcome, Selection, Shed, Target


def iso(t: float | None) -> str | None:
    """RFC 3339 with milliseconds: windows of a few seconds need more than whole seconds."""
    if t is None:
        return None
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def memory_from_status(status: Mapping[str, Any] | None) -> Memory:
    """What the previous evaluation (maybe by an operator since restarted) left in the status."""
    status = status or {}
    triggers = {}
    for t in status.get("triggers") or []:
        since = epoch(t.get("since"))
        if t.get("condition") and since is not None:
            triggers[t["name"]] = TriggerMemory(t["condition"], since, bool(t.get("firing")), t.get("value"),
                                                t.get("message") or "")
    return Memory(state=status.get("state") or "Normal", state_since=epoch(status.get("lastTransitionTime")),
                  last_evaluated=epoch(status.get("lastEvaluated")), last_shed=epoch(status.get("lastShedTime")),
                  last_restore=epoch(status.get("lastRestoreTime")), triggers=triggers)


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
           conflict: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"namespace": target.namespace, "name": target.name, "tier": tier,
                             "originalReplicas": original, "since": since}
    if dry_run:
        entry["dryRun"] = True
    if hpa:
        entry["hpa"] = hpa
    if conflict:
        entry["conflict"] = conflict
    return entry


def shed_entries(selection: Selection, outcomes: Iterable[Outcome], hpas: Mapping[tuple[str, str], str],
                 conflicts: Mapping[tuple[str, str], str], now: float) -> list[dict[str, Any]]:
    """Every Deployment shed after this evaluation: what was, minus what came back, plus what went."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}
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


def _metrics_condition(memory: Memory) -> tuple[bool, str, str]:
    unavailable = {n: m for n, m in memory.triggers.items() if m.condition == "Unavailable"}
    no_data = {n: m for n, m in memory.triggers.items() if m.condition == "NoData"}
    if unavailable:
        return False, "Unavailable", "; ".join(f"{n}: {m.message}" for n, m in unavailable.items())
    if no_data:
        return False, "NoData", "; ".join(f"{n}: {m.message}" for n, m in no_data.items())
    return True, "Values", f"every trigger has a value ({len(memory.triggers)})"


def build(spec: DegradationPolicySpec, generation: int | None, previous: Mapping[str, Any] | None, plan: Plan,
          selection: Selection, outcomes: list[Outcome], hpas: Mapping[tuple[str, str], str],
          conflicts: Mapping[tuple[str, str], str], ready: tuple[bool, str, str],
          now: float) -> tuple[dict[str, Any], list[Event]]:
    """The status to write and the Events to post."""
    previous = previous or {}
    memory = plan.memory
    shed = shed_entries(selection, outcomes, hpas, conflicts, now)
    real = [e for e in shed if not e.get("dryRun")]
    dry = [e for e in shed if e.get("dryRun")]
    stamp = iso(now)

    conditions = previous.get("conditions") or []
    conditions = set_condition(conditions, "Ready", ready[0], ready[1], ready[2], generation, stamp)
    metrics_ok, metrics_reason, metrics_message = _metrics_condition(memory)
    conditions = set_condition(conditions, "MetricsAvailable", metrics_ok, metrics_reason, metrics_message,
                               generation, stamp)
    if real:
        tiers = sorted({e["tier"] for e in real})
        degraded = (True, "Shed", f"{len(real)} Deployments shed in tier {', '.join(tiers)}")
    elif dry:
        degraded = (False, "DryRun", f"dryRun: would have shed {len(dry)} Deployments; nothing was scaled")
    else:
        degraded = (False, "NothingShed", "no Deployment is shed")
    conditions = set_condition(conditions, "Degraded", *degraded, generation, stamp)
    in_conflict = [e for e in real if e.get("conflict")]
    conflict = ((True, "ScaledByOthers", "; ".join(f"{e['namespace']}/{e['name']} {e['conflict']}"
                                                   for e in in_conflict))
                if in_conflict else (False, "NoConflict", "no shed Deployment was scaled up by anything else"))
    conditions = set_condition(conditions, "Conflict", *conflict, generation, stamp)

    status = {
        "observedGeneration": generation,
        "conditions": conditions,
        "state": memory.state,
        "message": plan.message,
        "shedTiers": len({e["tier"] for e in real}),
        "shedCount": len(real),
        "triggers": [_trigger_status(n, m) for n, m in memory.triggers.items()],
        "shed": shed,
        "lastEvaluated": stamp,
        "lastShedTime": iso(memory.last_shed),
        "lastRestoreTime": iso(memory.last_restore),
        "lastTransitionTime": iso(memory.state_since),
    }
    return status, _events(previous, status, outcomes, metrics_message)


def _trigger_status(name: str, m: TriggerMemory) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "condition": m.condition, "firing": m.firing, "since": iso(m.since)}
    if m.message:
        out["message"] = m.message
    if m.value is not None and math.isfinite(m.value):
        out["value"] = round(m.value, 6)
    elif m.value is not None:  # JSON has no infinities: the API server would refuse the patch
        out["message"] = f"value {m.value:+}"
    return out


_REASONS = {"shed": ("Normal", "Shed"), "restored": ("Normal", "Restored"), "released": ("Warning", "Released"),
            "would-shed": ("Normal", "WouldShed"), "would-restore": ("Normal", "WouldRestore"),
            "failed": ("Warning", "ScaleFailed")}


def _events(previous: Mapping[str, Any], status: Mapping[str, Any], outcomes: list[Outcome],
            metrics_message: str) -> list[Event]:
    events = []
    for outcome in outcomes:
        if outcome.action in _REASONS:
            type_, reason = _REASONS[outcome.action]
            events.append(Event(type_, reason, outcome.message, outcome.deployment))
    before = previous.get("state")
    if before and before != status["state"]:
        events.append(Event("Normal", status["state"], f"{before} -> {status['state']}: {status['message']}"))
    was = get_condition(previous.get("conditions"), "MetricsAvailable")
    now_ok = get_condition(status["conditions"], "MetricsAvailable")
    if now_ok and now_ok["status"] == "False" and (was is None or was.get("status") != "False"):
        events.append(Event("Warning", "MetricsUnavailable", metrics_message))
    known = {(e["namespace"], e["name"]) for e in previous.get("shed") or [] if e.get("conflict")}
    for entry in status["shed"]:
        if entry.get("conflict") and (entry["namespace"], entry["name"]) not in known:
            events.append(Event("Warning", "Conflict", f"{entry['namespace']}/{entry['name']} {entry['conflict']}"))
    return events
